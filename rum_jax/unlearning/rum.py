"""RUM, the Refined-Unlearning Meta-algorithm, as a registered meta-method ("rum").

Zhao et al. 2024, "What makes unlearning hard and what to do about it" (NeurIPS,
arXiv:2406.01257), Sec. 5; with memorization proxies as the refinement score: Zhao &
Triantafillou 2024, "Scalability of memorization-based machine unlearning" (arXiv:2410.16516).

  1. Refinement: rank the forget set F by a memorization score (or an oriented proxy) and cut
     it into thirds F_1 (low), F_2 (mid), F_3 (high) (`forget_sets.refine`).
  2. Meta-unlearning, from theta_0 = the original model, for k = 1, 2, 3:
       theta_k = A_k(theta_{k-1}; forget F_k, retain D \\ (F_1 u ... u F_k)),
     A_k any step method of `UNLEARNING_METHODS` with its own settings, or "none" (theta_k = theta_{k-1}).
     The retain set of step k excludes the current AND earlier subsets; later subsets are not
     forgotten yet and stay in it (the original's `--sequential` runs), so the retain sets
     shrink step by step down to D \\ F.
  3. Evaluation against the whole F and the same retrain reference (retrained on D \\ F) as a
     single method uses, so RUM and method rows of one work directory compare directly.

The plan lives in `config.unlearn.rum` (see configs/default.py): `low`/`mid`/`high`, each a
`method` and `overrides` of that method's settings `config.unlearn.<method>`; `scores` /
`score_key` name the refinement score (default: the forget set's); `name` the result folder.
RUM is `Method` "rum" with the interface of every method, so unlearn.py, evaluate.py and the
study run it like any other.

Besides the files of every method's run, its run folder holds, per step, a folder steps/<k>_<level>/
(checkpoints to resume from, SalUn's saliency cache, the step's training curves) and the steps
table (`ctx.report`'s "steps": per step the method, settings, subset sizes, seconds, and the
accuracy on every subset, the final retain set and the test set after it), which the
unlearning pipeline writes (runfolder.layout: "report_table").
"""
import dataclasses
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import checks, manifest, results
from rum_jax.runfolder import RunFolder, layout
from rum_jax.evaluation.tow import set_accuracies
from rum_jax.memorization import files as score_files
from rum_jax.training.setup import Setup, accuracies
from rum_jax.training.state import TrainState
from rum_jax.unlearning import forget_sets
from rum_jax.unlearning.interface import (UNLEARNING_METHODS, History, Method, MethodContext, ScoreSource, register,
                                          step_methods, unlearn, validate_settings)

NAME = "rum"
LEVELS = ("low", "mid", "high")
NO_METHOD = "none"
# score: thirds by the refinement score (RUM); shuffle: random thirds (the Shuffle control).
REFINE = ("score", "shuffle")


def step_settings(unlearn: ml_collections.ConfigDict, level: str) -> Optional[ml_collections.ConfigDict]:
  """The settings of RUM's `level` step: config.unlearn.<method> with the step's overrides.

  Args:
    unlearn: config.unlearn (holding `rum` and every method's settings).
    level: 'low', 'mid' or 'high'.

  Returns:
    A new ConfigDict, or None for a step whose method is "none".
  """
  if level not in LEVELS:
    raise ValueError(f"unknown RUM step {level!r}; valid choices: {', '.join(LEVELS)}")
  step = unlearn.rum[level]
  if step.method == NO_METHOD:
    return None
  settings = ml_collections.ConfigDict(unlearn[step.method].to_dict())
  overrides = step.get("overrides", {}) or {}
  unknown = sorted(set(overrides) - set(settings))
  if unknown:
    raise ValueError(f"config.unlearn.rum.{level}.overrides has {unknown}, which are not settings of "
                     f"{step.method}; valid keys: {', '.join(sorted(settings))}")
  for key, value in overrides.items():
    settings[key] = value
  return settings


def score_source(config: ml_collections.ConfigDict, workdir: str) -> ScoreSource:
  """The score file RUM refines by: config.unlearn.rum's, else the forget set's, else the default."""
  r = config.unlearn.rum
  path = r.scores or config.forget.scores or RunFolder(workdir).scores().file("scores")
  key = r.score_key or config.forget.score_key
  return ScoreSource(path, key, proxies=key not in ("", "memorization"))


