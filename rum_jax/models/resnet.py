"""CIFAR ResNet-18 (He et al. 2016) and GEM's reduced ResNet-18 (Lopez-Paz & Ranzato 2017).

Both use the CIFAR stem: one 3x3 stride-1 convolution and no max-pool, then BasicBlocks
[2, 2, 2, 2] with widths nf, 2nf, 4nf, 8nf and strides 1, 2, 2, 2, global average pooling
and a linear head. ResNet-18 has nf = 64; the reduced one used by GEM has nf = 20.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from rum_jax.models.registry import MODELS


class BasicBlock(nn.Module):
  """Two 3x3 conv-BN layers with a residual connection (He et al. 2016, Fig. 2)."""
  filters: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    conv = lambda *args, **kw: nn.Conv(*args, use_bias=False, dtype=self.dtype, **kw)
    y = conv(self.filters, (3, 3), (self.stride, self.stride), padding=1)(x)
    y = nn.relu(norm()(y))
    y = conv(self.filters, (3, 3), padding=1)(y)
    y = norm()(y)
    if self.stride != 1 or x.shape[-1] != self.filters:
      # Projection shortcut when the shape changes (option B of He et al.).
      x = conv(self.filters, (1, 1), (self.stride, self.stride))(x)
      x = norm()(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR ResNet with BasicBlocks; see the module docstring."""
  num_classes: int
  nf: int = 64
  blocks: Sequence[int] = (2, 2, 2, 2)
  dtype: Any = jnp.float32  # compute dtype; parameters, BatchNorm statistics and logits: float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, features: bool = False) -> jnp.ndarray:
    x = nn.Conv(self.nf, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x))
    for stage, n_blocks in enumerate(self.blocks):
      for b in range(n_blocks):
        stride = 2 if stage > 0 and b == 0 else 1
        x = BasicBlock(self.nf * 2**stage, stride, self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if features:
      return x.astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@MODELS.register("resnet18")
def resnet18(num_classes: int, nf: int = 64, dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `resnet18` (widths 64..512)."""
  return ResNet(num_classes=num_classes, nf=nf, dtype=dtype)


@MODELS.register("reduced_resnet18")
def reduced_resnet18(num_classes: int, nf: int = 20, dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `reduced_resnet18`, GEM's narrow ResNet-18 (widths 20..160)."""
  return ResNet(num_classes=num_classes, nf=nf, dtype=dtype)
