"""The standard CIFAR augmentation, random crop with padding + horizontal flip, in JAX.

Runs on device inside the jitted train step, so augmentation needs no input pipeline,
and it can be vmapped over seeds like the step itself. RUM trains the original CIFAR models with it and unlearns without it.
"""
import jax
import jax.numpy as jnp

PAD_MODES = ("constant", "reflect")


def random_crop_flip(
    rng: jax.Array,
    x: jax.Array,
    pad: int = 4,
    *,
    mode: str = "constant",
    fill: float | jax.Array = 0.0,
) -> jax.Array:
  """Pads each image by `pad`, crops a random HxW window, flips it left-right w.p. 1/2.

  The CIFAR pipeline of He et al. 2016 ("Deep residual learning for image
  recognition", Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is
  randomly sampled from the padded image or its horizontal flip"), as torchvision's
  `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()` used by RUM. For image i,
  with offsets (a_i, b_i) uniform on {0..2 pad}^2 and f_i ~ Bernoulli(1/2):
    out_i[r, s] = P_i[a_i + r, b_i + s]              if f_i = 0,
    out_i[r, s] = P_i[a_i + r, b_i + W - 1 - s]      if f_i = 1,
  where P_i is image i padded by `pad` on both sides of height and width.

  Args:
    rng: PRNG key; every image draws its own crop and flip from it.
    x: images [N, H, W, C].
    pad: padding on each side (>= 0).
    mode: "constant" pads with `fill`; "reflect" mirrors without repeating the edge.
    fill: constant padding value, a scalar or one value per channel [C]. Inputs here are
      already normalised, so 0 pads with the mean colour; to pad with black as
      torchvision does on [0, 1] images, pass -mean/std.

  Returns:
    Augmented images [N, H, W, C], dtype of `x`.
  """
  if mode not in PAD_MODES:
    raise ValueError(f"unknown padding mode {mode!r}; valid choices: {', '.join(PAD_MODES)}")
  if pad < 0:
    raise ValueError(f"pad must be >= 0, got {pad}")
  if x.ndim != 4:
    raise ValueError(f"expected a batch of images [N, H, W, C], got shape {x.shape}")
  n, h, w, c = x.shape
  if mode == "constant":
    # Writing x into a fill-coloured canvas handles a per-channel fill exactly.
    canvas = jnp.broadcast_to(jnp.asarray(fill, x.dtype), (n, h + 2 * pad, w + 2 * pad, c))
    padded = canvas.at[:, pad:pad + h, pad:pad + w, :].set(x)
  else:
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")

  crop_rng, flip_rng = jax.random.split(rng)
  offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(flip_rng, 0.5, (n,))

  def crop_and_flip(image: jax.Array, offset: jax.Array, flip: jax.Array) -> jax.Array:
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1, :], crop)

  return jax.vmap(crop_and_flip)(padded, offsets, flips)
