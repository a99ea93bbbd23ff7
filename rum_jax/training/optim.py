"""Optimizer: SGD with momentum and coupled weight decay, as torch.optim.SGD does it.

torch adds `weight_decay * param` to the gradient before the momentum buffer, so the update
is  b <- mu b + (g + wd theta);  theta <- theta - lr_t b.  optax.add_decayed_weights followed
by optax.sgd(momentum) is exactly that. With Nesterov momentum (Sutskever et al. 2013, "On
the importance of initialization and momentum in deep learning", ICML, in the form torch
uses) the buffer is the same and the step looks ahead along it:
  d = g + wd theta;  b <- mu b + d;  theta <- theta - lr_t (d + mu b),
which is optax.sgd(momentum, nesterov=True) after the same add_decayed_weights.
"""
from typing import Callable, Sequence, Union

import jax.numpy as jnp
import optax

Schedule = Callable[[int], float]

SCHEDULES = ("constant", "cosine", "step", "triangle", "epoch_cosine")


def triangle_schedule(lr: float, total_steps: int, peak_fraction: float = 0.23,
                      start_factor: float = 0.2, end_factor: float = 0.07) -> Schedule:
  """Linear warmup to `lr`, then linear decay: airbench's "triangle" learning rate.

  With P = floor(peak_fraction * T) and T = total_steps,
    lr_t = lr (s + (1 - s) t / P)                  for t < P,
    lr_t = lr (1 + (e - 1) (t - P) / (T - P))      for P <= t <= T,
  and lr e after T; s = start_factor, e = end_factor. The defaults are airbench94's
  (start 0.2, peak at 23% of training, end 0.07).

  References: K. Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
  arXiv:2404.00498 (code: KellerJordan/cifar10-airbench, airbench94.py, `triangle`).
  """
  if not 0.0 <= peak_fraction <= 1.0:
    raise ValueError(f"peak_fraction must be in [0, 1], got {peak_fraction}")
  if start_factor < 0 or end_factor < 0:
    raise ValueError(f"start and end factors must be >= 0, got {start_factor}, {end_factor}")
  total = max(int(total_steps), 1)
  peak = int(peak_fraction * total)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    up = start_factor + (1.0 - start_factor) * t / max(peak, 1)
    down = 1.0 + (end_factor - 1.0) * jnp.minimum(t - peak, total - peak) / max(total - peak, 1)
    return lr * jnp.where(t < peak, up, down)
  return schedule


def epoch_cosine_schedule(lr: float, epochs: int, steps_per_epoch: int) -> Schedule:
  """Cosine annealing to 0 that changes once per epoch: torch's CosineAnnealingLR(T_max=E)
  stepped after every epoch, as RUM trains its CIFAR models (Zhao et al. 2024, main_train.py):
    lr_t = lr (1 + cos(pi e / E)) / 2,   e = floor(t / steps_per_epoch)
  (Loshchilov & Hutter 2017, "SGDR", Eq. 5, with eta_min = 0 and no restarts)."""
  if epochs < 1 or steps_per_epoch < 1:
    raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}")

  def schedule(step):
    epoch = jnp.minimum(jnp.asarray(step) // steps_per_epoch, epochs)
    return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / epochs))
  return schedule


def make_schedule(name: str, lr: float, total_steps: int,
                  boundaries: Sequence[float] = (0.5, 0.75), decay: float = 0.1,
                  steps_per_epoch: int = 1) -> Schedule:
  """`constant`, `cosine` (to 0 over total_steps), `step` (x decay at fractions of training),
  `triangle` (airbench's linear warmup and decay, `triangle_schedule` with its defaults) or
  `epoch_cosine` (cosine that moves once per epoch of `steps_per_epoch` steps)."""
  if lr <= 0:
    raise ValueError(f"learning rate must be > 0, got {lr}")
  if name == "epoch_cosine":
    return epoch_cosine_schedule(lr, max(int(total_steps) // steps_per_epoch, 1), steps_per_epoch)
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, max(int(total_steps), 1))
  if name == "step":
    return optax.piecewise_constant_schedule(
        lr, {int(b * total_steps): decay for b in boundaries})
  if name == "triangle":
    return triangle_schedule(lr, total_steps)
  raise ValueError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")


def make_optimizer(lr: Union[float, Schedule], momentum: float = 0.9,
                   weight_decay: float = 5e-4, nesterov: bool = False) -> optax.GradientTransformation:
  """torch.optim.SGD(lr, momentum, weight_decay, nesterov) as an optax chain (module docstring)."""
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"momentum must be in [0, 1), got {momentum}")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  if nesterov and not momentum:
    raise ValueError("Nesterov momentum needs momentum > 0")
  parts = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts.append(optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))
  return optax.chain(*parts)
