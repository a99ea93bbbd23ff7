"""config.forget and config.unlearn, validated by the unlearning package that owns them."""
import ml_collections

from rum_jax import checks
from rum_jax.unlearning import forget_sets
from rum_jax.unlearning.forget_kinds import FORGET_KINDS
from rum_jax.unlearning.interface import METHODS


def validate_forget(f: ml_collections.ConfigDict) -> None:
  """The forget-set fields: kind, level (score kinds), size, seed, group, score file."""
  checks.choice(f.kind, "forget.kind", FORGET_KINDS.names())
  if FORGET_KINDS.get(f.kind).uses_level:
    checks.choice(f.level, "forget.level", forget_sets.LEVELS)
  checks.positive_int(f.size, "forget.size")
  checks.non_negative_int(f.seed, "forget.seed")
  checks.non_negative_int(f.group, "forget.group")
  for key in ("scores", "score_key"):
    checks.string(f[key], f"forget.{key}", "a string (empty for the default)")


def validate_unlearn(u: ml_collections.ConfigDict) -> None:
  """The method name and the settings of every method in the config (each method validates its own)."""
  checks.choice(u.method, "unlearn.method", METHODS.names())
  checks.string(u.original_workdir, "unlearn.original_workdir", "a path string")
  checks.boolean(u.get("compute_scores", True), "unlearn.compute_scores")
  checks.boolean(u.get("augment", False), "unlearn.augment")
  # Composites (RUM) last: a step's settings start from its method's, which are checked first.
  for name in sorted(METHODS.names(), key=lambda n: METHODS.get(n).composite):
    method = METHODS.get(name)
    if method.custom_validate is None and name not in u:
      checks.require(name != u.method, f"config.unlearn.{name} (the settings of method {name!r}) is missing")
      continue
    method.validate(u)


def validate(config: ml_collections.ConfigDict) -> None:
  """Whichever of config.forget and config.unlearn the config has."""
  if "forget" in config:
    validate_forget(config.forget)
  if "unlearn" in config:
    validate_unlearn(config.unlearn)
