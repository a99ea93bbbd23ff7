"""Bring your own data: a classification data set stored as one NumPy .npz file.

The file holds (np.savez / np.savez_compressed):
  x            inputs [N, ...], channels last (images [N, H, W, C], signals [N, L, C],
               feature vectors [N, D]); any numeric dtype, finite values.
  y            integer class labels [N] in 0..K-1.
  index        optional int [N], each example's ORIGINAL index (unique); default 0..N-1,
               the row in the file. Memorization scores and forget sets refer to it.
  split        optional [N], per example "train" / "val" / "test" (strings) or 0 / 1 / 2.
  class_names  optional [K] strings; K = len(class_names), else K = max(y) + 1.
Strings must be saved as NumPy string arrays (e.g. np.array(["train", ...])): the file
is read with allow_pickle=False, because unpickling can run code.

Splits: rows marked in `split` keep their split. A split with no rows (or no `split` array
at all) is carved out of the train rows as digits does: test = a stratified
`test_fraction` of the examples with a FIXED seed (the test set never moves with
split_seed), then val = a stratified `val_fraction` of the examples drawn with
`split_seed` from what is left. Within a split, rows keep their order in the file.

Inputs are standardised per channel (last axis) with the mean and standard deviation of
the non-test rows (LeCun et al. 1998, "Efficient BackProp", Sec. 4.3), so an example's
input does not depend on split_seed; a constant channel maps to 0.

Where the file is (the config's data fields): `data.options.path`; a relative path is
taken inside `data.data_dir` when that is set. Without `path`, `data.data_dir` itself must
be the .npz file:
  --config.data.name=npz --config.data.options.path=/data/mine.npz
  --config.data.name=npz --config.data.data_dir=/data --config.data.options.path=mine.npz
"""
import os
import zipfile
from typing import Optional, Tuple

import numpy as np

from rum_jax.data import normalize
from rum_jax.data import splits
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS

REQUIRED = ("x", "y")
OPTIONAL = ("index", "split", "class_names")
SPLIT_NAMES = ("train", "val", "test")
# Fixed so that a carved test set is the same for every split_seed.
TEST_SEED = 0


def resolve_path(data_dir: Optional[str], path: Optional[str]) -> str:
  """The .npz file named by `path` (inside `data_dir` when relative) or by `data_dir`."""
  if path:
    return path if os.path.isabs(path) or not data_dir else os.path.join(data_dir, path)
  if data_dir:
    return data_dir
  raise ValueError("the npz data set needs a file: set --config.data.options.path=<file.npz> "
                   "(or --config.data.data_dir=<file.npz>)")


def _read(file: str) -> dict:
  """The arrays of the file, checked for presence and picklability."""
  if not os.path.isfile(file):
    raise FileNotFoundError(f"npz data set: no file {file}")
  if not zipfile.is_zipfile(file):  # np.load would try it as a pickle and advise allow_pickle
    with open(file, "rb") as f:
      head = f.read(6)
    what = "one NumPy array (.npy)" if head == b"\x93NUMPY" else f"no .npz archive (it starts with {head!r})"
    target = file if file.endswith(".npz") else os.path.splitext(file)[0] + ".npz"  # np.savez adds .npz
    raise ValueError(f"the npz data set's file {file} is {what}: save the data set with np.savez({target!r}, "
                     f"x=inputs, y=labels) and set --config.data.options.path={target}")
  with np.load(file, allow_pickle=False) as archive:
    missing = [k for k in REQUIRED if k not in archive.files]
    if missing:
      raise ValueError(f"{file} lacks the array(s) {', '.join(missing)}; it holds "
                       f"{', '.join(archive.files) or 'nothing'} (needs x and y)")
    arrays = {}
    for key in REQUIRED + OPTIONAL:
      if key in archive.files:
        try:
          arrays[key] = archive[key]
        except ValueError as err:  # an object array would need pickle
          raise ValueError(f"{file}: array {key!r} holds Python objects ({err}); save strings "
                           "as a NumPy string array, e.g. np.array(['train', 'test'])") from None
  return arrays


def _split_codes(split: np.ndarray, file: str) -> np.ndarray:
  """0 / 1 / 2 (train / val / test) per row from strings or integer codes."""
  if split.dtype.kind in "US":
    names = np.char.lower(np.char.strip(split.astype(str)))
    codes = np.full(len(names), -1, np.int64)
    for code, name in enumerate(SPLIT_NAMES):
      codes[names == name] = code
    bad = names[codes < 0]
  elif split.dtype.kind in "iu":
    codes = split.astype(np.int64)
    bad = codes[(codes < 0) | (codes > 2)]
  else:
    raise ValueError(f"{file}: split must hold strings (train/val/test) or ints (0/1/2), "
                     f"got dtype {split.dtype}")
  if len(bad):
    raise ValueError(f"{file}: split holds {bad[0].item()!r}; valid values: train, val, test "
                     "or 0, 1, 2")
  return codes


