"""Evaluating finished unlearning runs (RUM and SalUn's protocol), behind evaluate.py.

For a model (an unlearned run, the retrain reference, the original) and the forget set F of its
run, from the logits of every seed, every metric of the list (`config.evaluation.metrics`,
default `metrics.DEFAULT_METRICS`) by name from the registry
`rum_jax.evaluation.metrics.METRICS`: split accuracies, the SVC and loss attacks on F, ToW and
ToW-MIA against the retrain reference of the same seed (the reference itself scores 1).

The logits are those a run just computed (`Computed`, handed over by the unlearning pipeline)
or the predictions it saved, checked against the digests rum-jax recorded when it wrote them.
Before anything is computed every run is checked: its reference is the one it was compared
with, its forget set the reference's and the work directory's, and the original models the
ones it was unlearned from (each run records their digest); a work directory that mixes them
is refused. Per-seed values are cached beside their inputs (a method's, the reference's, the
original's), keyed by a digest of the logits, the forget set and the evaluation settings: re-
evaluating is cheap, and a changed run is re-evaluated. A work directory gets the values of
every model (per seed, means and 95% intervals), the record (one row per model x seed x metric
with the run's settings), the table (`reports.table`) and the figure.

`evaluate_path(path)` is evaluate.py without a config: `path` is an unlearning work directory
(every finished run) or one method folder; `output`: another folder to write into (a work
directory this user may only read). Nothing here trains.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from rum_jax import results
from rum_jax.evaluation.metrics import DEFAULT_METRICS, METRICS, ModelOutputs, check_names
from rum_jax.evaluation.metrics.attacks import NUM_SHADOW
from rum_jax.pipelines import reports
from rum_jax.runfolder import RunFolder, WorkdirError, config_of, digest, kind_of, layout, made_by
from rum_jax.training.setup import prediction_arrays

SPLITS = layout.SPLITS


@dataclasses.dataclass
class Predictions:
  """One model's logits of every split (float64, as saved: float32), labels, train ORIGINAL index."""
  logits: Dict[str, np.ndarray]
  labels: Dict[str, np.ndarray]
  index: np.ndarray

  @classmethod
  def of(cls, arrays: Dict[str, Dict[str, np.ndarray]]) -> "Predictions":
    """From the saved arrays of every split (`training.setup.prediction_arrays`)."""
    return cls({s: np.asarray(arrays[s]["logits"], np.float64) for s in SPLITS},
               {s: np.asarray(arrays[s]["labels"]) for s in SPLITS}, np.asarray(arrays["train"]["index"]))


def load_predictions(folder: RunFolder, what: str, how_to_make: str) -> Predictions:
  """The predictions `folder` saved, each file checked against the digest recorded when it was written."""
  missing = [folder.file("predictions", split=s) for s in SPLITS if not folder.exists("predictions", split=s)]
  if missing:
    raise FileNotFoundError(f"{what} has no predictions ({', '.join(missing)} missing); {how_to_make}")
  return Predictions.of({s: folder.read("predictions", verify=True, split=s) for s in SPLITS})


@dataclasses.dataclass
class Computed:
  """What an unlearning run just computed, evaluated as it is instead of read back from its files."""
  method: str
  predictions: Predictions
  forget: np.ndarray
  reference_folder: RunFolder
  reference: Predictions
  original_folder: RunFolder
  original: Predictions

  @classmethod
  def of(cls, prep: Any, method: str, outputs: ModelOutputs) -> "Computed":
    """From a prepared work directory (`unlearning.Prepared`) and the run's outputs."""
    ds = prep.setup.dataset
    return cls(method, Predictions.of(prediction_arrays(ds, outputs.logits)), np.stack(prep.forget),
               prep.retrain_folder, Predictions.of(prediction_arrays(ds, prep.reference_outputs.logits)),
               prep.original_folder, Predictions.of(prediction_arrays(ds, prep.original_outputs.logits)))


