"""Every file and folder name of a work directory, in one table: the only place they are spelled.

A pipeline names what it writes or reads by a key of `FILES` (`RunFolder.write("metrics",
record)`); the entry gives the file's path in its run folder (a pattern whose fields the
caller fills: `predictions/{split}.npz`) and its format, which decides how a value is written
and read back:

  json    a dict (a record, a config)            csv     tidy rows (dicts), `fields` first
  npz     named arrays                            text    markdown
  png     a matplotlib figure                     tree    a folder another program fills

Layout of an unlearning work directory (the other commands use parts of it):

  config.json                 the resolved config of the run (its copy is kept in the manifest)
  original/                   the original models (train.py's layout: config.json, checkpoints/,
                              history.csv, metrics.json/.csv, predictions/{train,val,test}.npz)
  memorization/               the default score file memorization/memorization.npz (train.py's
                              memorization or proxies layout: chunks/, stats.npz, events/, ...)
  forget_set.npz / .json      the forget set (positions and ORIGINAL indices per seed)
  entanglement.json / .csv    the entanglement score of every group (forget.kind=entanglement)
  retrain/<key>/              the retrain-from-scratch reference of one forget set: made_by.json
                              (what made it), checkpoints/, forget_set.npz, predictions/
  methods/<name>/             one run per method (or RUM plan): config.json, checkpoints/ (RUM:
                              steps/), metrics.json/.csv, history.csv, curves.png, predictions/,
                              forget_set.npz, evaluation.json, RUM's steps.json/.csv
  saliency.npz                SalUn's |grad| of the forget loss
  summary.csv / summary.md    the records of every finished method
  evaluation.{json,csv,md,png}, original_evaluation.json   the evaluation
  validation/                 a sweep's validation work directory (the same layout)
  sweeps/<method>/            sweep.json/.csv/.md/.png (and grid.json in validation/sweeps/)

An audit work directory adds retrained/, unlearned/<method>/ and shadow/ banks (each
config.json, chunks/chunk_<j>.npz, shadow weights/), audit.{json,csv,md},
epsilons.{npz,csv} and the figures audit_epsilons.png, audit_roc.png.
"""
import dataclasses
from typing import Any, Optional, Tuple

from rum_jax import manifest
from rum_jax.results import RECORD_COLUMNS


@dataclasses.dataclass(frozen=True)
class File:
  """A file of a run folder: its path pattern, its format, and for csv the leading columns."""
  pattern: str
  format: str
  fields: Tuple[str, ...] = ()
  dpi: int = 100


