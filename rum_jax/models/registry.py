"""The model registry, kept apart from the model files so they can import it.

Besides name -> constructor, it records which models initialise from data (airbench's
whitening layer): `data_init_size(model)` says how many training inputs such a model wants
(0: none), `data_dependent_init(model, variables, x)` applies it and is the identity for
every other model, so callers need no model-specific code.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax.numpy as jnp

from rum_jax.registry import Registry

MODELS: Registry = Registry("model")

Variables = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class DataInit:
  """A data-dependent init: `apply(model, variables, x) -> variables` on `num_examples(model)` inputs."""
  apply: Callable[[nn.Module, Variables, jnp.ndarray], Variables]
  num_examples: Callable[[nn.Module], int]


_DATA_INITS: Dict[type, DataInit] = {}


# Compute dtypes of config.model.dtype. Parameters, optimizer state and BatchNorm statistics
# stay float32 in either; "bfloat16" runs activations, matmuls and convolutions in bfloat16
# (each layer casts its float32 parameters), and the logits come out in float32, so losses
# and softmaxes are float32 (mixed precision: Micikevicius et al. 2018, "Mixed precision
# training", with bfloat16 needing no loss scaling: Kalamkar et al. 2019).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(name: str, num_classes: int, dtype: str = "float32", **kwargs: Any) -> nn.Module:
  """Builds the registered model `name` with `num_classes` outputs, computing in `dtype`."""
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute dtype {dtype!r}; valid choices: {', '.join(COMPUTE_DTYPES)}")
  return MODELS.get(name)(num_classes=num_classes, dtype=COMPUTE_DTYPES[dtype], **kwargs)


def register_data_init(module_type: type, num_examples: Callable[[nn.Module], int]):
  """Decorator: `fn(model, variables, x) -> variables` initialises `module_type` from data."""
  def deco(fn):
    if module_type in _DATA_INITS:
      raise ValueError(f"{module_type.__name__} has a data-dependent init registered twice")
    _DATA_INITS[module_type] = DataInit(fn, num_examples)
    return fn
  return deco


def _data_init(model: nn.Module) -> Optional[DataInit]:
  for cls in type(model).__mro__:
    if cls in _DATA_INITS:
      return _DATA_INITS[cls]
  return None


def data_init_size(model: nn.Module) -> int:
  """How many training inputs `data_dependent_init` wants for `model`; 0 if it has none."""
  entry = _data_init(model)
  return 0 if entry is None else int(entry.num_examples(model))


def data_dependent_init(model: nn.Module, variables: Variables, x_sample: Optional[jnp.ndarray]) -> Variables:
  """`variables` (from `model.init`) after the model's data-dependent init on `x_sample`.

  The identity for models without one (x_sample may then be None). Pure: works under
  jit and vmap, so it can run inside a vmapped per-seed initialisation.

  Args:
    model: a module built by `create_model`.
    variables: its freshly initialised variables {"params": ..., "batch_stats": ...}.
    x_sample: normalised training inputs [n, *input_shape], n ~ `data_init_size(model)`.
  """
  entry = _data_init(model)
  if entry is None:
    return variables
  if x_sample is None or len(x_sample) == 0:
    raise ValueError(f"{type(model).__name__} initialises from data: pass training inputs "
                     f"(about {entry.num_examples(model)}) as x_sample")
  return entry.apply(model, variables, x_sample)
