"""Evaluating finished unlearning runs (RUM and SalUn's protocol), behind evaluate.py.

For a model (an unlearned run, the retrain reference, the original) and the forget set F of its
run, from the saved logits of every seed (predictions/{train,val,test}.npz):
  accuracy on F, on the retain set D \\ F, on validation and test (`tow.accuracy`);
  SVC MIA-efficacy on F for all five features (`mia.svc_mia`: shadow members = a retain
  sample, non-members = test) and the loss-threshold attack's AUC of F against test
  (`mia.loss_mia_auc`);
  ToW and ToW-MIA against the retrain reference of the same seed (`tow.tow`, `tow.tow_mia`
  with the MIA-efficacy of `MIA_FEATURE`, as RUM's analysis);
then means over seeds with t-based 95% intervals (`results.summarize`).

Results are cached next to their inputs as evaluation.json (a method's in methods/<m>/, the
reference's in retrain/<key>/, the original's in <workdir>/original_evaluation.json), keyed
by a digest of the logits, the forget set and the evaluation settings: re-evaluating is
cheap, and a changed run is re-evaluated. A work directory gets
  evaluation.json / evaluation.csv   every model, per seed, mean and ci95
  evaluation.md                      the table (percent)
  evaluation.png                     accuracies, ToW and ToW-MIA per model with 95% intervals

`evaluate_path(path)` is evaluate.py without a config: `path` is an unlearning work directory
(every finished run) or one method folder. Nothing here trains: it reads the saved logits.
"""
import functools
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.evaluation import mia
from rum_jax.evaluation.tow import set_accuracies, tow, tow_mia

SPLITS = ("train", "val", "test")
ACCURACIES = ("forget", "retain", "val", "test")
# RUM's ToW-MIA uses the SVC attack on the true-class confidence (tow.py's docstring).
MIA_FEATURE = "confidence"
NUM_SHADOW = 10_000  # RUM/SalUn: a 10k retain sample as shadow members (capped at the test size)
CACHE_FILE = "evaluation.json"
ORIGINAL_CACHE = "original_evaluation.json"
TABLE_FILE = "evaluation.md"
FIGURE_FILE = "evaluation.png"


# ---------------------------------------------------------------------------------------
# One model.


def model_metrics(logits: Dict[str, np.ndarray], labels: Dict[str, np.ndarray], forget: np.ndarray, *,
                  num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0, features: Optional[Sequence[str]] = None,
                  loss_mia: bool = True) -> List[Dict[str, Any]]:
  """Accuracies and attacks of every seed's model on its forget set.

  Args:
    logits: split -> [S, N_split, C] logits ('train', 'val', 'test').
    labels: split -> [N_split] labels.
    forget: [S, F] train positions of each seed's forget set; the retain set is the rest.
    num_shadow: shadow members of the SVC attack (`mia.shadow_positions`).
    features: the SVC attack's features (None: all five); a study needs only ToW-MIA's.
    loss_mia: also the loss-threshold attack's AUC.
    seed: seed s's attack draws use seed + s.

  Returns:
    One dict per seed: {"accuracy": {forget, retain, val, test}, "mia": {feature: efficacy},
    "loss_mia_auc": AUC of F against test}.
  """
  num_seeds, num_train = logits["train"].shape[:2]
  if len(forget) != num_seeds:
    raise ValueError(f"the forget set has {len(forget)} rows but the logits {num_seeds} seeds")
  y, y_test = labels["train"], labels["test"]
  retain = [np.setdiff1d(np.arange(num_train), f) for f in forget]
  acc = set_accuracies(logits["train"], y, {"forget": forget, "retain": retain})
  acc["val"] = (logits["val"].argmax(-1) == labels["val"][None]).mean(-1)
  acc["test"] = (logits["test"].argmax(-1) == y_test[None]).mean(-1)
  out = []
  for s in range(num_seeds):
    f, r = np.asarray(forget[s]), retain[s]
    train, test = logits["train"][s], logits["test"][s]
    out.append({
        "accuracy": {k: float(acc[k][s]) for k in ACCURACIES},
        "mia": mia.svc_mia(train[r], y[r], test, y_test, train[f], y[f], num_shadow=num_shadow, seed=seed + s,
                           features=features),
    })
    if loss_mia:
      out[-1]["loss_mia_auc"] = mia.loss_mia_auc(mia.per_example_ce(train[f], y[f]),
                                                 mia.per_example_ce(test, y_test), seed=seed + s)
  return out


