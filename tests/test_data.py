"""Tests of rum_jax.data: loaders, original indices, stratified splits, augmentation."""
import itertools
import os
import pickle
import random
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from mnist1d import data as mnist1d_data
from numpy import testing as npt
from sklearn import datasets as sk_datasets

from rum_jax import data
from rum_jax.data import cifar

# Published CIFAR-10 / CIFAR-100 channel statistics of [0, 1] pixels (RUM's utils.py).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")


def _all_splits(ds):
  return {name: ds.split(name) for name in ("train", "val", "test")}


def _assert_same_dataset(a, b):
  assert a.class_names == b.class_names
  for name in ("train", "val", "test"):
    npt.assert_array_equal(a.split(name).index, b.split(name).index)
    npt.assert_array_equal(a.split(name).y, b.split(name).y)
    npt.assert_array_equal(a.split(name).x, b.split(name).x)


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_name():
  assert set(data.DATASETS.names()) == {"digits", "mnist1d", "cifar10", "cifar100", "npz", "tfds"}
  with pytest.raises(ValueError, match="valid choices: cifar10, cifar100, digits, mnist1d, npz, tfds"):
    data.load_dataset("imagenet")


def test_unknown_option_is_a_value_error():
  with pytest.raises(ValueError, match="val_per_class"):
    data.load_dataset("cifar10", data_dir="/nonexistent", bogus=1)


# ---------------------------------------------------------------------- stratified_split


def test_stratified_split_fraction_keeps_class_shares():
  labels = np.repeat(np.arange(3), [50, 30, 20])
  keep, held = data.stratified_split(labels, 0.2, seed=7)
  assert len(held) == 20 and len(keep) == 80
  npt.assert_array_equal(np.sort(np.concatenate([keep, held])), np.arange(100))
  npt.assert_array_equal(np.bincount(labels[held]), [10, 6, 4])
  assert np.all(np.diff(keep) > 0) and np.all(np.diff(held) > 0)


def test_stratified_split_per_class_and_seeds():
  labels = np.tile(np.arange(4), 25)
  keep, held = data.stratified_split(labels, 3, seed=1, per_class=True)
  npt.assert_array_equal(np.bincount(labels[held]), [3, 3, 3, 3])
  assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 100
  _, held_again = data.stratified_split(labels, 3, seed=1, per_class=True)
  _, held_other = data.stratified_split(labels, 3, seed=2, per_class=True)
  npt.assert_array_equal(held, held_again)
  assert not np.array_equal(held, held_other)


@pytest.mark.parametrize("held, per_class", [(1.5, False), (0, False), (100, False),
                                             ("a", False), (25, True), (0.5, True)])
def test_stratified_split_rejects_bad_sizes(held, per_class):
  with pytest.raises(ValueError):
    data.stratified_split(np.tile(np.arange(4), 25), held, seed=0, per_class=per_class)


# -------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_raw():
  return sk_datasets.load_digits()


@pytest.fixture(scope="module")
def digits0():
  return data.load_dataset("digits", split_seed=0)


def test_digits_shapes_and_dtypes(digits0):
  assert (len(digits0.train), len(digits0.val), len(digits0.test)) == (1257, 180, 360)
  assert digits0.num_classes == 10 and digits0.input_shape == (8, 8, 1)
  for split in _all_splits(digits0).values():
    assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    assert split.index.dtype == np.int64


def test_digits_normalised_by_non_test_pixels(digits0):
  pool = np.concatenate([digits0.train.x, digits0.val.x]).ravel().astype(np.float64)
  npt.assert_allclose(pool.mean(), 0.0, atol=1e-5)
  npt.assert_allclose(pool.std(), 1.0, atol=1e-5)
  assert abs(digits0.train.x.mean()) < 0.05


def test_digits_splits_disjoint_sorted_and_complete(digits0):
  indices = [s.index for s in _all_splits(digits0).values()]
  for a, b in itertools.combinations(indices, 2):
    assert len(np.intersect1d(a, b)) == 0
  npt.assert_array_equal(np.sort(np.concatenate(indices)), np.arange(1797))
  for index in indices:
    assert np.all(np.diff(index) > 0)


