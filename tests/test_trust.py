"""Comparisons a user can trust: the work-directory cases of the fault probe, on tiny digits runs.

Each refusal is checked with a digest of the whole tree before and after: a refused run
changes nothing. Cases: methods unlearned from an original retrained since (2), replaced
predictions (3), a config that failed at run time (6), folders rum-jax did not make and what
--overwrite deletes (8), nested locks (10), a work directory one may only read, and paths
recorded relative to the work directory.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax import commands, io
from rum_jax.runfolder import ForeignFolderError, ReplacedFileError, RunFolder, WorkdirBusyError, WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_config():
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=2, batch_size=128)
  c.unlearn.finetune.update(epochs=1, batch_size=128)
  return c


def _unlearn_config(original=""):
  c = _train_config()
  c.unlearn.method = "finetune"
  c.forget.size = 60
  c.unlearn.original_workdir = original
  return c


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """root/original (train.py) and root/run (unlearn.py finetune from it)."""
  root = tmp_path_factory.mktemp("trust")
  commands.train(_train_config(), str(root / "original"))
  commands.unlearn(_unlearn_config(str(root / "original")), str(root / "run"))
  return root


@pytest.fixture
def copy(made, tmp_path):
  """A copy of the fixture's tree (original and run keep their relative places)."""
  shutil.copytree(made, tmp_path / "t")
  return tmp_path / "t"


def test_evaluate_refuses_runs_unlearned_from_an_original_retrained_since(copy, tree_digest):
  """Case 2: was exit 0, the new original shown beside methods unlearned from the old one."""
  run, original = str(copy / "run"), str(copy / "original")
  table = commands.evaluate(run)
  retrained = _train_config()
  retrained.train.epochs = 3
  commands.train(retrained, original, overwrite=True)
  before = tree_digest(copy)
  with pytest.raises(WorkdirError, match=r"the runs finetune of .*run were unlearned from other original models than "
                                         r"those now in .*original \(retrained since\)"):
    commands.evaluate(run)
  old = _unlearn_config(original)
  with pytest.raises(WorkdirError, match=r"the original model in .*original was trained with another config "
                                         r"\(train.epochs: 3 -> 2\)"):  # unlearn.py refuses it too
    commands.unlearn(old, run)
  assert tree_digest(copy) == before
  # The same settings again: the same models, the same digest: accepted.
  commands.train(_train_config(), original, overwrite=True)
  assert commands.evaluate(run) == table


def test_replaced_predictions_are_refused_by_both_commands(copy, tree_digest):
  """Case 3: a reference whose predictions/ were replaced (its made_by kept) was accepted."""
  run = RunFolder(str(copy / "run"))
  [key] = run.runs("retrain")
  shutil.copy(run.method("finetune").file("predictions", split="test"), run.retrain(key).file("predictions", split="test"))
  before = tree_digest(copy)
  with pytest.raises(ReplacedFileError, match=r"retrain/.*/predictions/test.npz is not the file rum-jax wrote"):
    commands.evaluate(run.path)
  with pytest.raises(ReplacedFileError, match=r"predictions/test.npz is not the file rum-jax wrote"):
    commands.unlearn(_unlearn_config(str(copy / "original")), run.path)
  assert tree_digest(copy) == before
  # The fix the message gives: delete it; unlearn.py writes it again from the reference's checkpoints.
  os.remove(run.retrain(key).file("predictions", split="test"))
  commands.unlearn(_unlearn_config(str(copy / "original")), run.path)
  commands.evaluate(run.path)


@pytest.mark.parametrize("field,bad", [("forget.size", 1256), ("train.lr", float("inf")),
                                       ("unlearn.finetune.lr", 1e6)])
def test_a_config_that_failed_at_run_time_does_not_hold_the_directory(tmp_path, field, bad):
  """Case 6: a run failing at run time left a config that refused the corrected command."""
  config = _unlearn_config()
  section, key = field.rsplit(".", 1)
  target = config
  for part in section.split("."):
    target = target[part]
  target[key] = bad
  workdir = str(tmp_path / "w")
  with pytest.raises((ValueError, FloatingPointError, ArithmeticError)):
    commands.unlearn(config, workdir)
  record = commands.unlearn(_unlearn_config(), workdir)  # the corrected command
  assert record["method"] == "finetune" and io.read_json(os.path.join(workdir, "config.json"))["forget"]["size"] == 60


