"""airbench (rum_jax/models/airbench.py): shapes, whitening init, the data-init registry,
its initialisers, a training step, and that it learns a small synthetic task.

Widths are tiny (8, 16, 16) and images small: XLA's CPU convolutions are slow.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy import testing as npt

from rum_jax.models import create_model, data_dependent_init, data_init_size
from rum_jax.models import airbench
from rum_jax.training import engine, optim
from rum_jax.training.data_init import init_sample, init_state_from_data
from rum_jax.training.state import Forward, init_state

WIDTHS = (8, 16, 16)


def _correlated_images(n, size, seed):
  """Zero-mean images with strong spatial and cross-channel correlation."""
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(n, size + 1, size + 1, 3))
  x = base[:, 1:, 1:] + 0.8 * base[:, :-1, 1:] + 0.6 * base[:, 1:, :-1]
  mix = np.array([[1.0, 0.7, 0.2], [0.0, 1.0, 0.5], [0.3, 0.0, 1.0]])
  return (x @ mix).astype(np.float32)


def _patches(x, p):
  """Every p x p patch as a row, values ordered (row, column, channel): the reference."""
  windows = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(1, 2))  # n,h',w',C,p,p
  return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, p * p * x.shape[-1]).astype(np.float64)


def _apply(model, *args, **kwargs):
  # Jitted: op-by-op execution of a conv net is what makes XLA on a CPU slow.
  return jax.jit(functools.partial(model.apply, **kwargs))(*args)


_kernel = jax.jit(airbench.whitening_kernel, static_argnums=(1, 2))


# One model and one initialisation for every test that needs no other: each distinct
# program is an XLA compilation of several seconds on a CPU. Its variables do not depend
# on the image size (global max-pool), so 16x16 images initialise it for 32x32 ones too.
@pytest.fixture(scope="module")
def model():
  return create_model("airbench", 10, widths=WIDTHS, whiten_examples=20)


@pytest.fixture(scope="module")
def variables(model):
  init = jax.jit(functools.partial(model.init, train=False))
  return init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 3)))


def test_cifar_shaped_output_features_and_state(model, variables):
  x = _correlated_images(4, 32, 0)
  assert _apply(model, variables, x, train=False).shape == (4, 10)
  assert _apply(model, variables, x, train=False, features=True).shape == (4, WIDTHS[-1])
  assert variables["batch_stats"]["whiten"]["kernel"].shape == (2, 2, 3, 24)
  assert "kernel" not in variables["params"]["whiten"]  # frozen: not a trained parameter
  _, updates = _apply(model, variables, x, train=True, mutable=["batch_stats"])
  new = updates["batch_stats"]
  npt.assert_array_equal(new["whiten"]["kernel"], variables["batch_stats"]["whiten"]["kernel"])
  old_mean = variables["batch_stats"]["ConvGroup_0"]["ShiftBatchNorm_0"]["BatchNorm_0"]["mean"]
  assert not np.allclose(new["ConvGroup_0"]["ShiftBatchNorm_0"]["BatchNorm_0"]["mean"], old_mean)
  with pytest.raises(ValueError, match="airbench takes images"):
    model.apply(variables, x.reshape(4, -1, 3), train=False)


def test_patch_second_moment_matches_explicit_patches():
  x = _correlated_images(6, 7, 1)
  for p in (1, 2, 3):
    patches = _patches(x, p)
    npt.assert_allclose(airbench.patch_second_moment(x, p), patches.T @ patches / len(patches),
                        rtol=1e-5, atol=1e-6)


def test_whitening_kernel_whitens_the_patches():
  x = _correlated_images(50, 12, 2)
  eps = 5e-4
  kernel = _kernel(x, 2, eps)
  # Responses of the model's own whitening layer (bias 0, as initialised) to the patches of x.
  whitened = _apply(airbench.Whitening(2),
                    {"params": {"bias": jnp.zeros(24)}, "batch_stats": {"kernel": kernel}}, x)
  z = np.asarray(whitened, np.float64).reshape(-1, 24)
  first, second = z[:, :12], z[:, 12:]
  npt.assert_allclose(second, -first, rtol=1e-6)
  # NumPy reference: eigenvalues of the patch second moment, in decreasing order.
  patches = _patches(x, 2)
  eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
  assert eigenvalues[-1] / eigenvalues[0] < 0.1  # the patches really are correlated
  moment = first.T @ first / len(first)
  npt.assert_allclose(moment, np.diag(eigenvalues / (eigenvalues + eps)), atol=2e-4)
  npt.assert_allclose(moment, np.eye(12), atol=0.03)  # ~ identity
  # Each patch is reconstructed from its whitened components (the filters form a basis).
  filters = np.asarray(kernel, np.float64).reshape(12, 24)[:, :12]
  npt.assert_allclose(np.linalg.solve(filters.T, first.T).T, patches, atol=1e-3)


def test_data_dependent_init_through_the_registry(model, variables):
  x = _correlated_images(20, 10, 3)
  assert data_init_size(model) == 20 and data_init_size(create_model("airbench", 4)) == 5000
  out = jax.jit(lambda v, d: data_dependent_init(model, v, d))(variables, x)
  npt.assert_allclose(out["batch_stats"]["whiten"]["kernel"], _kernel(x, 2, 5e-4), atol=1e-6)
  assert not np.allclose(out["batch_stats"]["whiten"]["kernel"],
                         variables["batch_stats"]["whiten"]["kernel"])
  jax.tree.map(npt.assert_array_equal, out["params"], variables["params"])
  with pytest.raises(ValueError, match="Airbench initialises from data"):
    data_dependent_init(model, variables, None)
  with pytest.raises(ValueError, match="does not fit the model's"):
    airbench.with_whitening_kernel(variables, jnp.zeros((3, 3, 3, 54)))
  mlp = create_model("mlp", 4, hidden=(8,))
  mlp_vars = mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))
  assert data_init_size(mlp) == 0
  assert data_dependent_init(mlp, mlp_vars, None) is mlp_vars


def test_init_state_from_data_vmapped_over_seeds_and_for_other_models():
  x = _correlated_images(12, 10, 4)
  small = create_model("airbench", 4, widths=(4,), whiten_examples=8)
  tx = optim.make_optimizer(0.1)
  sample = init_sample(small, x, positions=np.arange(2, 12))
  npt.assert_array_equal(sample, x[2:10])
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  states = jax.jit(jax.vmap(lambda k, d: init_state_from_data(small, tx, k, x[:2], d),
                            in_axes=(0, None)))(keys, sample)
  expected = _kernel(sample, 2, 5e-4)
  for s in range(2):
    npt.assert_allclose(states.batch_stats["whiten"]["kernel"][s], expected, atol=1e-5)
  head = states.params["Dense_0"]["kernel"]
  assert not np.allclose(head[0], head[1])  # seeds still differ
  mlp = create_model("mlp", 4, hidden=(8,))
  assert init_sample(mlp, x) is None
  plain = init_state(mlp, tx, keys[0], x[:2])  # an MLP is quick op by op
  from_data = init_state_from_data(mlp, tx, keys[0], x[:2], None)
  jax.tree.map(npt.assert_array_equal, from_data, plain)


def test_partial_identity_init():
  init = jax.jit(airbench.partial_identity_init, static_argnums=1)
  kernel = np.asarray(init(jax.random.PRNGKey(0), (3, 3, 4, 6)))
  identity = np.zeros((3, 3, 4, 4))
  identity[1, 1] = np.eye(4)
  npt.assert_array_equal(kernel[..., :4], identity)
  rest = kernel[..., 4:]
  bound = 1 / np.sqrt(3 * 3 * 4)  # torch's default U(+-1/sqrt(fan_in))
  assert np.all(np.abs(rest) <= bound) and rest.std() > 0.3 * bound
  narrow = np.asarray(init(jax.random.PRNGKey(0), (3, 3, 6, 4)))
  npt.assert_array_equal(narrow[1, 1, :4], np.eye(4))
  npt.assert_array_equal(narrow[1, 1, 4:], 0)


def test_bias_lr_scale_multiplies_the_shift_learning_rate():
  """One plain SGD step moves the effective BN shift sqrt(m) phi by m times more."""
  x = _correlated_images(8, 10, 5)
  y = np.arange(8) % 4
  batch = {"train": {"x": x, "y": y, "weight": np.ones(8, np.float32)}}
  shifts = {}
  for m in (1.0, 64.0):
    model = create_model("airbench", 4, widths=(4,), bias_lr_scale=m)
    tx = optim.make_optimizer(0.01, momentum=0.0, weight_decay=0.0)
    state = jax.jit(lambda k: init_state(model, tx, k, x[:2]))(jax.random.PRNGKey(0))
    state, _ = jax.jit(functools.partial(engine.train_step, forward=Forward(model), tx=tx))(
        state, batch)
    shifts[m] = np.sqrt(m) * np.asarray(state.params["ConvGroup_0"]["ShiftBatchNorm_1"]["bias"])
  assert np.abs(shifts[1.0]).max() > 1e-6
  npt.assert_allclose(shifts[64.0], 64.0 * shifts[1.0], rtol=1e-4, atol=1e-9)


def test_learns_class_patterns_in_noise(model):
  """4 classes, each a fixed random 16x16 pattern plus noise of the same size, trained with
  the recipe's options (Nesterov, triangle schedule, label smoothing, whitening init)."""
  rng = np.random.default_rng(7)
  patterns = rng.normal(size=(4, 16, 16, 3))

  def draw(n):
    y = np.arange(n) % 4
    return (patterns[y] + rng.normal(size=(n, 16, 16, 3))).astype(np.float32), y

  x, y = draw(256)
  x_test, y_test = draw(128)
  steps, batch_size = 40, 32
  tx = optim.make_optimizer(optim.make_schedule("triangle", 0.5, steps), 0.85, 5e-4, nesterov=True)
  state = jax.jit(lambda k: init_state_from_data(model, tx, k, x[:2], init_sample(model, x)))(
      jax.random.PRNGKey(1))
  step = jax.jit(functools.partial(
      engine.train_step, forward=Forward(model), tx=tx,
      loss_fn=functools.partial(engine.supervised_loss, label_smoothing=0.2)))
  kernel = state.batch_stats["whiten"]["kernel"]
  order = np.random.default_rng(8)
  for _ in range(steps):
    idx = order.choice(len(y), batch_size, replace=False)
    state, _ = step(state, {"train": {"x": x[idx], "y": y[idx],
                                      "weight": np.ones(batch_size, np.float32)}})
  logits = _apply(model, {"params": state.params, "batch_stats": state.batch_stats}, x_test,
                  train=False)
  accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
  assert accuracy >= 0.9, accuracy
  assert int(state.step) == steps
  npt.assert_array_equal(state.batch_stats["whiten"]["kernel"], kernel)  # frozen


