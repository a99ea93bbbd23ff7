"""No checkpoint or reference is ever reused by a program it does not belong to.

A sweep whose grid, base settings or epochs change starts its checkpoints over and gets the
numbers a fresh work directory gets; a retrain reference replaced by one of other training is
refused by evaluate.py and retrained by unlearn.py (docs/bad_input.md)."""
import dataclasses
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax import commands, io, runfolder
from rum_jax.runfolder import RunFolder
from rum_jax.pipelines import sweep as sweep_lib, unlearning
from rum_jax.training.checkpoint import Checkpointer

METHOD = "neggrad_plus"


def _config():
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=2, batch_size=128)
  c.unlearn.method = METHOD
  c.unlearn[METHOD].update(epochs=2, batch_size=128)
  c.unlearn.finetune.update(epochs=1, batch_size=128)
  c.forget.size = 60
  return c


@pytest.fixture(scope="module")
def original(tmp_path_factory):
  """One train.py run shared by every work directory of this file (config.unlearn.original_workdir)."""
  workdir = str(tmp_path_factory.mktemp("original"))
  config = _config()
  config.mode = "train"
  commands.train(config, workdir)
  return workdir


def _sweep_config(original, lrs):
  c = _config()
  c.unlearn.original_workdir = original
  c.sweep[METHOD].lr = lrs
  return c


def _grid(workdir):
  return RunFolder(workdir).validation().sweep(METHOD).read("grid")


def _assert_same_grid(got, want):
  assert [r["point"] for r in got] == [r["point"] for r in want]
  for a, b in zip(got, want):
    for metric in ("forget_accuracy", "test_accuracy", "tow", "tow_mia"):
      np.testing.assert_allclose(a["per_seed"][metric], b["per_seed"][metric], atol=1e-6, err_msg=metric)


def test_a_changed_grid_is_refused_before_anything_changes_and_never_resumes_the_old_one(
    tmp_path, original, caplog, tree_digest):
  """The fault probe's case: a finished sweep, then one over other values with as many points
  (the same program shapes). Without --overwrite it is refused before anything is deleted or
  rewritten (the whole tree unchanged); with it, the choice and every row equal a fresh work
  directory's (the old grid's checkpoints are never resumed under new labels)."""
  used, fresh = str(tmp_path / "used"), str(tmp_path / "fresh")
  commands.unlearn(_sweep_config(original, "0.01,0.05"), used)
  new = _sweep_config(original, "0.02,0.08")
  want = commands.unlearn(new, fresh)
  before = tree_digest(used)
  with pytest.raises(runfolder.WorkdirError, match=r"holds a sweep of neggrad_plus over another grid \(2 points: "
                                                     r"lr=0.01, lr=0.05; chosen by tow\).*pass --overwrite"):
    commands.unlearn(new, used)
  assert tree_digest(used) == before
  caplog.set_level(logging.INFO)
  got = commands.unlearn(new, used, overwrite=True)
  assert got["chosen"] == want["chosen"]
  _assert_same_grid(got["grid"], want["grid"])


@pytest.fixture(scope="module")
def prep(original, tmp_path_factory):
  """A prepared validation work directory (its original models, forget set and reference)."""
  config = sweep_lib.validation_config(_config(), original)
  return unlearning.prepare(config, str(tmp_path_factory.mktemp("validation")))


POINTS = [{"lr": 0.01, "alpha": 0.9}, {"lr": 0.05, "alpha": 0.5}]


def test_a_shrunk_grid_runs_and_equals_a_fresh_one(prep, tmp_path):
  """Was `leading axis 4 is neither num_seeds 2 nor padded_models 2`: 2 points -> 1."""
  root = str(tmp_path / "root")
  sweep_lib.run_grid(prep, METHOD, POINTS, root)
  got, cached = sweep_lib.run_grid(prep, METHOD, POINTS[:1], root)
  want, _ = sweep_lib.run_grid(prep, METHOD, POINTS[:1], str(tmp_path / "fresh"))
  assert not cached
  for metric in ("forget_accuracy", "test_accuracy", "tow"):
    np.testing.assert_allclose(got[0]["per_seed"][metric], want[0]["per_seed"][metric], atol=1e-6)


def test_fewer_epochs_start_over_instead_of_resuming_past_the_end(prep, tmp_path, caplog):
  """Was "resumed from epoch 2/1" and the 2-epoch grid reported as the 1-epoch one."""
  root = str(tmp_path / "root")
  sweep_lib.run_grid(prep, METHOD, POINTS, root)
  config = sweep_lib.validation_config(prep.config, prep.config.unlearn.original_workdir)
  config.unlearn[METHOD].epochs = 1
  shorter = dataclasses.replace(prep, config=config)
  caplog.set_level(logging.INFO)
  got, _ = sweep_lib.run_grid(shorter, METHOD, POINTS, root)
  messages = [r.getMessage() for r in caplog.records]
  assert not any("resumed from epoch" in m for m in messages), messages
  assert any("holds checkpoints of another program" in m and "epochs: 2 -> 1" in m for m in messages), messages
  want, _ = sweep_lib.run_grid(shorter, METHOD, POINTS, str(tmp_path / "fresh"))
  for a, b in zip(got, want):
    np.testing.assert_allclose(a["per_seed"]["tow"], b["per_seed"]["tow"], atol=1e-6)


