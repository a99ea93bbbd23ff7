"""Training state of a model that initialises from data (e.g. airbench's whitening layer).

`init_state` knows only shapes; `init_state_from_data` also hands the model's
data-dependent init (`rum_jax.models.data_dependent_init`) a sample of training inputs.
For every other model it returns exactly `init_state`'s state.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

from rum_jax.models import data_dependent_init, data_init_size
from rum_jax.training.state import TrainState, init_state


def init_sample(model: nn.Module, x_train: np.ndarray,
                positions: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
  """The training inputs `model`'s data-dependent init should see, or None if it has none.

  The first `data_init_size(model)` rows of `x_train[positions]` (all of them if fewer).
  A model trained on a subset (memorization) should pass its own subset's positions: an
  init computed from excluded examples would let them influence the model.
  """
  n = data_init_size(model)
  if n == 0:
    return None
  rows = np.arange(len(x_train)) if positions is None else np.asarray(positions)
  return np.asarray(x_train[rows[:n]])


def init_state_from_data(model: nn.Module, tx: optax.GradientTransformation, rng: jnp.ndarray,
                         sample_x: jnp.ndarray, data_x: Optional[jnp.ndarray],
                         aux: Optional[Any] = None) -> TrainState:
  """`init_state`, then the data-dependent init on `data_x`; jittable and vmappable.

  The optimizer state is rebuilt from the final parameters, since a data-dependent init
  may change them. `data_x` (from `init_sample`) is None for models without such an init.
  """
  state = init_state(model, tx, rng, sample_x, aux)
  if data_x is None:
    return state
  variables = data_dependent_init(
      model, {"params": state.params, "batch_stats": state.batch_stats}, data_x)
  params = variables["params"]
  return state.replace(params=params, batch_stats=variables.get("batch_stats", {}),
                       opt_state=tx.init(params))