def test_setup_whitens_each_seed_from_the_examples_it_trains_on(model):
  """A memorization model must not see its held-out examples, not even through its init."""
  import ml_collections
  from rum_jax.data.base import Dataset, Split
  from rum_jax.training.parallel import ModelRunner
  from rum_jax.training.setup import Setup
  x = _correlated_images(60, 16, seed=3)
  split = Split(x, np.arange(60, dtype=np.int32) % 10, np.arange(60))
  ds = Dataset("toy", split, split, split, 10, tuple(map(str, range(10))))
  config = ml_collections.ConfigDict({"data": {"augment": False}})
  setup = Setup(config, ds, model, Forward(model), ModelRunner(2, jax.devices()[:2]))
  positions = [np.arange(0, 30), np.arange(30, 60)]  # model.whiten_examples = 20 of each
  states = setup.init_states(optim.make_optimizer(0.1), 0, positions)
  for s, p in enumerate(positions):
    expected = np.asarray(_kernel(jnp.asarray(x[p[:20]]), 2, 5e-4))
    npt.assert_allclose(states.batch_stats["whiten"]["kernel"][s], expected, rtol=1e-4, atol=1e-5)
  assert not np.allclose(states.batch_stats["whiten"]["kernel"][0], states.batch_stats["whiten"]["kernel"][1])
