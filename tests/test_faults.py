"""Faults a user will meet: kill -9 mid-run, damaged checkpoints, concurrent runs, unwritable
work directories. Nothing finished may be lost and a resumed run equals an uninterrupted one."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rum_jax import commands, io
from rum_jax.configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmd(workdir, *overrides):
  return [sys.executable, os.path.join(ROOT, "train.py"), "--config=" + os.path.join(ROOT, "configs/digits.py"),
          f"--workdir={workdir}", "--config.num_seeds=2", "--config.model.kwargs.hidden=(64,)", *overrides]


def _env():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one device, like a user's laptop
  return env


def _start(cmd, log_path):
  """Starts `cmd` in the background, its output to log_path (a pipe could fill and block)."""
  with open(log_path, "wb") as log:
    return subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log_path


def _finish(started):
  proc, log_path = started
  proc.wait(timeout=600)
  with open(log_path, "rb") as log:
    assert proc.returncode == 0, log.read().decode(errors="replace")[-3000:]


def _run_and_kill(cmd, ckpt, seed, max_delay):
  """Starts `cmd`, waits for its first checkpoint in `ckpt`, then kill -9s it after a random
  delay in [0, max_delay) s (seeded for reproducibility)."""
  proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline and not (os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):
    time.sleep(0.05)
  time.sleep(np.random.default_rng(seed).uniform(0.0, max_delay))
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def test_kill_9_during_training_then_rerun_equals_uninterrupted(tmp_path):
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  reference = _start(_cmd(ref), tmp_path / "ref.log")  # the uninterrupted run, beside the killed one
  _run_and_kill(_cmd(killed), os.path.join(killed, "checkpoints"), seed=0, max_delay=1.0)
  _finish(reference)
  assert not os.path.exists(os.path.join(killed, "metrics.json")), "the run finished before the kill"
  subprocess.run(_cmd(killed), check=True, env=_env(), cwd=ROOT, capture_output=True)
  for split in ("train", "test"):
    a = np.load(os.path.join(ref, "predictions", f"{split}.npz"))["logits"]
    b = np.load(os.path.join(killed, "predictions", f"{split}.npz"))["logits"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert io.read_json(os.path.join(ref, "metrics.json")) == io.read_json(os.path.join(killed, "metrics.json"))


def _small_config(epochs=3):
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (32,)
  c.train.epochs = epochs
  return c


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
  workdir = str(tmp_path)
  c = _small_config()
  commands.train(c, workdir)
  ckpt = os.path.join(workdir, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())
  assert steps == [2, 3]
  # Truncate every array file of the newest checkpoint.
  for root, _, files in os.walk(os.path.join(ckpt, "3")):
    for f in files:
      if not f.endswith(".json") and "METADATA" not in f:
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(3)
  os.remove(os.path.join(workdir, "metrics.json"))
  before = np.load(os.path.join(workdir, "predictions", "test.npz"))["logits"]
  commands.train(c, workdir)  # restores epoch 2, retrains epoch 3
  assert any("unreadable" in r.getMessage() for r in caplog.records)
  after = np.load(os.path.join(workdir, "predictions", "test.npz"))["logits"]
  np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)


def test_two_runs_on_one_workdir_are_refused(tmp_path, held_elsewhere):
  held_elsewhere(tmp_path)
  with pytest.raises(RuntimeError, match="another run is using"):
    commands.train(_small_config(), str(tmp_path))


def test_full_disk_gives_a_clear_error_and_keeps_old_files(tmp_path, monkeypatch):
  path = str(tmp_path / "metrics.json")
  io.write_json(path, {"a": 1})

  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(os, "fsync", full)
  with pytest.raises(OSError, match="no space left on the device while writing"):
    io.write_json(path, {"a": 2})
  assert io.read_json(path) == {"a": 1}  # the old result is intact
  assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []  # no temp litter


def test_workdir_that_is_a_file_is_refused(tmp_path):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("x")
  with pytest.raises(ValueError, match="is a file, not a folder: choose another --workdir"):
    commands.train(_small_config(), str(not_a_dir))
  assert not_a_dir.read_text() == "x"


def test_changed_config_refuses_to_resume_unless_overwrite(tmp_path):
  c = _small_config(epochs=2)
  commands.train(c, str(tmp_path))
  c2 = _small_config(epochs=3)
  with pytest.raises(ValueError, match="train.epochs: 2 -> 3"):
    commands.train(c2, str(tmp_path))
  results = commands.train(c2, str(tmp_path), overwrite=True)
  assert len(results["per_seed"]["test_accuracy"]) == 2
  # metrics.csv: the record, a row per seed x metric; the mean and the t-based 95% half-width
  # over seeds are in metrics.json, computed from the same values.
  import csv
  from scipy import stats
  with open(os.path.join(tmp_path, "metrics.csv")) as f:
    rows = [r for r in csv.DictReader(f) if r["metric"] == "test_accuracy"]
  assert [r["seed"] for r in rows] == ["0", "1"] and {r["method"] for r in rows} == {"original"}
  acc = np.array([float(r["value"]) for r in rows])
  np.testing.assert_allclose(acc, results["per_seed"]["test_accuracy"])
  np.testing.assert_allclose(results["summary"]["test_accuracy"]["mean"], acc.mean())
  np.testing.assert_allclose(results["summary"]["test_accuracy"]["ci95"],
                             stats.t.ppf(0.975, 1) * acc.std(ddof=1) / np.sqrt(2), atol=1e-12)
  assert io.read_json(os.path.join(tmp_path, "config.json"))["train"]["epochs"] == 3


def test_fields_of_other_commands_do_not_block_a_resume(tmp_path):
  """A train.py run depends on seed/num_seeds/data/model/train only: changing the forget set
  or an unlearning setting (or a newer version adding such fields) must not refuse it."""
  c = _small_config(epochs=2)
  commands.train(c, str(tmp_path))
  c.forget.size = 7
  c.unlearn.method = "salun"
  with c.unlearn.ignore_type():
    c.unlearn.new_field_of_a_later_version = 1
  commands.train(c, str(tmp_path))  # no error: nothing it depends on changed


def test_kill_9_during_unlearning_then_rerun_equals_uninterrupted(tmp_path):
  """unlearn.py killed at a random point (original training, retrain reference or the method
  itself): the rerun finishes and its numbers equal an uninterrupted run's."""
  def cmd(workdir):
    return [sys.executable, os.path.join(ROOT, "unlearn.py"), "--config=" + os.path.join(ROOT, "configs/digits.py"),
            f"--workdir={workdir}", "--config.num_seeds=2", "--config.model.kwargs.hidden=(64,)",
            "--config.train.epochs=10", "--config.unlearn.method=salun", "--config.forget.size=60"]
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  reference = _start(cmd(ref), tmp_path / "ref.log")  # the uninterrupted run, beside the killed one
  _run_and_kill(cmd(killed), os.path.join(killed, "original", "checkpoints"), seed=1, max_delay=3.0)
  _finish(reference)
  assert not os.path.exists(os.path.join(killed, "methods", "salun", "metrics.json")), "finished before the kill"
  subprocess.run(cmd(killed), check=True, env=_env(), cwd=ROOT, capture_output=True)
  a = io.read_json(os.path.join(ref, "methods", "salun", "metrics.json"))
  b = io.read_json(os.path.join(killed, "methods", "salun", "metrics.json"))
  for key in ("forget_accuracy", "retain_accuracy", "test_accuracy", "tow"):
    np.testing.assert_allclose(a["per_seed"][key], b["per_seed"][key], atol=1e-6)
