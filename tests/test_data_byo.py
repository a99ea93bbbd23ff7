"""Bring-your-own data: the `npz` loader (files written here) and the `tfds` loader for any
TFDS image classification set (through tfds.testing.mock_data; no data is downloaded)."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from numpy import testing as npt

from rum_jax import data
from rum_jax.data import npz as npz_lib
from rum_jax.data import tfds_images

N, K = 60, 3


def _raw(seed=0, shape=(4, 4, 3)):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (N, *shape)).astype(np.uint8),
          rng.permutation(np.arange(N) % K).astype(np.int64))


def _write(tmp_path, name="mine.npz", **arrays):
  path = str(tmp_path / name)
  np.savez(path, **arrays)
  return path


def _expected(x, pool):
  """Per-channel standardisation by the pool's statistics, in float64."""
  x = x.astype(np.float64)
  flat = x[pool].reshape(-1, x.shape[-1])
  return (x - flat.mean(0)) / flat.std(0)


def _check_partition(ds, n):
  positions = np.concatenate([ds.train.index, ds.val.index, ds.test.index])
  npt.assert_array_equal(np.sort(positions), np.arange(n))


def test_npz_without_index_or_split_carves_stratified_splits(tmp_path):
  x, y = _raw()
  path = _write(tmp_path, x=x, y=y)
  ds = data.load_dataset("npz", split_seed=0, path=path)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (42, 6, 12)  # 0.1 and 0.2 of 60
  _check_partition(ds, N)
  for split, count in ((ds.val, 2), (ds.test, 4)):
    npt.assert_array_equal(np.bincount(split.y, minlength=K), [count] * K)
  # Rows keep the file's order; index = row; inputs standardised by the non-test rows.
  pool = np.sort(np.concatenate([ds.train.index, ds.val.index]))
  for split in (ds.train, ds.val, ds.test):
    assert np.all(np.diff(split.index) > 0)
    npt.assert_array_equal(split.y, y[split.index])
    npt.assert_allclose(split.x, _expected(x, pool)[split.index], rtol=1e-5, atol=1e-5)
  assert ds.name == "mine" and ds.num_classes == K and ds.class_names == ("0", "1", "2")
  assert ds.input_shape == (4, 4, 3) and ds.train.x.dtype == np.float32
  other = data.load_dataset("npz", split_seed=1, path=path)
  npt.assert_array_equal(other.test.index, ds.test.index)  # the test set never moves
  assert not np.array_equal(other.val.index, ds.val.index)


def test_npz_with_index_split_and_class_names(tmp_path):
  x, y = _raw(1, shape=(5, 2))  # signals [L, C]
  index = np.arange(N)[::-1] * 10 + 7
  names = np.array(["train", "val", "test"])[np.arange(N) % 3]
  class_names = np.array(["cat", "dog", "emu", "fox"])  # class 3 has no examples
  ds = data.load_dataset("npz", data_dir=str(tmp_path), split_seed=5, name="zoo",
                         path=os.path.basename(_write(tmp_path, x=x, y=y, index=index,
                                                      split=names, class_names=class_names)))
  assert ds.name == "zoo" and ds.num_classes == 4 and ds.class_names == tuple(class_names)
  rows = {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}
  pool = np.sort(np.concatenate([rows["train"], rows["val"]]))
  for s, split in (("train", ds.train), ("val", ds.val), ("test", ds.test)):
    npt.assert_array_equal(split.index, index[rows[s]])
    npt.assert_array_equal(split.y, y[rows[s]])
    npt.assert_allclose(split.x, _expected(x, pool)[rows[s]], rtol=1e-5, atol=1e-5)
  # Integer codes 0/1/2 mean the same, and the file can also be given as data_dir.
  codes = _write(tmp_path, "codes.npz", x=x, y=y, index=index, split=np.arange(N) % 3,
                 class_names=class_names)
  by_codes = data.load_dataset("npz", data_dir=codes, split_seed=5)
  for s in ("train", "val", "test"):
    npt.assert_array_equal(by_codes.split(s).index, ds.split(s).index)
    npt.assert_array_equal(by_codes.split(s).x, ds.split(s).x)


def test_npz_split_without_val_carves_val_from_train(tmp_path):
  x, y = _raw(2)
  split = np.where(np.arange(N) < 45, "train", "test")
  ds = data.load_dataset("npz", split_seed=0, path=_write(tmp_path, x=x, y=y, split=split))
  npt.assert_array_equal(ds.test.index, np.arange(45, 60))
  assert len(ds.val) == 6 and set(ds.val.index) <= set(range(45))
  _check_partition(ds, N)


def test_npz_constant_channel_maps_to_zero(tmp_path):
  x, y = _raw(3)
  x[..., 1] = 9
  ds = data.load_dataset("npz", split_seed=0, path=_write(tmp_path, x=x, y=y))
  npt.assert_array_equal(ds.train.x[..., 1], 0.0)


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((4, 2))), "lacks the array(s) y; it holds x"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(3, int)), "x has 4 examples but y has 3"),
    (dict(x=np.zeros((4, 2)), y=np.arange(4), index=np.arange(5)), "x has 4 examples but index has 5"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, -1, 1])), "labels must be >= 0"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 0.5, 1])), "integer class labels"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 1, 2, 1]), class_names=np.array(["a", "b"])),
     "label 2 is out of range for 2 class_names"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4, int)), "needs >= 2 classes"),
    (dict(x=np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, np.inf], [0.0, 0.0]]), y=np.arange(4) % 2),
     "NaN or infinite values in 2 examples (first at row 1)"),
    (dict(x=np.zeros((4, 2)), y=np.arange(4) % 2, split=np.array(["train", "dev", "test", "val"])),
     "split holds 'dev'; valid values: train, val, test"),
    (dict(x=np.zeros((4, 2)), y=np.arange(4) % 2, index=np.array([3, 1, 3, 0])), "duplicate"),
    (dict(x=np.zeros((4, 2)), y=np.arange(4) % 2, split=np.array(["a", 1, None, 2], dtype=object)),
     "holds Python objects"),
])
def test_npz_bad_files_fail_with_one_clear_line(tmp_path, arrays, message):
  path = _write(tmp_path, **arrays)
  with pytest.raises(ValueError) as err:
    data.load_dataset("npz", split_seed=0, path=path)
  assert message in str(err.value) and "\n" not in str(err.value)


