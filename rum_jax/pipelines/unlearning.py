"""Unlearning runs (unlearn.py): original -> forget set -> retrain reference -> a method -> evaluation.

`run_unlearning(config, workdir)` runs config.unlearn.method, any entry of
`unlearning.METHODS` (RUM included), on all seeds at once, and writes into the work directory:
  config.json                 the resolved config (unlearning settings may change between runs)
  memorization/               the default score file, computed first when a forget set or a
                              method needs it and config.unlearn.compute_scores allows
  original/                   the original model (train.py's layout), unless
                              config.unlearn.original_workdir names a finished train.py run
  forget_set.npz / .json      forget and retain positions per seed and their ORIGINAL indices
  entanglement.json / .csv    (forget.kind=entanglement) the ES of every group, per seed
  retrain/<key>/              the retrain-from-scratch reference, keyed by a hash of the
                              training config and the forget set; reused by every method;
                              its forget_set.npz and predictions/ (for evaluate.py)
  saliency.npz                SalUn's |grad| of the forget loss (masks at any ratio)
  methods/<folder>/           config.json (method and settings), checkpoints/ (RUM: steps/),
                              metrics.json and metrics.csv (its record: the run, the retrain
                              reference and the original, per seed and metric), history.csv,
                              curves.png, predictions/, forget_set.npz
  summary.csv / summary.md    the records of every finished method (accuracies, ToW), and their
                              means and 95% intervals
  evaluation.{json,csv,md,png}  every metric of config.evaluation.metrics of every finished run
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.evaluation.metrics import ModelOutputs
from rum_jax.memorization import files as score_files
from rum_jax.pipelines import evaluation, memorization, reports, training
from rum_jax.training import loop
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import Setup, accuracies, save_predictions
from rum_jax.training.state import TrainState
from rum_jax.unlearning import METHODS, unlearn
from rum_jax.unlearning.forget_kinds import FORGET_KINDS, ForgetRequest
from rum_jax.unlearning.interface import Report
from rum_jax.unlearning.runners import augments

SPLIT_METRICS = ("forget_accuracy", "retain_accuracy", "val_accuracy", "test_accuracy")
# What every run records right after it finishes (the evaluation adds the attacks).
RUN_METRICS = SPLIT_METRICS + ("tow",)
# A RUM run's recorded score path may move with its work directory; its digest may not change.
METHOD_PATH_KEYS = ("settings.scores",)


# ---------------------------------------------------------------------------------------
# Forget sets.


def build_forget_set(config: ml_collections.ConfigDict, workdir: str, setup: Setup,
                     original: Optional[TrainState]) -> Tuple[List[np.ndarray], Dict[str, Any]]:
  """Forget positions per seed (num_seeds arrays) from config.forget, and a report of how they were chosen."""
  f = config.forget
  train = setup.dataset.train
  check_forget_size(config, len(train))
  kind = FORGET_KINDS.get(f.kind)
  report: Dict[str, Any] = {"kind": f.kind, "size": f.size, "split": f.get("split", "report")}
  scores = None
  source = memorization.forget_score_source(config, workdir)
  if source is not None:
    if not os.path.exists(source.path):
      raise FileNotFoundError(memorization.missing_scores_message(source.path, config.data.name, source.proxies))
    scores = score_files.scores_for_split(source.path, train, f.score_key)
    report.update(scores=os.path.abspath(source.path), score_key=f.score_key)

  def features():
    return loop.predict(setup.runner, setup.forward, original, train.x, config.train.eval_batch_size,
                        features=True)
  forget, details = kind.build(ForgetRequest(f, config.num_seeds, len(train), scores, features))
  report.update(details)
  return forget, report


def check_forget_size(config: ml_collections.ConfigDict, num_train: int) -> None:
  """The forget set must leave a non-empty retain set."""
  size = config.forget.size
  if not 0 < size < num_train:
    raise ValueError(f"config.forget.size={size} must be in [1, {num_train - 1}]: the forget set is part of "
                     f"the {num_train} train examples and the rest (the retain set) must not be empty")


def _write_entanglement(workdir: str, per_group: List[List[float]]) -> None:
  rows = []
  for g, values in enumerate(per_group):
    stats = results.summarize_columns({"es": np.asarray(values)})["es"]
    rows.append({"group": g, "es_mean": stats["mean"], "es_ci95": stats["ci95"],
                 **{f"es_seed{s}": v for s, v in enumerate(values)}})
  io.write_json(os.path.join(workdir, "entanglement.json"), {"groups": rows})
  io.write_csv(os.path.join(workdir, "entanglement.csv"), rows)


# ---------------------------------------------------------------------------------------
# The pipeline: original model, forget set, retrain reference, method, evaluation.


def _original_model(config, workdir: str, setup: Setup, overwrite: bool) -> Tuple[str, TrainState]:
  """(directory, host states) of the original model; trains it in <workdir>/original if needed."""
  train_config = training_config(config)
  given = config.unlearn.original_workdir
  directory = given or workdir_lib.original_dir(workdir)
  if given and not workdir_lib.is_finished(given):
    raise FileNotFoundError(f"config.unlearn.original_workdir={given} holds no finished training run "
                            f"(no metrics.json): run train.py --workdir={given} first, or leave it "
                            f"empty to train the original model in {workdir_lib.original_dir(workdir)}")
  config_file = os.path.join(directory, workdir_lib.CONFIG_FILE)
  if os.path.exists(config_file):
    diff = workdir_lib.differences(io.read_json(config_file), train_config.to_dict(), TRAINING_SECTIONS)
    if diff and (given or not overwrite):
      raise ValueError(f"the original model in {directory} was trained with another config "
                       f"({'; '.join(diff[:6])}); use a matching config" +
                       ("" if given else " or --overwrite to retrain it"))
    if diff:
      shutil.rmtree(directory)
  return directory, training.load_or_train(train_config, directory, setup)[1]


def original_paths(workdir: str, original_dir: str) -> Dict[str, str]:
  """Where the original model is, as recorded in forget_set.json: relative to the work directory
  (found again after the whole tree is copied or moved, as a study's sets and their shared
  original are) and absolute (found again when only the work directory moved)."""
  return {"original_workdir": os.path.relpath(os.path.abspath(original_dir), os.path.abspath(workdir)),
          "original_workdir_absolute": os.path.abspath(original_dir)}


def _digest(train_config: ml_collections.ConfigDict, forget: List[np.ndarray]) -> str:
  blob = json.dumps({"training": train_config.to_dict(), "forget": [f.tolist() for f in forget]},
                    sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_outputs(setup: Setup, states: TrainState, forget: List[np.ndarray],
                  reference: Optional[ModelOutputs] = None, retain: Optional[List[np.ndarray]] = None) -> ModelOutputs:
  """Every seed's logits on every split, as the metrics' inputs (`METRICS` by name)."""
  logits, _ = accuracies(setup, states, setup.config.train.eval_batch_size)
  labels = {split: setup.dataset.split(split).y for split in logits}
  return ModelOutputs(logits, labels, forget, reference, retain=retain)


def reference_record(config: ml_collections.ConfigDict, forget_digest: str) -> Dict[str, Any]:
  """Everything that decides a retrain reference (its made_by.json)."""
  return {"training": training_config(config).to_dict(), "augment": augments(config), "forget": forget_digest}


def _values(outputs: ModelOutputs, names) -> Dict[str, np.ndarray]:
  return {n: outputs.value(n) for n in names}


# Paths a work directory's config names: compared by what they hold, not where they are, so a
# copied or moved work directory (or study) resumes: the forget set's digest stands for the
# score file (`_check_forget_set`), the original model's training config for its folder.
PATH_KEYS = ("forget.scores", "unlearn.original_workdir")


def _prepare_workdir(workdir: str, config, overwrite: bool) -> None:
  """config.json of the whole run; unlearning settings may differ between runs of one workdir."""
  keys = set(workdir_lib.flatten(config))
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if os.path.exists(path):
    keys |= set(workdir_lib.flatten(io.read_json(path)))
  # unlearn.augment decides the retrain reference and every method's run, like the training
  # sections: another value is another work directory.
  ignore = [k for k in keys if (k.startswith("unlearn.") and k != "unlearn.augment") or k in PATH_KEYS]
  workdir_lib.prepare(workdir, config, overwrite, clear=("methods", "retrain"), ignore=ignore,
                      sections=TRAINING_SECTIONS + ("forget", "unlearn"), outputs=("forget_set.npz",))


def _check_forget_set(workdir: str, forget: List[np.ndarray], overwrite: bool) -> str:
  """The forget set's digest; refuses a work directory whose runs used another forget set.

  A new forget set in an existing work directory (recomputed or edited scores, another score
  file) would leave its finished runs beside runs of the new set: refused unless --overwrite,
  which discards the runs made with the old one.
  """
  new = workdir_lib.digest(np.stack(forget))
  old_file = os.path.join(workdir, "forget_set.npz")
  if not workdir_lib.readable(old_file):
    return new
  with np.load(old_file) as data:
    old_positions = data["forget_positions"]
  if workdir_lib.digest(old_positions) == new:
    return new
  stale = [name for name in workdir_lib.finished_runs(workdir) if _run_digest(workdir, name) != new]
  shared = len(np.intersect1d(old_positions[0], forget[0])) if old_positions.shape[1:] else 0
  if stale and not overwrite:
    raise workdir_lib.WorkdirError(
        f"the forget set of {workdir} changed: {shared} of its {len(forget[0])} examples are the same "
        f"(were the scores recomputed or the score file replaced?), and its finished runs "
        f"{', '.join(stale)} were unlearned from the old one. Use another --workdir, or pass --overwrite "
        "to discard those runs.")
  for name in stale:
    logging.warning("--overwrite: discarding %s, unlearned from the previous forget set",
                    workdir_lib.method_dir(workdir, name))
    shutil.rmtree(workdir_lib.method_dir(workdir, name))
  return new


def _run_digest(workdir: str, name: str) -> Optional[str]:
  """The forget-set digest a finished run was unlearned from (its forget_set.npz)."""
  path = os.path.join(workdir_lib.method_dir(workdir, name), "forget_set.npz")
  if not workdir_lib.readable(path):
    return None
  with np.load(path) as data:
    return workdir_lib.digest(data["forget_positions"])


def run_records(workdir: str, record: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The tidy rows of a run's metrics.json: the run, its retrain reference and the original."""
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  config = io.read_json(path) if os.path.exists(path) else {}
  digest = record.get("forget_digest", "")
  rows = []
  for name, part, settings in ((record["method"], record, record["settings"]), ("retrain", record["retrain"], {}),
                               ("original", record["original"], {})):
    if name == "retrain" and record["method"] == "retrain" and part is not record:
      continue  # the retrain run is its own reference
    rows += results.record_rows(part["per_seed"], **results.run_columns(config, name, settings, digest))
  return rows


