"""One function per command line: validate the config once, lock the work directory, run one pipeline.

  train.py      `train`      config.mode train | memorization | proxies
  unlearn.py    `unlearn`    any method of `unlearning.METHODS`, RUM included
  continual.py  `continual`  a task sequence of learning and unlearning
  evaluate.py   `evaluate`   finished unlearning runs, a study (config.mode study) or forgetting
                             quality from banks of models (config.mode forgetting)
"""
from typing import Any, Optional, Sequence

import ml_collections

from rum_jax import checks, workdir as workdir_lib
from rum_jax.config_validation import require_mode, validate
from rum_jax.pipelines import continual as continual_pipeline
from rum_jax.evaluation.metrics import check_names
from rum_jax.pipelines import evaluation, forgetting, memorization, reports, study, sweep, training, unlearning
from rum_jax.unlearning.config import sweep_grid

TRAIN_MODES = {"train": training.train_and_evaluate, "memorization": memorization.run_memorization,
               "proxies": memorization.run_proxies}
EVALUATE_MODES = {"study": study.run_study, "forgetting": forgetting.run_forgetting}


def train(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """train.py: ordinary training, memorization estimation or proxy scoring (config.mode)."""
  validate(config)
  mode = require_mode(config, "train.py", TRAIN_MODES)
  with workdir_lib.WorkdirLock(workdir):
    return TRAIN_MODES[mode](config, workdir, overwrite)


def unlearn(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """unlearn.py: scores if needed, original, forget set, retrain reference, the method, evaluation;
  with config.sweep.<method> values, the method tuned on the validation forget set first."""
  validate(config)
  checks.require("unlearn" in config and "forget" in config,
                 "unlearn.py needs config.forget and config.unlearn; start from configs/digits.py")
  run = sweep.run_sweep if sweep_grid(config, config.unlearn.method) else unlearning.run_unlearning
  with workdir_lib.WorkdirLock(workdir):
    return run(config, workdir, overwrite)


def continual(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """continual.py: a task sequence of learning and unlearning for all seeds at once."""
  checks.require("continual" in config, "config.continual is missing; start from configs/continual_digits.py")
  validate(config)
  with workdir_lib.WorkdirLock(workdir):
    return continual_pipeline.run_continual(config, workdir, overwrite)


def evaluate(workdir: str, config: Optional[ml_collections.ConfigDict] = None, overwrite: bool = False) -> str:
  """evaluate.py: with a config, the study or forgetting run it describes; without, the finished runs in `workdir`."""
  if config is None:
    return evaluation.evaluate_path(workdir)
  validate(config)
  mode = require_mode(config, "evaluate.py", EVALUATE_MODES)
  with workdir_lib.WorkdirLock(workdir):
    return EVALUATE_MODES[mode](config, workdir, overwrite)


def leaderboard(workdirs: Sequence[str], output: str, metrics: Sequence[str] = ()) -> str:
  """leaderboard.py: one table over the records of many work directories (and their reference rows)."""
  checks.require(bool(workdirs), "--workdirs names no work directory; give one or more, comma-separated")
  try:
    names = check_names(list(metrics), "--metrics") if metrics else None
  except ValueError as err:
    raise checks.ConfigError(str(err)) from None
  return reports.write_leaderboard(list(workdirs), output, names)
