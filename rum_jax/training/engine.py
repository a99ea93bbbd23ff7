"""The one training engine: a jitted step `state, batch -> state, metrics` and an epoch scan.

Every training-like procedure in rum-jax (original training, memorization subsets,
unlearning methods, continual learning) is this engine with a different loss function
and/or gradient transform plugged in:

  loss_fn(forward, params, state, batch, rng) -> (loss, (new_batch_stats, metrics))
  grad_transform(forward, grads, state, batch, rng) -> grads   # e.g. SalUn mask, GEM projection

A batch is a dict of named streams, e.g. {"train": {...}} or {"retain": {...}, "forget": {...}};
each stream holds the gathered per-example arrays ("x", "y", "index", ...) and a "weight"
array. Weights are 0/1: they mask padding and let vmapped models each train on their own
subset of the data (the memorization estimator needs exactly that).
"""
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from rum_jax.training.state import Forward, TrainState

Batch = Dict[str, Dict[str, jnp.ndarray]]
Metrics = Dict[str, jnp.ndarray]
LossFn = Callable[[Forward, Any, TrainState, Batch, jnp.ndarray], Tuple[jnp.ndarray, Tuple[Any, Metrics]]]
GradTransform = Callable[[Forward, Any, TrainState, Batch, jnp.ndarray], Any]
Augment = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def weighted_mean(values: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
  """sum(w v) / sum(w), and 0 for an all-padding batch (no NaN from 0/0)."""
  total = jnp.sum(weight)
  return jnp.sum(values * weight) / jnp.maximum(total, 1e-12)


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                  label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example softmax cross-entropy with integer labels, optionally label-smoothed.

  With smoothing a and K classes the target is q = (1 - a) onehot(y) + a / K, and the loss
  is -sum_k q_k log softmax(z)_k (Szegedy et al. 2016, "Rethinking the Inception
  architecture for computer vision", Sec. 7; torch's CrossEntropyLoss(label_smoothing=a)).
  a = 0 is the plain cross-entropy -log softmax(z)_y.
  """
  if not 0.0 <= label_smoothing <= 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes, dtype=logits.dtype),
                                label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def supervised_loss(forward: Forward, params: Any, state: TrainState, batch: Batch,
                    rng: jnp.ndarray, stream: str = "train",
                    label_smoothing: float = 0.0) -> Tuple[jnp.ndarray, Tuple[Any, Metrics]]:
  """Weighted mean cross-entropy on one stream, in train mode (the default loss).

  `label_smoothing` (see `cross_entropy`) changes the training target only; the reported
  "loss" is the smoothed one, "accuracy" compares argmax with the true labels.
  """
  del rng
  b = batch[stream]
  logits, batch_stats = forward(params, state.batch_stats, b["x"], train=True)
  loss = weighted_mean(cross_entropy(logits, b["y"], label_smoothing), b["weight"])
  acc = weighted_mean((jnp.argmax(logits, -1) == b["y"]).astype(jnp.float32), b["weight"])
  return loss, (batch_stats, {"loss": loss, "accuracy": acc})


def train_step(state: TrainState, batch: Batch, *, forward: Forward,
               tx: optax.GradientTransformation, loss_fn: LossFn = supervised_loss,
               grad_transform: Optional[GradTransform] = None,
               augment: Optional[Augment] = None) -> Tuple[TrainState, Metrics]:
  """One optimizer update. Pure: jit it, vmap it over seeds, scan it over a plan."""
  rng, loss_rng, transform_rng, augment_rng = jax.random.split(state.rng, 4)
  if augment is not None:
    batch = {name: ({**s, "x": augment(augment_rng, s["x"])} if name in ("train", "retain") else s)
             for name, s in batch.items()}
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, forward), has_aux=True)
  (_, (batch_stats, metrics)), grads = grad_fn(state.params, state, batch, loss_rng)
  if grad_transform is not None:
    grads = grad_transform(forward, grads, state, batch, transform_rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, rng=rng)
  return new_state, metrics


def gather(data: Dict[str, jnp.ndarray], idx: jnp.ndarray, weight: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """Rows `idx` of every per-example array in `data`, plus their weights."""
  out = {k: v[idx] for k, v in data.items()}
  out["weight"] = weight
  return out


def run_plan(state: TrainState, data: Dict[str, jnp.ndarray], plan: Dict[str, Dict[str, jnp.ndarray]],
             step_fn: Callable[[TrainState, Batch], Tuple[TrainState, Metrics]]) -> Tuple[TrainState, Metrics]:
  """Runs `step_fn` over a plan with lax.scan (one compiled loop per epoch).

  data: per-example arrays of the whole split, resident on device.
  plan: stream name -> {"idx": int [steps, B], "weight": float [steps, B]}.
  Returns the final state and per-step metrics stacked along axis 0.
  """
  def body(carry, step_plan):
    batch = {name: gather(data, p["idx"], p["weight"]) for name, p in step_plan.items()}
    return step_fn(carry, batch)
  return jax.lax.scan(body, state, plan)
