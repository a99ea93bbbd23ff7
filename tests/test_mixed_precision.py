"""config.model.dtype = "bfloat16": bfloat16 activations and matmuls, float32 everything kept.

Checked: every registered model computes its matmuls/convolutions on bfloat16 operands (read
from the traced program) while its parameters, optimizer state, BatchNorm statistics and
logits stay float32; and an MLP trained in bfloat16 learns like the float32 one.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rum_jax.configs import digits
from rum_jax.models import MODELS, create_model
from rum_jax.training import engine, optim
from rum_jax.training.setup import Setup, accuracies, train_on
from rum_jax.training.state import Forward, init_state


def _operand_dtypes(fn, *args):
  """dtypes of the operands of every dot_general / conv in fn's program (sub-jaxprs too)."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
        found.extend(str(v.aval.dtype) for v in eqn.invars)
      for param in eqn.params.values():  # pjit, custom_jvp, scan ... hold sub-programs
        for sub in param if isinstance(param, (tuple, list)) else (param,):
          sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
          if hasattr(sub, "eqns"):
            walk(sub)
  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


KWARGS = {"mlp": {"hidden": (16,)}, "cnn": {"channels": (4,), "dense": 8},
          "resnet18": {"nf": 4}, "reduced_resnet18": {"nf": 4},
          "airbench": {"widths": (4, 8, 8), "whiten_examples": 8}}


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_bfloat16_models_compute_in_bfloat16_and_keep_float32_state(name):
  # Traced and shape-evaluated only: compiling conv nets on this CPU takes minutes.
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3))
  y = jnp.arange(4) % 3
  tx = optim.make_optimizer(0.1, momentum=0.9)
  for dtype in ("float32", "bfloat16"):
    model = create_model(name, 3, dtype, **KWARGS[name])
    forward = Forward(model)
    state = jax.eval_shape(lambda key: init_state(model, tx, key, x[:2]), jax.random.PRNGKey(0))
    step = lambda s, b: engine.train_step(s, b, forward=forward, tx=tx)  # noqa: E731
    batch = {"train": {"x": x, "y": y, "weight": jnp.ones(4)}}
    operands = _operand_dtypes(step, state, batch)
    assert operands, "no matmul or convolution found"
    # Forward and backward: every matmul / convolution on operands of the compute dtype.
    assert set(operands) == {dtype}, sorted(set(operands))
    new, metrics = jax.eval_shape(step, state, batch)
    assert metrics["loss"].dtype == jnp.float32
    logits, _ = jax.eval_shape(lambda s: forward(s.params, s.batch_stats, x, train=False), new)
    assert logits.dtype == jnp.float32
    for tree in (new.params, new.opt_state, new.batch_stats):
      assert {str(l.dtype) for l in jax.tree.leaves(tree) if jnp.issubdtype(l.dtype, jnp.floating)} <= {"float32"}


def test_an_mlp_trained_in_bfloat16_learns_like_float32():
  results = {}
  for dtype in ("float32", "bfloat16"):
    config = digits.get_config()
    config.model.dtype = dtype
    config.model.kwargs.hidden = (64,)
    config.train.epochs = 8
    setup = Setup.create(config, num_models=2)
    n = len(setup.dataset.train)
    states, history = train_on(setup, [np.arange(n)] * 2, config.train, 0, None)
    _, acc = accuracies(setup, states)
    results[dtype] = (np.array(history["loss"]), acc)
  loss32, acc32 = results["float32"]
  loss16, acc16 = results["bfloat16"]
  # Both learn: the loss falls tenfold, and the test accuracy is far above chance (10%).
  assert loss16[-1].mean() < 0.1 * loss16[0].mean() and acc16["test"].min() > 0.9
  # Within bfloat16's rounding (8 significand bits) of float32: per epoch, per seed.
  np.testing.assert_allclose(loss16, loss32, rtol=0.25, atol=0.02)
  for split in ("train", "val", "test"):
    np.testing.assert_allclose(acc16[split], acc32[split], atol=0.03)
