"""airbench: a small, fast CIFAR-10 net (Jordan 2024), for memorization estimates at scale.

Feldman-Zhang memorization needs thousands of models (2,000 in Feldman & Zhang 2020's
ImageNet estimate); where a ResNet-18 per model is out of reach, airbench's net reaches 94%
on CIFAR-10 in about ten epochs. The architecture of airbench94:

  whitening conv (2x2, no padding, 2 d filters: d = 2*2*3 whitening filters and their
  negatives, frozen, + a trained bias) -> GELU
  -> 3 x ConvGroup(width): conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU,
     widths 64, 256, 256
  -> global max-pool -> linear (no bias) -> x 1/9.

Its initialisation, reproduced here:
  - whitening: the first layer's filters are the eigenvectors v_k of the patch
    second-moment matrix S = mean over all p x p patches P of vec(P) vec(P)', scaled by
    1 / sqrt(lambda_k + eps), so that the filter responses z_k = v_k' vec(P) / sqrt(lambda_k
    + eps) have mean square lambda_k / (lambda_k + eps) ~ 1 and are uncorrelated (PCA
    whitening; Coates & Ng 2012, "Learning feature representations with k-means").
    It needs training images: `whitening_kernel` computes it, `data_dependent_init`
    (rum_jax.models) puts it into freshly initialised variables;
  - partial identity ("dirac") init of every 3x3 conv: its first min(c_in, c_out) filters
    pass input channel k through unchanged, an implicit residual; the rest of the weights
    follow torch's default U(+-1/sqrt(fan_in));
  - BatchNorm without a scale, bias at 0, momentum 0.6 (running <- 0.6 running + 0.4
    batch), eps 1e-12.
airbench trains the BatchNorm biases with a 64x learning rate (the same weight decay per
step as the other weights). For SGD with coupled weight decay, a learning-rate multiplier
m on a parameter theta is exactly the reparametrisation theta = sqrt(m) phi: the gradient
step on theta becomes m times larger, the decay step lr wd theta stays the same, and
momentum is linear. So each bias here is `sqrt(bias_lr_scale) * phi`, and any optimizer
built by rum_jax.training.optim reproduces the multiplier with no parameter groups. (Code
that inspects raw parameters sees phi: SalUn's |gradient| and l1_sparse's |theta| of these
biases are sqrt(m) times larger and smaller respectively than in theta.)

Storage: the whitening kernel is a statistic of the training data, not a trained weight
(airbench freezes it), so like BatchNorm's running statistics it lives in the
`batch_stats` collection: no optimizer, weight decay or unlearning update (all of which act
on `params`) ever changes it, and it is checkpointed with the rest of the state. Until
`data_dependent_init` replaces it, it holds random frozen filters (torch's default init).

Not reproduced (parts of airbench's training loop, not of the model): freezing the
whitening bias after 3 epochs, Lookahead/EMA of the weights, alternating (derandomised)
flips with 2-pixel reflect translation, and test-time augmentation.

References: K. Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv:2404.00498; code: KellerJordan/cifar10-airbench (airbench94.py).
"""
from typing import Any, Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rum_jax.models.registry import MODELS, register_data_init

Variables = Dict[str, Any]

