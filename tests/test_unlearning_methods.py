"""Each unlearning method's loss and update against NumPy closed forms on a linear softmax model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import special, stats

from rum_jax import config_validation
from rum_jax.models import create_model
from rum_jax.training import engine, optim
from rum_jax.training.state import Forward, init_state
from rum_jax.unlearning import UNLEARNING_METHODS, gradients, saliency, woodfisher
from rum_jax.unlearning.methods import common, l1_sparse, neggrad, neggrad_plus, salun, scrub

D, C = 5, 4


def _softmax(z):
  return special.softmax(np.asarray(z, np.float64), axis=-1)


def _onehot(y):
  return np.eye(C)[y]


def _linear(seed=0, n=7, lr=0.1, wd=0.01, aux=None):
  """A linear softmax model (MLP without hidden layers), its optimizer, and random data."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, D)).astype(np.float32)
  y = rng.integers(0, C, n).astype(np.int32)
  model = create_model("mlp", C, hidden=())
  tx = optim.make_optimizer(lr, momentum=0.9, weight_decay=wd)
  state = init_state(model, tx, jax.random.PRNGKey(seed), jnp.asarray(x), aux=aux)
  return Forward(model), tx, state, x, y


def _wb(params):
  p = params["Dense_0"]
  return np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)


def _stream(x, y, weight=None, pos=None):
  n = len(y)
  return {"x": x, "y": y, "weight": np.ones(n, np.float32) if weight is None else weight,
          "pos": np.arange(n, dtype=np.int32) if pos is None else pos}


def _one_sgd_step(w, b, dlogits, x, lr, wd):
  """torch.optim.SGD's first step (momentum buffer = gradient): theta - lr (g + wd theta)."""
  gw, gb = x.T @ dlogits, dlogits.sum(0)
  return w - lr * (gw + wd * w), b - lr * (gb + wd * b)


def _step(forward, tx, loss_fn, grad_transform=None):
  return jax.jit(functools.partial(engine.train_step, forward=forward, tx=tx, loss_fn=loss_fn,
                                   grad_transform=grad_transform))


def test_tempered_kl_matches_numpy():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(6, C)) * 3, rng.normal(size=(6, C)) * 3
  for temperature in (1.0, 4.0, 0.5):
    p, q = _softmax(t / temperature), _softmax(s / temperature)
    expected = temperature ** 2 * special.rel_entr(p, q).sum(-1)
    np.testing.assert_allclose(scrub.tempered_kl(jnp.asarray(s), jnp.asarray(t), temperature), expected,
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scrub.tempered_kl(jnp.asarray(s), jnp.asarray(s), 4.0), 0.0, atol=1e-5)


def _hp(**values):
  """A model's swept settings as the losses read them (state.aux["hp"])."""
  return {k: jnp.float32(v) for k, v in values.items()}


def _teacher_aux(seed=5):
  _, _, teacher, _, _ = _linear(seed)
  return {"teacher": {"params": teacher.params, "batch_stats": {}}}


def test_scrub_min_step_against_closed_form():
  """gamma CE + beta KL_T on retain; d/dz [T^2 KL(p_t || softmax(z/T))] = T (softmax(z/T) - p_t)."""
  temperature, gamma, beta, lr, wd = 4.0, 0.7, 2.0, 0.1, 0.01
  aux = {**_teacher_aux(), "hp": _hp(temperature=temperature, gamma=gamma, beta=beta)}
  forward, tx, state, x, y = _linear(lr=lr, wd=wd, aux=aux)
  weight = np.array([1, 1, 1, 1, 1, 0, 0], np.float32)  # the last two rows are padding
  batch = {"retain": _stream(x, y, weight)}
  new_state, metrics = _step(forward, tx, scrub.scrub_min_loss)(state, batch)

  w, b = _wb(state.params)
  wt, bt = _wb(aux["teacher"]["params"])
  z, zt = x @ w + b, x @ wt + bt
  p_t = _softmax(zt / temperature)
  kl = temperature ** 2 * special.rel_entr(p_t, _softmax(z / temperature)).sum(-1)
  ce = -np.log(_softmax(z)[np.arange(len(y)), y])
  m = weight / weight.sum()
  np.testing.assert_allclose(metrics["loss"], gamma * (m @ ce) + beta * (m @ kl), rtol=1e-5)
  dz = m[:, None] * (gamma * (_softmax(z) - _onehot(y)) + beta * temperature * (_softmax(z / temperature) - p_t))
  w1, b1 = _one_sgd_step(w, b, dz, x, lr, wd)
  np.testing.assert_allclose(new_state.params["Dense_0"]["kernel"], w1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state.params["Dense_0"]["bias"], b1, rtol=1e-5, atol=1e-6)


