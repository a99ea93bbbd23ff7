"""MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024).

Generated offline and deterministically by the `mnist1d` package (nothing is cached on
disk): 4,000 train / 1,000 test signals of length 40, 10 classes. An MLP fits the train
set perfectly yet generalises poorly, so many examples are memorized: the CPU data set
for memorization and RUM studies.
"""
import random
from typing import Optional

import numpy as np

from rum_jax import optional
from rum_jax.data import normalize
from rum_jax.data import splits
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS

VAL_FRACTION = 0.1  # of the 4,000 train signals


def _make_raw() -> dict:
  """Runs `make_dataset` with the published arguments, leaving global RNGs untouched.

  `make_dataset` reseeds Python's and NumPy's global generators (seed 42); restoring
  them keeps loading data from silently changing the caller's random stream. The package
  is imported here so that the other data sets work without it.
  """
  mnist1d_data = optional.require("mnist1d.data", "the mnist1d data set", package="mnist1d")
  python_state, numpy_state = random.getstate(), np.random.get_state()
  try:
    return mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
  finally:
    random.setstate(python_state)
    np.random.set_state(numpy_state)


@DATASETS.register("mnist1d")
def load_mnist1d(data_dir: Optional[str], split_seed: int) -> Dataset:
  """Loads MNIST-1D as signals [40, 1] (length, channels).

  Val: stratified 10% of the train signals drawn with `split_seed`. Original index =
  position in make_dataset's train arrays (test: in its test arrays). Inputs are
  re-standardised with the mean/std of the 4,000 train signals (make_dataset
  standardised with statistics that include the test signals).

  Args:
    data_dir: unused (the data is generated).
    split_seed: seed of the validation split.
  """
  del data_dir  # Generated data set.
  raw = _make_raw()
  train_x = raw["x"][..., None]
  test_x = raw["x_test"][..., None]
  mean, std = normalize.channel_stats(train_x)

  def make(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(normalize.standardize(x, mean, std), y.astype(np.int32),
                 np.arange(len(y), dtype=np.int64))

  train, val = splits.hold_out(make(train_x, raw["y"]), VAL_FRACTION, split_seed)
  class_ids = np.unique(raw["y"])
  return Dataset(
      name="mnist1d",
      train=train,
      val=val,
      test=make(test_x, raw["y_test"]),
      num_classes=len(class_ids),
      class_names=tuple(str(c) for c in class_ids),
  )
