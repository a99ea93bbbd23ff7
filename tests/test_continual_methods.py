"""GEM / A-GEM learning steps and the unlearning updates, each against an independent
computation: per-task gradients of the task's logit SLICE (not the mask), the GEM dual solved
exactly with scipy's NNLS, A-GEM's closed form, NegGrad+'s weighted sum."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from scipy import linalg, optimize

from rum_jax.continual import buffers, methods, unlearn_step, updates
from rum_jax.models import create_model
from rum_jax.training import engine, optim
from rum_jax.training.state import Forward, init_state

CLASSES = np.array([[0, 1], [2, 3], [4, 5]])  # 3 tasks of 2 classes
LR = 0.1


@functools.lru_cache(maxsize=None)  # read-only results; model.init costs a second per call
def _setup(seed=0, active=(True, False, True), forget_task=1, memories=5):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(90, 4)).astype(np.float32)
  y = np.repeat(np.arange(6), 15).astype(np.int32)
  model = create_model("mlp", 6, hidden=(5,))
  tx = optim.make_optimizer(LR, momentum=0.0, weight_decay=0.0)
  state = init_state(model, tx, jax.random.PRNGKey(seed), jnp.asarray(x[:2]))
  class_task = np.repeat(np.arange(3), 2).astype(np.int32)
  slots = {"learn": [], "unlearn": []}
  for t in range(3):
    of_task = np.flatnonzero(np.isin(y, CLASSES[t]))
    chosen_l = rng.choice(of_task, 3 if t == 2 else memories, replace=False)  # task 2: padded rows
    chosen_u = np.concatenate([chosen_l[:2], rng.choice(np.setdiff1d(of_task, chosen_l), memories - 2, replace=False)])
    slots["learn"].append(buffers.memory_slot(chosen_l, memories, x, y))
    slots["unlearn"].append(buffers.memory_slot(chosen_u, memories, x, y))
  aux = {"class_task": class_task, "task_classes": np.eye(3, dtype=bool)[class_task].T,
         "active": np.array(active), "forget_task": np.int32(forget_task),
         "salun_mask": jax.tree.map(jnp.ones_like, state.params)}
  for name, rows in slots.items():
    aux[name] = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  return model, tx, state.replace(aux=jax.tree.map(jnp.asarray, aux)), x, y


def _slice_loss(model, params, x, y):
  """Mean cross-entropy over each example's task slice of the logits (no masking)."""
  logits = model.apply({"params": params}, x)
  sliced = logits[jnp.arange(len(y))[:, None], jnp.asarray(CLASSES)[y // 2]]  # [N, 2]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(sliced, y % 2))


@functools.partial(jax.jit, static_argnums=(0,))
def _slice_grad(model, params, x, y):
  return ravel_pytree(jax.grad(functools.partial(_slice_loss, model))(params, x, y))[0]


def _flat_grad(model, params, x, y):
  return np.asarray(_slice_grad(model, params, x, np.asarray(y)), np.float64)


def _memory_rows(model, state, name="learn"):
  buf = state.aux[name]
  rows = []
  for t in range(3):
    real = buf["weight"][t] > 0
    rows.append(_flat_grad(model, state.params, buf["x"][t][real], buf["y"][t][real]))
  return np.stack(rows)


def _gem_reference(G, g, margin, eps=1e-3):
  """GEM dual min 0.5 v'(GG' + eps I)v + (Gg)'v, v >= margin, solved exactly: with u = v - margin
  >= 0 and P = LL' it is NNLS(L', -L^-1 (P margin + Gg)). Returns G'v + g."""
  P = G @ G.T + eps * np.eye(len(G))
  L = linalg.cholesky(P, lower=True)
  b = -linalg.solve_triangular(L, P @ np.full(len(G), margin) + G @ g, lower=True)
  u, _ = optimize.nnls(L.T, b)
  return G.T @ (u + margin) + g


def _step(state, model, tx, loss_fn, transform, batch):
  return jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx, loss_fn=loss_fn,
                                   grad_transform=transform))(state, batch)


def _batch(x, y, rows, stream):
  return {stream: {"x": x[rows], "y": y[rows], "pos": rows.astype(np.int32),
                   "weight": np.ones(len(rows), np.float32)}}


