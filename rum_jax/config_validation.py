"""Checks a config before any work starts, with the valid choices in every message."""
from typing import Any

import ml_collections

from rum_jax.models import MODELS

SCHEDULES = ("constant", "cosine", "step")
TRAIN_MODES = ("train", "memorization", "proxies")


class ConfigError(ValueError):
  """A config field has a wrong type, range or name."""


def _positive_int(value: Any, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def _number(value: Any, name: str, low: float, high: float, low_open: bool = False) -> None:
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok:
    ok = (low < value if low_open else low <= value) and value <= high
  if not ok:
    bracket = "(" if low_open else "["
    raise ConfigError(f"config.{name} must be a number in {bracket}{low}, {high}], got {value!r}")


def validate_train(t: ml_collections.ConfigDict, prefix: str = "train") -> None:
  """An SGD recipe (epochs, batch_size, lr, momentum, weight_decay, schedule) at config.<prefix>."""
  _positive_int(t.epochs, f"{prefix}.epochs")
  _positive_int(t.batch_size, f"{prefix}.batch_size")
  _number(t.lr, f"{prefix}.lr", 0.0, float("inf"), low_open=True)
  _number(t.momentum, f"{prefix}.momentum", 0.0, 0.999)
  _number(t.weight_decay, f"{prefix}.weight_decay", 0.0, 1.0)
  if "schedule" in t and t.schedule not in SCHEDULES:
    raise ConfigError(f"config.{prefix}.schedule {t.schedule!r} is unknown; valid choices: "
                      f"{', '.join(SCHEDULES)}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Validates the fields every command uses (data, model, seeds, training)."""
  from rum_jax.data import DATASETS
  if config.data.name not in DATASETS:
    raise ConfigError(f"config.data.name {config.data.name!r} is unknown; valid choices: "
                      f"{', '.join(DATASETS.names())}")
  if config.model.name not in MODELS:
    raise ConfigError(f"config.model.name {config.model.name!r} is unknown; valid choices: "
                      f"{', '.join(MODELS.names())}")
  modes = TRAIN_MODES + ("study",)  # study: evaluate.py's RUM study (rum_jax/evaluation/study.py)
  if config.get("mode", "train") not in modes:
    raise ConfigError(f"config.mode {config.mode!r} is unknown; valid choices: {', '.join(modes)}")
  _positive_int(config.num_seeds, "num_seeds")
  vmap_size = config.get("vmap_size", 0)
  if isinstance(vmap_size, bool) or not isinstance(vmap_size, int) or vmap_size < 0:
    raise ConfigError(f"config.vmap_size must be a non-negative integer (0 = automatic), got {vmap_size!r}")
  if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
    raise ConfigError(f"config.seed must be a non-negative integer, got {config.seed!r}")
  validate_train(config.train)
  _positive_int(config.train.eval_batch_size, "train.eval_batch_size")
  if "memorization" in config:
    validate_memorization(config.memorization)
  if "proxies" in config:
    validate_proxies(config.proxies)
  if "forget" in config:
    validate_forget(config.forget)
  if "unlearn" in config:
    validate_unlearn(config.unlearn)
  if "study" in config:
    validate_study(config)


def _non_negative_int(value: Any, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ConfigError(f"config.{name} must be a non-negative integer, got {value!r}")


def validate_memorization(m: ml_collections.ConfigDict) -> None:
  """The Feldman-Zhang estimator's fields (SPEC section 4)."""
  _positive_int(m.num_models, "memorization.num_models")
  _positive_int(m.chunk_size, "memorization.chunk_size")
  _number(m.ratio, "memorization.ratio", 0.0, 1.0, low_open=True)
  if m.ratio >= 1.0:
    raise ConfigError(f"config.memorization.ratio must be in (0, 1): every model must hold "
                      f"some examples out; got {m.ratio!r}")
  _non_negative_int(m.seed, "memorization.seed")
  if not isinstance(m.influence, bool):
    raise ConfigError(f"config.memorization.influence must be True or False, got {m.influence!r}")


def validate_proxies(p: ml_collections.ConfigDict) -> None:
  """Held-out retraining's fields."""
  _number(p.heldout_lr, "proxies.heldout_lr", 0.0, float("inf"), low_open=True)
  _positive_int(p.heldout_max_epochs, "proxies.heldout_max_epochs")
  _positive_int(p.patience, "proxies.patience")


def validate_forget(f: ml_collections.ConfigDict) -> None:
  """The forget-set fields (SPEC section 5)."""
  from rum_jax.unlearning import forget_sets, run
  if f.kind not in run.FORGET_KINDS:
    raise ConfigError(f"config.forget.kind {f.kind!r} is unknown; valid choices: "
                      f"{', '.join(run.FORGET_KINDS)}")
  if f.kind in ("memorization", "proxy") and f.level not in forget_sets.LEVELS:
    raise ConfigError(f"config.forget.level {f.level!r} is unknown; valid choices: "
                      f"{', '.join(forget_sets.LEVELS)}")
  _positive_int(f.size, "forget.size")
  _non_negative_int(f.seed, "forget.seed")
  _non_negative_int(f.group, "forget.group")
  for key in ("scores", "score_key"):
    if not isinstance(f[key], str):
      raise ConfigError(f"config.forget.{key} must be a string (empty for the default), got {f[key]!r}")


def validate_unlearn(u: ml_collections.ConfigDict) -> None:
  """The method name and the settings of every method in the config (ranges from `Method.checks`)."""
  from rum_jax.unlearning.methods import METHODS
  if u.method not in METHODS and u.method != "rum":
    raise ConfigError(f"config.unlearn.method {u.method!r} is unknown; valid choices: "
                      f"{', '.join(METHODS.names() + ['rum'])}")
  if not isinstance(u.original_workdir, str):
    raise ConfigError(f"config.unlearn.original_workdir must be a path string, got {u.original_workdir!r}")
  for name in METHODS.names():
    if METHODS.get(name).kind == "retrain":
      continue  # trains like the original: config.train, validated above
    if name not in u:
      if name == u.method:
        raise ConfigError(f"config.unlearn.{name} (the settings of method {name!r}) is missing")
      continue
    validate_method_settings(name, u[name], f"unlearn.{name}")
  if u.method == "rum" or "rum" in u:
    if "rum" not in u:
      raise ConfigError("config.unlearn.rum (the RUM plan) is missing; see configs/default.py")
    validate_rum(u)


def validate_method_settings(name: str, settings: ml_collections.ConfigDict, prefix: str) -> None:
  """One method's settings: SGD fields for training methods, ranges from `Method.checks`."""
  from rum_jax.unlearning.methods import METHODS
  method = METHODS.get(name)
  if method.kind == "train":
    validate_train(settings, prefix)
  for check in method.checks:
    if check.key not in settings:
      raise ConfigError(f"config.{prefix}.{check.key} is missing")
    value = settings[check.key]
    if not check.integer:
      _number(value, f"{prefix}.{check.key}", check.low, check.high, check.low_open)
    elif isinstance(value, bool) or not isinstance(value, int) or not check.low <= value <= check.high:
      raise ConfigError(f"config.{prefix}.{check.key} must be an integer in [{check.low:g}, "
                        f"{check.high:g}], got {value!r}")


def validate_rum(u: ml_collections.ConfigDict) -> None:
  """config.unlearn.rum: the run name, score source and the low/mid/high steps (SPEC section 7)."""
  from rum_jax.unlearning import rum
  from rum_jax.unlearning.methods import METHODS
  r = u.rum
  for key in ("name", "scores", "score_key"):
    if not isinstance(r.get(key), str):
      raise ConfigError(f"config.unlearn.rum.{key} must be a string, got {r.get(key)!r}")
  if not r.name or "/" in r.name or r.name in METHODS:
    raise ConfigError(f"config.unlearn.rum.name {r.name!r} must be a folder name other than a "
                      f"method's ({', '.join(METHODS.names())}), e.g. 'rum'")
  if not isinstance(r.get("compute_scores"), bool):
    raise ConfigError(f"config.unlearn.rum.compute_scores must be True or False, got {r.get('compute_scores')!r}")
  choices = [rum.NO_METHOD] + [m for m in METHODS.names() if METHODS.get(m).kind != "retrain"]
  for level in rum.LEVELS:
    if level not in r or "method" not in r[level]:
      raise ConfigError(f"config.unlearn.rum.{level}.method is missing; valid choices: {', '.join(choices)}")
    step = r[level]
    if step.method not in choices:
      raise ConfigError(f"config.unlearn.rum.{level}.method {step.method!r} is not a step method; "
                        f"valid choices: {', '.join(choices)}")
    if step.method == rum.NO_METHOD:
      continue
    if step.method not in u:
      raise ConfigError(f"config.unlearn.{step.method} (the settings RUM's {level} step starts "
                        f"from) is missing")
    unknown = sorted(set(step.get("overrides", {})) - set(u[step.method]))
    if unknown:
      raise ConfigError(f"config.unlearn.rum.{level}.overrides has {unknown}, which are not settings "
                        f"of {step.method}; valid keys: {', '.join(sorted(u[step.method]))}")
    validate_method_settings(step.method, rum.step_settings(u, level), f"unlearn.rum.{level} ({step.method})")


STUDY_PLANS = ("auto", "config")


def validate_study(config: ml_collections.ConfigDict) -> None:
  """config.study (evaluate.py's RUM study): methods, forget-set levels, proxy, RUM plan."""
  from rum_jax.unlearning import forget_sets
  from rum_jax.unlearning.methods import METHODS
  s = config.study
  choices = [m for m in METHODS.names() if METHODS.get(m).kind != "retrain"]
  methods = list(s.get("methods", ()))
  if not methods or any(m not in choices for m in methods) or len(set(methods)) != len(methods):
    raise ConfigError(f"config.study.methods must be distinct unlearning methods, got {methods!r}; "
                      f"valid choices: {', '.join(choices)}")
  missing = [m for m in methods if m not in config.unlearn]
  if missing:
    raise ConfigError(f"config.unlearn lacks the settings of study methods {missing}")
  levels = list(s.get("levels", ()))
  if not levels or any(l not in forget_sets.LEVELS for l in levels) or len(set(levels)) != len(levels):
    raise ConfigError(f"config.study.levels must be distinct forget-set levels, got {levels!r}; "
                      f"valid choices: {', '.join(forget_sets.LEVELS)}")
  if s.rum_plan not in STUDY_PLANS:
    raise ConfigError(f"config.study.rum_plan {s.rum_plan!r} is unknown; valid choices: {', '.join(STUDY_PLANS)}")
  if s.rum_plan == "auto" and "mix" in levels and not {"low", "mid", "high"} <= set(levels):
    raise ConfigError("config.study.rum_plan='auto' picks RUM's step methods from the low, mid and high "
                      "forget sets: put all three in config.study.levels, or use rum_plan='config'")
  if not isinstance(s.rum_f, bool):
    raise ConfigError(f"config.study.rum_f must be True or False, got {s.rum_f!r}")
  for key in ("proxy", "results_dir", "scores"):
    if not isinstance(s.get(key), str):
      raise ConfigError(f"config.study.{key} must be a string (empty for none), got {s.get(key)!r}")
  from rum_jax.memorization.proxies import PROXIES
  proxies = PROXIES + ("heldout_retraining",)
  if s.proxy and s.proxy not in proxies:
    raise ConfigError(f"config.study.proxy {s.proxy!r} is unknown; valid choices: {', '.join(proxies)} "
                      f"(or '' for no proxy variant)")
