"""A small convolutional net for 1-D signals ([B, L, C]) or images ([B, H, W, C])."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from rum_jax.models.registry import MODELS


class CNN(nn.Module):
  """Conv(3)-ReLU-maxpool(2) blocks of the given channels, one ReLU dense layer, linear head."""
  num_classes: int
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  dtype: Any = jnp.float32  # compute dtype; parameters and the logits stay float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, features: bool = False) -> jnp.ndarray:
    del train
    spatial = x.ndim - 2  # 1 for signals, 2 for images
    for ch in self.channels:
      x = nn.relu(nn.Conv(ch, kernel_size=(3,) * spatial, padding="SAME", dtype=self.dtype)(x))
      x = nn.max_pool(x, (2,) * spatial, strides=(2,) * spatial, padding="SAME")
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype)(x))
    if features:
      return x.astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@MODELS.register("cnn")
def cnn(num_classes: int, channels: Sequence[int] = (32, 64), dense: int = 128,
        dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `cnn`."""
  return CNN(num_classes=num_classes, channels=tuple(channels), dense=dense, dtype=dtype)
