"""The in-memory data set representation every part of rum-jax consumes."""
import dataclasses
from typing import Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split held in memory.

  x: float32 inputs, already normalised, shape [N, *input_shape] (images NHWC).
  y: int32 labels [N].
  index: int64 ORIGINAL example index [N] (e.g. CIFAR's own train order, TFDS `train_<k>`);
    memorization scores are published in that order, so it is never shuffled away.
  """
  x: np.ndarray
  y: np.ndarray
  index: np.ndarray

  def __post_init__(self):
    n = len(self.x)
    if len(self.y) != n or len(self.index) != n:
      raise ValueError(f"split arrays disagree in length: x {n}, y {len(self.y)}, index {len(self.index)}")

  def __len__(self) -> int:
    return len(self.y)

  def subset(self, positions: np.ndarray) -> "Split":
    """Rows at `positions` (positions into this split, not original indices)."""
    positions = np.asarray(positions)
    return Split(self.x[positions], self.y[positions], self.index[positions])


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data set's three splits, its number of classes and their names.

  pad_value: per channel, the normalised value of a black pixel, which random-crop
    padding fills with (torchvision pads the raw image with 0 before normalisation, as RUM
    does); None: the data has no black pixel (e.g. features), and padding fills with 0.
  """
  name: str
  train: Split
  val: Split
  test: Split
  num_classes: int
  class_names: Tuple[str, ...]
  pad_value: Optional[Tuple[float, ...]] = None

  @property
  def input_shape(self) -> Tuple[int, ...]:
    """Shape of one example (without the batch axis)."""
    return tuple(self.train.x.shape[1:])

  def split(self, name: str) -> Split:
    """The split called train, val or test."""
    if name not in ("train", "val", "test"):
      raise ValueError(f"unknown split {name!r}; valid choices: train, val, test")
    return getattr(self, name)