def write_summary(workdir: str, forget_digest: str) -> str:
  """summary.csv (the records) and summary.md (means, 95% intervals) over every finished method of
  `workdir` unlearned from the forget set `forget_digest` (the work directory's); returns the markdown."""
  rows, seconds = [], {}
  runs = [n for n in workdir_lib.finished_runs(workdir) if _run_digest(workdir, n) == forget_digest]
  for i, name in enumerate(runs):
    record = io.read_json(os.path.join(workdir_lib.method_dir(workdir, name), workdir_lib.METRICS_FILE))
    # The references are the same in every record: taken from the first.
    own = [r for r in run_records(workdir, record) if i == 0 or r["method"] == record["method"]]
    rows += [r for r in own if not (r["method"] == "retrain" and any(x["method"] == "retrain" for x in rows))]
    seconds[record["method"]] = record.get("seconds", "")
    seconds.setdefault("retrain", record["retrain"].get("seconds", ""))
  io.write_csv(os.path.join(workdir, "summary.csv"), rows, fields=results.RECORD_COLUMNS)
  order = ["original", "retrain"] + [r for r in dict.fromkeys(x["method"] for x in rows) if r not in ("original", "retrain")]
  text = reports.table(results.summary_frame(rows), RUN_METRICS, rows=[r for r in order if any(x["method"] == r for x in rows)],
                       extra={"seconds": {k: f"{v:.1f}" for k, v in seconds.items() if isinstance(v, (int, float))}})
  io.write_text(os.path.join(workdir, "summary.md"), text)
  return text


