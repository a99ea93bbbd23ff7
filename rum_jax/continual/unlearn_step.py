"""One batch of continual unlearning with the stop rule, and the SalUn mask's batch.

Forgetting stops (`unlearn_step`) once the accuracy on a stop set of the forgotten task t,
measured before each batch, is <= a threshold. The stop set (`STOP_SETS`,
config.continual.stop_set) is t's whole unlearn buffer (the thesis), or t's held-out
examples, a part of its training data never trained on (`aux["held_out"]`: matched
forgetting, the same target for every method, measured on more than a buffer's few examples).
It is measured in eval mode, or in train mode as the thesis did (batch statistics of the
set, and BatchNorm's running statistics move).
"""
import functools
from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
import optax

from rum_jax.continual import projection
from rum_jax.continual.updates import masked, memory_gradients
from rum_jax.registry import Registry
from rum_jax.training import engine
from rum_jax.training.state import Forward, TrainState

PyTree = Any


def _forget_slot(state: TrainState, name: str):
  buf = state.aux[name]
  t = state.aux["forget_task"]
  return buf["x"][t], buf["y"][t], buf["weight"][t], buf["pos"][t]


def set_accuracy(forward: Forward, state: TrainState, examples: Tuple[jnp.ndarray, ...],
                 train: bool = False) -> Tuple[jnp.ndarray, Any]:
  """Task-masked accuracy on examples (x, y, weight), and the running statistics after that
  pass: unchanged in eval mode; in train mode (the thesis' check) the examples are normalised
  with their own statistics and the running statistics move."""
  x, y, w = examples
  logits, batch_stats = forward(state.params, state.batch_stats, x, train=train)
  correct = (jnp.argmax(masked(state, logits, y), -1) == y).astype(jnp.float32)
  return engine.weighted_mean(correct, w), batch_stats


def held_out(state: TrainState, name: str = "held_out") -> Tuple[jnp.ndarray, ...]:
  """(x, y, weight) of a held-out set in aux: "held_out" (the forgotten task's) or
  "kept_held_out" (the tasks the sequence keeps)."""
  return state.aux[name]["x"], state.aux[name]["y"], state.aux[name]["weight"]


# What the stop rule measures (config.continual.stop_set): state -> (x, y, weight).
STOP_SETS: Registry[Callable[[TrainState], Tuple[jnp.ndarray, ...]]] = Registry("stop set")
STOP_SETS.register("unlearn_buffer")(lambda state: _forget_slot(state, "unlearn")[:3])
STOP_SETS.register("held_out")(held_out)


# How the stop rule measures the unlearn buffer's accuracy (config.continual.stop_mode): in
# eval mode (running statistics), or in train mode as the thesis' loop does (its model is in
# train mode while it forgets).
CHECK_MODES: Registry[bool] = Registry("stop-rule mode")
CHECK_MODES.register("eval")(False)
CHECK_MODES.register("train")(True)


def unlearn_step(carry: Tuple[TrainState, jnp.ndarray], batch: engine.Batch, *, forward: Forward,
                 tx: optax.GradientTransformation, update: Callable, threshold: float,
                 train_mode_check: bool, stop_set: str = "unlearn_buffer"
                 ) -> Tuple[Tuple[TrainState, jnp.ndarray], engine.Metrics]:
  """One batch of unlearning: check the stop rule, then (if not stopped) the method's
  `update` (`methods.Forgetting.update`).

  carry: (state, done); done is set once the stop set's accuracy, measured before the batch
  (as the thesis does), is <= threshold, and from then on every step is a no-op, so vmapped
  seeds stop independently. In train mode the check's pass moves BatchNorm's running
  statistics, the stopping check's included (the thesis' loop), none after it.
  """
  state, done = carry
  accuracy, checked_stats = set_accuracy(forward, state, STOP_SETS.get(stop_set)(state), train=train_mode_check)
  go = jnp.logical_not(done) & (accuracy > threshold)
  checked = state.replace(batch_stats=checked_stats)
  new, metrics = update(checked, batch, forward=forward, tx=tx)
  pick = lambda cond, a, b: jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)
  # aux is constant (and holds the buffers): select only what a step changes. A step that
  # stops keeps the check's statistics; a step after the stop keeps everything.
  stats = pick(go, new.batch_stats, pick(done, state.batch_stats, checked_stats))
  state = state.replace(step=jnp.where(go, new.step, state.step),
                        params=pick(go, new.params, state.params), batch_stats=stats,
                        opt_state=pick(go, new.opt_state, state.opt_state),
                        rng=jnp.where(go, new.rng, state.rng))
  metrics = {"stop_accuracy": accuracy, "updated": go.astype(jnp.float32), **metrics}
  return (state, jnp.logical_not(go)), metrics


def saliency_mask(forward: Forward, state: TrainState, batch: engine.Batch, loss_fn: engine.LossFn,
                  fraction: float) -> PyTree:
  """SalUn mask of the forgotten task: 1 on the top `fraction` of weights by |grad| of
  `loss_fn` (the method's objective) on `batch`, else 0."""
  grads = jax.grad(lambda p: loss_fn(forward, p, state, batch, state.rng)[0])(state.params)
  return projection.topk_mask_tree(grads, fraction)


def violates(forward: Forward, state: TrainState, batch: engine.Batch, loss_fn: engine.LossFn) -> jnp.ndarray:
  """Whether grad of `loss_fn` on `batch` violates GEM's constraint of an active task,
  <g, g_k> < 0 (Lopez-Paz & Ranzato 2017, eq. 11), i.e. whether a GEM projection would
  change it: the thesis' ALT-NegGEM takes its SalUn mask from the first such batch."""
  grads = jax.grad(lambda p: loss_fn(forward, p, state, batch, state.rng)[0])(state.params)
  rows = memory_gradients(forward, state)
  dots = sum(jnp.sum((r * g[None]).reshape(r.shape[0], -1), axis=1)
             for r, g in zip(jax.tree.leaves(rows), jax.tree.leaves(grads)))
  return jnp.any(state.aux["active"] & (dots < 0))


def make_unlearn_step(forward: Forward, tx: optax.GradientTransformation, update: Callable,
                      threshold: float, train_mode_check: bool = False,
                      stop_set: str = "unlearn_buffer") -> Callable:
  """`unlearn_step` with its settings bound: ((state, done), batch) -> ((state, done), metrics)."""
  return functools.partial(unlearn_step, forward=forward, tx=tx, update=update, threshold=threshold,
                           train_mode_check=train_mode_check, stop_set=stop_set)