def against_reference(unlearned: List[Dict[str, Any]], retrained: List[Dict[str, Any]],
                      feature: str = MIA_FEATURE) -> List[Dict[str, Any]]:
  """Adds ToW and ToW-MIA of each seed's model against the same seed's retrained model."""
  if len(unlearned) != len(retrained):
    raise ValueError(f"the run has {len(unlearned)} seeds but its retrain reference {len(retrained)}")
  if feature not in mia.FEATURES:
    raise ValueError(f"unknown MIA feature {feature!r}; valid choices: {', '.join(mia.FEATURES)}")
  out = []
  for u, r in zip(unlearned, retrained):
    out.append({**u, "tow": tow(u["accuracy"], r["accuracy"]),
                "tow_mia": tow_mia(u["accuracy"], r["accuracy"], u["mia"][feature], r["mia"][feature])})
  return out


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
  """The record in `cache` if it was made from the same inputs, else compute() written there."""
  digest = _digest(logits, forget, settings)
  if os.path.exists(cache):
    try:
      record = io.read_json(cache)
    except io.DamagedFileError as err:
      logging.warning("%s; recomputing it (it is a cache)", err)
      record = {}
    if record.get("digest") == digest:
      return record
  per_seed = compute()
  record = {"digest": digest, "settings": settings, "per_seed": per_seed, "summary": results.summarize(per_seed)}
  io.write_json(cache, record)
  return record


def _how_to_make_reference(workdir: str) -> str:
  return (f"make it by re-running the same unlearn.py command (same --config and overrides, "
          f"--workdir={workdir}): it trains the retrain reference (or restores it from its "
          f"checkpoints) and saves its predictions; `--config.unlearn.method=retrain` does only that")


def _settings(num_shadow: Optional[int], seed: int, feature: str, features: Optional[Sequence[str]] = None,
              loss_mia: bool = True) -> Dict[str, Any]:
  settings = {"num_shadow": num_shadow, "seed": seed, "mia_feature": feature}
  if features is not None:  # recorded only when not the default, so older caches stay valid
    settings["features"] = sorted(set(features) | {feature})
  if not loss_mia:
    settings["loss_mia"] = False
  return settings


def _metrics_fn(settings: Dict[str, Any]):
  """model_metrics with the attacks of `settings` (`_settings`)."""
  return functools.partial(model_metrics, num_shadow=settings["num_shadow"], seed=settings["seed"],
                           features=settings.get("features"), loss_mia=settings.get("loss_mia", True))


def evaluate_method(method_dir: str, *, num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0,
                    feature: str = MIA_FEATURE, features: Optional[Sequence[str]] = None,
                    loss_mia: bool = True) -> Dict[str, Any]:
  """Evaluates one finished run of unlearn.py (methods/<name>) against its retrain reference.

  Args:
    method_dir: the run's folder (metrics.json, predictions/, forget_set.npz).
    num_shadow, seed: of the attacks (`model_metrics`).
    feature: the MIA feature of ToW-MIA.

  Returns:
    {"per_seed": [...], "summary": {...}, "reference": {...}, ...}; also written (cached) to
    method_dir/evaluation.json.

  Raises:
    FileNotFoundError: no finished run, or no retrain reference (the message says how to make it).
    ValueError: the run's forget set differs from the one its reference was retrained without.
  """
  metrics_path = os.path.join(method_dir, workdir_lib.METRICS_FILE)
  workdir = os.path.dirname(os.path.dirname(os.path.abspath(method_dir)))
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
  settings = _settings(num_shadow, seed, feature, features, loss_mia)
  metrics = _metrics_fn(settings)
  predictions = os.path.join(method_dir, "predictions")
  logits, labels, index = _load_predictions(predictions, f"the run in {method_dir}",
                                            "it did not finish: re-run unlearn.py")
  r_predictions = os.path.join(reference_dir, "predictions")
  r_logits, r_labels, r_index = _load_predictions(r_predictions, f"the retrain reference {reference_dir}",
                                                  _how_to_make_reference(workdir))
  if not np.array_equal(index, r_index) or logits["test"].shape != r_logits["test"].shape:
    raise ValueError(f"{method_dir} and its retrain reference {reference_dir} were evaluated on different "
                     f"data (train indices or test size differ): they belong to different data sets or splits")
  reference = _cached(os.path.join(reference_dir, CACHE_FILE), r_logits, forget, settings,
                      lambda: metrics(r_logits, r_labels, forget))
  # The digest of a run includes its reference's, so a new reference re-evaluates the run.
  run_settings = {**settings, "reference": reference["digest"]}
  out = _cached(os.path.join(method_dir, CACHE_FILE), logits, forget, run_settings,
                lambda: against_reference(metrics(logits, labels, forget), reference["per_seed"], feature))
  return {**out, "name": os.path.basename(os.path.normpath(method_dir)), "reference": reference,
          "reference_dir": os.path.abspath(reference_dir), "forget": forget}