@dataclasses.dataclass
class Prepared:
  """An unlearning work directory made ready for methods: its original models, forget set and
  retrain reference, all seeds (what every method run of the directory shares)."""
  config: ml_collections.ConfigDict
  workdir: str
  setup: Setup
  original: TrainState
  forget: List[np.ndarray]
  retain: List[np.ndarray]
  forget_digest: str
  report: Dict[str, Any]
  retrain_dir: str
  retrain_digest: str  # what made the reference (`reference_record`), checked where it is used
  reference: TrainState
  retrain_history: Dict[str, list]
  retrain_seconds: float
  reference_outputs: ModelOutputs  # the retrain reference's logits (its own reference: itself)
  original_outputs: ModelOutputs   # the original models' logits, against the reference


def prepare(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
            setup: Optional[Setup] = None) -> Prepared:
  """Scores (if needed) -> original model -> forget set -> retrain reference, in `workdir`."""
  _prepare_workdir(workdir, config, overwrite)
  setup = setup or Setup.create(config)
  train = setup.dataset.train
  check_forget_size(config, len(train))  # before any training
  memorization.ensure_scores(config, workdir)
  original_dir, original = _original_model(config, workdir, setup, overwrite)

  forget, report = build_forget_set(config, workdir, setup, original)
  forget_digest = _check_forget_set(workdir, forget, overwrite)
  retain = [np.setdiff1d(np.arange(len(train)), f) for f in forget]
  io.write_npz(os.path.join(workdir, "forget_set.npz"), forget_positions=np.stack(forget),
               forget_index=np.stack([train.index[f] for f in forget]),
               retain_positions=np.stack(retain), retain_index=np.stack([train.index[r] for r in retain]))
  io.write_json(os.path.join(workdir, "forget_set.json"),
                {**report, "digest": forget_digest, **original_paths(workdir, original_dir),
                 "forget_positions": [f.tolist() for f in forget],
                 "forget_index": [train.index[f].tolist() for f in forget]})
  if "entanglement_per_group" in report:
    _write_entanglement(workdir, report["entanglement_per_group"])
  logging.info("forget set: %s of %d train examples (%s)", f"{len(forget[0])}", len(train),
               ", ".join(f"{k}={v}" for k, v in report.items() if not isinstance(v, list)))

  retrain_dir = workdir_lib.retrain_dir(workdir, _digest(training_config(config), forget))
  # What made the reference travels with it: a folder replaced by another reference (other
  # training, augmentation or forget set) is retrained here, and evaluate.py refuses it.
  retrain_digest = workdir_lib.claim_folder(retrain_dir, reference_record(config, forget_digest),
                                            "retrain reference")
  t0 = time.time()
  reference, retrain_history = unlearn(setup, None, "retrain", config.train, forget, retain,
                                       base_seed=config.seed, run_dir=retrain_dir)
  retrain_seconds = time.time() - t0
  if not os.path.exists(os.path.join(retrain_dir, "forget_set.npz")):
    io.write_npz(os.path.join(retrain_dir, "forget_set.npz"), forget_positions=np.stack(forget))
  reference_outputs = model_outputs(setup, reference, forget)
  reference_outputs.reference = reference_outputs
  if not os.path.exists(os.path.join(retrain_dir, "predictions", "test.npz")):
    save_predictions(setup.dataset, reference_outputs.logits, os.path.join(retrain_dir, "predictions"))
  original_outputs = model_outputs(setup, original, forget, reference_outputs)
  return Prepared(config, workdir, setup, original, forget, retain, forget_digest, report, retrain_dir,
                  retrain_digest, reference, retrain_history, retrain_seconds, reference_outputs, original_outputs)