def test_digits_splits_stratified(digits0, digits_raw):
  class_counts = np.bincount(digits_raw.target)
  for split, share in ((digits0.test, 0.2), (digits0.val, 180 / 1797)):
    counts = np.bincount(split.y, minlength=10)
    assert np.all(np.abs(counts - share * class_counts) <= 1), counts


def test_digits_seed_moves_val_but_not_test(digits0):
  again = data.load_dataset("digits", split_seed=0)
  other = data.load_dataset("digits", split_seed=1)
  _assert_same_dataset(digits0, again)
  npt.assert_array_equal(digits0.test.index, other.test.index)
  npt.assert_array_equal(digits0.test.x, other.test.x)
  assert not np.array_equal(digits0.val.index, other.val.index)


def test_digits_index_maps_to_sklearn_rows(digits0, digits_raw):
  pool_rows = np.concatenate([digits0.train.index, digits0.val.index])
  pixels = digits_raw.images[pool_rows].ravel()
  mean, std = np.mean(pixels), np.sqrt(np.mean((pixels - np.mean(pixels)) ** 2))
  for split in _all_splits(digits0).values():
    expected = (digits_raw.images[split.index] - mean) / std
    npt.assert_allclose(split.x[..., 0], expected, rtol=1e-5, atol=1e-5)
    npt.assert_array_equal(split.y, digits_raw.target[split.index])


# ------------------------------------------------------------------------------- mnist1d


@pytest.fixture(scope="module")
def mnist1d0():
  return data.load_dataset("mnist1d", split_seed=0)


def test_mnist1d_sizes_shapes_and_original_rows(mnist1d0):
  raw = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
  assert (len(mnist1d0.train), len(mnist1d0.val), len(mnist1d0.test)) == (3600, 400, 1000)
  assert mnist1d0.input_shape == (40, 1) and mnist1d0.num_classes == 10
  npt.assert_array_equal(np.sort(np.concatenate([mnist1d0.train.index, mnist1d0.val.index])),
                         np.arange(4000))
  npt.assert_array_equal(mnist1d0.test.index, np.arange(1000))
  mean, std = raw["x"].mean(), raw["x"].std()
  for split, (xs, ys) in ((mnist1d0.train, (raw["x"], raw["y"])),
                          (mnist1d0.val, (raw["x"], raw["y"])),
                          (mnist1d0.test, (raw["x_test"], raw["y_test"]))):
    npt.assert_allclose(split.x[..., 0], (xs[split.index] - mean) / std, rtol=1e-5, atol=1e-5)
    npt.assert_array_equal(split.y, ys[split.index])
  counts = np.bincount(mnist1d0.val.y, minlength=10)
  assert np.all(np.abs(counts - 0.1 * np.bincount(raw["y"])) <= 1)


def test_mnist1d_deterministic_and_leaves_global_rngs_alone(mnist1d0):
  np.random.seed(123)
  random.seed(123)
  expected = (np.random.rand(), random.random())
  np.random.seed(123)
  random.seed(123)
  again = data.load_dataset("mnist1d", split_seed=0)
  assert (np.random.rand(), random.random()) == expected
  _assert_same_dataset(mnist1d0, again)
  other = data.load_dataset("mnist1d", split_seed=1)
  assert not np.array_equal(mnist1d0.val.index, other.val.index)
  npt.assert_array_equal(mnist1d0.test.x, other.test.x)


