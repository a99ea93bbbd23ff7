"""Evaluating finished unlearning runs (RUM and SalUn's protocol), behind evaluate.py.

For a model (an unlearned run, the retrain reference, the original) and the forget set F of its
run, from the saved logits of every seed (predictions/{train,val,test}.npz), every metric of
the list (`config.evaluation.metrics`, default `metrics.DEFAULT_METRICS`) by name from the
registry `rum_jax.evaluation.metrics.METRICS`: split accuracies, the SVC and loss attacks on
F, ToW and ToW-MIA against the retrain reference of the same seed (the reference itself
scores 1).

Per-seed values are cached next to their inputs as evaluation.json (a method's in methods/<m>/,
the reference's in retrain/<key>/, the original's in <workdir>/original_evaluation.json), keyed
by a digest of the logits, the forget set and the evaluation settings (the metrics among them):
re-evaluating is cheap, and a changed run is re-evaluated. A work directory gets
  evaluation.json   every model's per-seed values and their means and 95% intervals
  evaluation.csv    the record: one row per model x seed x metric with the run's settings
  evaluation.md     the table (`reports.table`), evaluation.png the figure, from the record

`evaluate_path(path)` is evaluate.py without a config: `path` is an unlearning work directory
(every finished run) or one method folder. Nothing here trains: it reads the saved logits.
"""
import hashlib
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.evaluation.metrics import DEFAULT_METRICS, METRICS, ModelOutputs, check_names
from rum_jax.evaluation.metrics.attacks import NUM_SHADOW
from rum_jax.pipelines import reports

SPLITS = ("train", "val", "test")
CACHE_FILE = "evaluation.json"
ORIGINAL_CACHE = "original_evaluation.json"
TABLE_FILE = "evaluation.md"
FIGURE_FILE = "evaluation.png"
RECORD_FILE = "evaluation.csv"


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


def _load_predictions(directory: str, what: str, how_to_make: str) -> Tuple[Dict, Dict, np.ndarray]:
  """(logits, labels, train ORIGINAL index) from directory/{train,val,test}.npz."""
  missing = [s for s in SPLITS if not os.path.exists(os.path.join(directory, f"{s}.npz"))]
  if missing:
    raise FileNotFoundError(f"{what} has no predictions ({', '.join(f'{s}.npz' for s in missing)} missing "
                            f"in {directory}); {how_to_make}")
  logits, labels, index = {}, {}, None
  for split in SPLITS:
    with np.load(os.path.join(directory, f"{split}.npz")) as data:
      logits[split] = np.asarray(data["logits"], np.float64)
      labels[split] = np.asarray(data["labels"])
      if split == "train":
        index = np.asarray(data["index"])
  return logits, labels, index


def _load_forget(path: str) -> np.ndarray:
  with np.load(path) as data:
    return np.asarray(data["forget_positions"])


def _digest(logits: Dict[str, np.ndarray], forget: np.ndarray, settings: Dict[str, Any]) -> str:
  """Of the inputs' contents (not the files', whose zip headers change when rewritten)."""
  h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  h.update(np.ascontiguousarray(forget, np.int64).tobytes())
  for split in SPLITS:
    h.update(np.ascontiguousarray(logits[split]).tobytes())
  return h.hexdigest()


def _cached(cache: str, logits: Dict[str, np.ndarray], forget: np.ndarray, settings: Dict[str, Any],
            compute) -> Dict[str, Any]:
  """{"digest", "settings", "values"} in `cache` if made from the same inputs, else compute()
  (the values) written there."""
  digest = _digest(logits, forget, settings)
  if os.path.exists(cache):
    try:
      record = io.read_json(cache)
    except io.DamagedFileError as err:
      logging.warning("%s; recomputing it (it is a cache)", err)
      record = {}
    if record.get("digest") == digest and "values" in record:
      return record
  record = {"digest": digest, "settings": settings, "values": compute()}
  io.write_json(cache, record)
  return record


def _how_to_make_reference(workdir: str) -> str:
  return (f"make it by re-running the same unlearn.py command (same --config and overrides, "
          f"--workdir={workdir}): it trains the retrain reference (or restores it from its "
          f"checkpoints) and saves its predictions; `--config.unlearn.method=retrain` does only that")


def _settings(metrics: Sequence[str], num_shadow: Optional[int], seed: int) -> Dict[str, Any]:
  return {"metrics": list(metrics), "num_shadow": num_shadow, "seed": seed}