def run_unlearning(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
                   setup: Optional[Setup] = None, evaluate: bool = True) -> Dict[str, Any]:
  """Scores (if needed) -> original model -> forget set -> retrain reference -> the method -> metrics.

  Args:
    config: the full config (data, model, train, forget, unlearn), validated.
    workdir: the work directory (layout in the module docstring).
    overwrite: discard results made with another forget set / training config.
    setup: reuse this data/model/runner (and its compiled programs) across runs with the
      same data, model and num_seeds (None: made from config).
    evaluate: also evaluate every finished run of the work directory (evaluation.md/.png).

  Returns:
    The method's metrics record (also in methods/<folder>/metrics.json).
  """
  return run_method(prepare(config, workdir, overwrite, setup), config, overwrite, evaluate)


def write_report(run_dir: str, report: Report, history: Dict[str, list], title: str) -> None:
  """A method run's training curves (history.csv, curves.png) and what its `report` holds."""
  histories = {".": (title, history), **report.histories}
  for folder, (name, curves) in histories.items():
    if curves:
      io.write_csv(os.path.join(run_dir, folder, "history.csv"), results.history_rows(curves))
      results.plot_history(curves, os.path.join(run_dir, folder, "curves.png"), name)
  for stem, (record, rows) in report.tables.items():
    io.write_json(os.path.join(run_dir, f"{stem}.json"), record)
    io.write_csv(os.path.join(run_dir, f"{stem}.csv"), rows)


