"""Experiment tracking: the TensorBoard events and JSON lines of a run (training, continual)
equal its history.csv and result matrices, its log is kept in the work directory, and the
terminal gets one line per phase."""
import csv
import math
import os
import struct
import sys
from collections import defaultdict

import numpy as np
import pytest
from absl import logging
from tensorboardX.proto import event_pb2

from rum_jax.configs import continual_digits, default
from rum_jax import commands, io, tracking
from rum_jax.data import load_dataset

EPOCHS, BATCH = 3, 128


def _config(epochs=EPOCHS):
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=epochs, batch_size=BATCH)
  return c


def read_events(directory):
  """{tag: [(step, value)]} of every event file in `directory`, parsed from the TFRecord
  framing (uint64 length, its 4-byte CRC, the Event proto, the data's 4-byte CRC)."""
  out = defaultdict(list)
  for name in sorted(os.listdir(directory)):
    if "tfevents" not in name:
      continue
    data = open(os.path.join(directory, name), "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        out[value.tag].append((event.step, value.simple_value))
    assert pos == len(data), f"{name} ends inside a record"
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tracked") / "run")
  commands.train(_config(), workdir)
  return workdir


def test_events_and_json_lines_equal_the_history(trained):
  with open(os.path.join(trained, "history.csv")) as f:
    history = defaultdict(dict)  # metric -> epoch -> per-seed values
    for row in csv.DictReader(f):
      history[row["metric"]].setdefault(int(row["epoch"]), []).append(float(row["value"]))
  records = tracking.read_scalars(trained)
  epochs = [r for r in records if r["phase"] == "train" and r["axis"] == "epoch"]
  assert [r["step"] for r in epochs] == list(range(1, EPOCHS + 1))
  events = read_events(os.path.join(trained, "tensorboard", "train"))
  for metric in ("loss", "accuracy"):
    for r in epochs:
      np.testing.assert_allclose(r["scalars"][metric], history[metric][r["step"]], rtol=1e-6)
    logged = dict(events[f"epoch/{metric}"])
    assert sorted(logged) == list(range(1, EPOCHS + 1))
    for epoch, values in history[metric].items():  # TensorBoard: the mean over seeds, as float32
      assert logged[epoch] == pytest.approx(np.mean(values), rel=1e-6)

  # Steps: each the mean over seeds; weighted by the steps' real examples they give back each
  # epoch's mean over seeds (every seed has the same full batches and the same last one).
  n = len(load_dataset("digits").train)
  sizes = np.minimum(BATCH, n - BATCH * np.arange(math.ceil(n / BATCH)))
  steps = [r for r in records if r["phase"] == "train" and r["axis"] == "step"]
  assert [r["step"] for r in steps] == list(range(1, EPOCHS * len(sizes) + 1))
  logged = dict(events["step/loss"])
  for r in steps:
    assert logged[r["step"]] == pytest.approx(r["scalars"]["loss"], rel=1e-6)
  per_step = np.array([r["scalars"]["loss"] for r in steps]).reshape(EPOCHS, len(sizes))
  np.testing.assert_allclose(per_step @ sizes / n, [np.mean(history["loss"][e]) for e in range(1, EPOCHS + 1)],
                             rtol=1e-5)


def test_the_log_is_kept_with_one_line_per_phase_and_appended_on_resume(trained):
  text = open(os.path.join(trained, "log.txt")).read()
  assert f"[train] {EPOCHS} epochs in" in text and "final accuracy" in text
  assert "epoch 1/" not in text, "per-epoch lines only with -v 1"
  commands.train(_config(), trained)  # finished: read back, nothing trained
  again = open(os.path.join(trained, "log.txt")).read()
  assert again.startswith(text) and len(again) > len(text)
  assert again.count(f"[train] {EPOCHS} epochs in") == 1


def test_per_epoch_lines_with_verbosity_1(tmp_path):
  before = logging.get_verbosity()
  logging.set_verbosity(1)
  try:
    commands.train(_config(epochs=2), str(tmp_path))
  finally:
    logging.set_verbosity(before)
  text = open(os.path.join(tmp_path, "log.txt")).read()
  assert "[train] epoch 1/2" in text and "[train] epoch 2/2" in text and "[train] 2 epochs in" in text


def test_without_tensorboardx_the_json_lines_stay_and_one_line_says_what_to_install(tmp_path, monkeypatch, caplog):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  monkeypatch.setattr(tracking, "_warned", set())
  for _ in range(2):
    with tracking.track(str(tmp_path)):
      tracking.scalars("phase", "epoch", 1, {"loss": [0.5, 1.5]})
  assert not os.path.exists(tmp_path / "tensorboard")
  assert [r["scalars"] for r in tracking.read_scalars(str(tmp_path))] == [{"loss": [0.5, 1.5]}]
  warnings = [r.getMessage() for r in caplog.records if "tensorboardX" in r.getMessage()]
  assert len(warnings) == 1 and "pip install tensorboardX" in warnings[0]


def test_the_last_line_of_a_point_counts_and_a_cut_line_is_skipped(tmp_path):
  with tracking.track(str(tmp_path)):
    tracking.scalars("a", "epoch", 1, {"loss": 2.0})
    tracking.scalars("a", "epoch", 2, {"loss": 1.0})
    tracking.scalars("a", "epoch", 2, {"loss": 0.5})  # the same epoch again after a resume
  with open(tmp_path / tracking.SCALARS_FILE, "a") as f:
    f.write('{"phase": "a", "ax')  # a run killed while writing
  assert [(r["step"], r["scalars"]["loss"]) for r in tracking.read_scalars(str(tmp_path))] == [(1, 2.0), (2, 0.5)]


def test_outside_a_tracked_run_nothing_is_written(tmp_path):
  assert tracking.current() is None
  tracking.scalars("a", "epoch", 1, {"loss": 1.0})
  with tracking.track(str(tmp_path / "outer")):
    with tracking.track(str(tmp_path / "inner")) as inner:  # a pipeline inside a run: the run's files
      assert inner.workdir == str(tmp_path / "outer")
  assert not os.path.exists(tmp_path / "inner")


def test_a_continual_run_tracks_its_learning_epochs_and_every_step(tmp_path):
  c = continual_digits.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.continual.update(sequence="0,1,-1", memories=8, unlearn_memories=8, unlearn_max_epochs=2, agem_ref_size=16)
  workdir = str(tmp_path)
  commands.continual(c, workdir)
  test = np.load(os.path.join(workdir, "matrices.npz"))["test_accuracy"]  # [seeds, 1 + steps, tasks]
  steps = io.read_json(os.path.join(workdir, "progress.json"))["steps"]
  records = tracking.read_scalars(workdir)
  after = [r for r in records if r["phase"] == "continual"]
  assert [r["step"] for r in after] == [1, 2, 3] and {r["axis"] for r in after} == {"sequence_step"}
  events = read_events(os.path.join(workdir, "tensorboard", "continual"))
  for r in after:
    for t in range(test.shape[2]):
      np.testing.assert_allclose(r["scalars"][f"test_accuracy/task_{t}"], test[:, r["step"], t])
      assert dict(events[f"sequence_step/test_accuracy/task_{t}"])[r["step"]] == pytest.approx(
          test[:, r["step"], t].mean(), rel=1e-6)
  assert after[2]["scalars"]["iterations"] == steps[2]["iterations"]  # the forget step
  # Its steps that ran: at least those of the seed that took most, at most those of all seeds.
  forget_steps = [r for r in records if r["phase"] == "step 3/3 forget 1"]
  iterations = steps[2]["iterations"]
  assert max(iterations) <= len(forget_steps) <= sum(iterations) and max(iterations) > 0
  assert all(r["scalars"]["updated"] == 1.0 for r in forget_steps)
  learned = sorted({r["phase"] for r in records if r["axis"] == "epoch"})
  assert learned == ["step 1/3 learn 0", "step 2/3 learn 1"]


def test_a_phase_without_a_folder_that_recurs_gets_its_own_records_and_events(tmp_path):
  with tracking.track(str(tmp_path)):
    for loss in (1.0, 2.0):  # e.g. the same bank chunk for two forget sets
      p = tracking.phase("chunk 1/1")
      p.scalars("epoch", 1, {"loss": loss})
      tracking.end_phase(p)
  assert [(r["phase"], r["scalars"]["loss"]) for r in tracking.read_scalars(str(tmp_path))] == [
      ("chunk 1/1", 1.0), ("chunk 1/1 (2)", 2.0)]
  assert dict(read_events(os.path.join(tmp_path, "tensorboard", "chunk_1_1_2"))["epoch/loss"]) == {1: 2.0}