# torch's default conv/linear init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)), i.e.
# variance 1 / (3 fan_in).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def patch_second_moment(x: jnp.ndarray, patch_size: int) -> jnp.ndarray:
  """S = mean over every p x p patch (stride 1, no padding) of vec(P) vec(P)'.

  vec(P) orders a patch's values as (row i, column j, channel c), the order of a Flax
  conv kernel [p, p, C, out] reshaped to [p p C, out]. The p^2 shifted views of x are
  multiplied pairwise, so no [patches, p p C] matrix is ever materialised (5,000 CIFAR
  images have 4.8M patches).

  Args:
    x: images [N, H, W, C] with H, W >= p.
    patch_size: p.

  Returns:
    S [p p C, p p C], float32.
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f"expected images [N, H, W, C], got shape {x.shape}")
  n, h, w, _ = x.shape
  p = patch_size
  if p < 1 or h < p or w < p:
    raise ValueError(f"patch size {p} does not fit images of {h}x{w}")
  ho, wo = h - p + 1, w - p + 1
  views = [x[:, i:i + ho, j:j + wo, :] for i in range(p) for j in range(p)]
  # HIGHEST: on GPUs the default float32 matmul may use TF32, too coarse for the small
  # eigenvalues that whitening divides by.
  blocks = [[jnp.einsum("nhwc,nhwd->cd", a, b, precision=jax.lax.Precision.HIGHEST)
             for b in views] for a in views]
  return jnp.block(blocks) / (n * ho * wo)


def whitening_kernel(x_sample: jnp.ndarray, patch_size: int = 2, eps: float = 5e-4) -> jnp.ndarray:
  """airbench's whitening filters from training images, as a Flax conv kernel.

  With S = V diag(lambda) V' (`patch_second_moment`), eigenvalues in decreasing order,
  filter k is W_k = v_k / sqrt(lambda_k + eps); the kernel holds [W, -W] (2 d filters,
  d = p p C), so that the GELU after it keeps both signs of every whitened component.
  On patches P of x_sample the first d outputs z = W' vec(P) satisfy mean z z' =
  diag(lambda / (lambda + eps)) exactly (~ identity). Pure and jittable.

  Args:
    x_sample: normalised training images [N, H, W, C] (airbench: the first 5,000).
    patch_size: p (airbench: 2).
    eps: added to the eigenvalues (airbench: 5e-4), bounds the gain of tiny components.

  Returns:
    kernel [p, p, C, 2 p p C], float32.
  """
  c = jnp.shape(x_sample)[-1]
  d = patch_size * patch_size * c
  eigenvalues, eigenvectors = jnp.linalg.eigh(patch_second_moment(x_sample, patch_size))
  eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
  filters = eigenvectors / jnp.sqrt(jnp.maximum(eigenvalues, 0.0) + eps)  # columns W_k
  kernel = filters.reshape(patch_size, patch_size, c, d)
  return jnp.concatenate([kernel, -kernel], axis=-1)


def with_whitening_kernel(variables: Variables, kernel: jnp.ndarray) -> Variables:
  """A copy of an Airbench's variables with `kernel` as its (frozen) whitening filters."""
  stats = dict(variables["batch_stats"])
  old = stats["whiten"]["kernel"]
  if tuple(old.shape) != tuple(jnp.shape(kernel)):
    raise ValueError(f"whitening kernel of shape {jnp.shape(kernel)} does not fit the model's "
                     f"{tuple(old.shape)}")
  stats["whiten"] = {**stats["whiten"], "kernel": jnp.asarray(kernel, old.dtype)}
  return {**variables, "batch_stats": stats}


def partial_identity_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jnp.ndarray:
  """torch's default init, then filters 0..min(c_in, c_out)-1 set to identities (dirac).

  Filter k < min(c_in, c_out) becomes 1 at the kernel centre for input channel k and 0
  elsewhere (torch.nn.init.dirac_ on airbench's w[:c_in]).
  """
  kh, kw, c_in, c_out = shape
  kernel = torch_default_init(key, shape, dtype)
  n = min(c_in, c_out)
  identity = jnp.zeros((kh, kw, c_in, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(c_in, n, dtype=dtype))
  return kernel.at[..., :n].set(identity)


class Whitening(nn.Module):
  """Frozen p x p whitening conv (kernel in `batch_stats`) plus a trained bias."""
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    p, c = self.patch_size, x.shape[-1]
    shape = (p, p, c, 2 * p * p * c)
    kernel = self.variable("batch_stats", "kernel",
                           lambda: torch_default_init(self.make_rng("params"), shape)).value
    bias = self.param("bias", nn.initializers.zeros, shape[-1:])
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


class ShiftBatchNorm(nn.Module):
  """BatchNorm without a scale; the shift is sqrt(bias_lr_scale) * phi (module docstring)."""
  momentum: float
  bias_lr_scale: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    # eps 1e-12 as airbench; the two-pass variance keeps it from dividing by a
    # cancellation error when a channel's mean is large.
    x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=1e-12,
                     use_scale=False, use_bias=False, use_fast_variance=False, dtype=self.dtype)(x)
    phi = self.param("bias", nn.initializers.zeros, x.shape[-1:])
    return x + (np.sqrt(self.bias_lr_scale) * phi).astype(self.dtype)


