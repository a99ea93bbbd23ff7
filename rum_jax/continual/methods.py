"""Continual learning and unlearning as losses and gradient transforms of the one engine.

Every update here is `engine.train_step` with one of the losses below and, for GEM/A-GEM
and the unlearning methods, a `grad_transform` that projects the gradient against the
episodic memories held in the per-seed `TrainState.aux`:

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

Unlearning task t (the thesis "Machine Unlearning in Continual Learning", NegGEM and
friends), one of two objectives per update (`OBJECTIVES`), on a batch of t's buffers:
- "negative": g_f = grad(-CE(forget batch))  (gradient ascent on the task);
- "random_label": grad(CE(forget batch, random labels)), each label replaced by one drawn
  uniformly from the OTHER classes of the example's task (the thesis shuffled the labels of
  the batch, which leaves many of them unchanged);
then one projection (`PROJECTIONS`):
- "gem": GEM QP against the active (retained) tasks, margin = unlearn margin;
- "gem_with_forget": the same with the update's own gradient as one more constraint row
  (ALT-NegGEM: the projected step may not undo the forgetting direction);
- "agem": A-GEM projection against a random batch of the retained tasks' learn buffers;
- "neggrad_plus": x = a mean_{r in R} g_r + (1 - a) g_f, g_r the retained learn-buffer
  gradients (NegGrad+ of Kurmanji et al. 2023 with the buffers as retain set).
With the SalUn option the gradient of the objective is multiplied by the saliency mask
(Fan et al. 2024, Sec. 4; top-s fraction of |grad of the forget loss|) before the
projection, in every update of the forgetting.
"""
import dataclasses
import functools
from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from rum_jax.continual import projection
from rum_jax.continual.tasks import mask_logits
from rum_jax.memorization import proxies
from rum_jax.registry import Registry
from rum_jax.training import engine
from rum_jax.training.state import Forward, TrainState

PyTree = Any
Update = Tuple[engine.LossFn, engine.GradTransform]



@dataclasses.dataclass(frozen=True)
class ProjectionSettings:
  """What a projection or learning algorithm is built from (hashable: compiled programs are
  cached by it).

  margin / eps: GEM's memory strength and QP ridge; ref_size: A-GEM's reference batch;
  alpha: NegGrad+'s weight of the retained tasks; masked: apply the SalUn mask first.
  """
  margin: float = 0.5
  eps: float = 1e-3
  ref_size: int = 256
  alpha: float = 0.5
  masked: bool = False


# ---------------------------------------------------------------------------------------
# Losses (engine.LossFn signature).


