"""Multi-layer perceptron: the CPU default for digits and mnist1d."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from rum_jax.models.registry import MODELS


class MLP(nn.Module):
  """Flatten, ReLU dense layers of the given widths, linear head (float32 out; `dtype`: compute).

  batch_norm: BatchNorm after each hidden dense layer, before the ReLU (torch's momentum 0.1
  and eps 1e-5, as the ResNets); off by default, when train and eval modes agree.
  layer_norm: LayerNorm there instead (Ba et al. 2016): each example normalised over its own
  features, so no running statistics and train and eval modes agree.
  """
  num_classes: int
  hidden: Sequence[int] = (256, 256)
  batch_norm: bool = False
  layer_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, features: bool = False) -> jnp.ndarray:
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.Dense(width, dtype=self.dtype)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x)
      if self.layer_norm:
        x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype)(x)
      x = nn.relu(x)
    if features:
      return x.astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@MODELS.register("mlp")
def mlp(num_classes: int, hidden: Sequence[int] = (256, 256), batch_norm: bool = False,
        layer_norm: bool = False, dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `mlp`."""
  if batch_norm and layer_norm:
    raise ValueError("the mlp takes batch_norm or layer_norm, not both")
  return MLP(num_classes=num_classes, hidden=tuple(hidden), batch_norm=batch_norm, layer_norm=layer_norm, dtype=dtype)