class ConvGroup(nn.Module):
  """conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU (airbench's block)."""
  width: int
  bn_momentum: float
  bias_lr_scale: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    conv = lambda: nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,
                           kernel_init=partial_identity_init, dtype=self.dtype)
    norm = lambda: ShiftBatchNorm(self.bn_momentum, self.bias_lr_scale, self.dtype)
    x = nn.max_pool(conv()(x), (2, 2), strides=(2, 2))
    x = nn.gelu(norm()(x, train), approximate=False)
    x = conv()(x)
    return nn.gelu(norm()(x, train), approximate=False)


class Airbench(nn.Module):
  """airbench94's net; see the module docstring."""
  num_classes: int
  widths: Sequence[int] = (64, 256, 256)
  patch_size: int = 2
  whiten_eps: float = 5e-4
  whiten_examples: int = 5000
  bn_momentum: float = 0.6
  bias_lr_scale: float = 64.0
  logit_scale: float = 1.0 / 9.0
  dtype: Any = jnp.float32  # compute dtype; parameters, statistics and logits stay float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, features: bool = False) -> jnp.ndarray:
    if x.ndim != 4:
      raise ValueError(f"airbench takes images [B, H, W, C], got shape {x.shape}")
    x = nn.gelu(Whitening(self.patch_size, self.dtype, name="whiten")(x), approximate=False)
    for width in self.widths:
      x = ConvGroup(width, self.bn_momentum, self.bias_lr_scale, self.dtype)(x, train)
    # airbench max-pools the final 3x3 map of a 32x32 input with a 3x3 window: a global
    # max-pool, which also works for other input sizes.
    x = jnp.max(x, axis=(1, 2))
    if features:
      return x.astype(jnp.float32)
    logits = nn.Dense(self.num_classes, use_bias=False, kernel_init=torch_default_init, dtype=self.dtype)(x)
    return self.logit_scale * logits.astype(jnp.float32)


@register_data_init(Airbench, num_examples=lambda model: model.whiten_examples)
def _whiten(model: Airbench, variables: Variables, x_sample: jnp.ndarray) -> Variables:
  """The whitening kernel of `x_sample` put into `variables`."""
  return with_whitening_kernel(variables, whitening_kernel(x_sample, model.patch_size,
                                                           model.whiten_eps))


@MODELS.register("airbench")
def airbench(num_classes: int, widths: Sequence[int] = (64, 256, 256), patch_size: int = 2,
             whiten_eps: float = 5e-4, whiten_examples: int = 5000, bn_momentum: float = 0.6,
             bias_lr_scale: float = 64.0, logit_scale: float = 1.0 / 9.0,
             dtype: Any = jnp.float32) -> nn.Module:
  """Registry entry `airbench` (airbench94's widths 64, 256, 256 by default).

  whiten_examples: how many training images `data_dependent_init` should be given
  (`data_init_size`); airbench uses 5,000.
  """
  return Airbench(num_classes=num_classes, widths=tuple(widths), patch_size=patch_size,
                  whiten_eps=whiten_eps, whiten_examples=whiten_examples,
                  bn_momentum=bn_momentum, bias_lr_scale=bias_lr_scale, logit_scale=logit_scale,
                  dtype=dtype)