def test_mnist1d_any_size_is_the_generator_with_that_many_signals():
  # An independent call of the package's generator with num_samples = 300 and the cut at 200.
  args = mnist1d_data.get_dataset_args()
  args.num_samples, args.train_split = 300, 200 / 300
  raw = mnist1d_data.make_dataset(args)
  small = data.load_dataset("mnist1d", split_seed=0, num_train=200, num_test=100)
  assert (len(small.train), len(small.val), len(small.test)) == (180, 20, 100)
  mean, std = raw["x"].mean(), raw["x"].std()
  for split, (xs, ys) in ((small.train, (raw["x"], raw["y"])), (small.test, (raw["x_test"], raw["y_test"]))):
    npt.assert_allclose(split.x[..., 0], (xs[split.index] - mean) / std, rtol=1e-5, atol=1e-5)
    npt.assert_array_equal(split.y, ys[split.index])
  assert np.all(np.abs(np.bincount(small.val.y, minlength=10) - 2) <= 1)
  for bad, message in (({"num_train": 205}, "multiple of 10"), ({"num_test": 0}, "integer >= 10"),
                       ({"num_train": 2.5e3}, "integer >= 10"), ({"size": 10}, "it takes: num_train, num_test")):
    with pytest.raises(ValueError, match=message):
      data.load_dataset("mnist1d", split_seed=0, **bad)


# --------------------------------------------------------------------------------- CIFAR

N_BATCHES, BATCH, N_TEST, N_CLASSES = 5, 20, 30, 4


def _tiny_cifar(seed):
  """Random uint8 images in HWC and labels of 4 classes, in 'original' order."""
  rng = np.random.default_rng(seed)
  n_train = N_BATCHES * BATCH
  return dict(
      train_images=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
      train_labels=rng.permutation(np.arange(n_train) % N_CLASSES),
      test_images=rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8),
      test_labels=rng.permutation(np.arange(N_TEST) % N_CLASSES),
  )


def _cifar_rows(images):
  """The archive's row layout: all red values, then green, then blue, row-major."""
  n = len(images)
  return np.concatenate([images[..., ch].reshape(n, 1024) for ch in range(3)], axis=1)


def _dump(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=2)


def _write_cifar10_folder(root, raw):
  folder = os.path.join(root, "cifar-10-batches-py")
  os.makedirs(folder)
  for b in range(N_BATCHES):
    rows = slice(b * BATCH, (b + 1) * BATCH)
    _dump(os.path.join(folder, f"data_batch_{b + 1}"), {
        b"batch_label": f"training batch {b + 1} of 5".encode(),
        b"labels": [int(v) for v in raw["train_labels"][rows]],
        b"data": _cifar_rows(raw["train_images"][rows]),
        b"filenames": [f"img_{i}.png".encode() for i in range(BATCH)],
    })
  _dump(os.path.join(folder, "test_batch"), {
      b"batch_label": b"testing batch 1 of 1",
      b"labels": [int(v) for v in raw["test_labels"]],
      b"data": _cifar_rows(raw["test_images"]),
  })
  _dump(os.path.join(folder, "batches.meta"), {
      b"label_names": [n.encode() for n in CIFAR10_NAMES],
      b"num_cases_per_batch": BATCH,
      b"num_vis": 3072,
  })
  return folder


def _write_tar(folder, archive):
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname=os.path.basename(folder))


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory):
  """The same tiny CIFAR-10 as an extracted folder and as a .tar.gz, in two folders."""
  raw = _tiny_cifar(0)
  extracted = str(tmp_path_factory.mktemp("extracted"))
  packed = str(tmp_path_factory.mktemp("packed"))
  folder = _write_cifar10_folder(extracted, raw)
  _write_tar(folder, os.path.join(packed, "cifar-10-python.tar.gz"))
  return raw, extracted, packed


def _expected_x(images, mean, std):
  return (images / 255.0 - np.asarray(mean)) / np.asarray(std)


def _check_against_raw(ds, raw, mean, std, val_per_class):
  """Every row equals the raw image at its original index, normalised; splits as specified."""
  for split, prefix in ((ds.train, "train"), (ds.val, "train"), (ds.test, "test")):
    npt.assert_allclose(split.x, _expected_x(raw[f"{prefix}_images"][split.index], mean, std),
                        rtol=1e-5, atol=1e-5)
    npt.assert_array_equal(split.y, raw[f"{prefix}_labels"][split.index])
    assert split.x.dtype == np.float32 and split.index.dtype == np.int64
  npt.assert_array_equal(ds.test.index, np.arange(N_TEST))
  assert len(np.intersect1d(ds.train.index, ds.val.index)) == 0
  npt.assert_array_equal(np.sort(np.concatenate([ds.train.index, ds.val.index])),
                         np.arange(N_BATCHES * BATCH))
  assert np.all(np.diff(ds.train.index) > 0) and np.all(np.diff(ds.val.index) > 0)
  npt.assert_array_equal(np.bincount(ds.val.y), [val_per_class] * N_CLASSES)


