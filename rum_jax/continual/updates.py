"""The pieces of continual learning and unlearning: losses and gradient transforms of the one
engine, from which the learning algorithms and the continual methods (`methods/`) are made.

Every update is `engine.train_step` with one of the losses below and, for GEM/A-GEM and the
unlearning methods, a `grad_transform` that projects the gradient against the episodic
memories held in the per-seed `TrainState.aux`:

  aux["class_task"]    int [C]      task of each class (`tasks.TaskLayout.class_task`)
  aux["task_classes"]  bool [T, C]  classes of each task (logit masks)
  aux["active"]        bool [T]     tasks whose learn buffer constrains the update: learned
                                    and not forgotten, excluding the task being learned or
                                    forgotten
  aux["forget_task"]   int []       the task being forgotten (unlearning steps)
  aux["learn"], aux["unlearn"]      the per-task buffers {"x" [T, M, ...], "y" [T, M],
                                    "weight" [T, M], "pos" [T, M]} (`buffers.memory_slot`)
  aux["salun_mask"]    params-shaped 0/1 saliency mask (SalUn option; ones when unused)

Every task always has its (zero-padded) rows, so T is fixed and each program compiles once;
inactive rows are ignored by the projections.

Learning:
- GEM (Lopez-Paz & Ranzato 2017, eq. 10-12): g_k = gradient of task k's whole learn buffer,
  computed for all T rows with one vmapped grad; `projection.gem_project` solves the dual QP.
- A-GEM (Chaudhry et al. 2019, eq. 11): g_ref = gradient of a random batch drawn from the
  learn buffers of all active tasks; standard rule (project only if g.g_ref < 0).

Memory gradients come from train-mode forward passes (BatchNorm normalises with each
buffer's own statistics), as in GEM's `observe`. In GEM's and the thesis' PyTorch code those
passes also move BatchNorm's running statistics, task after task, before the batch's own
pass; `with_memory_batch_stats` does the same (config.continual.memory_batch_stats),
otherwise the running statistics see the batches only.

Unlearning task t (the thesis "Machine Unlearning in Continual Learning", NegGEM and
friends; docs/continual.md). The forget batch has one or two streams (`FORGET_STREAMS`, cut
by `buffers.FORGET_BATCHES`): b examples of t's unlearn buffer ("forget") and, in the
thesis' pairing, b of its learn buffer ("forget_learn"); an objective adds the two batch
means, L_f = CE(forget) + CE(forget_learn):
- `negative_loss`: -s L_f, whose gradient is g_f = grad(-s L_f) (gradient ascent on the
  task, s the loss scale);
- `random_label_loss`: s L_f with random labels, each label replaced by one drawn uniformly
  from the OTHER classes of the example's task (the thesis' torch `random.shuffle` of a label
  tensor duplicated values, pytorch issue 18934; the intent, a relabelling, is done here);
and the projections of a method's update:
- `gem_transform`: GEM QP against the active (retained) tasks, margin = unlearn margin;
  `with_forget` adds the update's own gradient as one more constraint row, in the forgotten
  task's place (ALT-NegGEM: the QP's rows are all observed tasks, the forgotten one
  included, whose row is the forget gradient itself);
- `agem_transform`: A-GEM projection against a random batch of the retained tasks' buffers;
- `neggrad_plus_transform`: x = a mean_{r in R} g_r + (1 - a) g_f, g_r the retained
  learn-buffer gradients (NegGrad+ of Kurmanji et al. 2023 with the buffers as retain set).
With the SalUn option (`masked`) the gradient of the objective is multiplied by the saliency
mask (Fan et al. 2024, Sec. 4; top-s fraction of |grad of the method's objective| on one
batch, `unlearn_step.saliency_mask`) before the projection, in every update of the forgetting.
"""
from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp

from rum_jax.continual import projection
from rum_jax.continual.tasks import mask_logits
from rum_jax.memorization import proxies
from rum_jax.training import engine
from rum_jax.training.state import Forward, TrainState

PyTree = Any
Update = Tuple[engine.LossFn, engine.GradTransform]

# The streams of a forget batch, in the order of their forward passes: the forgotten task's
# unlearn-buffer batch, then its learn-buffer batch (absent with `buffers.union_batches`).
FORGET_STREAMS = ("forget", "forget_learn")


# ---------------------------------------------------------------------------------------
# Losses (engine.LossFn signature).


