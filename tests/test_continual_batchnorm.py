"""BatchNorm running statistics in continual steps, against hand-computed moving averages.

The model is BatchNorm on the inputs followed by one linear layer, so a batch's statistics
are the plain mean and (biased) variance of its inputs and running statistics follow
r <- m r + (1 - m) stat with Flax's m = 0.9 (torch's momentum 0.1).
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rum_jax.continual import buffers, methods, unlearn_step
from rum_jax.training import engine, optim
from rum_jax.training.state import Forward, init_state

M = 0.9  # Flax BatchNorm momentum (running <- M running + (1 - M) batch statistic)


class NormLinear(nn.Module):
  """BatchNorm of the raw inputs, then logits = Dense(normalised inputs)."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False, features: bool = False):
    x = nn.BatchNorm(use_running_average=not train, momentum=M, epsilon=1e-5)(x.reshape((len(x), -1)))
    return x if features else nn.Dense(self.num_classes)(x)


def _state(x, y, learn_rows, unlearn_rows, active, forget_task=1, lr=0.1, mean=(1.0, -1.0), var=(2.0, 3.0)):
  """3 tasks of 2 classes; per task t the buffers hold rows learn_rows[t] / unlearn_rows[t]."""
  model = NormLinear(6)
  tx = optim.make_optimizer(lr, 0.0, 0.0)
  state = init_state(model, tx, jax.random.PRNGKey(0), jnp.asarray(x[:2]))
  stats = {"BatchNorm_0": {"mean": jnp.asarray(mean, jnp.float32), "var": jnp.asarray(var, jnp.float32)}}
  class_task = np.repeat(np.arange(3), 2).astype(np.int32)
  aux = {"class_task": class_task, "task_classes": np.eye(3, dtype=bool)[class_task].T,
         "active": np.array(active), "forget_task": np.int32(forget_task),
         "salun_mask": jax.tree.map(jnp.ones_like, state.params)}
  for name, rows in (("learn", learn_rows), ("unlearn", unlearn_rows)):
    size = max(len(r) for r in rows)
    slots = [buffers.memory_slot(r, size, x, y) for r in rows]
    aux[name] = {k: np.stack([s[k] for s in slots]) for k in slots[0]}
  return model, tx, state.replace(batch_stats=stats, aux=jax.tree.map(jnp.asarray, aux))