def _original_dir(workdir: str, info: Dict[str, Any]) -> str:
  """The original model's folder recorded in forget_set.json: relative to the work directory
  first (a copied or moved tree), then absolute (a moved work directory whose original is
  elsewhere); runs made before recorded only the absolute path."""
  for path in (info.get("original_workdir", ""), info.get("original_workdir_absolute", "")):
    if path and os.path.exists(os.path.join(workdir_lib.resolve(workdir, path), "predictions", "test.npz")):
      return workdir_lib.resolve(workdir, path)
  return workdir_lib.resolve(workdir, info.get("original_workdir", ""))


def _evaluate_original(workdir: str, forget: np.ndarray, reference: Dict[str, Any],
                       settings: Dict[str, Any]) -> Optional[Dict]:
  """The original model on the forget set of the work directory's runs (None if its predictions
  are gone). The work directory's forget_set.npz must be that same set."""
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
    return None
  logits, labels, _ = _load_predictions(predictions, "the original model", "re-run train.py")
  return _cached(os.path.join(workdir, ORIGINAL_CACHE), logits, forget,
                 {**settings, "reference": reference["digest"]},
                 lambda: against_reference(_metrics_fn(settings)(logits, labels, forget),
                                           reference["per_seed"], settings["mia_feature"]))


# ---------------------------------------------------------------------------------------
# A work directory.


def _reference_row(reference: Dict[str, Any], feature: str) -> Dict[str, Any]:
  """The retrain reference as a model row: its ToW and ToW-MIA against itself are 1."""
  per_seed = against_reference(reference["per_seed"], reference["per_seed"], feature)
  return {"per_seed": per_seed, "summary": results.summarize(per_seed)}


def _flat(per_seed_or_summary: Dict[str, Any]) -> Dict[str, Any]:
  """{"accuracy": {"forget": x}, "mia": {"prob": y}, "tow": z} -> {"forget_accuracy": x, "mia_prob": y, "tow": z}."""
  out = {}
  for k, v in per_seed_or_summary.items():
    if k == "accuracy":
      out.update({f"{split}_accuracy": v[split] for split in ACCURACIES})
    elif k == "mia":
      out.update({f"mia_{feature}": value for feature, value in v.items()})
    else:
      out[k] = v
  return out