def test_scrub_max_step_ascends_the_kl():
  temperature, lr, wd = 2.0, 0.1, 0.0
  aux = {**_teacher_aux(), "hp": _hp(temperature=temperature)}
  forward, tx, state, x, y = _linear(lr=lr, wd=wd, aux=aux)
  new_state, metrics = _step(forward, tx, scrub.scrub_max_loss)(state, {"forget": _stream(x, y)})
  w, b = _wb(state.params)
  wt, bt = _wb(aux["teacher"]["params"])
  p_t = _softmax((x @ wt + bt) / temperature)
  q = _softmax((x @ w + b) / temperature)
  np.testing.assert_allclose(metrics["forget_kl"], temperature ** 2 * special.rel_entr(p_t, q).sum(-1).mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], -metrics["forget_kl"])
  dz = -temperature * (q - p_t) / len(y)
  w1, b1 = _one_sgd_step(w, b, dz, x, lr, wd)
  np.testing.assert_allclose(new_state.params["Dense_0"]["kernel"], w1, rtol=1e-5, atol=1e-6)


def test_l1_sparse_decay_schedule_and_loss():
  """a_t = alpha (1 - epoch / E), epoch = step // steps_per_epoch; loss = CE + a_t sum |theta|."""
  alpha, epochs, steps_per_epoch = 0.3, 4, 3
  forward, _, state, x, y = _linear(aux={"hp": _hp(alpha=alpha)})
  loss_fn = l1_sparse.l1_sparse_loss(epochs, steps_per_epoch)
  w, b = _wb(state.params)
  ce = -np.log(_softmax(x @ w + b)[np.arange(len(y)), y]).mean()
  l1 = np.abs(w).sum() + np.abs(b).sum()
  for step, epoch in ((0, 0), (2, 0), (3, 1), (7, 2), (11, 3)):
    st = state.replace(step=jnp.asarray(step, jnp.int32))
    loss, (_, metrics) = loss_fn(forward, st.params, st, {"retain": _stream(x, y)}, None)
    coefficient = alpha * (1 - epoch / epochs)
    np.testing.assert_allclose(metrics["l1_coefficient"], coefficient, rtol=1e-6)
    np.testing.assert_allclose(loss, ce + coefficient * l1, rtol=1e-5)
  # The L1 term's gradient is a_t sign(theta).
  grads = jax.grad(lambda p: loss_fn(forward, p, state, {"retain": _stream(x, y)}, None)[0])(state.params)
  gw = x.T @ ((_softmax(x @ w + b) - _onehot(y)) / len(y)) + alpha * np.sign(w)
  np.testing.assert_allclose(grads["Dense_0"]["kernel"], gw, rtol=1e-5, atol=1e-6)