def _workdir_metrics(workdir: str, metrics: Optional[Sequence[str]]) -> Tuple[str, ...]:
  """The metric list: given, else the work directory's config.evaluation.metrics, else the default."""
  if metrics is None:
    path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
    config = io.read_json(path) if os.path.exists(path) else {}
    metrics = (config.get("evaluation") or {}).get("metrics") or DEFAULT_METRICS
  names = check_names(list(metrics), "the evaluation's metric list (config.evaluation.metrics)", banks=False)
  return names


def evaluate_method(method_dir: str, *, metrics: Optional[Sequence[str]] = None,
                    num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0) -> Dict[str, Any]:
  """Evaluates one finished run of unlearn.py (methods/<name>) against its retrain reference.

  Args:
    method_dir: the run's folder (metrics.json, predictions/, forget_set.npz).
    metrics: metric names (None: the work directory's config.evaluation.metrics).
    num_shadow, seed: of the attacks (`outputs_of`).

  Returns:
    {"values" (metric -> per-seed), "reference" (the retrain reference's cache record, its
    values against itself), "name", "reference_dir", "forget", "outputs" and
    "reference_outputs" (the metrics' inputs)}; the values are cached in method_dir/evaluation.json.

  Raises:
    FileNotFoundError: no finished run, or no retrain reference (the message says how to make it).
    ValueError: the run's forget set differs from the one its reference was retrained without.
  """
  metrics_path = os.path.join(method_dir, workdir_lib.METRICS_FILE)
  workdir = os.path.dirname(os.path.dirname(os.path.abspath(method_dir)))
  metrics = _workdir_metrics(workdir, metrics)
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f"{method_dir} holds no finished unlearning run (no metrics.json); run "
                            f"unlearn.py with --workdir={workdir} first")
  record = io.read_json(metrics_path)
  # Recorded relative to the work directory (absolute in runs made before), so a copied or
  # moved work directory is evaluated against its own reference.
  reference_dir = workdir_lib.resolve(workdir, record["retrain_reference"]) if record.get("retrain_reference") else ""
  if not reference_dir or not os.path.exists(os.path.join(reference_dir, "forget_set.npz")):
    raise FileNotFoundError(f"the run in {method_dir} has no retrain reference (expected in "
                            f"{reference_dir or os.path.join(workdir, 'retrain', '<key>')}), which ToW and "
                            f"ToW-MIA compare against; {_how_to_make_reference(workdir)}")
  made_by = workdir_lib.made_by(reference_dir)
  if record.get("retrain_digest") and made_by != record["retrain_digest"]:  # runs made before record none
    raise workdir_lib.WorkdirError(
        f"the retrain reference {reference_dir} is not the one the run in {method_dir} was compared with "
        f"(made by {made_by or 'nothing recorded'}, the run's {record['retrain_digest']}): it was replaced by "
        f"one of other training or another forget set. Re-run unlearn.py with --workdir={workdir} to retrain it")
  forget_file = os.path.join(method_dir, "forget_set.npz")
  if not os.path.exists(forget_file):  # runs made before the forget set was saved per method
    forget_file = os.path.join(workdir, "forget_set.npz")
  forget = _load_forget(forget_file)
  reference_forget = _load_forget(os.path.join(reference_dir, "forget_set.npz"))
  if forget.shape != reference_forget.shape or not np.array_equal(forget, reference_forget):
    raise ValueError(f"the forget set of {method_dir} ({forget.shape[-1]} examples per seed, first "
                     f"{forget[0][:5].tolist()}) differs from the one its retrain reference {reference_dir} "
                     f"was trained without ({reference_forget.shape[-1]}, first {reference_forget[0][:5].tolist()}): "
                     f"ToW compares against retraining without exactly the forgotten examples. "
                     f"{_how_to_make_reference(workdir).capitalize()}")
  settings = _settings(metrics, num_shadow, seed)
  logits, labels, index = _load_predictions(os.path.join(method_dir, "predictions"), f"the run in {method_dir}",
                                            "it did not finish: re-run unlearn.py")
  r_logits, r_labels, r_index = _load_predictions(os.path.join(reference_dir, "predictions"),
                                                  f"the retrain reference {reference_dir}",
                                                  _how_to_make_reference(workdir))
  if not np.array_equal(index, r_index) or logits["test"].shape != r_logits["test"].shape:
    raise ValueError(f"{method_dir} and its retrain reference {reference_dir} were evaluated on different "
                     f"data (train indices or test size differ): they belong to different data sets or splits")
  # The reference against itself: ToW and ToW-MIA 1 by construction, computed like any row's.
  ref = outputs_of(r_logits, r_labels, forget, num_shadow=num_shadow, seed=seed)
  ref.reference = ref
  reference = _cached(os.path.join(reference_dir, CACHE_FILE), r_logits, forget, settings,
                      lambda: metric_values(ref, metrics))
  ref = outputs_of(r_logits, r_labels, forget, num_shadow=num_shadow, seed=seed, known=reference["values"])
  ref.reference = ref
  run = outputs_of(logits, labels, forget, reference=ref, num_shadow=num_shadow, seed=seed)
  # The digest of a run includes its reference's, so a new reference re-evaluates the run.
  out = _cached(os.path.join(method_dir, CACHE_FILE), logits, forget, {**settings, "reference": reference["digest"]},
                lambda: metric_values(run, metrics))
  return {"values": out["values"], "digest": out["digest"], "name": os.path.basename(os.path.normpath(method_dir)),
          "settings": record.get("settings", {}), "reference": reference,
          "reference_dir": os.path.abspath(reference_dir), "forget": forget, "reference_outputs": ref}