def run_method(prep: Prepared, config: ml_collections.ConfigDict, overwrite: bool = False,
               evaluate: bool = True) -> Dict[str, Any]:
  """config.unlearn.method on a prepared work directory: its run, metrics, summary (and evaluation)."""
  method = METHODS.get(config.unlearn.method)
  workdir, setup, forget, retain, forget_digest = prep.workdir, prep.setup, prep.forget, prep.retain, prep.forget_digest
  train = setup.dataset.train
  run_name, settings = method.folder_of(config), method.settings_of(config, workdir)
  method_dir = workdir_lib.method_dir(workdir, run_name)
  workdir_lib.prepare(method_dir, ml_collections.ConfigDict({"method": method.name, "settings": settings}),
                      overwrite, clear=("checkpoints", "steps"), ignore=METHOD_PATH_KEYS,
                      outputs=("predictions", "forget_set.npz"))
  if _run_digest(workdir, run_name) not in (None, forget_digest):
    # An unfinished run of another forget set (a finished one was refused or discarded above):
    # its checkpoints belong to that set.
    logging.warning("%s was started on another forget set: starting it over", method_dir)
    for sub in ("checkpoints", "steps"):
      shutil.rmtree(os.path.join(method_dir, sub), ignore_errors=True)
  io.write_npz(os.path.join(method_dir, "forget_set.npz"), forget_positions=np.stack(forget),
               forget_index=np.stack([train.index[f] for f in forget]))
  t0 = time.time()
  report = Report()
  if method.from_scratch:  # the retrain reference itself, trained in `prepare`
    states, history, seconds = prep.reference, prep.retrain_history, prep.retrain_seconds
  else:
    states, history = unlearn(setup, prep.original, method.name, settings, forget, retain, base_seed=config.seed,
                              run_dir=method_dir, saliency_path=os.path.join(workdir, "saliency.npz"),
                              name=run_name, report=report)
    seconds = time.time() - t0
  outputs = model_outputs(setup, states, forget, prep.reference_outputs)
  unlearned = _values(outputs, RUN_METRICS)
  retrained = _values(prep.reference_outputs, RUN_METRICS)
  original = _values(prep.original_outputs, RUN_METRICS)
  record = {
      "method": run_name, "settings": settings.to_dict(), "seconds": seconds,
      "forget_set": {k: v for k, v in prep.report.items() if k != "entanglement_per_group"},
      "forget_digest": forget_digest,
      "retrain_reference": workdir_lib.relative(workdir, prep.retrain_dir),
      "retrain_digest": prep.retrain_digest,
      "per_seed": unlearned, "summary": results.summarize_columns(unlearned),
      "retrain": {"per_seed": retrained, "summary": results.summarize_columns(retrained),
                  "seconds": prep.retrain_seconds},
      "original": {"per_seed": original, "summary": results.summarize_columns(original)},
  }
  save_predictions(setup.dataset, outputs.logits, os.path.join(method_dir, "predictions"))
  write_report(method_dir, report, history, f"{setup.dataset.name}: {run_name}")
  io.write_csv(os.path.join(method_dir, "metrics.csv"), run_records(workdir, io.as_json(record)),
               fields=results.RECORD_COLUMNS)
  io.write_json(os.path.join(method_dir, workdir_lib.METRICS_FILE), record)  # last: marks the run finished
  table = write_summary(workdir, forget_digest)
  logging.info("%s (mean over %d seeds): %s", run_name, config.num_seeds,
               "  ".join(f"{k} {v['mean']:.4f}" for k, v in record["summary"].items()))
  if not evaluate:  # else the evaluation's table, which has these columns too, is the one shown
    logging.info("%s", table)
  if evaluate:
    table = evaluation.evaluate_workdir(workdir)
    logging.info("evaluation of %s:\n%s\ntable: %s\nfigure: %s", workdir, table,
                 os.path.join(workdir, evaluation.TABLE_FILE), os.path.join(workdir, evaluation.FIGURE_FILE))
  return record
