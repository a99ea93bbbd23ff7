"""config.study, config.audit and config.evaluation, validated by the pipelines package whose
study, audit (forgetting quality) and evaluation runs use them."""
import ml_collections

from rum_jax import checks
from rum_jax.evaluation.challenge import MAX_MODELS
from rum_jax.evaluation.lira import CENTRINGS
from rum_jax.evaluation.metrics import METRICS, check_names
from rum_jax.memorization.config import SCORE_NAMES
from rum_jax.unlearning import rum
from rum_jax.unlearning.config import require_sweeps_only_of, select_by_choices, sweep_grid
from rum_jax.unlearning.forget_sets import LEVELS
from rum_jax.unlearning.interface import UNLEARNING_METHODS, step_methods


def validate_study(config: ml_collections.ConfigDict) -> None:
  """config.study (evaluate.py's RUM study): methods, levels, proxy, matched sets, criterion, plans."""
  s = config.study
  methods = checks.distinct_choices(s.get("methods", ()), "study.methods", step_methods(), "unlearning methods")
  missing = [m for m in methods if m not in config.unlearn]
  checks.require(not missing, f"config.unlearn lacks the settings of study methods {missing}")
  require_sweeps_only_of(config, methods, f"the study runs config.study.methods {list(methods)} only")
  checks.distinct_choices(s.get("levels", ()), "study.levels", LEVELS, "forget-set levels")
  checks.require(config.forget.get("draw", "ranking") == "band",
                 "a study draws each seed's reported and validation forget sets from one band of the ranking: "
                 "set config.forget.draw='band'")
  checks.boolean(s.get("shuffle", True), "study.shuffle")
  checks.boolean(s.get("mix_when_unmet", False), "study.mix_when_unmet")
  checks.boolean(s.get("strong", False), "study.strong")
  checks.require(not s.get("strong", False) or "audit" in config,
                 "config.study.strong needs a config.audit section (bank sizes; configs/study_mnist1d.py has one)")
  checks.require(not s.get("strong", False) or (checks.is_int(s.get("strong_seeds")) and s.strong_seeds >= 1),
                 f"config.study.strong_seeds must be a positive integer (the seeds whose mix gets banks), got "
                 f"{s.get('strong_seeds')!r}")
  _claim_metrics(config)
  _budget(config, methods)
  checks.number(s.get("match_tolerance"), "study.match_tolerance", 0.0, 2.0)
  c = s.get("criterion")
  checks.require(c is not None and all(k in c for k in ("high_min", "mid_range", "low_max"))
                 and len(c.mid_range) == 2 and c.mid_range[0] <= c.mid_range[1],
                 "config.study.criterion needs high_min, mid_range (low, high) and low_max: the mean "
                 "memorization each level's reported sets must have for a memorization claim to be tested")
  paper = s.get("paper_plan")
  if paper:
    choices = [rum.NO_METHOD] + step_methods()
    for level in rum.LEVELS:
      checks.require(level in paper and paper[level].get("method") in choices,
                     f"config.study.paper_plan.{level}.method must be one of {', '.join(choices)}")
      unknown = sorted(set(paper[level].get("overrides", {})) - set(config.unlearn.get(paper[level].method, {})))
      checks.require(paper[level].method == rum.NO_METHOD or not unknown,
                     f"config.study.paper_plan.{level}.overrides has {unknown}, which are not settings of "
                     f"{paper[level].method}")
  for key in ("proxy", "results_dir", "scores"):
    checks.string(s.get(key), f"study.{key}", "a string (empty for none)")
  checks.require(not s.proxy or s.proxy in SCORE_NAMES,
                 f"config.study.proxy {s.proxy!r} is unknown; valid choices: {', '.join(SCORE_NAMES)} "
                 f"(or '' for no proxy variant)")


def _claim_metrics(config: ml_collections.ConfigDict) -> None:
  """config.study.claim_metrics: metrics of config.evaluation.metrics with a better direction."""
  names = config.study.get("claim_metrics", ())
  _metric_names(names, "config.study.claim_metrics", banks=False)
  evaluated = tuple(config.get("evaluation", {}).get("metrics", ()))
  missing = [m for m in names if m not in evaluated]
  checks.require(not missing, f"config.study.claim_metrics {missing} are not in config.evaluation.metrics "
                 f"{list(evaluated)}: a claim is made by a metric the sets are evaluated by; add them there")
  aimless = [m for m in names if METRICS.get(m).higher_is_better is None]
  checks.require(not aimless, f"config.study.claim_metrics {aimless} have no better direction (they should match "
                 f"retraining's): the claims choose each side by its best value; valid choices: "
                 f"{', '.join(select_by_choices())}")


def _budget(config: ml_collections.ConfigDict, methods) -> None:
  """config.study.budget: the configurations each side evaluates on the validation mix; the
  single side evaluates `none` and every grid point, so the grids must add up to it."""
  budget = config.study.get("budget")
  single = 1 + sum(len(sweep_grid(config, m) or [{}]) for m in methods)
  checks.require(checks.is_int(budget) and budget >= 2,
                 f"config.study.budget must be an integer >= 2 (the configurations each side evaluates), got {budget!r}")
  checks.require("mix" not in config.study.levels or budget == single,
                 f"config.study.budget={budget}, but the single side evaluates {single} configurations (`none` and "
                 f"every point of the grids config.sweep.<method>): set config.study.budget={single} or change the "
                 f"grids, so that RUM's plan search and the single methods evaluate as many")


def validate_audit(config: ml_collections.ConfigDict) -> None:
  """config.audit (evaluate.py's audit of forgetting quality): methods, bank sizes, seeds."""
  f = config.audit
  methods = checks.distinct_choices(f.get("methods", ()), "audit.methods", UNLEARNING_METHODS.names(), "unlearning methods")
  missing = [m for m in methods if UNLEARNING_METHODS.get(m).custom_settings is None and m not in config.unlearn]
  checks.require(not missing, f"config.unlearn lacks the settings of audit methods {missing}")
  checks.require(checks.is_int(f.num_models) and 2 <= f.num_models <= MAX_MODELS,
                 f"config.audit.num_models must be an integer in [2, {MAX_MODELS}]: each forget example's "
                 f"epsilon compares its confidences under two banks of that many models; got {f.num_models!r}")
  checks.require(checks.is_int(f.shadow_models) and (f.shadow_models == 0 or f.shadow_models >= 3),
                 "config.audit.shadow_models must be 0 (no attacks) or an integer >= 3: each shadow model "
                 f"is the target in turn and needs an in- and an out-model among the others; got {f.shadow_models!r}")
  checks.positive_int(f.chunk_size, "audit.chunk_size")
  checks.non_negative_int(f.seed, "audit.seed")
  checks.non_negative_int(f.svc_targets, "audit.svc_targets")
  checks.string(f.results_dir, "audit.results_dir", "a string (empty for none)")
  if "metrics" in f:
    _metric_names(f.metrics, "config.audit.metrics", banks=True)
  checks.choice(f.get("lira_centring", "mean"), "audit.lira_centring", CENTRINGS)


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
  """config.study and config.audit, if the config has them (mode 'audit' needs its own)."""
  if "study" in config:
    validate_study(config)
  checks.require(config.get("mode") != "audit" or ("audit" in config and "forget" in config),
                 "config.mode='audit' needs config.audit and config.forget; start from "
                 "configs/audit_digits.py")
  if "audit" in config:
    validate_audit(config)
  if "evaluation" in config:
    validate_evaluation(config)