def evaluate_workdir(workdir: str, *, num_shadow: Optional[int] = NUM_SHADOW, seed: int = 0,
                     feature: str = MIA_FEATURE, features: Optional[Sequence[str]] = None,
                     loss_mia: bool = True) -> str:
  """Evaluates every finished run of an unlearning work directory; writes the table and figure.

  Rows: the original model, the retrain reference, then every run of methods/ (RUM included).

  Returns:
    The markdown table (also in <workdir>/evaluation.md).
  """
  runs = workdir_lib.finished_runs(workdir)
  if not runs:
    raise FileNotFoundError(f"{workdir} holds no finished unlearning run (methods/<name>/metrics.json); "
                            f"run unlearn.py with --workdir={workdir} first")
  evaluated = {name: evaluate_method(os.path.join(workdir, "methods", name), num_shadow=num_shadow,
                                     seed=seed, feature=feature, features=features, loss_mia=loss_mia)
               for name in runs}
  references = {e["reference_dir"] for e in evaluated.values()}
  if len(references) > 1:
    raise workdir_lib.WorkdirError(
        f"the runs of {workdir} compare against different retrain references "
        f"({', '.join(sorted(references))}): the work directory mixes forget sets")
  first = next(iter(evaluated.values()))
  reference = first["reference"]
  models: Dict[str, Dict[str, Any]] = {}
  settings = _settings(num_shadow, seed, feature, features, loss_mia)
  original = _evaluate_original(workdir, first["forget"], reference, settings)
  if original is not None:
    models["original"] = original
  models["retrain"] = _reference_row(reference, feature)
  models.update({name: e for name, e in evaluated.items() if name != "retrain"})
  io.write_json(os.path.join(workdir, "evaluation.json"),
                {"settings": settings,
                 "retrain_reference": workdir_lib.relative(workdir, first["reference_dir"]),
                 "models": {name: {"per_seed": m["per_seed"], "summary": m["summary"]} for name, m in models.items()}})
  rows = []
  for name, m in models.items():
    for s, values in enumerate(m["per_seed"]):
      rows.append({"model": name, "seed": s, **_flat(values)})
    for stat in ("mean", "ci95"):
      summary = _flat(m["summary"])
      rows.append({"model": name, "seed": stat, **{k: v[stat] for k, v in summary.items()}})
  columns = (["model", "seed"] + [f"{split}_accuracy" for split in ACCURACIES]
             + [f"mia_{f}" for f in mia.FEATURES] + ["loss_mia_auc", "tow", "tow_mia"])
  io.write_csv(os.path.join(workdir, "evaluation.csv"), rows, fields=columns)
  table = markdown_table({name: m["summary"] for name, m in models.items()}, feature)
  io.write_text(os.path.join(workdir, TABLE_FILE), table)
  plot_models({name: m["summary"] for name, m in models.items()}, os.path.join(workdir, FIGURE_FILE),
              f"{os.path.basename(os.path.normpath(workdir))}: against retraining ({len(first['per_seed'])} seeds)")
  return table


def markdown_table(summaries: Dict[str, Dict[str, Any]], feature: str = MIA_FEATURE) -> str:
  """One row per model: accuracies, MIA-efficacy (`feature`), loss-MIA AUC, ToW, ToW-MIA (percent)."""
  header = ["model", "forget acc", "retain acc", "test acc", f"MIA-efficacy ({feature})",
            "loss-MIA AUC", "ToW", "ToW-MIA"]
  rows = [[name] + [results.cell(s["accuracy"][k]) for k in ("forget", "retain", "test")]
          + [results.cell(s["mia"][feature]), results.cell(s["loss_mia_auc"]) if "loss_mia_auc" in s else "n/a",
             results.cell(s["tow"]), results.cell(s["tow_mia"])] for name, s in summaries.items()]
  return results.markdown_table(header, rows)


def plot_models(summaries: Dict[str, Dict[str, Any]], path: str, title: str) -> None:
  """Two panels: forget/retain/test accuracy per model; ToW and ToW-MIA per model (95% CI bars)."""
  plt = io.pyplot()
  names = list(summaries)
  x = np.arange(len(names))
  fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names)), 3.8))
  panels = [(axes[0], [(f"{k} acc", lambda s, k=k: s["accuracy"][k]) for k in ("forget", "retain", "test")]),
            (axes[1], [("ToW", lambda s: s["tow"]), ("ToW-MIA", lambda s: s["tow_mia"])])]
  for ax, series in panels:
    width = 0.8 / len(series)
    for i, (label, get) in enumerate(series):
      means = [get(summaries[n])["mean"] for n in names]
      errors = [np.nan_to_num(results.half_width(get(summaries[n]))) for n in names]
      ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("accuracy")
  axes[1].set_ylabel("score (1 = retrained)")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  io.save_figure(fig, path, dpi=110)


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
    table = markdown_table({"retrain": _reference_row(record["reference"], MIA_FEATURE)["summary"],
                            record["name"]: record["summary"]})
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