def test_the_grid_cache_is_keyed_by_the_original_models_and_the_reference(prep, tmp_path):
  """A grid.json of other original models or another reference (the training changed, --overwrite)
  is computed again, not read back."""
  root = str(tmp_path / "root")
  sweep_lib.run_grid(prep, METHOD, POINTS[:1], root)
  assert sweep_lib.run_grid(prep, METHOD, POINTS[:1], root)[1], "the same grid is read back"
  other_reference = dataclasses.replace(prep, retrain_digest="0" * 16)
  assert not sweep_lib.run_grid(other_reference, METHOD, POINTS[:1], root)[1]
  other_original = dataclasses.replace(prep, original=prep.original.replace(
      params=jax.tree.map(lambda p: p * 1.01, prep.original.params)))
  got, cached = sweep_lib.run_grid(other_original, METHOD, POINTS[:1], root)
  want, _ = sweep_lib.run_grid(other_original, METHOD, POINTS[:1], str(tmp_path / "fresh"))
  assert not cached
  np.testing.assert_allclose(got[0]["per_seed"]["tow"], want[0]["per_seed"]["tow"], atol=1e-6)


def test_checkpoints_belong_to_the_program_that_claimed_them(tmp_path, caplog):
  directory = str(tmp_path / "ckpt")
  first = Checkpointer(directory)
  first.claim({"settings": {"lr": 0.1}, "epochs": 2})
  first.save(1, {"w": np.ones(3)}, {"epoch": 1})
  first.close()
  again = Checkpointer(directory)
  again.claim({"settings": {"lr": 0.1}, "epochs": 2})  # the same program resumes
  assert again.restore({"w": np.zeros(3)})[0] == 1
  again.close()
  other = Checkpointer(directory)
  other.claim({"settings": {"lr": 0.2}, "epochs": 2})
  assert other.restore({"w": np.zeros(3)}) is None
  assert "settings.lr: 0.1 -> 0.2" in caplog.text
  other.close()
  with pytest.raises(RuntimeError, match="before `claim`"):
    Checkpointer(directory).restore({"w": np.zeros(3)})
  other = Checkpointer(directory)
  other.claim({"settings": {"lr": 0.2}, "epochs": 2})
  other.save(1, {"w": np.ones(3)}, {"epoch": 1})
  other.close()
  os.remove(os.path.join(directory, "program.json"))  # as checkpoints of an older version: no key
  legacy = Checkpointer(directory)
  legacy.claim({"settings": {"lr": 0.2}, "epochs": 2})
  assert legacy.restore({"w": np.zeros(3)}) is None
  assert "record no program" in caplog.text
  legacy.close()


def test_a_replaced_retrain_reference_is_refused_then_retrained(tmp_path, caplog):
  """Was accepted silently (finetune's ToW 97.3 -> 92.3): the reference of the same forget set
  but 3 training epochs instead of 2 put in the place of the work directory's."""
  workdir, other = str(tmp_path / "w"), str(tmp_path / "other")
  config = _config()
  config.unlearn.method = "finetune"
  commands.unlearn(config, workdir)
  before = io.read_json(os.path.join(workdir, "evaluation.json"))["models"]["finetune"]["per_seed"]
  longer = _config()
  longer.unlearn.method = "finetune"
  longer.train.epochs = 3
  commands.unlearn(longer, other)
  [mine] = os.listdir(os.path.join(workdir, "retrain"))
  [theirs] = os.listdir(os.path.join(other, "retrain"))
  assert np.array_equal(np.load(os.path.join(workdir, "forget_set.npz"))["forget_positions"],
                        np.load(os.path.join(other, "forget_set.npz"))["forget_positions"])
  shutil.rmtree(os.path.join(workdir, "retrain", mine))
  shutil.copytree(os.path.join(other, "retrain", theirs), os.path.join(workdir, "retrain", mine))
  with pytest.raises(runfolder.WorkdirError, match="was replaced by one of other training"):
    commands.evaluate(workdir)
  commands.unlearn(config, workdir)  # retrains the reference, with a warning naming the change
  assert "holds a retrain reference made by something else" in caplog.text
  assert "training.train.epochs: 3 -> 2" in caplog.text
  after = io.read_json(os.path.join(workdir, "evaluation.json"))["models"]["finetune"]["per_seed"]
  np.testing.assert_allclose(after["tow"], before["tow"], atol=1e-6)
