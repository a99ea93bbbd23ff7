"""config.model, validated by the models package that owns it."""
import ml_collections

from rum_jax import checks
from rum_jax.models.registry import COMPUTE_DTYPES, MODELS


def validate(config: ml_collections.ConfigDict) -> None:
  """The model name, its compute dtype, and every integer (or integer sequence) keyword, a
  width, is positive."""
  m = config.model
  checks.choice(m.name, "model.name", MODELS.names())
  checks.choice(m.get("dtype", "float32"), "model.dtype", tuple(COMPUTE_DTYPES))
  for key, value in m.kwargs.items():
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if any(checks.is_int(v) for v in values):  # widths: every one a positive integer
      checks.require(all(checks.is_int(v) and v > 0 for v in values),
                     f"config.model.kwargs.{key} must hold positive layer widths, got {value!r}")