def test_neggrad_and_neggrad_plus_mixing():
  """NegGrad: -CE(forget). NegGrad+: alpha CE(retain) - (1 - alpha) CE(forget), one SGD step."""
  alpha, lr, wd = 0.8, 0.05, 0.001
  forward, tx, state, x, y = _linear(n=9, lr=lr, wd=wd, aux={"hp": _hp(alpha=alpha)})
  xr, yr, xf, yf = x[:6], y[:6], x[6:], y[6:]
  w, b = _wb(state.params)
  pr, pf = _softmax(xr @ w + b), _softmax(xf @ w + b)
  ce_r = -np.log(pr[np.arange(6), yr]).mean()
  ce_f = -np.log(pf[np.arange(3), yf]).mean()

  loss, _ = neggrad.neggrad_loss(forward, state.params, state, {"forget": _stream(xf, yf)}, None)
  np.testing.assert_allclose(loss, -ce_f, rtol=1e-5)

  batch = {"retain": _stream(xr, yr), "forget": _stream(xf, yf)}
  new_state, metrics = _step(forward, tx, neggrad_plus.neggrad_plus_loss)(state, batch)
  np.testing.assert_allclose(metrics["loss"], alpha * ce_r - (1 - alpha) * ce_f, rtol=1e-5)
  dz_r = alpha * (pr - _onehot(yr)) / 6
  dz_f = -(1 - alpha) * (pf - _onehot(yf)) / 3
  w1, b1 = _one_sgd_step(w, b, np.concatenate([dz_r, dz_f]), np.concatenate([xr, xf]), lr, wd)
  np.testing.assert_allclose(new_state.params["Dense_0"]["kernel"], w1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state.params["Dense_0"]["bias"], b1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_classes", [2, 3, 10, 100])
def test_random_labels_are_never_the_true_label_and_uniform_over_the_rest(num_classes):
  labels = jnp.asarray(np.arange(30_000) % num_classes, jnp.int32)
  new = np.asarray(common.random_relabel(jax.random.PRNGKey(num_classes), labels, num_classes))
  assert new.min() >= 0 and new.max() < num_classes
  assert not np.any(new == np.asarray(labels))
  # The shift (y' - y) mod C is uniform on {1, ..., C-1}.
  shift = (new - np.asarray(labels)) % num_classes
  counts = np.bincount(shift, minlength=num_classes)[1:]
  if num_classes > 2:
    assert stats.chisquare(counts).pvalue > 1e-4
  else:
    assert counts.tolist() == [30_000]


def test_random_label_loss_relabels_only_forget_examples():
  forward, _, state, x, y = _linear(n=8)
  w, b = _wb(state.params)
  p = _softmax(x @ w + b)
  rng = jax.random.PRNGKey(3)
  loss_fn = common.random_label_loss(C)
  is_forget = np.array([0, 1, 0, 0, 1, 1, 0, 0], bool)
  st = state.replace(aux={"forget_mask": jnp.asarray(is_forget)})
  loss, (_, metrics) = loss_fn(forward, st.params, st, {"train": _stream(x, y)}, rng)
  drawn = np.asarray(common.random_relabel(rng, jnp.asarray(y), C))
  labels = np.where(is_forget, drawn, y)
  assert np.all(labels[is_forget] != y[is_forget]) and np.all(labels[~is_forget] == y[~is_forget])
  np.testing.assert_allclose(loss, -np.log(p[np.arange(8), labels]).mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="at least 2 classes"):
    common.random_label_loss(1)


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_saliency_mask_keeps_exactly_the_top_fraction(ratio):
  rng = np.random.default_rng(0)
  magnitudes = np.round(rng.random(1001), 2)  # many ties
  magnitudes[:200] = 0.0
  mask = saliency.top_fraction_mask(magnitudes, ratio)
  assert mask.sum() == round(ratio * 1001)
  if ratio < 1:
    assert magnitudes[mask == 1].min() >= magnitudes[mask == 0].max()
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    saliency.top_fraction_mask(magnitudes, 0.0)


def test_saliency_magnitudes_and_masked_step():
  """|grad of mean forget CE| in closed form; a masked SalUn step moves masked weights by weight decay only."""
  lr, wd = 0.1, 0.01
  forward, tx, state, x, y = _linear(n=9, lr=lr, wd=wd)
  data = {"x": x, "y": y, "pos": np.arange(9, dtype=np.int32)}
  plan = {"idx": np.array([[0, 2, 4, 6], [8, 0, 0, 0]], np.int32),
          "weight": np.array([[1, 1, 1, 1], [1, 0, 0, 0]], np.float32)}
  g = jax.jit(functools.partial(saliency.saliency_magnitudes, forward=forward))(state, plan, data)
  w, b = _wb(state.params)
  f = np.array([0, 2, 4, 6, 8])
  dz = (_softmax(x[f] @ w + b) - _onehot(y[f])) / len(f)
  expected = ravel_pytree({"Dense_0": {"bias": dz.sum(0), "kernel": x[f].T @ dz}})[0]
  np.testing.assert_allclose(g, np.abs(expected), rtol=1e-5, atol=1e-7)

  stacked = jax.tree.map(lambda p: np.asarray(p)[None], state.params)
  mask = jax.tree.map(lambda m: m[0], saliency.masks_like(np.asarray(g)[None], 0.5, stacked))
  assert sum(float(m.sum()) for m in jax.tree.leaves(mask)) == round(0.5 * g.size)
  st = state.replace(aux={"forget_mask": jnp.zeros(9, bool), "saliency_mask": mask})
  new_state, _ = _step(forward, tx, common.random_label_loss(C), salun.apply_saliency_mask)(
      st, {"train": _stream(x, y)})
  keep = np.asarray(mask["Dense_0"]["kernel"]) == 1
  w1, _ = _one_sgd_step(w, b, (_softmax(x @ w + b) - _onehot(y)) / 9, x, lr, wd)
  got = np.asarray(new_state.params["Dense_0"]["kernel"])
  np.testing.assert_allclose(got[keep], w1[keep], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[~keep], (w - lr * wd * w)[~keep], rtol=1e-6, atol=1e-7)


def _per_example_numpy(w, b, x, y):
  dz = _softmax(x @ w + b) - _onehot(y)
  return np.stack([ravel_pytree({"Dense_0": {"bias": d, "kernel": np.outer(xi, d)}})[0] for xi, d in zip(x, dz)])


def test_wfisher_against_dense_inverse_fisher():
  """theta + alpha F^-1 v, F = lambda I + G^T G / n, v = n_f/(n_f + n_r) (gbar_F - gbar_R)."""
  alpha, damping = 0.7, 0.05
  forward, _, state, x, y = _linear(n=23)
  data = {"x": x, "y": y, "pos": np.arange(23, dtype=np.int32)}
  forget, retain = np.arange(5), np.arange(5, 23)
  samples = np.arange(5, 16)  # n = 11 Fisher samples in chunks of 4: the last one is padded

  def chunks(p, size):
    k = -(-len(p) // size)
    idx = np.zeros(k * size, np.int32)
    idx[:len(p)] = p
    weight = (np.arange(k * size) < len(p)).astype(np.float32)
    return {"idx": idx.reshape(k, size), "weight": weight.reshape(k, size)}

  w, b = _wb(state.params)
  g_all = _per_example_numpy(w, b, x, y)
  chunk = engine.gather(data, chunks(samples, 4)["idx"][2], chunks(samples, 4)["weight"][2])
  np.testing.assert_allclose(gradients.per_example_gradients(forward, state.params, {}, chunk),
                             np.concatenate([g_all[samples[8:]], np.zeros((1, g_all.shape[1]))]),
                             rtol=1e-5, atol=1e-6)

  update = jax.jit(functools.partial(woodfisher.wfisher_update, forward=forward, alpha=alpha, damping=damping))
  new_state = update(state, chunks(forget, 3), chunks(retain, 7), chunks(samples, 4), data)

  v = len(forget) / 23 * (g_all[forget].mean(0) - g_all[retain].mean(0))
  g = g_all[samples]
  fisher = damping * np.eye(g.shape[1]) + g.T @ g / len(samples)
  expected = ravel_pytree(state.params)[0] + alpha * np.linalg.solve(fisher, v)
  np.testing.assert_allclose(ravel_pytree(new_state.params)[0], expected, rtol=2e-4, atol=1e-6)


def test_inverse_fisher_vector_product_is_the_sherman_morrison_recursion():
  """The Woodbury form equals n explicit rank-one Sherman-Morrison updates of F_0^-1 = I / lambda."""
  rng = np.random.default_rng(1)
  n, p, damping = 6, 9, 0.3
  g = rng.normal(size=(n, p))
  v = rng.normal(size=p)
  inverse = np.eye(p) / damping
  for gj in g:  # F_j = F_{j-1} + g_j g_j^T / n
    u = inverse @ gj
    inverse -= np.outer(u, u) / (n + gj @ u)
  padded = np.concatenate([g, np.zeros((2, p))]).reshape(2, 4, p)
  k = woodfisher.inverse_fisher_vector_product(lambda a: jnp.asarray(padded)[a], 2, jnp.asarray(v), n, damping)
  np.testing.assert_allclose(k, inverse @ v, rtol=1e-4, atol=1e-5)


def test_unknown_method_lists_the_valid_ones():
  with pytest.raises(ValueError, match="valid choices: finetune, l1_sparse, neggrad, neggrad_plus, "
                                       "random_label, retrain, rum, salun, scrub, wfisher"):
    UNLEARNING_METHODS.get("gradient_ascent")


def _config(**unlearn):
  from rum_jax.configs import default
  config = default.get_config()
  config.unlearn.update(unlearn)
  return config


@pytest.mark.parametrize("edit,message", [
    (lambda c: setattr(c.unlearn, "method", "ga"), "config.unlearn.method 'ga' is unknown; valid choices: finetune"),
    (lambda c: setattr(c.unlearn.salun, "mask_ratio", 0.0), r"unlearn.salun.mask_ratio must be a number in \(0"),
    (lambda c: setattr(c.unlearn.neggrad_plus, "alpha", 1.5), r"unlearn.neggrad_plus.alpha must be a number in \[0"),
    (lambda c: setattr(c.unlearn.scrub, "msteps", -1), "unlearn.scrub.msteps must be an integer in"),
    (lambda c: setattr(c.unlearn.finetune, "epochs", 0), "unlearn.finetune.epochs must be a positive integer"),
    (lambda c: setattr(c.forget, "size", 0), "config.forget.size must be a positive integer"),
    (lambda c: setattr(c.forget, "kind", "hard"), "valid choices: entanglement, memorization, proxy, random"),
    (lambda c: (setattr(c.forget, "kind", "memorization"), setattr(c.forget, "level", "top")),
     "config.forget.level 'top' is unknown; valid choices: low, mid, high, mix"),
])
def test_config_validation_names_the_problem(edit, message):
  config = _config()
  config_validation.validate(config)
  edit(config)
  with pytest.raises(config_validation.ConfigError, match=message):
    config_validation.validate(config)
