"""config.study, config.forgetting and config.evaluation, validated by the pipelines package whose
study, forgetting-quality and evaluation runs use them."""
import ml_collections

from rum_jax import checks
from rum_jax.evaluation import mia
from rum_jax.evaluation.forgetting import CENTRINGS, MAX_MODELS
from rum_jax.evaluation.metrics import check_names
from rum_jax.memorization.config import SCORE_NAMES
from rum_jax.unlearning import rum
from rum_jax.unlearning.config import require_sweeps_only_of
from rum_jax.unlearning.forget_sets import LEVELS
from rum_jax.unlearning.interface import METHODS, step_methods

STUDY_PLANS = ("auto", "config")


def validate_study(config: ml_collections.ConfigDict) -> None:
  """config.study (evaluate.py's RUM study): methods, forget-set levels, proxy, RUM plan."""
  s = config.study
  methods = checks.distinct_choices(s.get("methods", ()), "study.methods", step_methods(), "unlearning methods")
  missing = [m for m in methods if m not in config.unlearn]
  checks.require(not missing, f"config.unlearn lacks the settings of study methods {missing}")
  require_sweeps_only_of(config, methods, f"the study runs config.study.methods {list(methods)} only")
  levels = checks.distinct_choices(s.get("levels", ()), "study.levels", LEVELS, "forget-set levels")
  checks.choice(s.rum_plan, "study.rum_plan", STUDY_PLANS)
  checks.require(not (s.rum_plan == "auto" and "mix" in levels and not set(rum.LEVELS) <= set(levels)),
                 "config.study.rum_plan='auto' picks RUM's step methods from the low, mid and high "
                 "forget sets: put all three in config.study.levels, or use rum_plan='config'")
  checks.boolean(s.rum_f, "study.rum_f")
  checks.boolean(s.get("shuffle", True), "study.shuffle")
  checks.boolean(s.get("loss_mia", True), "study.loss_mia")
  features = list(s.get("mia_features", ()))
  checks.require(all(f in mia.FEATURES for f in features),
                 f"config.study.mia_features {features!r} has an unknown feature; valid choices: "
                 f"{', '.join(mia.FEATURES)} (empty = all)")
  strong = s.get("forgetting_levels", ())
  strong = (checks.distinct_choices(strong, "study.forgetting_levels", LEVELS, "forget-set levels")
            if strong else [])
  checks.require(set(strong) <= set(levels), f"config.study.forgetting_levels {list(strong)} must be among "
                 f"config.study.levels {list(levels)}")
  strong_methods = s.get("forgetting_methods", ())
  checks.require(not strong_methods or (isinstance(strong_methods, (list, tuple))
                                        and set(strong_methods) <= set(methods)),
                 f"config.study.forgetting_methods {strong_methods!r} must be among config.study.methods "
                 f"{list(methods)} (empty: all of them)")
  checks.require(not strong or "forgetting" in config,
                 "config.study.forgetting_levels needs a config.forgetting section (bank sizes; "
                 "configs/forgetting_digits.py has one)")
  for key in ("proxy", "results_dir", "scores"):
    checks.string(s.get(key), f"study.{key}", "a string (empty for none)")
  checks.require(not s.proxy or s.proxy in SCORE_NAMES,
                 f"config.study.proxy {s.proxy!r} is unknown; valid choices: {', '.join(SCORE_NAMES)} "
                 f"(or '' for no proxy variant)")


def validate_forgetting(config: ml_collections.ConfigDict) -> None:
  """config.forgetting (evaluate.py's forgetting quality): methods, bank sizes, seeds."""
  f = config.forgetting
  methods = checks.distinct_choices(f.get("methods", ()), "forgetting.methods", METHODS.names(), "unlearning methods")
  missing = [m for m in methods if METHODS.get(m).custom_settings is None and m not in config.unlearn]
  checks.require(not missing, f"config.unlearn lacks the settings of forgetting methods {missing}")
  checks.require(checks.is_int(f.num_models) and 2 <= f.num_models <= MAX_MODELS,
                 f"config.forgetting.num_models must be an integer in [2, {MAX_MODELS}]: each forget example's "
                 f"epsilon compares its confidences under two banks of that many models; got {f.num_models!r}")
  checks.require(checks.is_int(f.shadow_models) and (f.shadow_models == 0 or f.shadow_models >= 3),
                 "config.forgetting.shadow_models must be 0 (no attacks) or an integer >= 3: each shadow model "
                 f"is the target in turn and needs an in- and an out-model among the others; got {f.shadow_models!r}")
  checks.positive_int(f.chunk_size, "forgetting.chunk_size")
  checks.non_negative_int(f.seed, "forgetting.seed")
  checks.non_negative_int(f.svc_targets, "forgetting.svc_targets")
  checks.string(f.results_dir, "forgetting.results_dir", "a string (empty for none)")
  if "metrics" in f:
    _metric_names(f.metrics, "config.forgetting.metrics", banks=True)
  checks.choice(f.get("lira_centring", "mean"), "forgetting.lira_centring", CENTRINGS)


def _metric_names(names, where: str, banks: bool) -> None:
  checks.require(isinstance(names, (list, tuple)) and len(names) > 0 and all(isinstance(n, str) for n in names),
                 f"{where} must be a non-empty list of metric names; got {names!r}")
  try:
    check_names(list(names), where, banks=banks)
  except ValueError as err:
    raise checks.ConfigError(str(err)) from None


def validate_evaluation(config: ml_collections.ConfigDict) -> None:
  """config.evaluation: the metrics of every unlearning run's evaluation, known by name."""
  _metric_names(config.evaluation.get("metrics", ()), "config.evaluation.metrics", banks=False)


def validate(config: ml_collections.ConfigDict) -> None:
  """config.study and config.forgetting, if the config has them (mode 'forgetting' needs its own)."""
  if "study" in config:
    validate_study(config)
  checks.require(config.get("mode") != "forgetting" or ("forgetting" in config and "forget" in config),
                 "config.mode='forgetting' needs config.forgetting and config.forget; start from "
                 "configs/forgetting_digits.py")
  if "forgetting" in config:
    validate_forgetting(config)
  if "evaluation" in config:
    validate_evaluation(config)