def test_npz_missing_file_and_no_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"npz data set: no file .*absent\.npz"):
    data.load_dataset("npz", data_dir=str(tmp_path), path="absent.npz")
  with pytest.raises(ValueError, match="needs a file: set --config.data.options.path"):
    data.load_dataset("npz")
  assert npz_lib.resolve_path("/d", "/abs/f.npz") == "/abs/f.npz"


# ----------------------------------------------------------------------------------- TFDS

class _Source(list):
  """A list of records with the `dataset_info` a TFDS data source carries."""

  def __init__(self, records, info):
    super().__init__(records)
    self.dataset_info = info


def _mock_sources(records_by_split, calls):
  def as_data_source(builder, split, decoders=None, deserialize_method=None):
    del decoders, deserialize_method
    calls.append(split)
    return [_Source(records_by_split[s], builder.info) for s in split]
  return as_data_source


def _images(n, seed, shape=(32, 32, 3)):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.permutation(np.arange(n) % 10)


def test_tfds_with_ids_restores_the_original_order():
  train_x, train_y = _images(40, 0)
  test_x, test_y = _images(20, 1)
  shuffle = np.random.default_rng(2).permutation
  records = {s: [{"id": f"{s}_{k:06d}".encode(), "image": xs[k], "label": ys[k]}
                 for k in shuffle(len(ys))]
             for s, xs, ys in (("train", train_x, train_y), ("test", test_x, test_y))}
  calls = []
  with tfds.testing.mock_data(as_data_source_fn=_mock_sources(records, calls)):
    ds = data.load_dataset("tfds", split_seed=3, name="svhn_cropped", val_fraction=0.25)
  assert calls == [["train", "test"]]
  assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)
  npt.assert_array_equal(np.bincount(ds.val.y), [1] * 10)
  npt.assert_array_equal(np.sort(np.concatenate([ds.train.index, ds.val.index])), np.arange(40))
  npt.assert_array_equal(ds.test.index, np.arange(20))
  flat = train_x.reshape(-1, 3).astype(np.float64)
  mean, std = flat.mean(0), flat.std(0)  # all 40 train images (train + val)
  for split, xs, ys in ((ds.train, train_x, train_y), (ds.val, train_x, train_y),
                        (ds.test, test_x, test_y)):
    npt.assert_array_equal(split.y, ys[split.index])
    npt.assert_allclose(split.x, (xs[split.index] - mean) / std, rtol=1e-5, atol=1e-5)
  assert ds.name == "svhn_cropped" and ds.num_classes == 10 and ds.input_shape == (32, 32, 3)
  with tfds.testing.mock_data(as_data_source_fn=_mock_sources(records, [])):
    other = data.load_dataset("tfds", split_seed=4, name="svhn_cropped", val_fraction=0.25)
  assert not np.array_equal(other.val.index, ds.val.index)
  npt.assert_array_equal(other.test.x, ds.test.x)


def test_tfds_without_ids_uses_record_positions_under_mock_data():
  # mock_data's own generator: random 28x28x1 MNIST images, no id feature.
  with tfds.testing.mock_data(num_examples=100):
    ds = data.load_dataset("tfds", split_seed=0, name="mnist", val_fraction=0.2)
    source = tfds.data_source("mnist", split="train", download=False)
    raw = np.stack([np.asarray(r["image"]) for r in source])
    labels = np.asarray([r["label"] for r in source])
  assert ds.input_shape == (28, 28, 1) and ds.class_names == tuple(str(k) for k in range(10))
  npt.assert_array_equal(np.sort(np.concatenate([ds.train.index, ds.val.index])), np.arange(100))
  npt.assert_array_equal(ds.test.index, np.arange(100))
  npt.assert_array_equal(ds.train.y, labels[ds.train.index])
  expected = (raw - raw.mean()) / raw.std()
  npt.assert_allclose(ds.train.x, expected[ds.train.index], rtol=1e-5, atol=1e-5)


def test_original_index_needs_split_ids():
  index, from_ids = tfds_images.original_index([{"id": b"train_7"}, {"id": "train_2"}], "train")
  assert from_ids and list(index) == [7, 2]
  for records in ([{"id": "test_7"}, {"id": "test_2"}], [{"id": "train_1"}, {"id": "train_1"}],
                  [{"id": "img_a.png"}, {"id": "train_3"}], [{}, {}]):
    index, from_ids = tfds_images.original_index(records, "train")
    assert not from_ids and list(index) == [0, 1]


def test_tfds_missing_build_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    data.load_dataset("tfds", data_dir=str(tmp_path), name="svhn_cropped")
  message = str(err.value)
  assert "tfds build svhn_cropped --file_format=array_record --data_dir=" in message
  assert str(tmp_path) in message and "data_dir" in message


def test_tfds_needs_a_name():
  with pytest.raises(ValueError, match="needs a TFDS name: --config.data.options.name"):
    data.load_dataset("tfds")