def test_cifar10_archive_tar_and_folder(cifar_files):
  raw, extracted, packed = cifar_files
  from_tar = data.load_dataset("cifar10", data_dir=packed, split_seed=3, val_per_class=2,
                               source="archive")
  from_folder = data.load_dataset("cifar10", data_dir=extracted, split_seed=3, val_per_class=2)
  _check_against_raw(from_tar, raw, CIFAR10_MEAN, CIFAR10_STD, val_per_class=2)
  _assert_same_dataset(from_tar, from_folder)
  assert from_tar.class_names == CIFAR10_NAMES and from_tar.num_classes == 10
  assert from_tar.input_shape == (32, 32, 3)
  other_seed = data.load_dataset("cifar10", data_dir=packed, split_seed=4, val_per_class=2)
  assert not np.array_equal(other_seed.val.index, from_tar.val.index)
  npt.assert_array_equal(other_seed.test.x, from_tar.test.x)


def test_cifar100_archive_uses_fine_labels(tmp_path):
  raw = _tiny_cifar(1)
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  coarse = {"train": raw["train_labels"] % 2, "test": raw["test_labels"] % 2}
  for split in ("train", "test"):
    _dump(folder / split, {
        b"fine_labels": [int(v) for v in raw[f"{split}_labels"]],
        b"coarse_labels": [int(v) for v in coarse[split]],
        b"data": _cifar_rows(raw[f"{split}_images"]),
    })
  fine_names = tuple(f"fine{k}" for k in range(100))
  _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in fine_names],
                          b"coarse_label_names": [f"c{k}".encode() for k in range(20)]})
  _write_tar(str(folder), str(tmp_path / "cifar-100-python.tar.gz"))
  # Leave only the tar, so the loader has to read inside it.
  for child in folder.iterdir():
    child.unlink()
  folder.rmdir()
  ds = data.load_dataset("cifar100", data_dir=str(tmp_path), split_seed=0, val_per_class=3)
  _check_against_raw(ds, raw, CIFAR100_MEAN, CIFAR100_STD, val_per_class=3)
  assert ds.class_names == fine_names and ds.num_classes == 100


def _write_tfds_build(data_dir, raw):
  """A real CIFAR-10 ArrayRecord build (PIL-encoded images, so no TensorFlow needed)."""

  class Cifar10(tfds.builder_cls("cifar10"), skip_registration=True):
    """TFDS's own CIFAR-10 builder (same name, version, features) fed the tiny data."""

    def _split_generators(self, dl_manager):
      del dl_manager
      self.info.features["label"].names = list(CIFAR10_NAMES)
      return {"train": self._generate_examples("train_", "train"),
              "test": self._generate_examples("test_", "test")}

    def _generate_examples(self, prefix, split):
      for k, (image, label) in enumerate(zip(raw[f"{split}_images"], raw[f"{split}_labels"])):
        yield k, {"id": f"{prefix}{k:05d}", "image": PIL.Image.fromarray(image),
                  "label": int(label)}

  Cifar10(data_dir=data_dir, file_format="array_record").download_and_prepare()