def _original_dir(workdir: str, info: Dict[str, Any]) -> str:
  """The original model's folder recorded in forget_set.json: relative to the work directory
  first (a copied or moved tree), then absolute (a moved work directory whose original is
  elsewhere); runs made before recorded only the absolute path."""
  for path in (info.get("original_workdir", ""), info.get("original_workdir_absolute", "")):
    if path and os.path.exists(os.path.join(workdir_lib.resolve(workdir, path), "predictions", "test.npz")):
      return workdir_lib.resolve(workdir, path)
  return workdir_lib.resolve(workdir, info.get("original_workdir", ""))


def _evaluate_original(workdir: str, forget: np.ndarray, reference: Dict[str, Any], ref: ModelOutputs,
                       settings: Dict[str, Any]) -> Tuple[Optional[Dict[str, list]], str]:
  """(the original model's values on the forget set of the work directory's runs, the digest of
  its predictions), (None, "") if they are gone. The work directory's forget_set.npz must be
  that same set."""
  recorded = _load_forget(os.path.join(workdir, "forget_set.npz"))
  if recorded.shape != forget.shape or not np.array_equal(recorded, forget):
    raise workdir_lib.WorkdirError(
        f"{os.path.join(workdir, 'forget_set.npz')} is not the forget set its runs were unlearned from (digest "
        f"{workdir_lib.digest(recorded)}, the runs' {workdir_lib.digest(forget)}): it was edited or replaced. "
        f"Restore it, or re-run unlearn.py with --workdir={workdir} --overwrite")
  predictions = os.path.join(_original_dir(workdir, io.read_json(os.path.join(workdir, "forget_set.json"))),
                             "predictions")
  if not os.path.exists(os.path.join(predictions, "test.npz")):
    logging.warning("no predictions of the original model in %s: its row is left out", predictions)
    return None, ""
  logits, labels, _ = _load_predictions(predictions, "the original model", "re-run train.py")
  original = outputs_of(logits, labels, forget, reference=ref, num_shadow=settings["num_shadow"],
                        seed=settings["seed"])
  values = _cached(os.path.join(workdir, ORIGINAL_CACHE), logits, forget, {**settings, "reference": reference["digest"]},
                   lambda: metric_values(original, settings["metrics"]))["values"]
  return values, workdir_lib.digest(*(logits[s] for s in SPLITS))


# ---------------------------------------------------------------------------------------
# A work directory.


