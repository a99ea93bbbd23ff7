"""config.study, validated by the pipelines package whose study runs it."""
import ml_collections

from rum_jax import checks
from rum_jax.evaluation import mia
from rum_jax.memorization.config import SCORE_NAMES
from rum_jax.unlearning import rum
from rum_jax.unlearning.forget_sets import LEVELS
from rum_jax.unlearning.interface import step_methods

STUDY_PLANS = ("auto", "config")


def validate_study(config: ml_collections.ConfigDict) -> None:
  """config.study (evaluate.py's RUM study): methods, forget-set levels, proxy, RUM plan."""
  s = config.study
  methods = checks.distinct_choices(s.get("methods", ()), "study.methods", step_methods(), "unlearning methods")
  missing = [m for m in methods if m not in config.unlearn]
  checks.require(not missing, f"config.unlearn lacks the settings of study methods {missing}")
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
  for key in ("proxy", "results_dir", "scores"):
    checks.string(s.get(key), f"study.{key}", "a string (empty for none)")
  checks.require(not s.proxy or s.proxy in SCORE_NAMES,
                 f"config.study.proxy {s.proxy!r} is unknown; valid choices: {', '.join(SCORE_NAMES)} "
                 f"(or '' for no proxy variant)")


def validate(config: ml_collections.ConfigDict) -> None:
  """config.study, if the config has one."""
  if "study" in config:
    validate_study(config)