FILES = {
    # Every run folder.
    "config": File("config.json", "json"),
    "made_by": File("made_by.json", "json"),
    "metrics": File("metrics.json", "json"),
    "metrics_record": File("metrics.csv", "csv", RECORD_COLUMNS),
    "history": File("{under}history.csv", "csv"),
    "curves": File("{under}curves.png", "png"),
    "predictions": File("predictions/{split}.npz", "npz"),
    "report_table": File("{stem}.json", "json"),  # a method's own table (RUM: steps)
    "report_rows": File("{stem}.csv", "csv"),
    # Unlearning work directories.
    "forget_set": File("forget_set.npz", "npz"),
    "forget_set_info": File("forget_set.json", "json"),
    "entanglement": File("entanglement.json", "json"),
    "entanglement_rows": File("entanglement.csv", "csv"),
    "saliency": File("saliency.npz", "npz"),
    "summary_record": File("summary.csv", "csv", RECORD_COLUMNS),
    "summary_table": File("summary.md", "text"),
    "evaluation": File("evaluation.json", "json"),
    "evaluation_record": File("evaluation.csv", "csv", RECORD_COLUMNS),
    "evaluation_table": File("evaluation.md", "text"),
    "evaluation_figure": File("evaluation.png", "png", dpi=110),
    "original_evaluation": File("original_evaluation.json", "json"),
    # Sweeps.
    "grid": File("grid.json", "json"),
    "sweep": File("sweep.json", "json"),
    "sweep_rows": File("sweep.csv", "csv"),
    "sweep_table": File("sweep.md", "text"),
    "sweep_figure": File("sweep.png", "png", dpi=110),
    # Memorization scores.
    "scores": File("memorization.npz", "npz"),
    "stats": File("stats.npz", "npz"),
    "chunk": File("chunks/chunk_{index:05d}.npz", "npz"),
    "weights": File("weights/chunk_{index:05d}.npz", "npz"),
    "memorization_summary": File("memorization_summary.json", "json"),
    "memorization_histogram": File("memorization_hist.png", "png"),
    "proxies_summary": File("proxies_summary.json", "json"),
    "proxies_histogram": File("proxies_hist.png", "png"),
    # An audit (forgetting quality from banks of models).
    "audit": File("audit.json", "json"),
    "audit_record": File("audit.csv", "csv", RECORD_COLUMNS),
    "audit_table": File("audit.md", "text"),
    "epsilons": File("epsilons.npz", "npz"),
    "epsilons_rows": File("epsilons.csv", "csv"),
    "epsilons_figure": File("audit_epsilons.png", "png"),
    "roc_figure": File("audit_roc.png", "png"),
    # A continual run (rum_jax/pipelines/continual.py).
    "continual_steps": File("steps.csv", "csv"),
    "progress": File("progress.json", "json"),
    "curves_rows": File("curves.csv", "csv"),
    "trace": File("trace.csv", "csv", ("step", "action", "pass", "seed", "forgotten_held_out", "kept_held_out")),
    "matrices": File("matrices.npz", "npz"),
    "heatmap_figure": File("task_accuracy_heatmap.png", "png"),
    "task_curves_figure": File("task_curves.png", "png"),
    "cl_tow_figure": File("cl_tow.png", "png"),
    "tradeoff_figure": File("tradeoff.png", "png"),
    # A study (rum_jax/pipelines/study/): its work directory, and config.study.results_dir.
    "timings": File("timings.json", "json"),
    "plan_sequences": File("plan/sequences.json", "json"),
    "study": File("study.json", "json"),
    "study_record": File("study.csv", "csv", RECORD_COLUMNS),
    "study_steps": File("study.steps.csv", "csv"),
    "study_table": File("study.md", "text"),
    "study_figure": File("study.png", "png", dpi=110),
    "study_timings": File("study.timings.json", "json"),
}

# Folders: run folders of their own (a manifest each) and folders of a run's files.
FOLDERS = {
    "original": "original", "scores": "memorization", "methods": "methods", "retrain": "retrain",
    "validation": "validation", "sweeps": "sweeps", "checkpoints": "checkpoints", "steps": "steps",
    "chunks": "chunks", "weights": "weights", "events": "events", "predictions": "predictions",
    "retrained": "retrained", "unlearned": "unlearned", "shadow": "shadow", "trained": "trained",
    "sets": "sets", "noise_ceiling": "noise_ceiling",
    "audits": "audit",  # a study's audit work directories (not "audit": that key names audit.json)
}
SPLITS = ("train", "val", "test")

# The tidy record files `results.collect` reads from many work directories.
RECORD_FILES = (FILES["evaluation_record"].pattern, FILES["audit_record"].pattern)
# Bookkeeping of a run folder that is not a result.
BOOKKEEPING = manifest.OWN


def name(key: str, **fields: Any) -> str:
  """The path of file `key` relative to its run folder (its pattern with `fields` filled)."""
  entry = FILES[key]
  fields.setdefault("under", "")
  if fields["under"] and not fields["under"].endswith("/"):
    fields["under"] += "/"
  return entry.pattern.format(**fields)


def folder(key: str, *more: str) -> str:
  """The path of folder `key` (and `more` below it) relative to its run folder."""
  return "/".join((FOLDERS[key],) + tuple(more))


def fields_of(key: str) -> Tuple[str, ...]:
  return FILES[key].fields


def key_of(filename: str) -> Optional[str]:
  """The key of a fixed file name (None for patterns and unknown names)."""
  return next((k for k, f in FILES.items() if f.pattern == filename), None)
