"""Host-side state of a continual run and its compiled programs (`pipelines.continual`).

States carry the runner's padded_models rows; padded seeds copy seed 0's layout and buffers
(their results are discarded). Each program factory takes the runner first, so
`runner.compiled(factory, ...)` builds it once per set of arguments and reuses it.
"""
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rum_jax.continual import methods, tasks, unlearn_step
from rum_jax.data.augment import random_crop_flip
from rum_jax.training import engine, loop, optim


def pad(a: np.ndarray, padded: int) -> np.ndarray:
  a = np.asarray(a)
  return np.concatenate([a, np.repeat(a[:1], padded - len(a), axis=0)]) if len(a) < padded else a


def empty_buffer(num_seeds: int, num_tasks: int, size: int, x: np.ndarray) -> Dict[str, np.ndarray]:
  return {"x": np.zeros((num_seeds, num_tasks, size) + x.shape[1:], x.dtype),
          "y": np.zeros((num_seeds, num_tasks, size), np.int32),
          "weight": np.zeros((num_seeds, num_tasks, size), np.float32),
          "pos": np.zeros((num_seeds, num_tasks, size), np.int32)}


def held_out_set(x: np.ndarray, y: np.ndarray, positions, size: int, padded: int) -> Dict[str, np.ndarray]:
  """Held-out examples per seed ({"x", "y", "weight"} [padded, size, ...]): seed s's
  `positions[s]` of the split (x, y), padded with weight-0 rows; padding seeds copy seed 0."""
  out = {"x": np.zeros((padded, size) + x.shape[1:], x.dtype), "y": np.zeros((padded, size), np.int32),
         "weight": np.zeros((padded, size), np.float32)}
  for s in range(padded):
    p = np.asarray(positions[s if s < len(positions) else 0], np.int64)
    out["x"][s, :len(p)], out["y"][s, :len(p)], out["weight"][s, :len(p)] = x[p], y[p], 1.0
  return out


def initial_aux(layout: tasks.TaskLayout, padded: int, params: Any, capacity: tuple,
                train_x: np.ndarray, held_out_sizes: tuple = (0, 0)) -> Dict[str, Any]:
  """The per-seed constants of `methods` for a run that has learned nothing yet.

  capacity: (learn buffer size, unlearn buffer size) per task; held_out_sizes: the largest
  held-out set of one task and of the kept tasks (filled when a task is forgotten).
  """
  t = layout.num_tasks
  empty = lambda n: held_out_set(train_x, np.zeros(0, np.int32), [[]], n, padded)  # noqa: E731
  return {"class_task": pad(layout.class_task(), padded),
          "task_classes": pad(layout.task_classes(), padded),
          "active": np.zeros((padded, t), bool),
          "forget_task": np.zeros(padded, np.int32),
          "learn": empty_buffer(padded, t, capacity[0], train_x),
          "unlearn": empty_buffer(padded, t, capacity[1], train_x),
          "held_out": empty(held_out_sizes[0]),
          "kept_held_out": empty(held_out_sizes[1]),
          "salun_mask": jax.tree.map(lambda p: np.ones(np.shape(p), np.float32), params)}


def with_aux(states, **updates):
  return states.replace(aux={**states.aux, **updates})


def task_mask(task_set, num_tasks: int, padded: int) -> np.ndarray:
  mask = np.zeros(num_tasks, bool)
  mask[sorted(task_set)] = True
  return np.tile(mask, (padded, 1))


def opt_init_program(runner, tx):
  del runner
  return jax.jit(jax.vmap(tx.init))


def fresh_optimizer(runner, states, tx):
  init = runner.compiled(opt_init_program, tx)
  return states.replace(opt_state=jax.device_get(init(states.params)))


def sgd(runner, lr: float, clip_norm: float = 0.0):
  """Plain SGD as in GEM; one object per (runner, lr, clip_norm) so programs keyed by it are
  reused. clip_norm > 0 first rescales each update's gradient (after any GEM projection: a
  positive scale keeps its constraints) to global norm <= clip_norm (Pascanu et al. 2013, "On
  the difficulty of training recurrent neural networks", ICML)."""
  del runner
  tx = optim.make_optimizer(lr, 0.0, 0.0)
  return optax.chain(optax.clip_by_global_norm(clip_norm), tx) if clip_norm > 0 else tx


def learn_program(runner, forward, tx, algorithm: str, settings: methods.LearnSettings, augment: bool):
  """(states, plan, data) -> (states, metrics): one epoch of learning."""
  loss_fn, transform = methods.learn_update(algorithm, settings)
  return loop.make_epoch_fn(runner, forward, tx, loss_fn=loss_fn, grad_transform=transform,
                            augment=random_crop_flip if augment else None)