def test_cifar10_tfds_array_record_build_matches_archive(cifar_files, tmp_path):
  raw, _, packed = cifar_files
  tfds_dir = str(tmp_path / "tfds")
  _write_tfds_build(tfds_dir, raw)
  stored = tfds.data_source("cifar10", split="train", data_dir=tfds_dir, download=False)
  stored_ids = [example["id"] for example in stored]
  # TFDS shuffles on write, so recovering the original order is really exercised.
  assert stored_ids != sorted(stored_ids)
  from_tfds = data.load_dataset("cifar10", data_dir=tfds_dir, split_seed=3, val_per_class=2)
  from_archive = data.load_dataset("cifar10", data_dir=packed, split_seed=3, val_per_class=2)
  _check_against_raw(from_tfds, raw, CIFAR10_MEAN, CIFAR10_STD, val_per_class=2)
  _assert_same_dataset(from_tfds, from_archive)


def test_cifar10_tfds_path_under_mock_data():
  raw = _tiny_cifar(2)
  order = np.random.default_rng(5).permutation
  calls = []

  class FakeSource(list):

    def __init__(self, records, info):
      super().__init__(records)
      self.dataset_info = info

  def as_data_source(builder, split, decoders=None, deserialize_method=None):
    del decoders, deserialize_method
    calls.append(split)
    return [FakeSource([{"id": f"{s}_{k:05d}".encode(), "image": raw[f"{s}_images"][k],
                         "label": raw[f"{s}_labels"][k]}
                        for k in order(len(raw[f"{s}_labels"]))], builder.info)
            for s in split]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    ds = data.load_dataset("cifar10", data_dir="/nonexistent", split_seed=0, val_per_class=1,
                           source="tfds")
  assert calls == [["train", "test"]]
  _check_against_raw(ds, raw, CIFAR10_MEAN, CIFAR10_STD, val_per_class=1)


def test_cifar10_tfds_ids_without_index_are_rejected():
  # mock_data's own generator fills the `id` text feature with random words.
  with tfds.testing.mock_data(num_examples=12):
    with pytest.raises(ValueError, match="train_<k>"):
      data.load_dataset("cifar10", split_seed=0, val_per_class=1, source="tfds")


@pytest.mark.parametrize("name, source", [("cifar10", "auto"), ("cifar100", "archive"),
                                          ("cifar10", "tfds")])
def test_cifar_missing_data_says_how_to_get_it(tmp_path, name, source):
  with pytest.raises(FileNotFoundError) as err:
    data.load_dataset(name, data_dir=str(tmp_path), source=source)
  message = str(err.value)
  archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
  assert f"https://www.cs.toronto.edu/~kriz/{archive}" in message
  assert "data_dir" in message
  assert f"tfds build {name} --file_format=array_record --data_dir=" in message


def test_cifar_unknown_source(tmp_path):
  with pytest.raises(ValueError, match="valid choices: auto, archive, tfds"):
    data.load_dataset("cifar10", data_dir=str(tmp_path), source="torchvision")


def test_cifar_spec_constants_match_the_published_ones():
  assert cifar.CIFAR10.mean == CIFAR10_MEAN and cifar.CIFAR10.std == CIFAR10_STD
  assert cifar.CIFAR100.mean == CIFAR100_MEAN and cifar.CIFAR100.std == CIFAR100_STD
  assert (cifar.CIFAR10.val_per_class, cifar.CIFAR100.val_per_class) == (500, 50)


# ------------------------------------------------------------------------------- augment


