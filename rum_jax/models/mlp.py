"""Multi-layer perceptron: the CPU default for digits and mnist1d."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from rum_jax.models.registry import MODELS


class MLP(nn.Module):
  """Flatten, ReLU dense layers of the given widths, linear head (float32 out; `dtype`: compute)."""
  num_classes: int
  hidden: Sequence[int] = (256, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, features: bool = False) -> jnp.ndarray:
    del train  # no dropout or normalisation: train and eval modes agree
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    if features:
      return x.astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@MODELS.register("mlp")
def mlp(num_classes: int, hidden: Sequence[int] = (256, 256), dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `mlp`."""
  return MLP(num_classes=num_classes, hidden=tuple(hidden), dtype=dtype)