def outputs_of(logits: Dict[str, np.ndarray], labels: Dict[str, np.ndarray], forget, *,
               reference: Optional[ModelOutputs] = None, num_shadow: Optional[int] = NUM_SHADOW,
               seed: int = 0, known: Optional[Dict[str, Sequence[float]]] = None) -> ModelOutputs:
  """The metrics' inputs for one model (seed s's attack draws use seed + s); `known` values
  (from a cache) are not computed again."""
  out = ModelOutputs(logits, labels, forget, reference, {"num_shadow": num_shadow, "seed": seed})
  for name, values in (known or {}).items():
    out.prefill(name, values)
  return out


def metric_values(outputs: ModelOutputs, metrics: Sequence[str]) -> Dict[str, list]:
  """{metric: per-seed values} as JSON lists."""
  return {name: outputs.value(name).tolist() for name in metrics}


def _digest(logits: Dict[str, np.ndarray], forget: np.ndarray, settings: Dict[str, Any]) -> str:
  """Of the inputs' contents (not the files', whose zip headers change when rewritten)."""
  h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  h.update(np.ascontiguousarray(forget, np.int64).tobytes())
  for split in SPLITS:
    h.update(np.ascontiguousarray(logits[split]).tobytes())
  return h.hexdigest()


def _cached(folder: RunFolder, key: str, write: bool, logits: Dict[str, np.ndarray], forget: np.ndarray,
            settings: Dict[str, Any], compute) -> Dict[str, Any]:
  """{"digest", "settings", "values"} of cache file `key` of `folder` if made from the same
  inputs, else compute() (the values), written there when `write`."""
  digest_ = _digest(logits, forget, settings)
  if folder.exists(key):
    try:
      record = folder.read(key)
    except ValueError as err:
      logging.warning("%s; recomputing it (it is a cache)", err)
      record = {}
    if record.get("digest") == digest_ and "values" in record:
      return record
  record = {"digest": digest_, "settings": settings, "values": compute()}
  if write:
    folder.write(key, record)
  return record


def _how_to_make_reference(workdir: Any) -> str:
  return (f"make it by re-running the same unlearn.py command (same --config and overrides, "
          f"--workdir={workdir}): it trains the retrain reference (or restores it from its "
          f"checkpoints) and saves its predictions; `--config.unlearn.method=retrain` does only that")


def _settings(metrics: Sequence[str], num_shadow: Optional[int], seed: int) -> Dict[str, Any]:
  return {"metrics": list(metrics), "num_shadow": num_shadow, "seed": seed}


def _workdir_metrics(workdir: RunFolder, metrics: Optional[Sequence[str]]) -> Tuple[str, ...]:
  """The metric list: given, else the work directory's config.evaluation.metrics, else the default."""
  if metrics is None:
    config = config_of(workdir) or {}
    metrics = (config.get("evaluation") or {}).get("metrics") or DEFAULT_METRICS
  return check_names(list(metrics), "the evaluation's metric list (config.evaluation.metrics)", banks=False)


@dataclasses.dataclass
class Run:
  """A finished run and its inputs, checked (`gather`)."""
  name: str
  record: Dict[str, Any]
  folder: RunFolder
  reference_folder: RunFolder
  forget: np.ndarray
  predictions: Predictions
  reference: Predictions