def _find_crop(out, image, pad, **pad_kwargs):
  """All (dy, dx, flip) whose numpy crop of the padded image equals `out`."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), **pad_kwargs)
  matches = []
  for dy, dx, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (0, 1)):
    crop = padded[dy:dy + h, dx:dx + w]
    if flip:
      crop = crop[:, ::-1]
    if np.array_equal(crop, out):
      matches.append((dy, dx, flip))
  return matches


@pytest.mark.parametrize("mode, pad_kwargs", [("constant", {"mode": "constant"}),
                                              ("reflect", {"mode": "reflect"})])
def test_random_crop_flip_is_a_crop_of_the_padded_image(mode, pad_kwargs):
  x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype(np.float32)
  out = np.asarray(jax.jit(lambda k, v: data.random_crop_flip(k, v, pad=2, mode=mode))(
      jax.random.key(0), jnp.asarray(x)))
  assert out.shape == x.shape and out.dtype == x.dtype
  found = [_find_crop(o, image, 2, **pad_kwargs) for o, image in zip(out, x)]
  assert all(len(f) == 1 for f in found)
  draws = [f[0] for f in found]
  # Each image draws its own window and flip; all 25 windows and both flips occur.
  assert {d[2] for d in draws} == {0, 1}
  assert len({d[:2] for d in draws}) > 10


def test_random_crop_flip_constant_image_and_fill():
  pad, value = 4, 2.5
  x = jnp.full((16, 32, 32, 3), value)
  out = np.asarray(data.random_crop_flip(jax.random.key(1), x, pad=pad))
  npt.assert_array_equal(out[:, pad:-pad, pad:-pad], value)
  assert set(np.unique(out)) <= {0.0, value}
  fill = jnp.array([-1.0, -2.0, -3.0])
  out = np.asarray(data.random_crop_flip(jax.random.key(2), x, pad=pad, fill=fill))
  is_padding = np.any(out != value, axis=-1)
  assert is_padding.any()
  npt.assert_array_equal(out[is_padding], np.broadcast_to([-1.0, -2.0, -3.0],
                                                         (is_padding.sum(), 3)))
  reflected = data.random_crop_flip(jax.random.key(3), x, pad=pad, mode="reflect")
  npt.assert_array_equal(reflected, value)


def test_random_crop_flip_pad_zero_only_flips():
  x = np.random.default_rng(1).normal(size=(32, 5, 5, 2)).astype(np.float32)
  out = np.asarray(data.random_crop_flip(jax.random.key(4), jnp.asarray(x), pad=0))
  same = np.all(out == x, axis=(1, 2, 3))
  flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same | flipped) and same.any() and flipped.any()


def test_random_crop_flip_vmaps_over_seeds():
  xs = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 8, 8, 1)), jnp.float32)
  keys = jax.random.split(jax.random.key(5), 3)
  batched = jax.vmap(data.random_crop_flip)(keys, xs)
  for k in range(3):
    npt.assert_array_equal(batched[k], data.random_crop_flip(keys[k], xs[k]))


def test_random_crop_flip_rejects_bad_arguments():
  x = jnp.zeros((2, 8, 8, 1))
  with pytest.raises(ValueError, match="valid choices: constant, reflect"):
    data.random_crop_flip(jax.random.key(0), x, mode="edge")
  with pytest.raises(ValueError, match="pad"):
    data.random_crop_flip(jax.random.key(0), x, pad=-1)
  with pytest.raises(ValueError, match="N, H, W, C"):
    data.random_crop_flip(jax.random.key(0), x[0])


def test_train_py_on_a_cifar_archive_and_a_clear_error_without_one(cifar_files, tmp_path):
  """`train.py --config=configs/cifar10_resnet18.py` end to end on a tiny archive in CIFAR's
  real format (one epoch, with the config's augmentation), and the missing-data message.

  The model is swapped for a tiny CNN: compiling ResNet-18 on this CPU takes ~30 s and is
  covered by test_training's one-step test; here the data path and the command are tested."""
  from rum_jax.configs import cifar10_resnet18
  from rum_jax import commands
  _, _, packed = cifar_files
  c = cifar10_resnet18.get_config()
  c.data.data_dir = packed
  c.data.options.val_per_class = 2
  c.model.name = "cnn"
  c.model.kwargs = {"channels": (4,), "dense": 16}
  c.num_seeds = 1
  c.train.epochs = 1
  c.train.batch_size = 32
  c.train.eval_batch_size = 64
  results = commands.train(c, str(tmp_path / "run"))
  assert 0.0 <= results["summary"]["test_accuracy"]["mean"] <= 1.0
  pred = np.load(tmp_path / "run" / "predictions" / "train.npz")
  assert pred["logits"].shape == (1, N_BATCHES * BATCH - 2 * N_CLASSES, 10)
  assert len(np.unique(pred["index"])) == len(pred["index"])  # original indices kept
  c.data.data_dir = str(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
    commands.train(c, str(tmp_path / "run2"))
