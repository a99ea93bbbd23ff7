"""The training engine: the update rule, vmapped seeds, sharding, resume, NaN handling."""
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rum_jax import io
from rum_jax.data.base import Dataset, Split
from rum_jax.models import MODELS, create_model
from rum_jax.training import engine, loop, optim, plans
from rum_jax.training import setup as trainer
from rum_jax.training.checkpoint import Checkpointer
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.state import Forward, init_state


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def test_train_step_matches_hand_computed_sgd_momentum_weight_decay():
  """A linear softmax model, two steps, against the torch.optim.SGD rule written in NumPy:
  g <- grad + wd theta;  b <- mu b + g (b = g at step 1);  theta <- theta - lr b."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 4)).astype(np.float32)
  y = np.array([0, 1, 2, 1, 0, 2], np.int32)
  lr, mu, wd = 0.3, 0.9, 0.01
  model = create_model("mlp", 3, hidden=())
  tx = optim.make_optimizer(lr, momentum=mu, weight_decay=wd)
  state = init_state(model, tx, jax.random.PRNGKey(0), jnp.asarray(x))
  w = np.asarray(state.params["Dense_0"]["kernel"], np.float64)
  b = np.asarray(state.params["Dense_0"]["bias"], np.float64)
  batch = {"train": {"x": x, "y": y, "weight": np.ones(6, np.float32)}}
  step = jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx))
  buf_w, buf_b = np.zeros_like(w), np.zeros_like(b)
  for _ in range(2):
    p = _softmax(x @ w + b)
    d = (p - np.eye(3)[y]) / len(y)
    gw, gb = x.T @ d + wd * w, d.sum(0) + wd * b
    buf_w, buf_b = mu * buf_w + gw, mu * buf_b + gb
    w, b = w - lr * buf_w, b - lr * buf_b
    state, metrics = step(state, batch)
  np.testing.assert_allclose(state.params["Dense_0"]["kernel"], w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.params["Dense_0"]["bias"], b, rtol=1e-5, atol=1e-6)
  assert int(state.step) == 2


def test_weighted_loss_ignores_zero_weight_rows():
  model = create_model("mlp", 3, hidden=(8,))
  tx = optim.make_optimizer(0.1)
  x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
  y = np.array([0, 1, 2, 0, 1], np.int32)
  state = init_state(model, tx, jax.random.PRNGKey(1), jnp.asarray(x))
  step = jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx))
  full, _ = step(state, {"train": {"x": x[:3], "y": y[:3], "weight": np.ones(3, np.float32)}})
  padded, _ = step(state, {"train": {"x": x, "y": y, "weight": np.array([1, 1, 1, 0, 0], np.float32)}})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), full.params, padded.params)


# Every registered model, small: (name, kwargs, input shape). airbench has its own tests
# (tests/test_airbench.py: shapes, features, its data-dependent init, learning).
MODEL_CASES = [
    ("mlp", {"hidden": (16,)}, (8, 8, 1)),
    ("cnn", {"channels": (4, 8), "dense": 16}, (8, 8, 1)),
    ("cnn", {"channels": (4,), "dense": 8}, (40, 1)),
    ("resnet18", {"nf": 4}, (32, 32, 3)),
    ("reduced_resnet18", {"nf": 4}, (32, 32, 3)),
]


def test_every_registered_model_has_a_contract_case():
  assert {case[0] for case in MODEL_CASES} | {"airbench"} == set(MODELS.names()), \
      "add the new model to MODEL_CASES (docs/extending.md, 'A model')"


@pytest.mark.parametrize("name,kwargs,shape", MODEL_CASES)
def test_models_output_shape_and_one_step_lowers_loss(name, kwargs, shape):
  model = create_model(name, 5, **kwargs)
  x = np.random.default_rng(0).normal(size=(4,) + shape).astype(np.float32)
  y = np.arange(4, dtype=np.int32) % 5
  tx = optim.make_optimizer(0.05, weight_decay=0.0)
  state = init_state(model, tx, jax.random.PRNGKey(0), jnp.asarray(x))
  fwd = Forward(model)
  logits, _ = fwd(state.params, state.batch_stats, x, train=False)
  assert logits.shape == (4, 5)
  assert fwd.features(state.params, state.batch_stats, x).ndim == 2
  batch = {"train": {"x": x, "y": y, "weight": np.ones(4, np.float32)}}
  step = jax.jit(functools.partial(engine.train_step, forward=fwd, tx=tx))
  losses = []
  for _ in range(3):
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  if name.endswith("resnet18"):
    assert jax.tree.leaves(state.batch_stats), "BatchNorm statistics must be part of the state"


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match="valid choices: airbench, cnn, mlp, reduced_resnet18, resnet18"):
    create_model("vgg", 10)


def test_stream_plan_covers_each_seed_subset_once_and_pads():
  positions = [np.arange(10), np.arange(20, 27)]
  rngs = [np.random.default_rng(s) for s in range(2)]
  p = plans.stream_plan(positions, 4, rngs)
  assert p["idx"].shape == (2, 3, 4)
  for s, pos in enumerate(positions):
    real = p["idx"][s][p["weight"][s] > 0]
    assert sorted(real.tolist()) == pos.tolist()
  cyc = plans.stream_plan([np.arange(3)], 4, [np.random.default_rng(0)], steps=3, cycle=True)
  assert cyc["weight"].sum() == 12 and np.bincount(cyc["idx"].ravel(), minlength=3).tolist() == [4, 4, 4]


def _toy_setup(num_seeds, devices=None, n=96, epochs=3, lr=0.1, vmap_size=0):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + 2 * (x[:, 1] > 0).astype(np.int32)
  split = Split(x, y, np.arange(n))
  ds = Dataset("toy", split, split.subset(np.arange(8)), split.subset(np.arange(8, 16)), 4, ("a", "b", "c", "d"))
  config = ml_collections.ConfigDict({
      "num_seeds": num_seeds, "seed": 0, "data": {"augment": False},
      "train": {"epochs": epochs, "batch_size": 16, "lr": lr, "schedule": "cosine",
                "momentum": 0.9, "weight_decay": 5e-4, "eval_batch_size": 32}})
  model = create_model("mlp", 4, hidden=(16,))
  return trainer.Setup(config, ds, model, Forward(model), ModelRunner(num_seeds, devices, vmap_size)), config


def _train(setup, config, ckpt=None, positions=None):
  positions = positions or [np.arange(len(setup.dataset.train))] * config.num_seeds
  return trainer.train_on(setup, positions, config.train, config.seed, ckpt)


@pytest.mark.parametrize("vmap_size", [1, 2, 3])  # a loop, groups of 2 and a remainder, one vmap
def test_vmapped_seeds_equal_separately_trained_seeds(vmap_size):
  one = [jax.devices()[0]]
  setup, config = _toy_setup(3, devices=one, vmap_size=vmap_size)
  subsets = [np.arange(0, 60), np.arange(20, 80), np.arange(36, 96)]  # each seed its own data
  together, _ = _train(setup, config, positions=subsets)
  # Seed s alone: same key, same plan, a runner of one seed.
  tx = trainer.make_tx(config.train, 4)
  states = setup.init_states(tx, config.seed)
  for s in range(3):
    alone = ModelRunner(1, one)
    fn = loop.make_epoch_fn(alone, setup.forward, tx)
    st = alone.shard(jax.tree.map(lambda a: a[s:s + 1], states))
    data = alone.replicate({"x": setup.dataset.train.x, "y": setup.dataset.train.y,
                            "pos": np.arange(96, dtype=np.int32)})
    for epoch in range(config.train.epochs):
      plan = {"train": plans.stream_plan([subsets[s]], 16, [plans.epoch_rng(0, s, epoch)], steps=4)}
      st, _ = fn(st, alone.shard(plan), data)
    sep = alone.to_host(st)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[s], b[0], rtol=1e-5, atol=1e-6),
                 together.params, sep.params)


def test_sharded_over_4_devices_equals_single_device():
  assert jax.device_count() == 4, "conftest.py simulates 4 CPU devices"
  sharded_setup, config = _toy_setup(4)
  assert sharded_setup.runner.num_devices == 4
  single_setup, _ = _toy_setup(4, devices=[jax.devices()[0]])
  a, _ = _train(sharded_setup, config)
  b, _ = _train(single_setup, config)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a.params, b.params)
  # Seeds must differ from each other (each has its own key and data order).
  k = a.params["Dense_0"]["kernel"]
  assert not np.allclose(k[0], k[1])


def test_vmap_size_defaults_to_one_seed_at_a_time_on_cpu_and_is_capped_per_device():
  assert ModelRunner(8).vmap_size == 1  # CPU: each seed's program stays in cache
  assert ModelRunner(8, vmap_size=16).vmap_size == 2  # 8 seeds on 4 devices: 2 per device
  assert ModelRunner(3, [jax.devices()[0]], vmap_size=2).vmap_size == 2
  with pytest.raises(ValueError, match="vmap_size must be >= 0"):
    ModelRunner(2, vmap_size=-1)
  from rum_jax.configs import digits
  config = digits.get_config()
  config.num_seeds, config.vmap_size = 8, 2  # the config field reaches every command's runner
  assert trainer.Setup.create(config).runner.vmap_size == 2


def test_odd_seed_count_is_padded_and_dropped():
  setup, config = _toy_setup(3)  # 3 seeds on 4 devices -> 3 devices used
  states, history = _train(setup, config)
  assert np.asarray(history["loss"]).shape == (3, 3)
  logits, acc = trainer.accuracies(setup, states)
  assert logits["test"].shape == (3, 8, 4) and acc["train"].shape == (3,)


class _Killed(Exception):
  pass


def test_resume_equals_uninterrupted(tmp_path):
  setup, config = _toy_setup(2, epochs=4)
  full, full_hist = _train(setup, config)
  ckpt = str(tmp_path / "ckpt")
  original = plans.stream_plan

  def dying_plan(*args, **kwargs):  # "kill" the run when epoch 3 is about to start
    if dying_plan.calls == 3:  # the first call is epoch 1's plan for the program's key
      raise _Killed()
    dying_plan.calls += 1
    return original(*args, **kwargs)
  dying_plan.calls = 0
  plans.stream_plan = dying_plan
  try:
    with pytest.raises(_Killed):
      _train(setup, config, ckpt)
  finally:
    plans.stream_plan = original
  assert Checkpointer(ckpt).latest_step() == 2
  resumed, hist = _train(setup, config, ckpt)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), full.params, resumed.params)
  np.testing.assert_allclose(hist["loss"], full_hist["loss"], rtol=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  setup, config = _toy_setup(2, epochs=6, lr=1e4)
  config.train.schedule = "constant"
  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(loop.NonFiniteLossError, match="non-finite loss at epoch") as err:
    _train(setup, config, ckpt)
  last = Checkpointer(ckpt).latest_step()
  if last is not None:  # whatever was saved must be finite
    assert f"epoch {last})" in str(err.value)
    checkpointer = Checkpointer(ckpt)
    checkpointer.claim(io.read_json(os.path.join(ckpt, "program.json")))  # inspect, as it is
    _, states, _ = checkpointer.restore(setup.runner.unpad(setup.init_states(trainer.make_tx(config.train, 6), 0)))
    assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(states.params))


def test_recipe_options_reach_the_compiled_training():
  """train.label_smoothing and train.nesterov change the trained model exactly as the engine's
  loss and optimizer options do when given by hand."""
  setup, config = _toy_setup(1, devices=[jax.devices()[0]], epochs=1)
  plain, _ = _train(setup, config)
  config.train.update(label_smoothing=0.3, nesterov=True)
  smoothed, _ = _train(setup, config)
  tx = optim.make_optimizer(optim.make_schedule("cosine", 0.1, 6), 0.9, 5e-4, nesterov=True)
  fn = loop.make_epoch_fn(setup.runner, setup.forward, tx,
                          loss_fn=functools.partial(engine.supervised_loss, label_smoothing=0.3))
  rngs = [plans.epoch_rng(0, 0, 0)]
  plan = {"train": plans.stream_plan([np.arange(96)], 16, rngs, steps=6)}
  by_hand, _ = fn(setup.runner.shard(setup.init_states(tx, 0)), setup.runner.shard(plan), setup.train_data())
  by_hand = setup.runner.to_host(by_hand)
  np.testing.assert_allclose(smoothed.params["Dense_0"]["kernel"], by_hand.params["Dense_0"]["kernel"],
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(smoothed.params["Dense_0"]["kernel"], plain.params["Dense_0"]["kernel"])
