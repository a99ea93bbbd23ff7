"""Explicit functional training state, one per seed (stacked along axis 0 when vmapped)."""
from typing import Any, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes.

  step: number of optimizer updates done.
  params / batch_stats: Flax variable collections (batch_stats is {} for models without
    BatchNorm).
  opt_state: optax state.
  rng: raw uint32[2] PRNG key, advanced every step.
  aux: per-seed constants a method needs inside the step (SCRUB's frozen teacher, SalUn's
    saliency mask, GEM's memories, ...); {} when unused. Never updated by the step.
  """
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray
  aux: Any = flax.struct.field(default_factory=dict)


class Forward:
  """Applies a model with explicit BatchNorm state: (params, batch_stats, x, train) -> (logits, batch_stats).

  In train mode the updated running statistics are returned; in eval mode they pass through.
  """

  def __init__(self, model: nn.Module):
    self.model = model

  def __call__(self, params, batch_stats, x, train: bool) -> Tuple[jnp.ndarray, Any]:
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if train and batch_stats:
      logits, updates = self.model.apply(variables, x, train=True, mutable=["batch_stats"])
      return logits, updates["batch_stats"]
    return self.model.apply(variables, x, train=train), batch_stats

  def features(self, params, batch_stats, x) -> jnp.ndarray:
    """Penultimate representation in eval mode."""
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    return self.model.apply(variables, x, train=False, features=True)


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: jnp.ndarray,
               sample_x: jnp.ndarray, aux: Optional[Any] = None) -> TrainState:
  """Initialises one seed's state from a PRNG key and one example batch (for shapes)."""
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, sample_x, train=False)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      rng=state_rng,
      aux={} if aux is None else aux,
  )
