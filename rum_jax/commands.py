"""One function per command line: validate the config once, lock the work directory, run one pipeline.

Each is also the Python interface of its command: the run is tracked (`rum_jax.tracking`: its
scalars in <workdir>/scalars.jsonl and TensorBoard files, its log in <workdir>/log.txt, one
progress line per phase shown in a Python session too).

  train.py      `train`      config.mode train | memorization | proxies
  unlearn.py    `unlearn`    any method of `unlearning.UNLEARNING_METHODS`, RUM included
  continual.py  `continual`  a task sequence of learning and unlearning
  evaluate.py   `evaluate`   finished unlearning runs, a study (config.mode study) or an audit
                             (forgetting quality from banks of models, config.mode audit)
"""
import contextlib
import os
from typing import Any, Iterator, Optional, Sequence, Tuple

import ml_collections

from rum_jax import checks, runfolder, tracking
from rum_jax.config_validation import require_mode, validate
from rum_jax.evaluation.metrics import check_names
from rum_jax.pipelines import continual as continual_pipeline
from rum_jax.pipelines import audit, evaluation, memorization, reports, study, sweep, training, unlearning
from rum_jax.unlearning.config import require_sweeps_only_of, sweep_grid

TRAIN_MODES = {"train": training.train_and_evaluate, "memorization": memorization.run_memorization,
               "proxies": memorization.run_proxies}
EVALUATE_MODES = {"study": study.run_study, "audit": audit.run_audit}


@contextlib.contextmanager
def _running_in(workdir: str, hint: str = "") -> Iterator[runfolder.RunFolder]:
  """The work directory's run folder, held with every folder below it (`runfolder.session`),
  and tracked (`rum_jax.tracking`) while a command runs. A folder holding files rum-jax did
  not write is refused before anything is created; a refused run changes nothing; a run that
  fails before its first result (a forget set larger than the data, a batch larger than the
  train split, missing data, a diverging first run) leaves no config that would refuse the
  corrected command."""
  with runfolder.session(workdir, bookkeeping=tracking.FILES, hint=hint) as folder:
    with tracking.track(workdir):
      yield folder


def train(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """train.py: ordinary training, memorization estimation or proxy scoring (config.mode)."""
  validate(config)
  mode = require_mode(config, "train.py", TRAIN_MODES)
  require_sweeps_only_of(config, (), "train.py runs no unlearning method")
  with _running_in(workdir) as folder:
    return TRAIN_MODES[mode](config, folder.path, overwrite)


def unlearn(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """unlearn.py: scores if needed, original, forget set, retrain reference, the method, evaluation;
  with config.sweep.<method> values, the method tuned on the validation forget set first."""
  validate(config)
  checks.require("unlearn" in config and "forget" in config,
                 "unlearn.py needs config.forget and config.unlearn; start from configs/digits.py")
  method = config.unlearn.method
  require_sweeps_only_of(config, (method,), f"unlearn.py runs config.unlearn.method={method!r} only "
                         "(set it to the method to tune)")
  run = sweep.run_sweep if sweep_grid(config, method) else unlearning.run_unlearning
  with _running_in(workdir) as folder:
    return run(config, folder.path, overwrite)


def continual(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> Any:
  """continual.py: a task sequence of learning and unlearning for all seeds at once."""
  checks.require("continual" in config, "config.continual is missing; start from configs/continual_digits.py")
  validate(config)
  require_sweeps_only_of(config, (), "continual.py tunes nothing (its methods' settings are in "
                         "config.continual.unlearn)")
  with _running_in(workdir) as folder:
    return continual_pipeline.run_continual(config, folder.path, overwrite)


def evaluate(workdir: str, config: Optional[ml_collections.ConfigDict] = None, overwrite: bool = False,
             output: Optional[str] = None) -> str:
  """evaluate.py: with a config, the study or audit it describes; without, the finished
  runs in `workdir`, their evaluation written there or, with `output`, into that folder (for a
  work directory this user may only read)."""
  if config is None:
    if output:
      with runfolder.hold(workdir, shared=True), _running_in(output) as target:
        return evaluation.evaluate_path(workdir, output=target)
    # One run of a work directory writes beside its reference too: the work directory is held.
    held = os.path.dirname(os.path.dirname(os.path.abspath(workdir))) \
        if runfolder.kind_of(runfolder.RunFolder(workdir)) == "method" else workdir
    with _running_in(held, hint="pass --output=<a folder you can write> to write the evaluation there"):
      return evaluation.evaluate_path(workdir)
  checks.require(not output, "--output is for the evaluation of finished runs (evaluate.py without --config); a study "
                 "or audit writes into --workdir")
  validate(config)
  mode = require_mode(config, "evaluate.py", EVALUATE_MODES)
  with _running_in(workdir) as folder:
    return EVALUATE_MODES[mode](config, folder.path, overwrite)


def leaderboard_files(output: str) -> Tuple[str, str]:
  """(the markdown file, the CSV beside it) that leaderboard.py --output names.

  --output is the markdown file to write (a name ending in .md); the records it was made from
  go beside it, the same name ending in .csv. Anything else is refused with the fix.
  """
  stem, ext = os.path.splitext(output)
  checks.require(not os.path.isdir(output), f"--output={output} is a folder; name the markdown file to write in "
                 f"it, e.g. --output={os.path.join(output, 'leaderboard.md')} (the records go beside it as .csv)")
  checks.require(ext == ".md" and os.path.basename(stem) != "", f"--output={output} is not a markdown file name "
                 f"(.md): e.g. --output={(stem if ext in ('.csv', '.txt', '.markdown') else output) + '.md'} writes "
                 f"the table there and the records it was made from beside it (.csv)")
  folder = os.path.dirname(os.path.abspath(output))
  existing = folder
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  checks.require(os.path.isdir(existing), f"--output={output} is inside {existing}, which is a file: choose "
                 "another --output")
  checks.require(os.access(existing, os.W_OK), f"--output={output} cannot be written: you may not write in "
                 f"{existing}; choose an --output in a folder you can write to")
  return output, stem + ".csv"


def leaderboard(workdirs: Sequence[str], output: str, metrics: Sequence[str] = (), pool: bool = False) -> str:
  """leaderboard.py: one table over the records of many work directories, a row per run
  (`pool`: runs of one recipe in several work directories pooled into one row, which says so)."""
  checks.require(bool(workdirs), "--workdirs names no work directory; give one or more, comma-separated")
  try:
    names = check_names(list(metrics), "--metrics") if metrics else None
  except ValueError as err:
    raise checks.ConfigError(str(err)) from None
  markdown, csv = leaderboard_files(output)
  return reports.write_leaderboard(list(workdirs), markdown, csv, names, pool)