def test_a_folder_rum_jax_did_not_make_is_refused_never_cleaned(tmp_path, tree_digest):
  """Case 8: --overwrite deleted a user's files by name."""
  home = tmp_path / "home"
  (home / "checkpoints" / "my_gpt2").mkdir(parents=True)
  (home / "checkpoints" / "my_gpt2" / "model.bin").write_bytes(b"weights")
  user = tmp_path / "userdir"
  (user / "methods").mkdir(parents=True)
  (user / "methods" / "mymethod.txt").write_text("mine")
  (user / "metrics.json").write_text('{"mine": 1}')
  before = tree_digest(tmp_path)
  with pytest.raises(ForeignFolderError, match=r"home holds files rum-jax did not write \(checkpoints/\)"):
    commands.train(_train_config(), str(home), overwrite=True)
  with pytest.raises(ForeignFolderError, match=r"userdir holds files rum-jax did not write \(metrics.json, "
                                               r"methods/\)"):
    commands.unlearn(_unlearn_config(), str(user), overwrite=True)
  assert tree_digest(tmp_path) == before
  # A work directory of an earlier version (no manifest) is refused the same way, and says so.
  (user / "config.json").write_text("{}")
  with pytest.raises(ForeignFolderError, match=r"a work directory of a rum-jax made before manifests is one"):
    commands.unlearn(_unlearn_config(), str(user))


def test_overwrite_deletes_only_what_the_run_wrote(copy):
  """Case 8: with --overwrite a changed work directory loses its runs and references, and only them."""
  run = RunFolder(str(copy / "run"))
  other = _unlearn_config(str(copy / "original"))
  other.forget.seed = 1
  other.train.lr = 0.05  # another training config: the work directory's runs and references go
  with pytest.raises(WorkdirError, match="holds a run with a different config"):
    commands.unlearn(other, run.path)
  commands.train(other, str(copy / "original2"))
  other.unlearn.original_workdir = str(copy / "original2")
  commands.unlearn(other, run.path, overwrite=True)
  assert run.finished_runs() == ["finetune"] and len(run.runs("retrain")) == 1
  assert run.foreign() == []


def test_every_folder_a_run_writes_is_locked(tmp_path, held_elsewhere, tree_digest):
  """Case 10: train.py --workdir=W/memorization while unlearn.py --workdir=W computes scores there."""
  workdir = tmp_path / "w"
  (workdir / "memorization").mkdir(parents=True)
  held_elsewhere(workdir)
  before = tree_digest(workdir)
  config = _train_config()
  config.mode = "memorization"
  with pytest.raises(WorkdirBusyError, match=r"another run is using .*memorization \(it holds .*w, which contains it\)"):
    commands.train(config, str(workdir / "memorization"))
  assert tree_digest(workdir) == before


def test_a_work_directory_one_may_only_read_is_evaluated_into_another_folder(copy, monkeypatch, tree_digest):
  """evaluate.py on a read-only (shared) work directory: the bare errno text before; now a line
  that offers --output, and --output writes the evaluation there."""
  run, out = str(copy / "run"), str(copy / "mine")
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) == os.path.abspath(run) and
                      mode == os.W_OK else real(p, mode))
  before = tree_digest(run)
  with pytest.raises(PermissionError, match=r"^--workdir=.*run cannot be written: you may not write in .*run "
                                            r"\(permission denied\); pass --output=<a folder you can write> to write "
                                            r"the evaluation there"):
    commands.evaluate(run)
  table = commands.evaluate(run, output=out)
  assert tree_digest(run) == before and "| finetune |" in table
  assert RunFolder(out).read("evaluation_table") == table and RunFolder(out).exists("evaluation_record")
  monkeypatch.undo()
  line = subprocess.run([sys.executable, "evaluate.py", f"--workdir={run}", f"--output={copy / 'cli'}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert line.returncode == 0 and RunFolder(str(copy / "cli")).read("evaluation_table") == table, line.stderr[-2000:]


def test_paths_are_recorded_relative_to_the_work_directory(tmp_path):
  """The RUM rows' settings, forget_set.json, methods/rum/config.json and validation/config.json
  named absolute paths of the machine that made them."""
  config = _unlearn_config()
  config.forget.update(kind="memorization", level="mix")
  config.memorization.update(num_models=16, chunk_size=16, ratio=0.5)
  config.unlearn.method = "rum"
  config.sweep.finetune.lr = "0.01,0.02"  # a RUM step's method, tuned: a validation work directory
  config.unlearn.method = "finetune"
  workdir = str(tmp_path / "w")
  commands.unlearn(config, workdir)
  config.unlearn.method = "rum"
  config.sweep.finetune.lr = ""
  commands.unlearn(config, workdir)
  root = os.path.abspath(workdir)
  for directory, _, files in os.walk(workdir):
    for name in files:
      if name.endswith((".json", ".csv")):
        text = open(os.path.join(directory, name)).read()
        assert root not in text and str(tmp_path) not in text, os.path.join(directory, name)
  rum = io.read_json(os.path.join(workdir, "methods", "rum", "config.json"))["settings"]
  assert rum["scores"] == os.path.join("memorization", "memorization.npz") and len(rum["scores_digest"]) == 16
  assert io.read_json(os.path.join(workdir, "validation", "config.json"))["unlearn"]["original_workdir"] == \
      os.path.join("..", "original")
  moved = str(tmp_path / "moved")
  shutil.move(workdir, moved)
  assert "| rum |" in commands.evaluate(moved)
  np.testing.assert_array_equal(commands.unlearn(config, moved)["per_seed"]["tow"],
                                io.read_json(os.path.join(moved, "methods", "rum", "metrics.json"))["per_seed"]["tow"])
