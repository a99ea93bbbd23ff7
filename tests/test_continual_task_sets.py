"""Task builders: split, permuted (GEM's MNIST Permutations) and rotated (MNIST Rotations)."""
import numpy as np
import pytest
from scipy import ndimage

from rum_jax.continual import task_sets, tasks
from rum_jax.data.base import Dataset, Split


def _images(n_train=30, n_test=12, shape=(6, 6, 1), classes=3, seed=0):
  rng = np.random.default_rng(seed)
  def split(n, offset):
    return Split(rng.normal(size=(n,) + shape).astype(np.float32),
                 rng.integers(0, classes, n).astype(np.int32), np.arange(offset, offset + n))
  return Dataset("fake", split(n_train, 0), split(5, 100), split(n_test, 200), classes,
                 tuple(map(str, range(classes))))


def test_every_builder_is_registered():
  assert task_sets.TASK_BUILDERS.names() == ["permuted", "rotated", "split"]


def test_permuted_tasks_hold_the_same_examples_with_permuted_features():
  ds = _images()
  ts = task_sets.build("permuted", ds, num_tasks=4, classes_per_task=2, samples_per_task=10,
                       num_seeds=2, seed=5)
  for s in range(2):
    perms = task_sets.permutations(36, 4, 5, s)
    assert len({tuple(p) for p in perms}) == 4  # a different permutation per task
    for name, per_task in (("train", 10), ("test", 12)):
      stacked, original = ts.dataset.split(name), ds.split(name)
      # Seed s's rows are its own block of 4 tasks; the other seed's rows are in none of its tasks.
      np.testing.assert_array_equal(ts.row_task[name][s][ts.rows(name)[s]], np.repeat(np.arange(4), per_task))
      assert np.all(np.delete(ts.row_task[name][s], ts.rows(name)[s]) == -1)
      for k in range(4):
        rows = ts.positions(name)[s][k]
        assert len(rows) == per_task
        at = np.searchsorted(original.index, stacked.index[rows])  # the original rows
        np.testing.assert_array_equal(original.index[at], stacked.index[rows])
        np.testing.assert_array_equal(stacked.y[rows], original.y[at])
        flat = original.x[at].reshape(per_task, -1)
        np.testing.assert_array_equal(stacked.x[rows].reshape(per_task, -1), flat[:, perms[k]])
        if name == "test":  # the whole test split in every task
          np.testing.assert_array_equal(at, np.arange(12))
  np.testing.assert_array_equal(ts.layout.task_classes(), np.ones((2, 4, 3), bool))
  assert ts.chance == pytest.approx(1 / 3)
  # The in-step mask (task_classes[class_task[y]]) masks nothing.
  mask = ts.layout.task_classes()[0][ts.layout.class_task()[0][ds.train.y]]
  assert mask.all()


def test_every_seed_draws_its_own_benchmark():
  ds = _images(n_train=60)
  ts = task_sets.build("permuted", ds, num_tasks=3, classes_per_task=2, samples_per_task=10, num_seeds=3, seed=5)
  subsets = [[tuple(ts.dataset.train.index[p]) for p in seed] for seed in ts.positions("train")]
  perms = [task_sets.permutations(36, 3, 5, s) for s in range(3)]
  for a in range(3):
    assert len(set(subsets[a])) == 3  # the tasks' training subsets differ
    for b in range(a + 1, 3):  # and so do the seeds': subsets, permutations, the tasks' inputs
      assert all(subsets[a][k] != subsets[b][k] for k in range(3))
      assert all(not np.array_equal(perms[a][k], perms[b][k]) for k in range(3))
      for k in range(3):
        test = [ts.dataset.test.x[ts.positions("test")[s][k]] for s in (a, b)]
        assert not np.array_equal(*test)
  # A seed's draw does not depend on how many seeds run with it.
  alone = task_sets.build("permuted", ds, num_tasks=3, classes_per_task=2, samples_per_task=10, num_seeds=1, seed=5)
  np.testing.assert_array_equal(alone.dataset.train.x[alone.rows("train")[0]], ts.dataset.train.x[ts.rows("train")[0]])
  angles = [task_sets.rotation_angles(3, 2, s) for s in range(3)]
  assert len({tuple(a) for a in angles}) == 3


def test_rotation_by_90_degrees_is_np_rot90_and_tasks_hold_rotated_images():
  ds = _images()
  exact = task_sets.rotate_images(ds.train.x, 90.0, np.zeros(1))
  np.testing.assert_allclose(exact, np.rot90(ds.train.x, k=1, axes=(1, 2)), atol=1e-6)
  ts = task_sets.build("rotated", ds, num_tasks=3, classes_per_task=2, samples_per_task=0,
                       num_seeds=1, seed=2)
  angles = task_sets.rotation_angles(3, 2, 0)
  low, high = task_sets.ROTATION_RANGE
  bins = low + (high - low) * np.arange(4) / 3
  assert np.all((angles >= bins[:-1]) & (angles < bins[1:]))  # one angle per bin, in order
  background = ds.train.x.min()
  for k in range(3):
    rows = ts.positions("test")[0][k]
    np.testing.assert_array_equal(ts.dataset.test.y[rows], ds.test.y)
    # scipy's rotation of each [H, W] image, written out independently of the builder.
    expected = np.stack([ndimage.rotate(img[..., 0], angles[k], reshape=False, order=1,
                                        mode="constant", cval=background) for img in ds.test.x])
    np.testing.assert_allclose(ts.dataset.test.x[rows][..., 0], expected, atol=1e-5)


def test_rotated_tasks_refuse_one_dimensional_data():
  signals = _images(shape=(40, 1))
  with pytest.raises(ValueError, match=r"need images \[H, W, C\].*shape \(40, 1\).*permuted"):
    task_sets.build("rotated", signals, 3, 2, 0, 1, 0)
  ts = task_sets.build("permuted", signals, 3, 2, 0, 1, 0)  # permutations take any shape
  assert ts.dataset.train.x.shape == (90, 40, 1)


def test_split_builder_keeps_the_data_and_finds_each_rows_task():
  ds = _images(classes=6)
  ts = task_sets.build("split", ds, 0, 2, 0, num_seeds=2, seed=1)
  assert ts.dataset is ds and ts.layout.num_tasks == 3 and ts.chance == 0.5
  for s in range(2):
    for t in range(3):
      np.testing.assert_array_equal(ts.positions("train")[s][t],
                                    np.flatnonzero(np.isin(ds.train.y, ts.layout.classes[s, t])))
  with pytest.raises(ValueError, match="samples_per_task"):
    task_sets.build("split", ds, 0, 2, 10, 1, 0)
  with pytest.raises(ValueError, match="num_tasks >= 1"):
    task_sets.build("permuted", ds, 0, 2, 0, 1, 0)


def test_shared_head_evaluation_scores_each_block_among_all_classes():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 20)
  row_task = np.repeat(np.arange(2), 10)[None]
  logits = rng.normal(size=(1, 20, 3))
  out = tasks.evaluate_tasks(logits, labels, row_task, np.ones((1, 2, 3), bool))
  for t in range(2):
    rows = slice(10 * t, 10 * t + 10)
    np.testing.assert_allclose(out["accuracy"][0, t], np.mean(logits[0, rows].argmax(1) == labels[rows]))