def gather(run: RunFolder, computed: Optional[Computed] = None) -> Run:
  """A finished run of unlearn.py (methods/<name>) with its retrain reference's predictions;
  reads only, and refuses what would compare the run with anything but what it was compared
  with when it ran: another reference, another forget set, replaced files."""
  workdir = _workdir_of(run)
  if not run.exists("metrics"):
    raise FileNotFoundError(f"{run} holds no finished unlearning run (no {layout.name('metrics')}); run "
                            f"unlearn.py with --workdir={workdir} first")
  record = run.read("metrics")
  # Recorded relative to the work directory, so a copied or moved one is evaluated against its own reference.
  reference = RunFolder(workdir.resolve(record["retrain_reference"])) if record.get("retrain_reference") else None
  if reference is None or not reference.exists("forget_set"):
    raise FileNotFoundError(f"the run in {run} has no retrain reference (expected in "
                            f"{reference or workdir.folder('retrain', '<key>')}), which ToW and "
                            f"ToW-MIA compare against; {_how_to_make_reference(workdir)}")
  made = made_by(reference)
  if record.get("retrain_digest") and made != record["retrain_digest"]:
    raise WorkdirError(
        f"the retrain reference {reference} is not the one the run in {run} was compared with "
        f"(made by {made or 'nothing recorded'}, the run's {record['retrain_digest']}): it was replaced by "
        f"one of other training or another forget set. Re-run unlearn.py with --workdir={workdir} to retrain it")
  own = computed is not None and computed.method == run.name()
  forget = computed.forget if own else run.read("forget_set", verify=True)["forget_positions"]
  reference_forget = reference.read("forget_set", verify=True)["forget_positions"]
  if forget.shape != reference_forget.shape or not np.array_equal(forget, reference_forget):
    raise WorkdirError(f"the forget set of {run} ({forget.shape[-1]} examples per seed, first "
                     f"{forget[0][:5].tolist()}) differs from the one its retrain reference {reference} "
                     f"was trained without ({reference_forget.shape[-1]}, first {reference_forget[0][:5].tolist()}): "
                     f"ToW compares against retraining without exactly the forgotten examples. "
                     f"{_how_to_make_reference(workdir).capitalize()}")
  predictions = computed.predictions if own else load_predictions(
      run, f"the run in {run}", "it did not finish: re-run unlearn.py")
  if computed is not None and computed.reference_folder == reference:
    reference_predictions = computed.reference
  else:
    reference_predictions = load_predictions(reference, f"the retrain reference {reference}",
                                             _how_to_make_reference(workdir))
  if not np.array_equal(predictions.index, reference_predictions.index) or \
      predictions.logits["test"].shape != reference_predictions.logits["test"].shape:
    raise WorkdirError(f"{run} and its retrain reference {reference} were evaluated on different "
                     f"data (train indices or test size differ): they belong to different data sets or splits")
  return Run(run.name(), record, run, reference, forget, predictions, reference_predictions)


def _workdir_of(run: RunFolder) -> RunFolder:
  """The unlearning work directory of a method's run folder (two folders up)."""
  return RunFolder(os.path.dirname(os.path.dirname(os.path.abspath(run.path))))


def evaluate_run(run: Run, metrics: Sequence[str], num_shadow: Optional[int], seed: int,
                 cache: bool = True) -> Dict[str, Any]:
  """Every metric of `metrics` of a gathered run and of its reference (against itself):
  {"values", "digest", "name", "settings", "reference" (the reference's cache record),
  "reference_outputs"}; the values are cached beside their inputs when `cache`."""
  settings = _settings(metrics, num_shadow, seed)
  r = run.reference
  # The reference against itself: ToW and ToW-MIA 1 by construction, computed like any row's.
  ref = outputs_of(r.logits, r.labels, run.forget, num_shadow=num_shadow, seed=seed)
  ref.reference = ref
  reference = _cached(run.reference_folder, "evaluation", cache, r.logits, run.forget, settings,
                      lambda: metric_values(ref, metrics))
  ref = outputs_of(r.logits, r.labels, run.forget, num_shadow=num_shadow, seed=seed, known=reference["values"])
  ref.reference = ref
  p = run.predictions
  outputs = outputs_of(p.logits, p.labels, run.forget, reference=ref, num_shadow=num_shadow, seed=seed)
  # The digest of a run includes its reference's, so a new reference re-evaluates the run.
  out = _cached(run.folder, "evaluation", cache, p.logits, run.forget, {**settings, "reference": reference["digest"]},
                lambda: metric_values(outputs, metrics))
  return {"values": out["values"], "digest": out["digest"], "name": run.name,
          "settings": run.record.get("settings", {}), "reference": reference, "reference_outputs": ref}


def evaluate_method(method_dir: Any, *, metrics: Optional[Sequence[str]] = None,
                    num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0, cache: bool = True) -> Dict[str, Any]:
  """Evaluates one finished run of unlearn.py (methods/<name>) against its retrain reference
  (`gather`, then `evaluate_run`); metrics: None for the work directory's config.evaluation.metrics."""
  run = gather(RunFolder.of(method_dir))
  return evaluate_run(run, _workdir_metrics(_workdir_of(run.folder), metrics), num_shadow, seed, cache)