def evaluate_workdir(workdir: str, *, metrics: Optional[Sequence[str]] = None,
                     num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0) -> str:
  """Evaluates every finished run of an unlearning work directory; writes its record, table and figure.

  Rows: the original model, the retrain reference, then every run of methods/ (RUM included).

  Args:
    metrics: metric names (None: the work directory's config.evaluation.metrics).

  Returns:
    The markdown table (also in <workdir>/evaluation.md).
  """
  runs = workdir_lib.finished_runs(workdir)
  if not runs:
    raise FileNotFoundError(f"{workdir} holds no finished unlearning run (methods/<name>/metrics.json); "
                            f"run unlearn.py with --workdir={workdir} first")
  metrics = _workdir_metrics(workdir, metrics)
  evaluated = {name: evaluate_method(os.path.join(workdir, "methods", name), metrics=metrics, num_shadow=num_shadow,
                                     seed=seed) for name in runs}
  references = {e["reference_dir"] for e in evaluated.values()}
  if len(references) > 1:
    raise workdir_lib.WorkdirError(
        f"the runs of {workdir} compare against different retrain references "
        f"({', '.join(sorted(references))}): the work directory mixes forget sets")
  first = next(iter(evaluated.values()))
  settings = _settings(metrics, num_shadow, seed)
  models: Dict[str, Tuple[Dict[str, list], Dict[str, Any]]] = {}  # name -> (values, method settings)
  original, original_digest = _evaluate_original(workdir, first["forget"], first["reference"],
                                                 first["reference_outputs"], settings)
  if original is not None:
    models["original"] = (original, {})
  retrain = evaluated.get("retrain", {}).get("settings", {})
  models["retrain"] = (first["reference"]["values"], retrain)
  models.update({name: (e["values"], e["settings"]) for name, e in evaluated.items() if name != "retrain"})
  config_path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  config = io.read_json(config_path) if os.path.exists(config_path) else {}
  digest = workdir_lib.digest(first["forget"])
  rows = [row for name, (values, run_settings) in models.items()
          for row in results.record_rows(values, **results.run_columns(config, name, run_settings, digest,
                                                                        original_digest))]
  summary = results.summary_frame(rows)
  io.write_json(os.path.join(workdir, CACHE_FILE), {
      "settings": settings, "retrain_reference": workdir_lib.relative(workdir, first["reference_dir"]),
      "models": {name: {"per_seed": values, "summary": results.summarize_columns(values)}
                 for name, (values, _) in models.items()}})
  io.write_csv(os.path.join(workdir, RECORD_FILE), rows, fields=results.RECORD_COLUMNS)
  table = reports.table(summary, metrics)
  io.write_text(os.path.join(workdir, TABLE_FILE), table)
  num_seeds = len(next(iter(first["values"].values())))
  reports.bar_figure(summary, _panels(metrics), os.path.join(workdir, FIGURE_FILE),
                     f"{os.path.basename(os.path.normpath(workdir))}: against retraining ({num_seeds} seeds)",
                     ylabels=("accuracy", "score (1 = retrained)"))
  return table


def _panels(metrics: Sequence[str]):
  """The figure's panels: accuracies, then the scores against retraining (ToW, ToW-MIA, ...)."""
  accuracies = [m for m in metrics if m.endswith("_accuracy") and m != "val_accuracy"]
  scores = [m for m in metrics if "reference" in METRICS.get(m).needs]
  return [p for p in (accuracies, scores) if p]


# ---------------------------------------------------------------------------------------
# evaluate.py


def evaluate_path(path: str) -> str:
  """evaluate.py without a config: an unlearning work directory, or one method folder of one.

  Returns:
    The markdown table written (evaluation.md, or one method's rows).

  Raises:
    FileNotFoundError: `path` is another kind of work directory, or none; the message says
      where its results are or what to run.
  """
  kind = workdir_lib.kind_of(path)
  if kind == "unlearning" or (kind == "none" and os.path.isdir(workdir_lib.methods_dir(path))):
    table = evaluate_workdir(path)
    logging.info("evaluation of %s:\n%s\ntable: %s  figure: %s", path, table,
                 os.path.join(path, TABLE_FILE), os.path.join(path, FIGURE_FILE))
    return table
  if kind == "method":
    record = evaluate_method(path)
    rows = (results.record_rows(record["reference"]["values"], method="retrain")
            + results.record_rows(record["values"], method=record["name"]))
    table = reports.table(results.summary_frame(rows), list(record["values"]))
    logging.info("evaluation of %s (in %s):\n%s", path, os.path.join(path, CACHE_FILE), table)
    return table
  where = {
      "study": (f"is a study's work directory: run it (or resume it) with python evaluate.py --config=<the study "
                f"config, recorded in {os.path.join(path, workdir_lib.CONFIG_FILE)}> --workdir={path}; its tables are "
                f"in study.md and each forget set's evaluation in sets/<set>/evaluation.md"),
      "continual": ("is a continual.py work directory: continual.py itself writes its metrics (ACC, BWT, FWT, "
                    "CL-ToW, CLU, per-task MIA) to metrics.json / metrics.csv there"),
      "scores": ("holds memorization scores (train.py with mode memorization or proxies): nothing to evaluate; "
                 "unlearn.py reads them through --config.forget.scores"),
      "training": ("is a train.py work directory (original models; accuracies in metrics.json): evaluate.py "
                   "evaluates unlearning runs; make some with unlearn.py --config.unlearn.original_workdir="
                   f"{path} --workdir=<another folder>"),
      "none": f"is no work directory of rum-jax (no {workdir_lib.CONFIG_FILE}); make one with unlearn.py --workdir={path}",
  }[kind]
  raise FileNotFoundError(f"{path} {where}")
