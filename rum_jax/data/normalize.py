"""Per-channel input standardisation, applied once when a data set is loaded."""
from typing import Sequence, Tuple, Union

import numpy as np

ArrayLike = Union[np.ndarray, Sequence[float]]


def channel_stats(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of channels-last inputs.

  mu_c = mean of x[..., c] over examples and positions,
  sigma_c = sqrt(mean of (x[..., c] - mu_c)^2) (population standard deviation),
  the statistics of input normalisation in LeCun et al. 1998, "Efficient BackProp",
  Sec. 4.3. Accumulated in float64 so that large image sets do not lose precision.

  Args:
    x: inputs [N, ..., C].

  Returns:
    (mean, std), each [C].
  """
  x = np.asarray(x)
  axes = tuple(range(x.ndim - 1))
  return x.mean(axis=axes, dtype=np.float64), x.std(axis=axes, dtype=np.float64)


def standardize(x: np.ndarray, mean: ArrayLike, std: ArrayLike) -> np.ndarray:
  """x' = (x - mu_c) / sigma_c per channel (LeCun et al. 1998, Sec. 4.3), as float32.

  Works in float32 and in place on one copy, because the CIFAR train set alone is 600 MB
  in float32. Raw uint8 pixels can be normalised with statistics of x/255 by passing
  255 mu_c and 255 sigma_c, since (x - 255 mu) / (255 sigma) = (x/255 - mu) / sigma.

  Args:
    x: inputs [N, ..., C].
    mean: mu_c [C].
    std: sigma_c [C], all positive.

  Returns:
    float32 array shaped like `x`.
  """
  mean = np.asarray(mean, dtype=np.float32)
  std = np.asarray(std, dtype=np.float32)
  if np.any(std <= 0):
    raise ValueError(f"standard deviations must be positive, got {std}")
  out = np.array(x, dtype=np.float32, copy=True)
  out -= mean
  out /= std
  return out


def black_pixel(mean: ArrayLike, std: ArrayLike) -> Tuple[float, ...]:
  """A raw pixel of 0 after `standardize`: (0 - mu_c) / sigma_c per channel.

  Random-crop padding fills with it, so that padding normalised images matches torchvision's
  RandomCrop(padding=4) on raw images (fill 0), which RUM applies before normalising.
  """
  mean = np.asarray(mean, np.float64)
  std = np.asarray(std, np.float64)
  return tuple(float(v) for v in -mean / std)
