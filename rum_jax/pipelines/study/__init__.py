"""The study of the RUM paper, in one resumable command (evaluate.py with a study config).

Zhao et al. 2024, "What makes unlearning hard and what to do about it" (NeurIPS,
arXiv:2406.01257), Sec. 4-6, claim (i) that forget sets of more memorized examples are harder
to unlearn for most methods, and (ii) that RUM, refining a mixed forget set by memorization and
unlearning its thirds in sequence, beats the methods it uses; its follow-up (Zhao &
Triantafillou 2024, arXiv:2410.16516) refines by a cheap proxy instead. `run_study(config,
workdir)` tests them on one data set with nothing tuned on the sets it reports, every set
evaluated by the metrics of config.evaluation.metrics (the registry's), every claim made by
each metric of config.study.claim_metrics with both of its sides chosen by that metric:

  1. sets (sets.py): every seed draws its reported and its validation forget set of each level
     at random from the same band of the memorization ranking (config.forget.draw = "band");
     a level whose two sets differ by more than config.study.match_tolerance is refused, and
     the data set is checked against config.study.criterion (do the levels differ?);
  2. levels (runs.py): where the criterion holds, every method of config.study.methods is
     tuned on each level's validation sets (its grid config.sweep.<method>, epochs an axis of
     it), and run on the reported sets with the point each claim metric chose (claim (i));
     a second retrain (another initialisation) is the noise ceiling of every level;
  3. mix: the same for the mix, `none` a single configuration too; then per claim metric RUM's
     plan searched on whole sequences on the validation mix (plan.py: coordinate descent over
     the stages, config.study.budget sequences, the number of single configurations), and on
     the reported mix RUM with that plan, the Shuffle control (the plan on random thirds), the
     proxy variant (thirds by config.study.proxy) and the paper's plan (config.study.paper_plan);
  4. claims (claims.py): paired differences over seeds with 95% intervals, verdicts
     Holm-corrected over the family; with config.study.strong, the bank metrics of
     config.audit.metrics (forgetting score F, U-LiRA) of the best single configuration,
     RUM and Shuffle on the mix of each of the first config.study.strong_seeds seeds;
  5. report (report.py): the study's markdown, JSON, tidy per-seed record, steps record (RUM's
     per-seed accuracy on every third after every step, and every mix run's per memorization
     third), figure and timings (`runfolder.layout`'s study files).

Every finished run is skipped on a rerun (same settings, same forget sets), grids and the plan
search read back what they scored, so a killed study continues where it stopped.
"""
import time

import ml_collections

from rum_jax import results
from rum_jax.runfolder import RunFolder, flatten, prepare
from rum_jax.pipelines import training
from rum_jax.pipelines.study import report, runs, sets
from rum_jax.pipelines.study.claims import Choices, best_single
from rum_jax.training.config import training_config
from rum_jax.training.setup import Setup


def run_study(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> str:
  """Runs (or resumes) the whole study; returns its markdown report (also in config.study.results_dir).

  Args:
    config: a study config (config.mode == 'study'; configs/study_*.py), validated.
    workdir: the study's work directory (layout in runs.py).
    overwrite: discard results made with another training config or other settings.
  """
  s = config.study
  folder = RunFolder.of(workdir)
  prepare(folder, config, overwrite, clear=(),
          ignore=[k for k in flatten(config) if k.startswith(("study.", "unlearn.", "sweep.", "audit.", "evaluation."))],
          results=("sets", "study", "metrics"))
  original_dir = folder.original().path
  new_original = not folder.original().finished()
  timings = runs.InvocationLog(workdir, config, start_over=new_original)
  setup = Setup.create(config)
  if new_original:
    t0 = time.time()
    training.train_and_evaluate(training_config(config), original_dir, overwrite, setup=setup)
    timings["original"] = time.time() - t0
  for source in [runs.MEMORIZATION] + ([runs.PROXY] if s.proxy else []):
    t0 = time.time()
    if runs.ensure_scores(config, workdir, source):
      timings[f"scores/{source}"] = time.time() - t0

  scores = runs.train_scores(config, workdir, setup, runs.MEMORIZATION)
  stats = sets.set_stats(scores, config.forget.size, s.levels, config.forget.seed, config.num_seeds)
  sets.check_matched(stats, s.match_tolerance)
  met = sets.criterion(stats, s.criterion)
  runner = runs.Runner(config, workdir, setup, overwrite, timings)
  claim_metrics = tuple(s.claim_metrics)
  tuned, ceiling, searches, strong = {}, {}, {}, {}
  choices = {m: Choices(levels={}) for m in claim_metrics}
  for level in [lv for lv in s.levels if lv != "mix"] if met["met"] else []:
    prep, _, tuned[level] = runner.level(level)
    ceiling[level] = runner.noise_ceiling(prep)
    runner.evaluate(runner.set_dir(level))
  if "mix" in s.levels and (met["met"] or s.get("mix_when_unmet", False)):
    prep, val, tuned["mix"] = runner.level("mix")
    searches = {m: runner.search_plan(val, tuned["mix"], m) for m in claim_metrics}
    names = runner.mix_runs(prep, searches)
    ceiling["mix"] = runner.noise_ceiling(prep)
    runner.evaluate(runner.set_dir("mix"))
    for m in claim_metrics:
      best = best_single(tuned["mix"], m)
      choices[m].best = tuned["mix"][best]["runs"][m]
      choices[m].rum, choices[m].shuffle, choices[m].proxy, choices[m].paper = (
          names[m][k] for k in ("rum", "shuffle", "proxy", "paper"))
    if s.get("strong", False):
      first = claim_metrics[0]
      best = best_single(tuned["mix"], first)
      point = None if best == runs.plan_lib.NONE else (best, tuned["mix"][best]["points"][tuned["mix"][best]["chosen"][first]])
      strong = runner.strong_metric(prep, point, searches[first]["plan"], names[first])
  for level, by_method in tuned.items():
    for m in claim_metrics:
      choices[m].levels[level] = {method: t["runs"][m] for method, t in by_method.items() if method != runs.plan_lib.NONE}
  collected = {level: runner.models(level) for level in tuned}
  for level, values in ceiling.items():
    collected[level][runs.SECOND_RETRAIN] = {"per_seed": values, "summary": results.summarize_columns(values)}
  steps = []
  if searches:
    mix_models = ["original", "retrain", runs.SECOND_RETRAIN] + [
        n for n in collected["mix"] if n not in ("original", "retrain", runs.SECOND_RETRAIN)]
    steps = report.steps_rows(workdir, mix_models, scores)
  return report.write_study(config, workdir, {
      "steps": steps,
      "stats": stats, "criterion": met, "collected": collected, "tuned": tuned, "searches": searches,
      "choices": choices, "strong": strong, "invocations": timings.invocations(), "commands": timings.commands(),
      "failures": runner.failures})
