"""config.forget and config.unlearn, validated by the unlearning package that owns them."""
import ml_collections

from rum_jax import checks
from rum_jax.evaluation.metrics import METRICS
from rum_jax.unlearning import forget_sets, grid
from rum_jax.unlearning.forget_kinds import DRAWS, FORGET_KINDS, SPLITS
from rum_jax.unlearning.interface import UNLEARNING_METHODS, validate_settings


def select_by_choices() -> list:
  """Metrics a sweep can choose by: of one run's logits, with a direction that is better."""
  return [n for n in METRICS.names() if METRICS.get(n).kind == "logits" and METRICS.get(n).higher_is_better is not None]


def validate_forget(f: ml_collections.ConfigDict) -> None:
  """The forget-set fields: kind, level (score kinds), size, seed, group, score file."""
  checks.choice(f.kind, "forget.kind", FORGET_KINDS.names())
  if FORGET_KINDS.get(f.kind).uses_level:
    checks.choice(f.level, "forget.level", forget_sets.LEVELS)
  else:
    # A level other than the default would be silently ignored: say what picks by level.
    by_level = [n for n in FORGET_KINDS.names() if FORGET_KINDS.get(n).uses_level]
    checks.require(f.level == forget_sets.DEFAULT_LEVEL, (
        f"config.forget.level={f.level!r} has no effect with config.forget.kind={f.kind!r}: only "
        f"{' and '.join(by_level)} forget sets are picked by level; use --config.forget.kind={by_level[0]} "
        f"--config.forget.level={f.level}, or leave forget.level at {forget_sets.DEFAULT_LEVEL!r}"))
  checks.choice(f.get("split", "report"), "forget.split", SPLITS)
  checks.choice(f.get("draw", "ranking"), "forget.draw", DRAWS)
  checks.positive_int(f.size, "forget.size")
  checks.non_negative_int(f.seed, "forget.seed")
  checks.non_negative_int(f.group, "forget.group")
  for key in ("scores", "score_key"):
    checks.string(f[key], f"forget.{key}", "a string (empty for the default)")


def validate_unlearn(u: ml_collections.ConfigDict) -> None:
  """The method name and the settings of every method in the config (each method validates its own)."""
  checks.choice(u.method, "unlearn.method", UNLEARNING_METHODS.names())
  checks.string(u.original_workdir, "unlearn.original_workdir", "a path string")
  checks.boolean(u.get("compute_scores", True), "unlearn.compute_scores")
  checks.boolean(u.get("augment", False), "unlearn.augment")
  folder = u.get("folder", "")
  checks.string(folder, "unlearn.folder", "a folder name (empty: the method's name)")
  checks.require(not folder or ("/" not in folder and folder not in UNLEARNING_METHODS),
                 f"config.unlearn.folder {folder!r} must be a folder name other than a method's, e.g. "
                 f"'{u.method}_2' (empty: methods/{u.method})")
  # Composites (RUM) last: a step's settings start from its method's, which are checked first.
  for name in sorted(UNLEARNING_METHODS.names(), key=lambda n: UNLEARNING_METHODS.get(n).composite):
    method = UNLEARNING_METHODS.get(name)
    if method.custom_validate is None and name not in u:
      checks.require(name != u.method, f"config.unlearn.{name} (the settings of method {name!r}) is missing")
      continue
    method.validate(u)


def sweep_grid(config: ml_collections.ConfigDict, method_name: str) -> list:
  """config.sweep.<method_name> as grid points ({setting: value} dicts; [] = no sweep)."""
  if "sweep" not in config or method_name not in config.sweep:
    return []
  return grid.grid(config.unlearn[method_name], config.sweep[method_name], f"sweep.{method_name}")


def swept_methods(config: ml_collections.ConfigDict) -> list:
  """The methods config.sweep lists values for, in the config's order."""
  if "sweep" not in config:
    return []
  return [name for name, section in config.sweep.items()
          if isinstance(section, ml_collections.ConfigDict) and any(str(v).strip() for v in section.values())]


def require_sweeps_only_of(config: ml_collections.ConfigDict, methods, why: str) -> None:
  """Refuses values in config.sweep.<m> for a method m the command does not run (they would be
  silently ignored): `why` says what the command runs."""
  stray = [m for m in swept_methods(config) if m not in methods]
  checks.require(not stray, f"config.sweep.{stray[0] if stray else ''} lists values, but {why}: "
                 f"remove --config.sweep.{stray[0] if stray else ''}.* or run the command that tunes it")


def validate_sweep(config: ml_collections.ConfigDict) -> None:
  """Every swept value of every method, each checked as the method's own setting would be."""
  sw = config.sweep
  select_by = sw.get("select_by", "tow")
  checks.require(select_by not in METRICS or METRICS.get(select_by).higher_is_better is not None,
                 f"config.sweep.select_by {select_by!r} has no better direction (it should match retraining's, "
                 f"not be high or low); valid choices: {', '.join(select_by_choices())}")
  checks.choice(select_by, "sweep.select_by", select_by_choices())
  checks.boolean(sw.get("mia", True), "sweep.mia")
  for name, section in sw.items():
    if not isinstance(section, ml_collections.ConfigDict):
      continue
    checks.require(name in UNLEARNING_METHODS and UNLEARNING_METHODS.get(name).is_step_method and name in config.unlearn,
                   f"config.sweep.{name} sweeps no unlearning method of config.unlearn; sweepable: "
                   f"{', '.join(m for m in UNLEARNING_METHODS.names() if UNLEARNING_METHODS.get(m).is_step_method)}")
    try:
      points = sweep_grid(config, name)
    except ValueError as err:
      raise checks.ConfigError(str(err)) from None
    for point in points:
      settings = ml_collections.ConfigDict(config.unlearn[name].to_dict())
      settings.update(point)
      validate_settings(UNLEARNING_METHODS.get(name), settings, f"sweep.{name}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Whichever of config.forget, config.unlearn and config.sweep the config has."""
  if "forget" in config:
    validate_forget(config.forget)
  if "unlearn" in config:
    validate_unlearn(config.unlearn)
  if "sweep" in config and "unlearn" in config:
    validate_sweep(config)
