"""Memorization runs end to end: planted mislabelled examples, resume per chunk, adding models."""
import os

import numpy as np
import pytest

import rum_jax.data
import rum_jax.training.setup
from rum_jax.configs import default
from rum_jax.pipelines import memorization as mem_run
from rum_jax.memorization.estimator import MemorizationStats
from rum_jax.memorization.files import scores_for_split

FLIPPED = 12


def _config(num_models=32, chunk=16, epochs=30, hidden=(256, 256)):
  c = default.get_config()
  c.mode = "memorization"
  c.model.kwargs.hidden = hidden
  c.train.epochs = epochs
  c.train.batch_size = 64
  c.memorization.num_models = num_models
  c.memorization.chunk_size = chunk
  return c


@pytest.fixture
def flipped_digits(monkeypatch):
  """digits with FLIPPED train labels changed to another class (planted memorization)."""
  original = rum_jax.data.load_dataset

  def load(name, **kwargs):
    ds = original(name, **kwargs)
    y = ds.train.y.copy()
    rng = np.random.default_rng(0)
    pos = rng.choice(len(y), FLIPPED, replace=False)
    y[pos] = (y[pos] + rng.integers(1, ds.num_classes, FLIPPED)) % ds.num_classes
    train = rum_jax.data.Split(ds.train.x, y, ds.train.index)
    load.positions = pos
    return rum_jax.data.Dataset(ds.name, train, ds.val, ds.test, ds.num_classes, ds.class_names)
  monkeypatch.setattr(rum_jax.training.setup, "load_dataset", load)  # what Setup.create calls
  return load


def test_flipped_labels_are_far_more_memorized(tmp_path, flipped_digits):
  summary = mem_run.run_memorization(_config(), str(tmp_path))
  assert summary["num_models"] == 32 and summary["undefined"] == 0
  data = np.load(tmp_path / "memorization.npz")
  mem = data["memorization"]
  flipped = np.zeros(len(mem), bool)
  flipped[flipped_digits.positions] = True
  # A mislabelled example is right only when trained on: mem near 1; typical ones near 0.
  assert mem[flipped].mean() > 0.6
  assert mem[~flipped].mean() < 0.1
  assert np.median(mem[flipped]) > np.quantile(mem[~flipped], 0.99)
  # The estimate equals the formula applied to the saved per-model arrays.
  in_mask, correct = data["in_mask"], data["correct_train"]
  p_in = (correct & in_mask).sum(0) / in_mask.sum(0)
  p_out = (correct & ~in_mask).sum(0) / (~in_mask).sum(0)
  np.testing.assert_allclose(mem, p_in - p_out)
  assert in_mask.sum(1).tolist() == [round(0.7 * len(mem))] * 32
  # The file maps back to the split by ORIGINAL index, as unlearn.py reads it.
  ds = flipped_digits("digits")
  np.testing.assert_allclose(scores_for_split(str(tmp_path / "memorization.npz"), ds.train), mem)


def test_killed_run_resumes_per_chunk_and_models_can_be_added(tmp_path, monkeypatch):
  full_dir, dir_ = str(tmp_path / "full"), str(tmp_path / "resumed")
  mem_run.run_memorization(_config(16, 8, epochs=3), full_dir)
  full = np.load(os.path.join(full_dir, "memorization.npz"))["memorization"]

  saves = []
  real_save = MemorizationStats.save

  def dying_save(self, path):  # the process dies right after the first chunk is saved
    real_save(self, path)
    saves.append(path)
    if len(saves) == 1:
      raise KeyboardInterrupt
  monkeypatch.setattr(MemorizationStats, "save", dying_save)
  with pytest.raises(KeyboardInterrupt):
    mem_run.run_memorization(_config(16, 8, epochs=3), dir_)
  assert MemorizationStats.load(os.path.join(dir_, "stats.npz")).num_models == 8
  monkeypatch.setattr(MemorizationStats, "save", real_save)
  mem_run.run_memorization(_config(16, 8, epochs=3), dir_)
  np.testing.assert_array_equal(np.load(os.path.join(dir_, "memorization.npz"))["memorization"], full)

  # Raising num_models adds models to the same estimate instead of starting over.
  mem_run.run_memorization(_config(24, 8, epochs=3), dir_)
  assert MemorizationStats.load(os.path.join(dir_, "stats.npz")).num_models == 24
  # Changing anything else is refused.
  other = _config(24, 8, epochs=4)
  with pytest.raises(ValueError, match="different config"):
    mem_run.run_memorization(other, dir_)


def test_proxies_run_writes_oriented_scores(tmp_path, flipped_digits):
  c = _config()
  c.mode = "proxies"
  c.num_seeds = 5  # 4 test devices: 3 padding seeds fill the second row of devices
  c.train.epochs = 10
  c.proxies.heldout_max_epochs = 5
  scores = mem_run.run_proxies(c, str(tmp_path))
  assert set(scores) == {"confidence", "max_confidence", "entropy", "binary_accuracy", "heldout_retraining"}
  pos = flipped_digits.positions
  for name, v in scores.items():
    assert v.shape == (1257,) and np.all(np.isfinite(v))
    if name != "heldout_retraining":
      # Mislabelled examples are learned late and unconfidently: high = more memorized.
      assert np.median(v[pos]) > np.quantile(np.delete(v, pos), 0.9), name
  data = np.load(tmp_path / "memorization.npz")
  assert data["confidence_per_seed"].shape == (5, 1257)
  assert (tmp_path / "proxies_hist.png").stat().st_size > 0


def test_exactly_num_models_are_trained_whatever_the_chunk_size(tmp_path):
  """A chunk larger than num_models, or num_models not a multiple of it, trains num_models models
  (the last chunk cut short), and growing the estimate later retrains only the cut chunk."""
  workdir = str(tmp_path / "w")
  summary = mem_run.run_memorization(_config(3, 1000, epochs=1, hidden=(8,)), workdir)
  data = np.load(os.path.join(workdir, "memorization.npz"))
  assert summary["num_models"] == 3 and int(data["num_models"]) == 3 and data["in_mask"].shape == (3, 1257)
  assert MemorizationStats.load(os.path.join(workdir, "stats.npz")).num_models == 3

  other = str(tmp_path / "grown")
  mem_run.run_memorization(_config(5, 2, epochs=1, hidden=(8,)), other)
  chunks = sorted(os.listdir(os.path.join(other, "chunks")))
  assert [np.load(os.path.join(other, "chunks", f))["in_mask"].shape[0] for f in chunks] == [2, 2, 1]
  mem_run.run_memorization(_config(6, 2, epochs=1, hidden=(8,)), other)
  data = np.load(os.path.join(other, "memorization.npz"))
  assert int(data["num_models"]) == 6 and data["in_mask"].shape == (6, 1257)
  # The 6 models are models 0..5 of the family of subsets: the same as one run of 6.
  from rum_jax.memorization.estimator import sample_subset_masks
  np.testing.assert_array_equal(data["in_mask"], sample_subset_masks(0, 6, 1257, 0.7))