def _data(seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(6), 8).astype(np.int32)
  x = (rng.normal(size=(48, 2)) + 3.0 * (y // 2)[:, None] * np.array([1.0, -2.0])).astype(np.float32)
  rows = [np.flatnonzero(y // 2 == t) for t in range(3)]
  return x, y, [r[:4] for r in rows], [r[4:] for r in rows]


def _ema(r, values):
  for v in values:
    r = M * r + (1 - M) * v
  return r


def _running(state):
  bn = state.batch_stats["BatchNorm_0"]
  return np.asarray(bn["mean"], np.float64), np.asarray(bn["var"], np.float64)


def _train_batch(x, y, rows):
  return {"train": {"x": x[rows], "y": y[rows], "pos": rows.astype(np.int32),
                    "weight": np.ones(len(rows), np.float32)}}


@functools.lru_cache(maxsize=None)  # one compiled step per setting
def _learn_program(model, tx, algorithm, memory_batch_stats):
  loss_fn, transform = methods.learn_update(
      algorithm, methods.LearnSettings(ref_size=8, memory_batch_stats=memory_batch_stats))
  return jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx, loss_fn=loss_fn,
                                   grad_transform=transform))


def _learn_step(model, tx, state, algorithm, batch, memory_batch_stats):
  return _learn_program(model, tx, algorithm, memory_batch_stats)(state, batch)[0]


def test_memory_passes_move_running_statistics_task_by_task_before_the_batch():
  x, y, learn, unlearn = _data()
  model, tx, state = _state(x, y, learn, unlearn, active=(True, False, True))
  r_mean, r_var = _running(state)
  batch_rows = unlearn[1]
  for algorithm in ("gem", "agem"):
    new = _learn_step(model, tx, state, algorithm, _train_batch(x, y, batch_rows), True)
    # GEM's observe: task 0's memory, task 2's memory, then the batch (task 1).
    passes = [x[learn[0]], x[learn[2]], x[batch_rows]]
    mean, var = _running(new)
    np.testing.assert_allclose(mean, _ema(r_mean, [p.mean(0) for p in passes]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, _ema(r_var, [p.var(0) for p in passes]), rtol=1e-5, atol=1e-6)
  # Discarding the memory passes' statistics: only the batch moves them.
  new = _learn_step(model, tx, state, "gem", _train_batch(x, y, batch_rows), False)
  np.testing.assert_allclose(_running(new)[0], _ema(r_mean, [x[batch_rows].mean(0)]), rtol=1e-5, atol=1e-6)
  # Plain SGD computes no memory gradient, so no memory pass moves anything.
  new = _learn_step(model, tx, state, "sgd", _train_batch(x, y, batch_rows), True)
  np.testing.assert_allclose(_running(new)[0], _ema(r_mean, [x[batch_rows].mean(0)]), rtol=1e-5, atol=1e-6)


def test_unlearning_memory_passes_precede_both_forget_batches():
  x, y, learn, unlearn = _data(1)
  model, tx, state = _state(x, y, learn, unlearn, active=(True, False, True))
  r_mean, _ = _running(state)
  u, l = unlearn[1][:2], learn[1][:2]
  batch = {"forget": _train_batch(x, y, u)["train"], "forget_learn": _train_batch(x, y, l)["train"]}
  update = methods.CONTINUAL_METHODS.get("negagem").forgetting(methods.ForgetSettings(ref_size=8)).update
  step = unlearn_step.make_unlearn_step(Forward(model), tx, update, threshold=-1.0, train_mode_check=False)
  (new, _), _ = jax.jit(step)((state, jnp.array(False)), batch)
  expected = _ema(r_mean, [x[learn[0]].mean(0), x[learn[2]].mean(0), x[u].mean(0), x[l].mean(0)])
  np.testing.assert_allclose(_running(new)[0], expected, rtol=1e-5, atol=1e-6)


def test_train_mode_stop_check_uses_buffer_statistics_and_moves_them_once():
  x, y, learn, unlearn = _data(2)
  model, tx, state = _state(x, y, learn, unlearn, active=(True, False, True), mean=(9.0, 9.0))
  r_mean, r_var = _running(state)
  u, l = unlearn[1][:2], learn[1][:2]
  batch = {"forget": _train_batch(x, y, u)["train"], "forget_learn": _train_batch(x, y, l)["train"]}
  # Accuracy of task 1's unlearn buffer normalised with its own statistics, by hand.
  buf = x[unlearn[1]]
  z = (buf - buf.mean(0)) / np.sqrt(buf.var(0) + 1e-5)
  bn_scale = np.asarray(state.params["BatchNorm_0"]["scale"])
  bn_bias = np.asarray(state.params["BatchNorm_0"]["bias"])
  dense = state.params["Dense_0"]
  logits = (z * bn_scale + bn_bias) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
  train_accuracy = np.mean(logits[:, 2:4].argmax(1) == y[unlearn[1]] - 2)
  updates = methods.CONTINUAL_METHODS.get("rl_gem").forgetting(methods.ForgetSettings()).update
  stop = jax.jit(unlearn_step.make_unlearn_step(Forward(model), tx, updates, threshold=1.0, train_mode_check=True))
  (stopped, done), m = stop((state, jnp.array(False)), batch)
  np.testing.assert_allclose(m["stop_accuracy"], train_accuracy, rtol=1e-6)
  assert bool(done) and float(m["updated"]) == 0
  jax.tree.map(np.testing.assert_array_equal, stopped.params, state.params)
  # The stopping check's pass moved the statistics once, toward the buffer's.
  np.testing.assert_allclose(_running(stopped)[0], _ema(r_mean, [buf.mean(0)]), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_running(stopped)[1], _ema(r_var, [buf.var(0)]), rtol=1e-5, atol=1e-6)
  # After the stop nothing moves any more.
  (again, _), _ = stop((stopped, done), batch)
  jax.tree.map(np.testing.assert_array_equal, again.batch_stats, stopped.batch_stats)
  # In eval mode the check leaves the statistics alone.
  check = jax.jit(unlearn_step.make_unlearn_step(Forward(model), tx, updates, threshold=1.0, train_mode_check=False))
  (same, _), _ = check((state, jnp.array(False)), batch)
  jax.tree.map(np.testing.assert_array_equal, same.batch_stats, state.batch_stats)


def test_memory_statistics_keep_an_old_task_readable_in_eval_mode():
  # One input feature. Task 0's classifier (held fixed: lr 0) predicts class 1 where the
  # normalised input is > 0, i.e. where x > running mean r; its classes are x in [-10, 5)
  # (class 0) and (5, 20] (class 1), so its eval accuracy is ((r + 10) / 15 + 1) / 2 for r in
  # [-10, 5]. Learning task 1 (inputs around -5) drags r from task 0's mean 5 toward -5; with
  # GEM's memory passes over task 0's buffer, r settles near (0.9 * 5 - 5) / 1.9 instead.
  grid = np.linspace(-10, 20, 301)
  x0 = np.concatenate([grid[grid < 5], grid[grid > 5]])[:, None].astype(np.float32)
  y0 = (x0[:, 0] > 5).astype(np.int32)
  x1 = np.linspace(-7, -3, 40)[:, None].astype(np.float32)
  y1 = np.repeat([2, 3], 20).astype(np.int32)
  x, y = np.concatenate([x0, x1]), np.concatenate([y0, y1])
  n0 = len(x0)
  memory = np.arange(0, n0, 5)  # task 0's learn buffer: every 5th example
  rows1 = n0 + np.arange(40)
  model, tx, state = _state(x, y, [memory, rows1[:10], rows1[:10]], [memory, rows1[:10], rows1[:10]],
                            active=(True, False, False), lr=0.0, mean=(5.0,), var=(50.0,))
  kernel = np.zeros((1, 6), np.float32)
  kernel[0, :2] = (-1.0, 1.0)
  state = state.replace(params={**state.params, "Dense_0": {"kernel": jnp.asarray(kernel),
                                                            "bias": jnp.zeros(6)}})
  batches = [rows1[i * 10:(i + 1) * 10] for i in range(4)] * 10  # 40 steps of task 1
  accuracy = {}
  for memory_batch_stats in (False, True):
    s = state
    for rows in batches:
      s = _learn_step(model, tx, s, "gem", _train_batch(x, y, rows), memory_batch_stats)
    r = _running(s)[0][0]
    passes = [x[rows].mean() for rows in batches]
    if memory_batch_stats:
      passes = [v for b in passes for v in (x[memory].mean(), b)]
    np.testing.assert_allclose(r, _ema(5.0, passes), rtol=1e-4, atol=1e-4)
    logits, _ = Forward(model)(s.params, s.batch_stats, jnp.asarray(x0), train=False)
    accuracy[memory_batch_stats] = np.mean(np.asarray(logits)[:, :2].argmax(1) == y0)
    np.testing.assert_allclose(accuracy[memory_batch_stats], np.mean((x0[:, 0] > r) == y0), atol=1e-9)
  assert accuracy[True] > accuracy[False] + 0.1, accuracy