def _applied(state, new):
  """The update direction the optimizer applied: (theta - theta') / lr."""
  return (np.asarray(ravel_pytree(state.params)[0], np.float64)
          - np.asarray(ravel_pytree(new.params)[0], np.float64)) / LR


def test_gem_learning_step_equals_exact_dual_solution():
  model, tx, state, x, y = _setup(seed=6)
  rows = np.flatnonzero(np.isin(y, CLASSES[1]))[:10]
  new, metrics = _step(state, model, tx, updates.learn_loss, updates.gem_transform(0.5), _batch(x, y, rows, "train"))
  g = _flat_grad(model, state.params, x[rows], y[rows])
  G = _memory_rows(model, state)[[0, 2]]
  assert np.any(G @ g < 0) and np.any(G @ g > 0), "the test needs one violated constraint"
  expected = _gem_reference(G, g, 0.5)
  np.testing.assert_allclose(_applied(state, new), expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
  assert np.all(G @ _applied(state, new) > 0)
  assert metrics["pos"].shape == (10,) and np.all(metrics["event/true_class_confidence"] <= 1)


def test_gem_without_violation_or_constraints_is_plain_sgd():
  model, tx, state, x, y = _setup(seed=1, active=(False, False, False))
  rows = np.flatnonzero(np.isin(y, CLASSES[1]))[:10]
  new, _ = _step(state, model, tx, updates.learn_loss, updates.gem_transform(0.5), _batch(x, y, rows, "train"))
  np.testing.assert_allclose(_applied(state, new), _flat_grad(model, state.params, x[rows], y[rows]),
                             rtol=1e-4, atol=1e-6)


def test_agem_learning_step_uses_all_active_memories_and_closed_form():
  model, tx, state, x, y = _setup(seed=3)
  rows = np.flatnonzero(np.isin(y, CLASSES[1]))[:10]
  # A reference batch as large as the memory takes every real row of the active tasks.
  new, _ = _step(state, model, tx, updates.learn_loss, updates.agem_transform(ref_size=1000),
                 _batch(x, y, rows, "train"))
  mem = state.aux["learn"]
  real = [(t, i) for t in (0, 2) for i in range(5) if mem["weight"][t, i] > 0]
  g_ref = _flat_grad(model, state.params, np.stack([mem["x"][t, i] for t, i in real]),
                     np.array([mem["y"][t, i] for t, i in real]))
  g = _flat_grad(model, state.params, x[rows], y[rows])
  dot = g @ g_ref
  assert dot < 0, "the test needs a projection"
  expected = g - dot / (g_ref @ g_ref) * g_ref
  np.testing.assert_allclose(_applied(state, new), expected, rtol=1e-4, atol=1e-6)
  # A small reference batch only draws real rows of active tasks.
  g_small = updates.reference_gradient(Forward(model), state, jax.random.PRNGKey(0), 4)
  assert np.all(np.isfinite(ravel_pytree(g_small)[0]))


def _forget_batch(x, y, unlearn_rows, learn_rows):
  """The thesis' paired forget batch: rows of the unlearn buffer and of the learn buffer."""
  return {**_batch(x, y, unlearn_rows, "forget"), **_batch(x, y, learn_rows, "forget_learn")}


def _paired_rows(state, b=3):
  """The first b rows of task 1's unlearn and learn buffers (as the thesis' slice [0:b])."""
  return (np.asarray(state.aux["unlearn"]["pos"][1][:b]), np.asarray(state.aux["learn"]["pos"][1][:b]))


def _forget_gradient(model, state, x, y, u, l, scale=1.0):
  """g_f = grad(-s (CE(unlearn rows) + CE(learn rows))), the two means computed separately."""
  return -scale * (_flat_grad(model, state.params, x[u], y[u]) + _flat_grad(model, state.params, x[l], y[l]))


def _negative(scale=1.0):
  return methods.negative(methods.ForgetSettings(loss_scale=scale))


def _forgetting(name, **settings):
  return methods.CONTINUAL_METHODS.get(name).forgetting(methods.ForgetSettings(**settings))


def test_forget_loss_is_the_scaled_sum_of_the_two_buffer_means():
  model, tx, state, x, y = _setup(seed=2)
  u, l = _paired_rows(state)
  batch = _forget_batch(x, y, u, l)
  loss, (_, m) = updates.negative_loss(Forward(model), state.params, state, batch, jax.random.PRNGKey(0),
                                       scale=5.0)
  ce = lambda rows: float(_slice_loss(model, state.params, x[rows], y[rows]))
  np.testing.assert_allclose(float(m["forget_loss"]), ce(u) + ce(l), rtol=1e-5)
  np.testing.assert_allclose(float(loss), -5.0 * (ce(u) + ce(l)), rtol=1e-5)
  # One plain SGD step (no retained task) moves the weights by lr * g_f.
  alone = state.replace(aux={**state.aux, "active": jnp.zeros(3, bool)})
  new, _ = _step(alone, model, tx, _negative(5.0), updates.gem_transform(0.5), batch)
  np.testing.assert_allclose(_applied(alone, new), _forget_gradient(model, state, x, y, u, l, 5.0),
                             rtol=1e-4, atol=1e-6)
  # Without the learn-buffer stream (`buffers.union_batches`) it is the unlearn batch's mean.
  loss, _ = updates.negative_loss(Forward(model), state.params, state, _batch(x, y, u, "forget"),
                                  jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(loss), -ce(u), rtol=1e-5)


def test_negagem_makes_exactly_one_projected_negative_step_per_batch():
  model, tx, state, x, y = _setup(seed=3)
  u, l = _paired_rows(state)
  forgetting = _forgetting("negagem", ref_size=1000)  # the reference batch takes every memory
  step = unlearn_step.make_unlearn_step(Forward(model), tx, forgetting.update, threshold=-1.0)
  (new, done), m = jax.jit(step)((state, jnp.array(False)), _forget_batch(x, y, u, l))
  assert int(new.step) == int(state.step) + 1 and not bool(done) and float(m["updated"]) == 1
  g_f = _forget_gradient(model, state, x, y, u, l)
  mem = state.aux["learn"]
  real = [(t, i) for t in (0, 2) for i in range(5) if mem["weight"][t, i] > 0]
  g_ref = _flat_grad(model, state.params, np.stack([mem["x"][t, i] for t, i in real]),
                     np.array([mem["y"][t, i] for t, i in real]))
  dot = g_f @ g_ref
  assert dot < 0, "the test needs a projection"
  expected = g_f - dot / (g_ref @ g_ref) * g_ref
  np.testing.assert_allclose(_applied(state, new), expected, rtol=1e-4, atol=1e-6)


def test_neggem_is_a_negative_step_then_a_random_label_step():
  model, tx, state, x, y = _setup(seed=4)
  u, l = _paired_rows(state)
  settings = methods.ForgetSettings()
  step = unlearn_step.make_unlearn_step(Forward(model), tx, _forgetting("neggem").update, threshold=-1.0)
  (new, _), m = jax.jit(step)((state, jnp.array(False)), _forget_batch(x, y, u, l))
  assert int(new.step) == int(state.step) + 2
  # The first update is the GEM-projected negative step (exact dual solution).
  first, _ = _step(state, model, tx, methods.with_memories(methods.negative(settings), settings),
                   methods.gem(settings), _forget_batch(x, y, u, l))
  g_f = _forget_gradient(model, state, x, y, u, l)
  G = _memory_rows(model, state)[[0, 2]]
  assert np.any(G @ g_f < 0), "the test needs a projection"
  expected = _gem_reference(G, g_f, 0.5)
  np.testing.assert_allclose(_applied(state, first), expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
  assert float(m["update1_loss"]) > 0  # the second: CE with random labels, a positive loss


def test_agem_reference_batch_holds_only_available_rows():
  available = np.zeros(40)
  available[[3, 7, 8, 20, 21, 22, 30]] = 1
  for seed in range(5):
    idx, weight = map(np.asarray, updates.reference_batch(jax.random.PRNGKey(seed), jnp.asarray(available), 16))
    # Fewer rows than the batch: each once with weight 1, repeats with weight 0, no padding row.
    assert np.all(available[idx] == 1) and weight.sum() == 7
    assert sorted(idx[weight == 1].tolist()) == [3, 7, 8, 20, 21, 22, 30]
    idx, weight = map(np.asarray, updates.reference_batch(jax.random.PRNGKey(seed), jnp.asarray(available), 4))
    assert np.all(available[idx] == 1) and len(set(idx.tolist())) == 4 and np.all(weight == 1)
  # Uniform without replacement: every row equally often over many draws.
  counts = np.zeros(40)
  for seed in range(700):
    counts[np.asarray(updates.reference_batch(jax.random.PRNGKey(seed), jnp.asarray(available), 3)[0])] += 1
  np.testing.assert_allclose(counts[available == 1] / 700, 3 / 7, atol=0.06)


def test_neggrad_plus_is_weighted_sum_of_retained_mean_and_masked_forget_gradient():
  model, tx, state, x, y = _setup(seed=4)
  u, l = _paired_rows(state)
  g_f = _forget_gradient(model, state, x, y, u, l)
  G = _memory_rows(model, state)
  alpha = 0.7
  new, _ = _step(state, model, tx, _negative(), updates.neggrad_plus_transform(alpha), _forget_batch(x, y, u, l))
  expected = alpha * (G[0] + G[2]) / 2 + (1 - alpha) * g_f
  np.testing.assert_allclose(_applied(state, new), expected, rtol=1e-4, atol=1e-6)
  # With a SalUn mask, only the forget gradient is masked.
  flat_mask = (np.arange(len(g_f)) % 3 == 0).astype(np.float32)
  unravel = ravel_pytree(state.params)[1]
  masked = state.replace(aux={**state.aux, "salun_mask": unravel(jnp.asarray(flat_mask))})
  new, _ = _step(masked, model, tx, _negative(), updates.neggrad_plus_transform(alpha, masked=True),
                 _forget_batch(x, y, u, l))
  np.testing.assert_allclose(_applied(state, new), alpha * (G[0] + G[2]) / 2 + (1 - alpha) * flat_mask * g_f,
                             rtol=1e-4, atol=1e-6)


def test_salun_mask_applies_to_every_update_not_only_projected_ones():
  # The thesis masked the gradient only when a GEM constraint was violated; here an update
  # without any retained task (nothing to project) is masked too.
  model, tx, state, x, y = _setup(seed=5, active=(False, False, False))
  u, l = _paired_rows(state)
  g_f = _forget_gradient(model, state, x, y, u, l)
  flat_mask = (np.arange(len(g_f)) % 2 == 0).astype(np.float32)
  masked = state.replace(aux={**state.aux, "salun_mask": ravel_pytree(state.params)[1](jnp.asarray(flat_mask))})
  new, _ = _step(masked, model, tx, _negative(), updates.gem_transform(0.5, masked=True), _forget_batch(x, y, u, l))
  np.testing.assert_allclose(_applied(state, new), flat_mask * g_f, rtol=1e-4, atol=1e-6)


def test_alt_neggem_is_one_negative_step_whose_constraints_include_the_forgotten_task():
  model, tx, state, x, y = _setup(seed=5)
  u, l = _paired_rows(state)
  step = unlearn_step.make_unlearn_step(Forward(model), tx, _forgetting("alt_neggem").update, threshold=-1.0)
  (new, _), _ = jax.jit(step)((state, jnp.array(False)), _forget_batch(x, y, u, l))
  assert int(new.step) == int(state.step) + 1
  g_f = _forget_gradient(model, state, x, y, u, l)
  # Rows: the retained tasks 0 and 2, and the forgotten task 1 whose row is g_f itself.
  G = np.vstack([_memory_rows(model, state)[[0, 2]], g_f])
  assert np.any(G[:2] @ g_f < 0), "the test needs a projection"
  expected = _gem_reference(G, g_f, 0.5)
  applied = _applied(state, new)
  np.testing.assert_allclose(applied, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
  assert applied @ g_f > 0  # still a forgetting direction
  # Without the forgotten task's row the step is plain NegGEM's first update.
  plain = _gem_reference(G[:2], g_f, 0.5)
  assert not np.allclose(plain, expected, rtol=1e-2)


def test_random_other_labels_stay_in_the_task_and_change_every_label():
  class_task = jnp.array([0, 0, 0, 1, 1, 1])
  task_classes = jnp.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], bool)
  labels = jnp.array([0, 1, 2, 3, 4, 5] * 200)
  fake = np.asarray(updates.random_other_labels(jax.random.PRNGKey(0), labels, class_task, task_classes))
  labels = np.asarray(labels)
  assert np.all(fake != labels) and np.all(fake // 3 == labels // 3)
  for c in range(6):  # the two other classes of the task, equally often
    counts = np.bincount(fake[labels == c], minlength=6)
    others = [k for k in range(3 * (c // 3), 3 * (c // 3) + 3) if k != c]
    np.testing.assert_allclose(counts[others] / 200, 0.5, atol=0.12)


def test_unlearn_step_stops_at_threshold_and_stays_stopped():
  model, tx, state, x, y = _setup(seed=6)
  buf = state.aux["unlearn"]
  logits = np.asarray(model.apply({"params": state.params}, buf["x"][1]))[:, CLASSES[1]]
  real = buf["weight"][1] > 0
  accuracy = np.mean(logits.argmax(1)[real] == (buf["y"][1][real] - 2))
  u, l = _paired_rows(state)
  update = _forgetting("rl_gem").update
  batch = _forget_batch(x, y, u, l)
  step = jax.jit(unlearn_step.make_unlearn_step(Forward(model), tx, update, threshold=accuracy))  # reached
  (same, done), m = step((state, jnp.array(False)), batch)
  np.testing.assert_allclose(m["stop_accuracy"], accuracy, rtol=1e-6)
  assert float(m["updated"]) == 0 and bool(done)
  jax.tree.map(np.testing.assert_array_equal, same.params, state.params)
  step = jax.jit(unlearn_step.make_unlearn_step(Forward(model), tx, update, threshold=accuracy - 0.01))
  (moved, done), m = step((state, jnp.array(False)), batch)
  assert float(m["updated"]) == 1 and not bool(done) and int(moved.step) == int(state.step) + 1
  assert not np.allclose(ravel_pytree(moved.params)[0], ravel_pytree(state.params)[0])
  # Once done, a seed stays as it is even where the rule would let it go on.
  (kept, done), m = step((state, jnp.array(True)), batch)
  assert bool(done) and float(m["updated"]) == 0
  jax.tree.map(np.testing.assert_array_equal, kept.params, state.params)


def test_saliency_mask_keeps_the_largest_gradients_of_the_first_objective_on_its_batch():
  model, tx, state, x, y = _setup(seed=7)
  u, l = _paired_rows(state, b=2)
  g = _forget_gradient(model, state, x, y, u, l)
  mask = np.asarray(ravel_pytree(unlearn_step.saliency_mask(Forward(model), state, _forget_batch(x, y, u, l),
                                                       _negative(), 0.25))[0])
  k = round(0.25 * len(g))
  assert mask.sum() == k
  assert np.abs(g)[mask == 1].min() >= np.sort(np.abs(g))[-k] - 1e-7


def test_unknown_names_list_valid_choices():
  with pytest.raises(ValueError, match="valid choices: agem, gem, sgd"):
    methods.learn_update("ewc", methods.LearnSettings())
  with pytest.raises(ValueError, match="alt_neggem, alt_neggem_rl, negagem, negagem_rl, neggem, neggrad_plus, "
                                       "rl_agem, rl_gem"):
    methods.CONTINUAL_METHODS.get("scrub")


SMALL_LR = 1e-4


@pytest.mark.parametrize("name", methods.CONTINUAL_METHODS.names())
def test_every_continual_method_keeps_its_contract(name):
  """One forget batch of every registered method on a tiny 3-task state (tasks 0 and 2 kept,
  task 1 forgotten): finite weights of the shapes it was given, a step that moved them, and the
  constraints its `constraint` names, <d, g_k> >= 0 for the applied direction d (a cone: the
  sum of several updates' directions stays in it; a small lr keeps every g_k where it was)."""
  model, _, state, x, y = _setup(seed=4)
  method = methods.CONTINUAL_METHODS.get(name)
  settings = methods.ForgetSettings(ref_size=1000, options=tuple(sorted(method.defaults().items())))
  forgetting = method.forgetting(settings)
  tx = optim.make_optimizer(SMALL_LR, momentum=0.0, weight_decay=0.0)
  u, l = _paired_rows(state)
  batch = _forget_batch(x, y, u, l)
  step = unlearn_step.make_unlearn_step(Forward(model), tx, forgetting.update, threshold=-1.0)
  (new, done), metrics = jax.jit(step)((state, jnp.array(False)), batch)
  assert float(metrics["updated"]) == 1 and not bool(done)
  for before, after in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
    assert after.shape == before.shape and after.dtype == before.dtype and np.all(np.isfinite(after))
  d = (np.asarray(ravel_pytree(state.params)[0], np.float64) - np.asarray(ravel_pytree(new.params)[0], np.float64)) / SMALL_LR
  assert np.linalg.norm(d) > 0
  g_f = np.asarray(ravel_pytree(jax.grad(lambda p: forgetting.objective(Forward(model), p, state, batch,
                                                                        state.rng)[0])(state.params))[0], np.float64)
  mem = state.aux["learn"]
  rows = {"gem": _memory_rows(model, state)[[0, 2]], "gem_with_forget": np.vstack([_memory_rows(model, state)[[0, 2]], g_f]),
          "agem": _flat_grad(model, state.params, *(np.concatenate([mem[k][t][mem["weight"][t] > 0] for t in (0, 2)])
                                                    for k in ("x", "y")))[None], "": np.zeros((0, len(d)))}
  assert method.constraint in rows, f"{name}: constraint {method.constraint!r} has no check here; add one"
  G = rows[method.constraint]
  tolerance = lambda v: 2e-3 * np.linalg.norm(G, axis=1) * np.linalg.norm(v)  # noqa: E731
  if method.constraint:  # the unprojected direction would fail the check
    assert np.any(G @ g_f < -tolerance(g_f)), f"{name}: the test needs a violated constraint"
  assert np.all(G @ d >= -tolerance(d)), (name, G @ d, tolerance(d))


def test_the_held_out_stop_set_decides_where_the_unlearn_buffer_would_not():
  """stop_set 'held_out' measures aux['held_out'] (the forgotten task's held-out examples), not
  its unlearn buffer: the same state stops on held-out examples the model gets wrong while the
  buffer it gets right would let forgetting go on."""
  model, tx, state, x, y = _setup(seed=6)
  buf = state.aux["unlearn"]
  logits = np.asarray(model.apply({"params": state.params}, buf["x"][1]))[:, CLASSES[1]]
  real = buf["weight"][1] > 0
  buffer_accuracy = np.mean(logits.argmax(1)[real] == (buf["y"][1][real] - 2))
  of_task = np.flatnonzero(np.isin(y, CLASSES[1]))
  wrong = of_task[np.asarray(model.apply({"params": state.params}, x[of_task]))[:, CLASSES[1]].argmax(1)
                  != y[of_task] - 2][:4]
  assert buffer_accuracy > 0.1 and len(wrong) == 4, "the test needs a buffer above the threshold"
  held = {"x": jnp.asarray(x[wrong]), "y": jnp.asarray(y[wrong]), "weight": jnp.ones(4)}
  state = state.replace(aux={**state.aux, "held_out": held})
  u, l = _paired_rows(state)
  update = _forgetting("rl_gem").update
  for stop_set, stops in (("unlearn_buffer", False), ("held_out", True)):
    step = jax.jit(unlearn_step.make_unlearn_step(Forward(model), tx, update, threshold=0.1, stop_set=stop_set))
    (_, done), m = step((state, jnp.array(False)), _forget_batch(x, y, u, l))
    assert bool(done) == stops and float(m["updated"]) == (0 if stops else 1), stop_set
    np.testing.assert_allclose(float(m["stop_accuracy"]), 0.0 if stops else buffer_accuracy, atol=1e-6)