def unlearn_program(runner, forward, tx, method_name: str, settings: methods.ForgetSettings,
                    threshold: float, train_mode_check: bool, stop_set: str):
  """(states, done, plan, data) -> (states, done, metrics): one pass of unlearning; `done`
  [seeds] marks the seeds that have reached the stop rule (they stay as they are)."""
  forgetting = methods.CONTINUAL_METHODS.get(method_name).forgetting(settings)
  step = unlearn_step.make_unlearn_step(forward, tx, forgetting.update, threshold, train_mode_check, stop_set)

  def one_seed(state, done, plan, data):
    (state, done), metrics = engine.run_plan((state, done), data, plan, step)
    return state, done, metrics
  return runner.map(one_seed, n_seeded=3, donate=True)


def held_out_program(runner, forward):
  """states -> float [seeds, 2]: eval-mode accuracy on the forgotten task's held-out examples
  and on the kept tasks' (NaN where a set is empty): where a forgetting stands."""
  def one_seed(state):
    def accuracy(name):
      examples = unlearn_step.held_out(state, name)
      if examples[0].shape[0] == 0:  # no such examples (no kept task, no validation split)
        return jnp.float32(jnp.nan)
      value = unlearn_step.set_accuracy(forward, state, examples)[0]
      return jnp.where(jnp.sum(examples[2]) > 0, value, jnp.nan)
    return jnp.stack([accuracy("held_out"), accuracy("kept_held_out")])
  return runner.map(one_seed, n_seeded=1)


def rows_predict_program(runner, forward):
  """(states, rows [seeds, B], x) -> eval-mode logits [seeds, B, C] of each seed's rows of x."""
  def one_seed(state, rows, x):
    return forward(state.params, state.batch_stats, x[rows], train=False)[0]
  return runner.map(one_seed, n_seeded=2)


def predict_rows(runner, forward, states, x, rows: np.ndarray, batch_size: int, num_classes: int) -> np.ndarray:
  """Eval-mode logits [num_seeds, n, C] of every seed's own rows [num_seeds, n] of the
  replicated inputs x, in batches of one shape (the last padded with row 0)."""
  fn = runner.compiled(rows_predict_program, forward)
  n = rows.shape[1]
  if n == 0:
    return np.zeros((len(rows), 0, num_classes), np.float32)
  device_states = runner.shard(states)
  batch_size = min(batch_size, n)
  outs = []
  for start in range(0, n, batch_size):
    chunk = rows[:, start:start + batch_size]
    real = chunk.shape[1]
    if real < batch_size:
      chunk = np.concatenate([chunk, np.zeros((len(rows), batch_size - real), chunk.dtype)], axis=1)
    outs.append(runner.to_host(fn(device_states, runner.shard(chunk), x))[:, :real])
  return np.concatenate(outs, axis=1)


def saliency_program(runner, forward, method_name: str, settings: methods.ForgetSettings, fraction: float):
  """(states, one-step plan, data) -> SalUn masks of the task being forgotten, from the
  gradient of the method's objective on the plan's batch."""
  loss_fn = methods.CONTINUAL_METHODS.get(method_name).forgetting(settings).objective

  def one_seed(state, plan, data):
    batch = {name: engine.gather(data, p["idx"][0], p["weight"][0]) for name, p in plan.items()}
    return unlearn_step.saliency_mask(forward, state, batch, loss_fn, fraction)
  return runner.map(one_seed, n_seeded=2)


def violation_program(runner, forward, method_name: str, settings: methods.ForgetSettings):
  """(states, plan, data) -> bool [seeds, steps]: whether the gradient of the method's
  objective on each batch of the plan violates GEM's constraint of some retained task
  (<g, g_k> < 0, `unlearn_step.violates`), all at the parameters the forgetting starts from."""
  loss_fn = methods.CONTINUAL_METHODS.get(method_name).forgetting(settings).objective

  def one_seed(state, plan, data):
    def one_batch(j):
      batch = {name: engine.gather(data, p["idx"][j], p["weight"][j]) for name, p in plan.items()}
      return unlearn_step.violates(forward, state, batch, loss_fn)
    steps = next(iter(plan.values()))["idx"].shape[0]
    return jax.lax.map(one_batch, jnp.arange(steps))
  return runner.map(one_seed, n_seeded=2)


# What learning after a forget step uses (config.continual.lr_after_forget): "learn", the
# learning algorithm's lr (ours: each step starts its own optimizer), or "unlearn", the
# unlearning method's lr for every learning step after the first forget step (the thesis:
# its one torch optimizer keeps the lr the forgetting set and never resets it).
LR_AFTER_FORGET = ("learn", "unlearn")


def learning_lrs(sequence, learn_lr: float, unlearn_lr: float, after_forget: str) -> list:
  """The lr of every step of `sequence` that learns (None for forget steps)."""
  if after_forget not in LR_AFTER_FORGET:
    raise ValueError(f"unknown lr_after_forget {after_forget!r}; valid choices: {', '.join(LR_AFTER_FORGET)}")
  out, forgot = [], False
  for step in sequence:
    forgot = forgot or step.is_forget
    out.append(None if step.is_forget else unlearn_lr if forgot and after_forget == "unlearn" else learn_lr)
  return out