def _original(workdir: RunFolder, runs: List[Run], computed: Optional[Computed]
              ) -> Tuple[Optional[RunFolder], Optional[Predictions]]:
  """The original models of the work directory's runs and their predictions (None: gone, the
  row is left out); refuses a forget set edited since and runs unlearned from other originals."""
  forget = runs[0].forget
  recorded = workdir.read("forget_set", verify=True)["forget_positions"]
  if recorded.shape != forget.shape or not np.array_equal(recorded, forget):
    raise WorkdirError(
        f"{workdir.file('forget_set')} is not the forget set its runs were unlearned from (digest "
        f"{digest(recorded)}, the runs' {digest(forget)}): it was edited or replaced. "
        f"Restore it, or re-run unlearn.py with --workdir={workdir} --overwrite")
  info = workdir.read("forget_set_info")
  original = RunFolder(workdir.resolve(info["original_workdir"])) if info.get("original_workdir") else None
  if original is None or not all(original.exists("predictions", split=s) for s in SPLITS):
    logging.warning("no predictions of the original model in %s: its row is left out", original)
    return None, None
  now = original.predictions_digest()
  other = [r.name for r in runs if r.record.get("original_digest") not in (None, now)]
  if other:
    raise WorkdirError(
        f"the runs {', '.join(other)} of {workdir} were unlearned from other original models than those now in "
        f"{original} (retrained since): evaluated here they would sit beside an original they did not start from. "
        f"Restore those original models, or unlearn again from the new ones (unlearn.py --workdir={workdir} "
        "--overwrite, with their config)")
  if computed is not None and computed.original_folder == original:
    return original, computed.original
  return original, load_predictions(original, "the original model", "re-run train.py")


def evaluate(workdir: Any, *, metrics: Optional[Sequence[str]] = None, num_shadow: Optional[int] = NUM_SHADOW,
             seed: int = 0, computed: Optional[Computed] = None, output: Optional[RunFolder] = None
             ) -> Tuple[str, Dict[str, Any]]:
  """Evaluates every finished run of an unlearning work directory; writes its values, record,
  table and figure into `output` (default: the work directory, which then also keeps the
  caches). Rows: the original model, the retrain reference, then every run of methods/.

  Returns:
    (the markdown table, {model: {"per_seed", "summary"}}).
  """
  workdir = RunFolder.of(workdir)
  target = output or workdir
  cache = output is None
  names = workdir.finished_runs()
  if not names:
    raise FileNotFoundError(f"{workdir} holds no finished unlearning run (methods/<name>/{layout.name('metrics')}); "
                            f"run unlearn.py with --workdir={workdir} first")
  metrics = _workdir_metrics(workdir, metrics)
  runs = [gather(workdir.method(name), computed) for name in names]  # every check before any value
  references = {r.reference_folder for r in runs}
  if len(references) > 1:
    raise WorkdirError(f"the runs of {workdir} compare against different retrain references "
                       f"({', '.join(sorted(str(r) for r in references))}): the work directory mixes forget sets")
  original_folder, original = _original(workdir, runs, computed)
  evaluated = {r.name: evaluate_run(r, metrics, num_shadow, seed, cache) for r in runs}
  first = next(iter(evaluated.values()))
  settings = _settings(metrics, num_shadow, seed)
  models: Dict[str, Tuple[Dict[str, list], Dict[str, Any]]] = {}  # name -> (values, method settings)
  original_digest = (original_folder.predictions_digest() if original_folder is not None
                     else str(runs[0].record.get("original_digest") or ""))
  if original is not None:
    outputs = outputs_of(original.logits, original.labels, runs[0].forget, reference=first["reference_outputs"],
                         num_shadow=num_shadow, seed=seed)
    models["original"] = (_cached(workdir, "original_evaluation", cache, original.logits, runs[0].forget,
                                  {**settings, "reference": first["reference"]["digest"]},
                                  lambda: metric_values(outputs, metrics))["values"], {})
  models["retrain"] = (first["reference"]["values"], evaluated.get("retrain", {}).get("settings", {}))
  models.update({name: (e["values"], e["settings"]) for name, e in evaluated.items() if name != "retrain"})
  config = config_of(workdir) or {}
  forget_digest = digest(runs[0].forget)
  rows = [row for name, (values, run_settings) in models.items()
          for row in results.record_rows(values, **results.run_columns(config, name, run_settings, forget_digest,
                                                                        original_digest))]
  summary = results.summary_frame(rows)
  values = {name: {"per_seed": v, "summary": results.summarize_columns(v)} for name, (v, _) in models.items()}
  target.write("evaluation", {"settings": settings, "retrain_reference": target.relative(runs[0].reference_folder.path),
                              "models": values})
  target.write("evaluation_record", rows)
  table = reports.table(summary, metrics)
  target.write("evaluation_table", table)
  num_seeds = len(next(iter(first["values"].values())))
  target.write("evaluation_figure", reports.bar_figure(
      summary, _panels(metrics), f"{workdir.name()}: against retraining ({num_seeds} seeds)",
      ylabels=("accuracy", "score (1 = retrained)")))
  return table, values