def masked(state: TrainState, logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  return mask_logits(logits, labels, state.aux["class_task"], state.aux["task_classes"])


def _buffer_loss(forward: Forward, params: PyTree, state: TrainState, x: jnp.ndarray,
                 y: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
  """Weighted task-masked cross-entropy of a buffer, train mode (as GEM's `observe`)."""
  logits, _ = forward(params, state.batch_stats, x, train=True)
  return engine.weighted_mean(engine.cross_entropy(masked(state, logits, y), y), weight)


def learn_loss(forward: Forward, params: PyTree, state: TrainState, batch: engine.Batch,
               rng: jnp.ndarray) -> Tuple[jnp.ndarray, Tuple[Any, engine.Metrics]]:
  """Task-masked cross-entropy on the "train" stream, plus per-example learning events.

  The events (`memorization.proxies.batch_learning_events` of the masked logits, before the
  update) let the run score memorization with the one-run proxies of the task's own
  training, when no score file is given.
  """
  del rng
  b = batch["train"]
  logits, batch_stats = forward(params, state.batch_stats, b["x"], train=True)
  logits = masked(state, logits, b["y"])
  loss = engine.weighted_mean(engine.cross_entropy(logits, b["y"]), b["weight"])
  correct = (jnp.argmax(logits, -1) == b["y"]).astype(jnp.float32)
  metrics = {"loss": loss, "accuracy": engine.weighted_mean(correct, b["weight"]),
             **proxies.event_metrics(logits, b["y"], b)}
  return loss, (batch_stats, metrics)


def _forget_cross_entropy(forward: Forward, params: PyTree, state: TrainState,
                          batch: engine.Batch, relabel: Callable) -> Tuple[jnp.ndarray, Any]:
  """L_f = sum over the batch's FORGET_STREAMS of the task-masked CE mean, with labels
  relabel(i, y) for stream i; one train-mode pass per stream, running statistics threaded
  through them in order."""
  total, batch_stats = 0.0, state.batch_stats
  for i, name in enumerate(s for s in FORGET_STREAMS if s in batch):
    b = batch[name]
    labels = relabel(i, b["y"])
    logits, batch_stats = forward(params, batch_stats, b["x"], train=True)
    total = total + engine.weighted_mean(
        engine.cross_entropy(masked(state, logits, labels), labels), b["weight"])
  return total, batch_stats


def negative_loss(forward: Forward, params: PyTree, state: TrainState, batch: engine.Batch,
                  rng: jnp.ndarray, scale: float = 1.0) -> Tuple[jnp.ndarray, Tuple[Any, engine.Metrics]]:
  """-s L_f: its gradient is the thesis' forget gradient g_f = grad(-s (CE(unlearn batch) +
  CE(learn batch)))."""
  del rng
  ce, batch_stats = _forget_cross_entropy(forward, params, state, batch, lambda i, y: y)
  return -scale * ce, (batch_stats, {"loss": -scale * ce, "forget_loss": ce})


def random_other_labels(rng: jnp.ndarray, labels: jnp.ndarray, class_task: jnp.ndarray,
                        task_classes: jnp.ndarray) -> jnp.ndarray:
  """For each example, a label drawn uniformly from its task's classes other than its own."""
  classes = jnp.arange(task_classes.shape[1])
  allowed = task_classes[jnp.clip(class_task[labels], 0)] & (classes[None, :] != labels[:, None])
  return jax.random.categorical(rng, jnp.where(allowed, 0.0, -jnp.inf), axis=-1).astype(labels.dtype)


def random_label_loss(forward: Forward, params: PyTree, state: TrainState, batch: engine.Batch,
                      rng: jnp.ndarray, scale: float = 1.0) -> Tuple[jnp.ndarray, Tuple[Any, engine.Metrics]]:
  """s L_f with every label replaced by another class of its task (`random_other_labels`)."""
  relabel = lambda i, y: random_other_labels(jax.random.fold_in(rng, i), y, state.aux["class_task"],
                                             state.aux["task_classes"])
  ce, batch_stats = _forget_cross_entropy(forward, params, state, batch, relabel)
  return scale * ce, (batch_stats, {"loss": scale * ce})


def memory_batch_stats(forward: Forward, params: PyTree, state: TrainState) -> PyTree:
  """BatchNorm running statistics after a train-mode pass over every active task's learn
  buffer, one task after another in task order (what the memory-gradient passes of GEM's
  `observe` do to a PyTorch model's statistics). The passes carry no gradient."""
  params = jax.lax.stop_gradient(params)

  def one_task(batch_stats, task):
    x, active = task
    _, moved = forward(params, batch_stats, x, train=True)
    return jax.tree.map(lambda new, old: jnp.where(active, new, old), moved, batch_stats), None

  batch_stats, _ = jax.lax.scan(one_task, state.batch_stats,
                                (state.aux["learn"]["x"], state.aux["active"]))
  return batch_stats


def with_memory_batch_stats(loss_fn: engine.LossFn) -> engine.LossFn:
  """`loss_fn` run after `memory_batch_stats` has moved the running statistics, so the
  update ends with them moved by the memories and then by its own batch (GEM's order).
  Models without BatchNorm are unaffected (no extra pass)."""
  def loss(forward, params, state, batch, rng):
    if state.batch_stats:
      state = state.replace(batch_stats=memory_batch_stats(forward, params, state))
    return loss_fn(forward, params, state, batch, rng)
  return loss


# ---------------------------------------------------------------------------------------
# Memory gradients and projections (engine.GradTransform signature).


def memory_gradients(forward: Forward, state: TrainState) -> PyTree:
  """g_k for every task k (one vmapped grad over the T learn buffers): params' pytree with a
  leading axis T. Rows of empty buffers are 0."""
  mem = state.aux["learn"]
  grad = jax.grad(_buffer_loss, argnums=1)
  return jax.vmap(lambda x, y, w: grad(forward, state.params, state, x, y, w))(
      mem["x"], mem["y"], mem["weight"])


def reference_batch(rng: jnp.ndarray, available: jnp.ndarray, size: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(idx, weight) of A-GEM's reference batch over flattened buffer rows.

  With n >= size available rows (available > 0), `size` of them drawn uniformly without
  replacement, weight 1. With fewer, every available row once (weight 1), the rest of the
  batch repeats them with weight 0: the loss is the mean over the available rows and the
  batch holds no padding row (whose zeros would enter BatchNorm's batch statistics).
  """
  keys = jnp.where(available > 0, jax.random.uniform(rng, available.shape), jnp.inf)
  order = jnp.argsort(keys)  # the available rows first, in random order
  n = jnp.sum(available > 0)
  slots = jnp.arange(size)
  return order[slots % jnp.maximum(n, 1)], (slots < n).astype(jnp.float32)


def reference_gradient(forward: Forward, state: TrainState, rng: jnp.ndarray, size: int) -> PyTree:
  """A-GEM's g_ref: gradient of `reference_batch` of `size` examples from the learn buffers of
  the active tasks; 0 when none is active."""
  mem = state.aux["learn"]
  num_tasks, slots = mem["y"].shape
  available = (state.aux["active"][:, None] * mem["weight"]).reshape(-1)
  idx, weight = reference_batch(rng, available, min(size, available.size))
  flat = lambda a: a.reshape((num_tasks * slots,) + a.shape[2:])[idx]
  return jax.grad(_buffer_loss, argnums=1)(forward, state.params, state, flat(mem["x"]),
                                           flat(mem["y"]), weight)


def _apply_mask(grads: PyTree, state: TrainState, masked: bool) -> PyTree:
  return jax.tree.map(jnp.multiply, grads, state.aux["salun_mask"]) if masked else grads


def gem_transform(margin: float, eps: float = 1e-3, masked: bool = False,
                  with_forget: bool = False) -> engine.GradTransform:
  """GEM projection against the active tasks' learn buffers.

  with_forget: also constrain <g~, g> >= 0 for the (masked) gradient g itself, in the
    forgotten task's row (ALT-NegGEM); that row is inactive otherwise.
  """
  def transform(forward, grads, state, batch, rng):
    del batch, rng
    grads = _apply_mask(grads, state, masked)
    rows = memory_gradients(forward, state)
    active = state.aux["active"]
    if with_forget:
      t = state.aux["forget_task"]
      rows = jax.tree.map(lambda r, g: r.at[t].set(g), rows, grads)
      active = active.at[t].set(True)
    return projection.gem_project_tree(grads, rows, active, margin, eps)
  return transform


def agem_transform(ref_size: int, masked: bool = False) -> engine.GradTransform:
  """A-GEM projection against a random batch of the active tasks' learn buffers."""
  def transform(forward, grads, state, batch, rng):
    del batch
    grads = _apply_mask(grads, state, masked)
    return projection.agem_project_tree(grads, reference_gradient(forward, state, rng, ref_size))
  return transform


def neggrad_plus_transform(alpha: float, masked: bool = False) -> engine.GradTransform:
  """x = alpha * mean_{active r} g_r + (1 - alpha) * g_f (g_f = the loss gradient, masked).

  With no active task the mean is taken as 0, leaving (1 - alpha) g_f.
  """
  def transform(forward, grads, state, batch, rng):
    del batch, rng
    grads = _apply_mask(grads, state, masked)
    active = state.aux["active"].astype(jnp.float32)
    share = active / jnp.maximum(jnp.sum(active), 1.0)
    rows = memory_gradients(forward, state)
    return jax.tree.map(lambda r, g: alpha * jnp.tensordot(share, r, axes=1) + (1 - alpha) * g,
                        rows, grads)
  return transform


def identity(forward, grads, state, batch, rng):
  """Plain SGD: the gradient unchanged."""
  del forward, state, batch, rng
  return grads