def _labels(y: np.ndarray, num_names: Optional[int], file: str) -> Tuple[np.ndarray, int]:
  """int32 labels and the number of classes, after checking both."""
  if y.ndim != 1:
    raise ValueError(f"{file}: y must be one label per example [N], got shape {y.shape}")
  if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
    y = y.astype(np.int64)  # integer labels saved as floats
  if y.dtype.kind not in "iu":
    raise ValueError(f"{file}: y must hold integer class labels, got dtype {y.dtype}"
                     + (" with non-integer values" if y.dtype.kind == "f" else ""))
  if y.min() < 0:
    raise ValueError(f"{file}: labels must be >= 0, got {y.min()}")
  num_classes = int(y.max()) + 1 if num_names is None else num_names
  if y.max() >= num_classes:
    raise ValueError(f"{file}: label {y.max()} is out of range for {num_classes} class_names")
  if num_classes < 2:
    raise ValueError(f"{file}: a classification data set needs >= 2 classes, got {num_classes}")
  return y.astype(np.int32), num_classes


def _carve(pool: np.ndarray, labels: np.ndarray, count: int, seed: int,
           what: str, file: str) -> Tuple[np.ndarray, np.ndarray]:
  """(kept, held) positions: `count` of the positions `pool`, stratified by label."""
  if not 0 < count < len(pool):
    raise ValueError(f"{file}: cannot carve {count} {what} examples out of {len(pool)} train "
                     f"examples; mark a {what} split in the file or change {what}_fraction")
  keep, held = splits.stratified_split(labels[pool], count, seed)
  return pool[keep], pool[held]


@DATASETS.register("npz")
def load_npz(data_dir: Optional[str], split_seed: int, path: Optional[str] = None,
             val_fraction: float = 0.1, test_fraction: float = 0.2,
             name: Optional[str] = None) -> Dataset:
  """Loads a data set from a .npz file (see the module docstring for the format).

  Args:
    data_dir: folder of a relative `path`, or the file itself when `path` is unset.
    split_seed: seed of a carved validation split.
    path: the .npz file.
    val_fraction: fraction of all examples carved as val when the file marks none.
    test_fraction: fraction of all examples carved as test when the file marks none.
    name: the data set's name in outputs (default: the file name without .npz).

  Raises:
    FileNotFoundError: no such file.
    ValueError: a missing array, mismatched lengths, bad labels or split values, a
      duplicate index, non-finite inputs, or too few examples to carve a split.
  """
  file = resolve_path(data_dir, path)
  arrays = _read(file)
  x = arrays["x"]
  n = len(x)
  if x.ndim < 2 or n == 0:
    raise ValueError(f"{file}: x must be [N, ...] with N >= 1 examples, got shape {x.shape}")
  if x.dtype.kind not in "biuf":
    raise ValueError(f"{file}: x must be numeric, got dtype {x.dtype}")
  for key in ("y", "index", "split"):
    if key in arrays and len(arrays[key]) != n:
      raise ValueError(f"{file}: x has {n} examples but {key} has {len(arrays[key])}")
  if x.dtype.kind == "f":
    bad = ~np.isfinite(x.reshape(n, -1)).all(axis=1)
    if bad.any():
      raise ValueError(f"{file}: x holds NaN or infinite values in {int(bad.sum())} examples "
                       f"(first at row {int(np.flatnonzero(bad)[0])})")

  class_names = None
  if "class_names" in arrays:
    if arrays["class_names"].dtype.kind not in "US" or arrays["class_names"].ndim != 1:
      raise ValueError(f"{file}: class_names must be a 1-D string array")
    class_names = tuple(str(c) for c in arrays["class_names"])
  y, num_classes = _labels(arrays["y"], None if class_names is None else len(class_names), file)
  if class_names is None:
    class_names = tuple(str(c) for c in range(num_classes))

  index = arrays.get("index")
  if index is None:
    index = np.arange(n, dtype=np.int64)
  else:
    if index.ndim != 1 or index.dtype.kind not in "iu":
      raise ValueError(f"{file}: index must be one integer per example, got dtype "
                       f"{index.dtype} shape {index.shape}")
    if len(np.unique(index)) != n:
      raise ValueError(f"{file}: index holds duplicate values; it must identify each example")
    index = index.astype(np.int64)

  codes = _split_codes(arrays["split"], file) if "split" in arrays else np.zeros(n, np.int64)
  train_pos = np.flatnonzero(codes == 0)
  val_pos, test_pos = np.flatnonzero(codes == 1), np.flatnonzero(codes == 2)
  if len(test_pos) == 0:
    train_pos, test_pos = _carve(train_pos, y, round(test_fraction * n), TEST_SEED, "test", file)
  if len(val_pos) == 0:
    train_pos, val_pos = _carve(train_pos, y, round(val_fraction * n), split_seed, "val", file)
  if len(train_pos) == 0:
    raise ValueError(f"{file}: no train examples left")

  pool = np.sort(np.concatenate([train_pos, val_pos]))
  mean, std = normalize.channel_stats(x[pool])
  # A constant channel carries no information; std 1 maps it to 0 instead of dividing by 0.
  inputs = normalize.standardize(x, mean, np.where(std > 0, std, 1.0))

  def make(positions: np.ndarray) -> Split:
    return Split(inputs[positions], y[positions], index[positions])

  return Dataset(
      name=name or os.path.splitext(os.path.basename(file))[0],
      train=make(train_pos),
      val=make(val_pos),
      test=make(test_pos),
      num_classes=num_classes,
      class_names=class_names,
  )