def evaluate_workdir(workdir: Any, **kwargs: Any) -> str:
  """`evaluate(...)`'s markdown table."""
  return evaluate(workdir, **kwargs)[0]


def _panels(metrics: Sequence[str]):
  """The figure's panels: accuracies, then the scores against retraining (ToW, ToW-MIA, ...)."""
  accuracies = [m for m in metrics if m.endswith("_accuracy") and m != "val_accuracy"]
  scores = [m for m in metrics if "reference" in METRICS.get(m).needs]
  return [p for p in (accuracies, scores) if p]


# ---------------------------------------------------------------------------------------
# evaluate.py


def evaluate_path(path: Any, output: Optional[RunFolder] = None) -> str:
  """evaluate.py without a config: an unlearning work directory, or one method folder of one;
  `output`: where its files go instead (nothing is written into `path` then).

  Returns:
    The markdown table written (the work directory's, or one method's rows).

  Raises:
    FileNotFoundError: `path` is another kind of work directory, or none; the message says
      where its results are or what to run.
  """
  folder = RunFolder.of(path)
  kind = kind_of(folder)
  if kind == "unlearning" or (kind == "none" and folder.runs()):
    table = evaluate_workdir(folder, output=output)
    target = output or folder
    logging.info("evaluation of %s:\n%s\ntable: %s  figure: %s", folder, table, target.file("evaluation_table"),
                 target.file("evaluation_figure"))
    return table
  if kind == "method":
    record = evaluate_method(folder, cache=output is None)
    rows = (results.record_rows(record["reference"]["values"], method="retrain")
            + results.record_rows(record["values"], method=record["name"]))
    table = reports.table(results.summary_frame(rows), list(record["values"]))
    if output is not None:
      output.write("evaluation_table", table)
    logging.info("evaluation of %s:\n%s", folder, table)
    return table
  config = folder.file("config")
  where = {
      "study": (f"is a study's work directory: run it (or resume it) with python evaluate.py --config=<the study "
                f"config, recorded in {config}> --workdir={folder}; its tables are in {layout.name('study_table')} and each forget "
                f"set's evaluation in sets/<set>/{layout.name('evaluation_table')}"),
      "continual": ("is a continual.py work directory: continual.py itself writes its metrics (ACC, BWT, FWT, "
                    "CL-ToW, CLU, per-task MIA) to its metrics record there"),
      "scores": ("holds memorization scores (train.py with mode memorization or proxies): nothing to evaluate; "
                 "unlearn.py reads them through --config.forget.scores"),
      "training": ("is a train.py work directory (original models; accuracies in its metrics record): evaluate.py "
                   "evaluates unlearning runs; make some with unlearn.py --config.unlearn.original_workdir="
                   f"{folder} --workdir=<another folder>"),
      "none": f"is no work directory of rum-jax (no {layout.name('config')}); make one with unlearn.py --workdir={folder}",
  }[kind]
  raise FileNotFoundError(f"{folder} {where}")
