"""The floor at a model's own shapes: the same matmuls as a training step, timed alone.

A large square matmul (`common.matmul_rate`) is the fastest this CPU multiplies, but the
models here multiply small matrices (batches of 64-128 against layers of 40-256 units), which
no library runs at that rate. This floor takes, for every model of a benchmark, the matmuls
of one step at the model's own shapes and batch:

  forward   h_l = h_{l-1} W_l                        (every layer l)
  backward  dW_l = h_{l-1}^T d_l,  d_{l-1} = d_l W_l^T  (no input gradient for the first)

and runs `steps` of them for all models in ONE jitted loop, the models split over the same
devices as the benchmark (shard_map), with nothing else: no bias, activation, loss, optimizer
(only W_l -= 1e-6 dW_l, so each step depends on the last), gather, metric or host transfer.
The models of a device run either one after another (each model's steps in a row, as the
engine does on a CPU) or vmapped (batched matmuls); the faster of the two is the floor.

A "pass" (`Pass`) is one forward(+backward) of a batch through an MLP; a step may have
several (GEM: the batch and the 19 constraint tasks' memories through the SAME weights, the
memories' forward and input gradients as one matmul and their weight gradients per task).
"""
import dataclasses
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from bench import common


@dataclasses.dataclass(frozen=True)
class Pass:
  """A forward (and backward) pass of `groups` x `batch` examples through an MLP of `sizes`.

  groups > 1: that many batches through the same weights, each with its own weight gradient
  (GEM's per-task memory gradients)."""
  sizes: Tuple[int, ...]
  batch: int
  backward: bool = True
  groups: int = 1

  @property
  def flops(self) -> float:
    """2 x multiply-adds of the pass's matmuls (module docstring)."""
    macs = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
    if self.backward:
      macs = 3 * macs - self.sizes[0] * self.sizes[1]
    return 2.0 * macs * self.batch * self.groups


def _step(passes: Sequence[Pass], inputs):
  """One step of one model: (weights of every pass, a running scalar) -> the same, updated.

  The scalar feeds back into the inputs, so a forward-only pass is not hoisted out of the loop."""
  def step(i, carry):
    weights, scale = carry
    new_weights, total = [], scale
    for p, ws, x in zip(passes, weights, inputs):
      h = [x * scale]
      for w in ws:
        h.append(jnp.einsum("gbi,io->gbo", h[-1], w))
      total = total + 1e-12 * jnp.sum(h[-1][0, 0])
      if not p.backward:
        new_weights.append(ws)
        continue
      d, grads = h[-1], [None] * len(ws)
      for l in reversed(range(len(ws))):
        grads[l] = jnp.einsum("gbi,gbo->io", h[l], d) if p.groups == 1 else jnp.einsum("gbi,gbo->gio", h[l], d)
        if l:
          d = jnp.einsum("gbo,io->gbi", d, ws[l])
      if p.groups > 1:
        # Each task's gradient is kept (GEM's QP needs them apart): the update takes a different
        # one each step, so XLA can neither merge them into one matmul nor drop any.
        grads = [jax.lax.dynamic_index_in_dim(g, i % p.groups, keepdims=False) for g in grads]
      new_weights.append(tuple(w - 1e-6 * g for w, g in zip(ws, grads)))
    return tuple(new_weights), total
  return step


def _program(passes: Sequence[Pass], models: int, steps: int, vmapped: bool, devices) -> callable:
  n_dev = min(len(devices), models)
  per_device = math.ceil(models / n_dev)
  mesh = Mesh(np.array(devices[:n_dev]), ("models",))
  rng = np.random.default_rng(0)
  total = per_device * n_dev
  weights = tuple(tuple(
      (rng.normal(size=(total, a, b)) / np.sqrt(a)).astype(np.float32) for a, b in zip(p.sizes[:-1], p.sizes[1:]))
      for p in passes)
  inputs = tuple(rng.normal(size=(total, p.groups, p.batch, p.sizes[0])).astype(np.float32) for p in passes)

  def one(ws, xs):
    return jax.lax.fori_loop(0, steps, _step(passes, xs), (ws, jnp.float32(1.0)))

  def local(ws, xs):
    if vmapped:
      return jax.vmap(one)(ws, xs)
    return jax.lax.map(lambda a: one(*a), (ws, xs))

  fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("models"), P("models")),
                             out_specs=P("models"), check_vma=False))
  sharding = jax.sharding.NamedSharding(mesh, P("models"))
  ws_dev, xs_dev = jax.device_put((weights, inputs), sharding)
  return lambda: jax.block_until_ready(fn(ws_dev, xs_dev))


@dataclasses.dataclass(frozen=True)
class Floor:
  """Seconds per step of all models at their own shapes, and how they ran fastest."""
  step_seconds: float
  arrangement: str   # "looped" or "vmapped" (the models of a device)
  step_flops: float  # FLOPs of one step of all models

  def time(self, steps: int) -> float:
    """The floor of `steps` steps of every model."""
    return self.step_seconds * steps

  @property
  def rate(self) -> float:
    """FLOP/s of the matmuls at these shapes."""
    return self.step_flops / self.step_seconds


def measure(passes: Sequence[Pass], models: int, target_seconds: float = 0.4, repeats: int = 3,
            devices=None) -> Floor:
  """The floor of one step of `models` models (module docstring), best of looped and vmapped.

  The loop's length is set so that one run takes about `target_seconds`; best of `repeats`.
  """
  devices = list(devices if devices is not None else jax.devices())
  passes = list(passes)
  step_flops = models * sum(p.flops for p in passes)
  best = None
  for vmapped in (False, True):
    probe = _program(passes, models, 4, vmapped, devices)
    probe()
    t = max(common.best_time(probe, 2) / 4, 1e-7)
    steps = max(4, int(target_seconds / t))
    fn = _program(passes, models, steps, vmapped, devices)
    fn()
    per_step = common.best_time(fn, repeats) / steps
    if best is None or per_step < best.step_seconds:
      best = Floor(per_step, "vmapped" if vmapped else "looped", step_flops)
  return best


def mlp_training(sizes: Sequence[int], batch: int, models: int, **kwargs) -> Floor:
  """The floor of one SGD step of `models` MLPs of layer widths `sizes` (input first)."""
  return measure([Pass(tuple(sizes), batch)], models, **kwargs)


def mlp_inference(sizes: Sequence[int], batch: int, models: int, **kwargs) -> Floor:
  """The floor of one forward pass of a batch through `models` MLPs (evaluation)."""
  return measure([Pass(tuple(sizes), batch, backward=False)], models, **kwargs)


def describe(floor: Floor) -> str:
  return f"{floor.rate / 1e9:.0f} GFLOP/s at these shapes ({floor.arrangement})"
