"""Training-recipe options: label smoothing, Nesterov momentum, the triangle schedule.

Each is checked against an independent NumPy computation: the smoothed cross-entropy
written out, torch.optim.SGD's update rule (weight decay, momentum buffer, Nesterov
look-ahead) written out for two steps, and np.interp for the schedule.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpy import testing as npt

from rum_jax.models import create_model
from rum_jax.training import engine, optim
from rum_jax.training.state import Forward, init_state


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _smoothed_ce(logits, labels, a):
  k = logits.shape[-1]
  q = (1 - a) * np.eye(k)[labels] + a / k
  return -(q * _log_softmax(logits)).sum(-1)


@pytest.mark.parametrize("a", [0.0, 0.2, 1.0])
def test_label_smoothing_matches_the_formula(a):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 6)
  got = np.asarray(engine.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), a))
  npt.assert_allclose(got, _smoothed_ce(logits.astype(np.float64), labels, a), rtol=1e-5)
  # The same loss decomposed: (1 - a) CE + a * mean over classes of -log p_k.
  logp = _log_softmax(logits.astype(np.float64))
  npt.assert_allclose(got, -(1 - a) * logp[np.arange(6), labels] - a * logp.mean(-1), rtol=1e-5)


def test_label_smoothing_zero_is_the_unchanged_loss_and_bad_values_are_refused():
  logits = jnp.asarray([[2.0, -1.0, 0.5]])
  npt.assert_array_equal(engine.cross_entropy(logits, jnp.asarray([1])),
                         optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray([1])))
  with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
    engine.cross_entropy(logits, jnp.asarray([1]), 1.5)


def test_supervised_loss_is_the_weighted_mean_of_the_smoothed_loss():
  model = create_model("mlp", 3, hidden=(8,))
  forward = Forward(model)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(5, 4)).astype(np.float32)
  y = np.array([0, 2, 1, 1, 0])
  w = np.array([1.0, 1.0, 0.0, 1.0, 1.0], np.float32)
  state = init_state(model, optim.make_optimizer(0.1), jax.random.PRNGKey(0), x[:2])
  batch = {"train": {"x": x, "y": y, "weight": w}}
  loss, (_, metrics) = engine.supervised_loss(forward, state.params, state, batch, None,
                                              label_smoothing=0.3)
  logits = np.asarray(model.apply({"params": state.params}, x), np.float64)
  expected = (w * _smoothed_ce(logits, y, 0.3)).sum() / w.sum()
  npt.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(metrics["loss"]) == float(loss)


def _torch_sgd(theta, grad_fn, lrs, momentum, wd, nesterov):
  """torch.optim.SGD.step (dampening 0) written out: the reference update rule."""
  theta, buf = theta.copy(), None
  for lr in lrs:
    d = grad_fn(theta) + wd * theta
    buf = d.copy() if buf is None else momentum * buf + d
    theta = theta - lr * (d + momentum * buf if nesterov else buf)
  return theta


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch_update_rule_for_two_steps(nesterov):
  rng = np.random.default_rng(2)
  a = rng.normal(size=(4, 4))
  a = a @ a.T + np.eye(4)
  b = rng.normal(size=4)
  grad_fn = lambda t: a @ t + b  # gradient of 0.5 t'At + b't
  theta0 = rng.normal(size=4)
  lrs = [0.1, 0.05]
  tx = optim.make_optimizer(lambda step: jnp.where(step == 0, lrs[0], lrs[1]), momentum=0.85,
                            weight_decay=0.01, nesterov=nesterov)
  theta = jnp.asarray(theta0, jnp.float32)
  opt_state = tx.init(theta)
  for _ in lrs:
    updates, opt_state = tx.update(jnp.asarray(grad_fn(np.asarray(theta, np.float64)), jnp.float32),
                                   opt_state, theta)
    theta = optax.apply_updates(theta, updates)
  expected = _torch_sgd(theta0, grad_fn, lrs, 0.85, 0.01, nesterov)
  npt.assert_allclose(np.asarray(theta), expected, rtol=1e-5, atol=1e-6)
  # The two rules really differ on this problem, so the check tells them apart.
  other = _torch_sgd(theta0, grad_fn, lrs, 0.85, 0.01, not nesterov)
  assert np.abs(other - expected).max() > 1e-3


def test_nesterov_needs_momentum():
  with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
    optim.make_optimizer(0.1, momentum=0.0, nesterov=True)


@pytest.mark.parametrize("total", [100, 7])
def test_triangle_schedule_is_airbenchs_piecewise_linear_curve(total):
  schedule = optim.make_schedule("triangle", 2.0, total)
  peak = int(0.23 * total)
  steps = np.arange(total + 1)
  expected = 2.0 * np.interp(steps, [0, peak, total], [0.2, 1.0, 0.07])
  npt.assert_allclose([float(schedule(t)) for t in steps], expected, rtol=1e-6)
  assert float(schedule(total + 5)) == pytest.approx(2.0 * 0.07)
  custom = optim.triangle_schedule(1.0, 10, peak_fraction=0.5, start_factor=0.0, end_factor=0.0)
  npt.assert_allclose([float(custom(t)) for t in (0, 1, 5, 8, 10)], [0.0, 0.2, 1.0, 0.4, 0.0],
                      atol=1e-7)


def test_unknown_schedule_lists_triangle():
  with pytest.raises(ValueError, match="valid choices: constant, cosine, step, triangle"):
    optim.make_schedule("linear", 0.1, 10)


def test_a_jitted_train_step_uses_the_options():
  """Label smoothing and Nesterov plug into the engine through loss_fn and tx."""
  model = create_model("mlp", 3, hidden=(8,))
  rng = np.random.default_rng(3)
  batch = {"train": {"x": rng.normal(size=(4, 4)).astype(np.float32),
                     "y": np.array([0, 1, 2, 1]), "weight": np.ones(4, np.float32)}}
  tx = optim.make_optimizer(optim.make_schedule("triangle", 0.5, 10), 0.85, 1e-3, nesterov=True)
  state = init_state(model, tx, jax.random.PRNGKey(0), batch["train"]["x"][:2])
  step = jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx,
                                   loss_fn=functools.partial(engine.supervised_loss,
                                                             label_smoothing=0.2)))
  losses = []
  for _ in range(5):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 5 and losses[-1] < losses[0]


def test_fast_cifar_config_is_airbenchs_recipe_on_the_mean_loss():
  """configs/cifar10_memorization_fast.py's lr and weight decay, applied to the batch-mean
  gradient, make the same updates as airbench94's torch settings on the batch-sum gradient."""
  from rum_jax.configs import cifar10_memorization_fast
  c = cifar10_memorization_fast.get_config()
  assert (c.mode, c.model.name, c.train.schedule, c.memorization.num_models) == (
      "memorization", "airbench", "triangle", 2000)
  assert c.train.nesterov and c.train.label_smoothing == 0.2 and c.train.batch_size == 1024
  # airbench94.py: lr 11.5 and weight decay 0.0153 per 1024 examples, momentum 0.85.
  k = 1024 * (1 + 1 / (1 - 0.85))
  torch_lr, torch_wd = 11.5 / k, 0.0153 * 1024 / k / (11.5 / k)
  rng = np.random.default_rng(4)
  theta0 = rng.normal(size=6)
  a = rng.normal(size=(6, 6)) * 0.1
  mean_grad = lambda t: a @ t + 0.5  # any gradient field will do
  lrs = [float(optim.make_schedule("triangle", 1.0, 100)(t)) for t in range(2)]
  expected = _torch_sgd(theta0, lambda t: c.train.batch_size * mean_grad(t),
                        [torch_lr * f for f in lrs], c.train.momentum, torch_wd, True)
  got = _torch_sgd(theta0, mean_grad, [c.train.lr * f for f in lrs], c.train.momentum,
                   c.train.weight_decay, True)
  npt.assert_allclose(got, expected, rtol=1e-9)
