"""The study of the RUM paper, in one resumable command (evaluate.py with a study config).

Zhao et al. 2024, "What makes unlearning hard and what to do about it" (NeurIPS,
arXiv:2406.01257), Sec. 4-6, claim (i) that forget sets of more memorized examples are harder
to unlearn for most methods, and (ii) that RUM, refining a mixed forget set by memorization and
unlearning its thirds in sequence, beats the methods it uses; its follow-up (Zhao &
Triantafillou 2024, arXiv:2410.16516) refines by a cheap proxy instead. `run_study(config,
workdir)` tests them on one data set with nothing tuned on the sets it reports:

  1. sets (sets.py): every seed draws its reported and its validation forget set of each level
     at random from the same band of the memorization ranking (config.forget.draw = "band");
     a level whose two sets differ by more than config.study.match_tolerance is refused, and
     the data set is checked against config.study.criterion (do the levels differ?);
  2. levels (runs.py): where the criterion holds, every method of config.study.methods is
     tuned on each level's validation sets (its grid config.sweep.<method>) and run with its
     choice on the reported sets (claim (i));
  3. mix: the same for the mix, then RUM's plan searched end to end on the validation mix
     (plan.py: per stage `none` and each method over its grid, scored by the ToW of the whole
     sequence), and on the reported mix: RUM with that plan, the Shuffle control (the plan on
     random thirds), the paper's plan (config.study.paper_plan) and the proxy variant (the
     plan, thirds by config.study.proxy);
  4. claims (claims.py): paired differences over seeds with 95% intervals and verdicts;
     with config.study.strong, the challenge's forgetting score and U-LiRA of the best single
     method, RUM and Shuffle on seed 0's mix (banks sized by config.forgetting);
  5. report (report.py): study.md / .json / .csv / .png / .timings.json.

Every finished run is skipped on a rerun (same settings, same forget sets), grids and the plan
search read back their checkpoints, so a killed study continues where it stopped.
"""
import time

import ml_collections

from rum_jax import workdir as workdir_lib
from rum_jax.pipelines import training
from rum_jax.pipelines.study import report, runs, sets
from rum_jax.pipelines.study.claims import best_on_validation, claims, paired_difference, verdict  # noqa: F401
from rum_jax.training.config import training_config
from rum_jax.training.setup import Setup


def run_study(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> str:
  """Runs (or resumes) the whole study; returns study.md (also in config.study.results_dir).

  Args:
    config: a study config (config.mode == 'study'; configs/study_*.py), validated.
    workdir: the study's work directory (layout in runs.py).
    overwrite: discard results made with another training config or other settings.
  """
  s = config.study
  workdir_lib.prepare(workdir, config, overwrite, clear=(),
                      ignore=[k for k in workdir_lib.flatten(config)
                              if k.startswith(("study.", "unlearn.", "sweep.", "forgetting."))],
                      outputs=("sets", "study.json"))
  original_dir = workdir_lib.original_dir(workdir)
  new_original = not workdir_lib.is_finished(original_dir)
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
  collected, tuned, search, strong = {}, {}, None, {}
  for level in [lv for lv in s.levels if lv != "mix"] if met["met"] else []:
    _, tuned[level] = runner.level(level)
    runner.evaluate(runner.set_dir(level))
  if "mix" in s.levels and (met["met"] or s.get("mix_when_unmet", False)):
    prep, tuned["mix"] = runner.level("mix")
    search = runner.search_plan(tuned["mix"])
    runner.mix_runs(prep, search["plan"])
    runner.evaluate(runner.set_dir("mix"))
    if s.get("strong", False):
      best = best_on_validation(tuned["mix"], s.methods)
      strong = runner.strong_metric(prep, best, tuned["mix"][best]["point"], search["plan"])
  for level in tuned:
    collected[level] = runner.models(level)
  return report.write_study(config, workdir, {
      "stats": stats, "criterion": met, "collected": collected, "tuned": tuned, "search": search, "strong": strong,
      "invocations": timings.invocations(), "commands": timings.commands(), "failures": runner.failures})