def _masked(state: TrainState, logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  return mask_logits(logits, labels, state.aux["class_task"], state.aux["task_classes"])


def _buffer_loss(forward: Forward, params: PyTree, state: TrainState, x: jnp.ndarray,
                 y: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
  """Weighted task-masked cross-entropy of a buffer, train mode (as GEM's `observe`)."""
  logits, _ = forward(params, state.batch_stats, x, train=True)
  return engine.weighted_mean(engine.cross_entropy(_masked(state, logits, y), y), weight)


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
  logits = _masked(state, logits, b["y"])
  loss = engine.weighted_mean(engine.cross_entropy(logits, b["y"]), b["weight"])
  correct = (jnp.argmax(logits, -1) == b["y"]).astype(jnp.float32)
  metrics = {"loss": loss, "accuracy": engine.weighted_mean(correct, b["weight"]),
             **proxies.event_metrics(logits, b["y"], b)}
  return loss, (batch_stats, metrics)


def negative_loss(forward: Forward, params: PyTree, state: TrainState, batch: engine.Batch,
                  rng: jnp.ndarray) -> Tuple[jnp.ndarray, Tuple[Any, engine.Metrics]]:
  """-CE on the "forget" stream: its gradient is g_f = grad(-CE(forget batch))."""
  del rng
  b = batch["forget"]
  logits, batch_stats = forward(params, state.batch_stats, b["x"], train=True)
  ce = engine.weighted_mean(engine.cross_entropy(_masked(state, logits, b["y"]), b["y"]), b["weight"])
  return -ce, (batch_stats, {"loss": -ce, "forget_loss": ce})


def random_other_labels(rng: jnp.ndarray, labels: jnp.ndarray, class_task: jnp.ndarray,
                        task_classes: jnp.ndarray) -> jnp.ndarray:
  """For each example, a label drawn uniformly from its task's classes other than its own."""
  classes = jnp.arange(task_classes.shape[1])
  allowed = task_classes[jnp.clip(class_task[labels], 0)] & (classes[None, :] != labels[:, None])
  return jax.random.categorical(rng, jnp.where(allowed, 0.0, -jnp.inf), axis=-1).astype(labels.dtype)


def random_label_loss(forward: Forward, params: PyTree, state: TrainState, batch: engine.Batch,
                      rng: jnp.ndarray) -> Tuple[jnp.ndarray, Tuple[Any, engine.Metrics]]:
  """CE on the "forget" stream with every label replaced by another class of its task."""
  b = batch["forget"]
  fake = random_other_labels(rng, b["y"], state.aux["class_task"], state.aux["task_classes"])
  logits, batch_stats = forward(params, state.batch_stats, b["x"], train=True)
  loss = engine.weighted_mean(engine.cross_entropy(_masked(state, logits, fake), fake), b["weight"])
  return loss, (batch_stats, {"loss": loss})


OBJECTIVES: Registry[engine.LossFn] = Registry("continual unlearning objective")
OBJECTIVES.register("negative")(negative_loss)
OBJECTIVES.register("random_label")(random_label_loss)


# ---------------------------------------------------------------------------------------
# Memory gradients and projections (engine.GradTransform signature).


def memory_gradients(forward: Forward, state: TrainState) -> PyTree:
  """g_k for every task k (one vmapped grad over the T learn buffers): params' pytree with a
  leading axis T. Rows of empty buffers are 0."""
  mem = state.aux["learn"]
  grad = jax.grad(_buffer_loss, argnums=1)
  return jax.vmap(lambda x, y, w: grad(forward, state.params, state, x, y, w))(
      mem["x"], mem["y"], mem["weight"])


def reference_gradient(forward: Forward, state: TrainState, rng: jnp.ndarray, size: int) -> PyTree:
  """A-GEM's g_ref: gradient of `size` examples drawn without replacement from the learn
  buffers of the active tasks (all of them when there are fewer); 0 when none is active."""
  mem = state.aux["learn"]
  num_tasks, slots = mem["y"].shape
  available = (state.aux["active"][:, None] * mem["weight"]).reshape(-1)
  total = jnp.sum(available)
  p = jnp.where(total > 0, available / jnp.maximum(total, 1e-12), 1.0 / available.size)
  idx = jax.random.choice(rng, available.size, (min(size, available.size),), replace=False, p=p)
  flat = lambda a: a.reshape((num_tasks * slots,) + a.shape[2:])[idx]
  weight = (available[idx] > 0).astype(jnp.float32)
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


def _identity(forward, grads, state, batch, rng):
  """Plain SGD: the gradient unchanged."""
  del forward, state, batch, rng
  return grads


# Factories ProjectionSettings -> GradTransform, by the names configs use.
PROJECTIONS: Registry[Callable[[ProjectionSettings], engine.GradTransform]] = Registry("projection")
PROJECTIONS.register("gem")(lambda p: gem_transform(p.margin, p.eps, p.masked))
PROJECTIONS.register("gem_with_forget")(lambda p: gem_transform(p.margin, p.eps, p.masked, with_forget=True))
PROJECTIONS.register("agem")(lambda p: agem_transform(p.ref_size, p.masked))
PROJECTIONS.register("neggrad_plus")(lambda p: neggrad_plus_transform(p.alpha, p.masked))

# How a task is learned (config.continual.learn_algorithm): the grad_transform of its steps.
LEARN_ALGORITHMS: Registry[Callable[[ProjectionSettings], engine.GradTransform]] = Registry("learning algorithm")
LEARN_ALGORITHMS.register("sgd")(lambda p: _identity)
LEARN_ALGORITHMS.register("gem")(lambda p: gem_transform(p.margin, p.eps))
LEARN_ALGORITHMS.register("agem")(lambda p: agem_transform(p.ref_size))


def learn_transform(algorithm: str, settings: ProjectionSettings) -> engine.GradTransform:
  """The grad_transform of a learning step of `algorithm` (an entry of LEARN_ALGORITHMS)."""
  return LEARN_ALGORITHMS.get(algorithm)(settings)


# ---------------------------------------------------------------------------------------
# Unlearning methods.


@dataclasses.dataclass(frozen=True)
class UnlearnMethod:
  """A continual unlearning method: its updates per iteration and its learning algorithm.

  updates: (objective, projection) pairs applied in order at every iteration, each one
    optimizer update (NegGEM: a gradient-ascent step, then a random-label step).
  learn_algorithm: how tasks are learned when config `learn_algorithm` is "auto".
  """
  name: str
  updates: Tuple[Tuple[str, str], ...]
  learn_algorithm: str


METHODS: Registry[UnlearnMethod] = Registry("continual unlearning method")
for _method in (
    UnlearnMethod("neggem", (("negative", "gem"), ("random_label", "gem")), "gem"),
    UnlearnMethod("negagem", (("negative", "agem"), ("random_label", "agem")), "agem"),
    UnlearnMethod("rl_gem", (("random_label", "gem"),), "gem"),
    UnlearnMethod("rl_agem", (("random_label", "agem"),), "agem"),
    UnlearnMethod("alt_neggem", (("negative", "gem_with_forget"),
                                 ("random_label", "gem_with_forget")), "gem"),
    UnlearnMethod("neggrad_plus", (("negative", "neggrad_plus"),), "gem"),
):
  METHODS.register(_method.name)(_method)


def unlearn_updates(method: UnlearnMethod, settings: ProjectionSettings) -> List[Update]:
  """(loss_fn, grad_transform) of every update of one iteration of `method`."""
  return [(OBJECTIVES.get(objective), PROJECTIONS.get(projection)(settings))
          for objective, projection in method.updates]


def _forget_slot(state: TrainState, name: str):
  buf = state.aux[name]
  t = state.aux["forget_task"]
  return buf["x"][t], buf["y"][t], buf["weight"][t], buf["pos"][t]


def unlearn_buffer_accuracy(forward: Forward, state: TrainState) -> jnp.ndarray:
  """Task-masked accuracy on the forgotten task's unlearn buffer, in eval mode."""
  x, y, w, _ = _forget_slot(state, "unlearn")
  logits, _ = forward(state.params, state.batch_stats, x, train=False)
  correct = (jnp.argmax(_masked(state, logits, y), -1) == y).astype(jnp.float32)
  return engine.weighted_mean(correct, w)


def unlearn_step(state: TrainState, batch: engine.Batch, *, forward: Forward,
                 tx: optax.GradientTransformation, updates: Sequence[Update],
                 threshold: float) -> Tuple[TrainState, engine.Metrics]:
  """One unlearning iteration, skipped once the unlearn buffer's accuracy is <= threshold.

  The accuracy is measured (eval mode) before the iteration, as the thesis does before each
  batch; a seed that has reached it keeps its state, so vmapped seeds stop independently.
  """
  accuracy = unlearn_buffer_accuracy(forward, state)
  go = accuracy > threshold
  new, metrics = state, {}
  for i, (loss_fn, transform) in enumerate(updates):
    new, m = engine.train_step(new, batch, forward=forward, tx=tx, loss_fn=loss_fn,
                               grad_transform=transform)
    metrics.update({f"update{i}_{k}": v for k, v in m.items()})
  keep = lambda a, b: jnp.where(go, a, b)
  # aux is constant (and holds the buffers): select only what an update changes.
  state = state.replace(step=keep(new.step, state.step),
                        params=jax.tree.map(keep, new.params, state.params),
                        batch_stats=jax.tree.map(keep, new.batch_stats, state.batch_stats),
                        opt_state=jax.tree.map(keep, new.opt_state, state.opt_state),
                        rng=keep(new.rng, state.rng))
  return state, {"buffer_accuracy": accuracy, "updated": go.astype(jnp.float32), **metrics}


def saliency_mask(forward: Forward, state: TrainState, fraction: float) -> PyTree:
  """SalUn mask of the forgotten task: 1 on the top `fraction` of weights by |grad| of the
  cross-entropy over its learn and unlearn buffers (each example counted once), else 0."""
  lx, ly, lw, lpos = _forget_slot(state, "learn")
  ux, uy, uw, upos = _forget_slot(state, "unlearn")
  in_learn = jnp.any((upos[:, None] == lpos[None, :]) & (lw[None, :] > 0), axis=1)
  grads = jax.grad(_buffer_loss, argnums=1)(
      forward, state.params, state, jnp.concatenate([lx, ux]), jnp.concatenate([ly, uy]),
      jnp.concatenate([lw, jnp.where(in_learn, 0.0, uw)]))
  return projection.topk_mask_tree(grads, fraction)


def make_unlearn_step(forward: Forward, tx: optax.GradientTransformation,
                      updates: Sequence[Update], threshold: float) -> Callable:
  """`unlearn_step` with its settings bound: (state, batch) -> (state, metrics)."""
  return functools.partial(unlearn_step, forward=forward, tx=tx, updates=tuple(updates),
                           threshold=threshold)
