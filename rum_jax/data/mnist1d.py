"""MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024).

Generated offline and deterministically by the `mnist1d` package (nothing is cached on
disk): by default the published 4,000 train / 1,000 test signals of length 40, 10 classes.
An MLP fits the train set perfectly yet generalises poorly, so many examples are memorized:
the CPU data set for memorization and RUM studies. The generator makes any number of
signals (options `num_train`, `num_test`): configs/mnist1d_45k.py builds a CIFAR-sized one
(45,000 train / 5,000 val / 10,000 test, RUM's split of CIFAR-10).
"""
import functools
import random
from typing import Optional, Tuple

import numpy as np

from rum_jax import optional
from rum_jax.data import normalize
from rum_jax.data import splits
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS

VAL_FRACTION = 0.1  # of the train signals
NUM_TRAIN, NUM_TEST = 4000, 1000  # the published data set (make_dataset's defaults)
NUM_CLASSES = 10


@functools.lru_cache(maxsize=2)
def _make_raw(num_train: int, num_test: int) -> Tuple[np.ndarray, ...]:
  """(train x, train y, test x, test y) of `make_dataset`, leaving global RNGs untouched.

  The published arguments, with num_samples = num_train + num_test and the train/test cut
  at num_train (make_dataset standardises all signals together and cuts at
  int(num_samples * train_split); cutting its output here again at num_train keeps the
  split exact whatever the float rounding). The defaults give the published data set
  unchanged. `make_dataset` reseeds Python's and NumPy's global generators (seed 42);
  restoring them keeps loading data from silently changing the caller's random stream.
  The arrays are kept for the process (read-only): 45,000 signals take about half a minute
  to generate. The package is imported here so that the other data sets work without it.
  """
  mnist1d_data = optional.require("mnist1d.data", "the mnist1d data set", package="mnist1d")
  args = mnist1d_data.get_dataset_args()
  if (num_train, num_test) != (NUM_TRAIN, NUM_TEST):
    args.num_samples = num_train + num_test
    args.train_split = num_train / args.num_samples
  python_state, numpy_state = random.getstate(), np.random.get_state()
  try:
    raw = mnist1d_data.make_dataset(args)
  finally:
    random.setstate(python_state)
    np.random.set_state(numpy_state)
  x, y = np.concatenate([raw["x"], raw["x_test"]]), np.concatenate([raw["y"], raw["y_test"]])
  arrays = (x[:num_train], y[:num_train], x[num_train:], y[num_train:])
  for a in arrays:
    a.flags.writeable = False
  return arrays


@DATASETS.register("mnist1d")
def load_mnist1d(data_dir: Optional[str], split_seed: int, num_train: int = NUM_TRAIN,
                 num_test: int = NUM_TEST) -> Dataset:
  """Loads MNIST-1D as signals [40, 1] (length, channels).

  Val: stratified 10% of the train signals drawn with `split_seed`. Original index =
  position in make_dataset's train signals (test: in its test signals). Inputs are
  re-standardised with the mean/std of the train signals (make_dataset standardised with
  statistics that include the test signals).

  Args:
    data_dir: unused (the data is generated).
    split_seed: seed of the validation split.
    num_train: train signals generated (the train split is 90% of them, val 10%); 4,000 in
      the published data set.
    num_test: test signals generated; 1,000 in the published data set.
  """
  del data_dir  # Generated data set.
  for name, value in (("num_train", num_train), ("num_test", num_test)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < NUM_CLASSES:
      raise ValueError(f"data.options.{name} must be an integer >= {NUM_CLASSES}; got {value!r}")
  if (num_train + num_test) % NUM_CLASSES:
    raise ValueError(f"data.options.num_train + num_test must be a multiple of {NUM_CLASSES} (the "
                     f"generator makes the same number of each class); got {num_train} + {num_test}")
  train_x, train_y, test_x, test_y = _make_raw(int(num_train), int(num_test))
  train_x, test_x = train_x[..., None], test_x[..., None]
  mean, std = normalize.channel_stats(train_x)

  def make(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(normalize.standardize(x, mean, std), y.astype(np.int32),
                 np.arange(len(y), dtype=np.int64))

  train, val = splits.hold_out(make(train_x, train_y), VAL_FRACTION, split_seed)
  class_ids = np.unique(train_y)
  return Dataset(
      name="mnist1d",
      train=train,
      val=val,
      test=make(test_x, test_y),
      num_classes=len(class_ids),
      class_names=tuple(str(c) for c in class_ids),
  )