def resolved_settings(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """What decides a RUM run's result, recorded in its run's config: the score file (resolved, and
  the digest of its contents) and every step's method with its full settings (so a change of a
  method's base settings is noticed too)."""
  source = score_source(config, workdir)
  steps = {}
  for level in LEVELS:
    settings = step_settings(config.unlearn, level)
    steps[level] = {"method": config.unlearn.rum[level].method, "settings": settings.to_dict() if settings else {}}
  # The path may change when the work directory moves (runs record it relative to theirs);
  # what it holds may not (its digest).
  digest = manifest.file_sha(source.path) if os.path.exists(source.path) else ""
  return ml_collections.ConfigDict({"scores": os.path.abspath(source.path), "scores_digest": digest,
                                    "score_key": source.key, "refine": config.unlearn.rum.get("refine", "score"),
                                    "steps": steps})


# ---------------------------------------------------------------------------------------
# Refinement and the sets of every step.


@dataclasses.dataclass(frozen=True)
class StepSets:
  """Step `level`'s forget subset and retain set, one array of train positions per seed."""
  level: str
  forget: List[np.ndarray]
  retain: List[np.ndarray]


def step_sets(forget: Sequence[np.ndarray], scores: Optional[np.ndarray], num_train: int,
              shuffle_seeds: Optional[Sequence[int]] = None) -> List[StepSets]:
  """Refines each seed's forget set into low/mid/high thirds and gives every step's sets.

  retain_k = {0..num_train-1} \\ (F_1 u ... u F_k) (module docstring, step 2).

  Args:
    forget: per seed, the positions of the whole forget set F.
    scores: [num_train] refinement score of every train example (high = more memorized).
    num_train: size of the train split.
    shuffle_seeds: instead of by score, cut each seed's F into three RANDOM parts of equal
      size (numpy seeded by shuffle_seeds[seed]): the Shuffle control of Zhao et al. 2024
      (Fig. 3), which unlearns in steps without refinement by memorization.

  Returns:
    [low, mid, high] StepSets (the first, second and third part for the Shuffle control).
  """
  if shuffle_seeds is not None:
    per_seed = [forget_sets.random_parts(f, len(LEVELS), seed) for f, seed in zip(forget, shuffle_seeds)]
  else:
    scores = np.asarray(scores, np.float64)
    if scores.shape != (num_train,):
      raise ValueError(f"refinement scores must have one value per train example, shape ({num_train},); "
                       f"got {scores.shape}")
    per_seed = [forget_sets.refine(f, scores, len(LEVELS)) for f in forget]  # [seed][level]
  out = []
  for k, level in enumerate(LEVELS):
    subsets = [parts[k] for parts in per_seed]
    removed = [np.concatenate(parts[:k + 1]) for parts in per_seed]
    out.append(StepSets(level, subsets, [np.setdiff1d(np.arange(num_train), r) for r in removed]))
  return out


# ---------------------------------------------------------------------------------------
# The meta-algorithm.


def _accuracies(setup: Setup, states: TrainState, sets: List[StepSets],
                forget: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
  """Per-seed accuracy on each subset, on the final retain set D \\ F and on the test set."""
  logits, acc = accuracies(setup, states, setup.config.train.eval_batch_size)
  num_train = len(setup.dataset.train)
  out = set_accuracies(logits["train"], setup.dataset.train.y,
                       {**{f"{s.level}_accuracy": s.forget for s in sets},
                        "retain_accuracy": [np.setdiff1d(np.arange(num_train), f) for f in forget]})
  out["test_accuracy"] = acc["test"]
  return out


def run(ctx: MethodContext, original: TrainState) -> Tuple[TrainState, History]:
  """RUM's steps on all seeds at once from the original models; returns the final states.

  ctx.settings is `resolved_settings`; with ctx.run_dir, every step resumes from (or, when
  finished, is read back from) its checkpoints in run_dir/steps/; ctx.report gets every
  step's history (folder steps/<k>_<level>) and the steps table (stem "steps").
  """
  setup, settings = ctx.setup, ctx.settings
  num_seeds = setup.runner.num_models
  forget = ctx.forget[:num_seeds]
  train = setup.dataset.train
  if settings.get("refine", "score") == "shuffle":
    sets = step_sets(forget, None, len(train), [ctx.base_seed * 1_000 + ctx.seed_of(i) for i in range(num_seeds)])
  else:
    sets = step_sets(forget, score_files.scores_for_split(settings.scores, train, settings.score_key), len(train))
  states = original
  rows = [{"step": 0, "level": "original", "method": "", "settings": {}, "seconds": 0.0,
           "after": results.summarize_columns(_accuracies(setup, states, sets, forget))}]
  for k, s in enumerate(sets, start=1):
    method = settings.steps[s.level].method
    step_settings_k = ml_collections.ConfigDict(settings.steps[s.level].settings.to_dict())
    step_dir = RunFolder(ctx.run_dir).folder("steps", f"{k}_{s.level}") if ctx.run_dir else None
    t0 = time.time()
    if method != NO_METHOD:
      states, history = unlearn(
          setup, states, method, step_settings_k, s.forget, s.retain, base_seed=ctx.base_seed, run_dir=step_dir,
          saliency_path=RunFolder(step_dir).file("saliency") if step_dir else None,
          name=f"{ctx.label} {s.level}: {method}")
      if history and ctx.report is not None:
        ctx.report.histories[layout.folder("steps", f"{k}_{s.level}")] = (
            f"{setup.dataset.name}: RUM step {k} ({s.level}), {method}", history)
    after = _accuracies(setup, states, sets, forget)
    rows.append({"step": k, "level": s.level, "method": method,
                 "settings": step_settings_k.to_dict() if method != NO_METHOD else {},
                 "seconds": time.time() - t0,
                 "forget_size": [len(f) for f in s.forget[:num_seeds]],
                 "retain_size": [len(r) for r in s.retain[:num_seeds]],
                 "after": results.summarize_columns(after)})
    logging.info("RUM step %d (%s, %s): %s", k, s.level, method,
                 "  ".join(f"{m} {v.mean():.4f}" for m, v in after.items()))
  if ctx.report is not None:
    ctx.report.tables["steps"] = (
        {"scores_digest": settings.scores_digest, "score_key": settings.score_key, "steps": rows},
        [{"step": r["step"], "level": r["level"], "method": r["method"],
          **{m: v["mean"] for m, v in r["after"].items()}} for r in rows])
  return states, {}


def validate(unlearn_cfg: ml_collections.ConfigDict) -> None:
  """config.unlearn.rum, when RUM runs or the section is given: folder name, score source, steps."""
  if NAME not in unlearn_cfg:
    checks.require(unlearn_cfg.method != NAME, "config.unlearn.rum (the RUM plan) is missing; see configs/default.py")
    return
  r = unlearn_cfg.rum
  for key in ("name", "scores", "score_key"):
    checks.string(r.get(key), f"unlearn.rum.{key}")
  checks.choice(r.get("refine", "score"), "unlearn.rum.refine", REFINE)
  checks.require(bool(r.name) and "/" not in r.name and (r.name == NAME or r.name not in UNLEARNING_METHODS),
                 f"config.unlearn.rum.name {r.name!r} must be a folder name other than another method's "
                 f"({', '.join(m for m in UNLEARNING_METHODS.names() if m != NAME)}), e.g. '{NAME}'")
  choices = [NO_METHOD] + step_methods()
  for level in LEVELS:
    checks.require(level in r and "method" in r[level],
                   f"config.unlearn.rum.{level}.method is missing; valid choices: {', '.join(choices)}")
    step = r[level]
    checks.require(step.method in choices, f"config.unlearn.rum.{level}.method {step.method!r} is not a step "
                   f"method; valid choices: {', '.join(choices)}")
    if step.method == NO_METHOD:
      continue
    checks.require(step.method in unlearn_cfg, f"config.unlearn.{step.method} (the settings RUM's {level} step "
                   f"starts from) is missing")
    unknown = sorted(set(step.get("overrides", {})) - set(unlearn_cfg[step.method]))
    checks.require(not unknown, f"config.unlearn.rum.{level}.overrides has {unknown}, which are not settings "
                   f"of {step.method}; valid keys: {', '.join(sorted(unlearn_cfg[step.method]))}")
    validate_settings(UNLEARNING_METHODS.get(step.method), step_settings(unlearn_cfg, level),
                      f"unlearn.rum.{level} ({step.method})")


register(Method(NAME, run, sgd_recipe=False, composite=True,
                about="refine the forget set by memorization into low/mid/high and unlearn them in "
                      "sequence, each with its own method (Zhao et al. 2024)",
                custom_settings=resolved_settings,
                custom_folder=lambda config: config.unlearn.rum.name,
                custom_validate=validate,
                custom_sources=lambda config, workdir: [score_source(config, workdir)]))
