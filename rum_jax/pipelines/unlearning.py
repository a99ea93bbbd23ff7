"""Unlearning runs (unlearn.py): original -> forget set -> retrain reference -> a method -> evaluation.

`run_unlearning(config, workdir)` runs config.unlearn.method, any entry of
`unlearning.UNLEARNING_METHODS` (RUM included), on all seeds at once, in the work directory's run folder
(its layout: `runfolder.layout`): the score file a forget set or method reads (computed first
when absent and config.unlearn.compute_scores allows), the original models (unless
config.unlearn.original_workdir names a finished train.py run), the forget set, the retrain
reference of the forget set (keyed by a digest of the training config and the set, shared by
every method), then the method's own run folder: its settings, checkpoints, record (the run,
the retrain reference and the original, per seed and metric, with the digests of the forget
set, the reference and the original it started from), curves, predictions; then the summary
of every finished method and the evaluation (`pipelines.evaluation`), handed the outputs just
computed.

Every check that may refuse the run (the configs of the work directory, the method's run, the
original models; a changed forget set; a reference whose files were replaced) comes before
the first write: a refused run changes nothing.
"""
import dataclasses
import hashlib
import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, manifest, results
from rum_jax.evaluation.metrics import ModelOutputs
from rum_jax.memorization import files as score_files
from rum_jax.pipelines import evaluation, memorization, reports, training
from rum_jax.runfolder import (ConfigCheck, RunFolder, WorkdirError, check_config, claim, config_of, differences, digest,
                               flatten, made_by, record_digest)
from rum_jax.training import loop
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import Setup, accuracies
from rum_jax.training.state import TrainState
from rum_jax.unlearning import UNLEARNING_METHODS, unlearn
from rum_jax.unlearning.forget_kinds import FORGET_KINDS, ForgetRequest
from rum_jax.unlearning.interface import Report
from rum_jax.unlearning.runners import augments

SPLIT_METRICS = ("forget_accuracy", "retain_accuracy", "val_accuracy", "test_accuracy")
# What every run records right after it finishes (the evaluation adds the attacks).
RUN_METRICS = SPLIT_METRICS + ("tow",)
# A RUM run's score path is recorded relative to the work directory and may move with it; its
# digest may not change.
METHOD_PATH_KEYS = ("settings.scores",)
# Paths a work directory's config names: recorded relative to it and compared by what they
# hold, not where they are, so a copied or moved work directory (or study) resumes: the forget
# set's digest stands for the score file (`_forget_set_check`), the original model's training
# config and predictions for its folder.
PATH_KEYS = ("forget.scores", "unlearn.original_workdir")


# ---------------------------------------------------------------------------------------
# Forget sets.


def build_forget_set(config: ml_collections.ConfigDict, workdir: Any, setup: Setup,
                     original: Optional[TrainState]) -> Tuple[List[np.ndarray], Dict[str, Any]]:
  """Forget positions per seed (num_seeds arrays) from config.forget, and a report of how they
  were chosen (the score file relative to `workdir`, and its digest)."""
  f = config.forget
  train = setup.dataset.train
  check_forget_size(config, len(train))
  kind = FORGET_KINDS.get(f.kind)
  report: Dict[str, Any] = {"kind": f.kind, "size": f.size, "split": f.get("split", "report")}
  scores = None
  source = memorization.forget_score_source(config, workdir)
  if source is not None:
    try:
      scores = score_files.scores_for_split(source.path, train, f.score_key)
    except FileNotFoundError:
      raise FileNotFoundError(memorization.missing_scores_message(source.path, config.data.name,
                                                                  source.proxies)) from None
    report.update(scores=RunFolder.of(workdir).relative(source.path), scores_digest=manifest.file_sha(source.path),
                  score_key=f.score_key)

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


def forget_arrays(train: Any, forget: Sequence[np.ndarray], retain: Optional[Sequence[np.ndarray]] = None
                  ) -> Dict[str, np.ndarray]:
  """The forget set as saved: train positions and ORIGINAL indices per seed (and the retain set's)."""
  out = {"forget_positions": np.stack(forget), "forget_index": np.stack([train.index[f] for f in forget])}
  if retain is not None:
    out.update(retain_positions=np.stack(retain), retain_index=np.stack([train.index[r] for r in retain]))
  return out


def _entanglement_rows(per_group: List[List[float]]) -> List[Dict[str, Any]]:
  rows = []
  for g, values in enumerate(per_group):
    stats = results.summarize(values)
    rows.append({"group": g, "es_mean": stats["mean"], "es_ci95": stats["ci95"],
                 **{f"es_seed{s}": v for s, v in enumerate(values)}})
  return rows


# ---------------------------------------------------------------------------------------
# Checks: everything that may refuse a run, read before anything is written.


def recorded_config(config: ml_collections.ConfigDict, folder: RunFolder) -> Dict[str, Any]:
  """The config as its work directory records it: PATH_KEYS relative to the folder."""
  out = config.to_dict()
  for key in PATH_KEYS:
    section, name = key.split(".")
    if out.get(section, {}).get(name):
      out[section][name] = folder.relative(out[section][name])
  return out


def workdir_check(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False) -> ConfigCheck:
  """The work directory's config: training, forget set and unlearn.augment decide its original,
  references and runs (another value is another work directory); the other unlearning
  settings may differ between runs. Its finished runs hold it."""
  keys = set(flatten(config)) | set(flatten((config_of(folder) if folder.isdir() else None) or {}))
  ignore = [k for k in keys if (k.startswith("unlearn.") and k != "unlearn.augment") or k in PATH_KEYS]
  return check_config(folder, recorded_config(config, folder), overwrite, clear=("methods", "retrain"),
                      ignore=ignore, sections=TRAINING_SECTIONS + ("forget", "unlearn"),
                      results=(lambda: bool(folder.finished_runs()),))


def recorded_settings(settings: ml_collections.ConfigDict, folder: RunFolder) -> Dict[str, Any]:
  """A method's settings as its run records them: the paths of METHOD_PATH_KEYS relative to the
  work directory (the run itself reads them as given)."""
  out = settings.to_dict()
  for key in METHOD_PATH_KEYS:
    name = key.split(".", 1)[1]
    if out.get(name):
      out[name] = folder.relative(out[name])
  return out


def method_check(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False) -> ConfigCheck:
  """The run folder of config.unlearn.method: its settings (a finished run of others is refused)."""
  method = UNLEARNING_METHODS.get(config.unlearn.method)
  settings = recorded_settings(method.settings_of(config, folder.path), folder)
  # A score file computed by this run has no digest yet: the check in `run_method` compares it.
  unknown = ("settings.scores_digest",) if settings.get("scores_digest") == "" else ()
  return check_config(folder.method(method.folder_of(config)), {"method": method.name, "settings": settings},
                      overwrite, clear=("checkpoints", "steps"), ignore=METHOD_PATH_KEYS + unknown, results=("metrics",))


def _original_check(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool) -> Tuple[RunFolder, bool]:
  """(the original models' folder, whether --overwrite retrains them); refuses a given one that
  is not finished and one trained with another config (unless --overwrite, for its own)."""
  given = config.unlearn.original_workdir
  original = RunFolder(given) if given else folder.original()
  if given and not original.finished():
    raise FileNotFoundError(f"config.unlearn.original_workdir={given} holds no finished training run: run "
                            f"train.py --workdir={given} first, or leave it empty to train the original model in "
                            f"{folder.original()}")
  old = config_of(original) if original.isdir() else None
  # Models that never finished training hold nothing: they are trained with the new config.
  diff = differences(old, training_config(config).to_dict(), TRAINING_SECTIONS) if old and original.finished() else []
  if diff and (given or not overwrite):
    raise WorkdirError(f"the original model in {original} was trained with another config "
                     f"({'; '.join(diff[:6])}); use a matching config" + ("" if given else " or --overwrite to retrain it"))
  if not given:
    training.check(training_config(config), original, overwrite=bool(diff))
  return original, bool(diff)


def _forget_set_check(folder: RunFolder, forget: List[np.ndarray], overwrite: bool) -> Tuple[str, List[str]]:
  """(the forget set's digest, the finished runs of another set that --overwrite discards);
  refuses a work directory whose finished runs used another forget set.

  A new forget set in an existing work directory (recomputed or edited scores, another score
  file) would leave its finished runs beside runs of the new set: refused unless --overwrite.
  """
  new = digest(np.stack(forget))
  if not folder.readable("forget_set"):
    return new, []
  old_positions = folder.read("forget_set")["forget_positions"]
  if digest(old_positions) == new:
    return new, []
  stale = [name for name in folder.finished_runs() if folder.method(name).read("metrics").get("forget_digest") != new]
  shared = len(np.intersect1d(old_positions[0], forget[0])) if old_positions.shape[1:] else 0
  if stale and not overwrite:
    raise WorkdirError(
        f"the forget set of {folder} changed: {shared} of its {len(forget[0])} examples are the same "
        f"(were the scores recomputed or the score file replaced?), and its finished runs "
        f"{', '.join(stale)} were unlearned from the old one. Use another --workdir, or pass --overwrite "
        "to discard those runs.")
  return new, stale


def _reference_check(reference: RunFolder, record: Dict[str, Any]) -> None:
  """A reference already made for this record must hold the files rum-jax wrote there."""
  if made_by(reference) != record_digest(record):
    return  # another record's or none: retrained
  for key, fields in [("forget_set", {})] + [("predictions", {"split": s}) for s in evaluation.SPLITS]:
    if reference.exists(key, **fields):
      reference.verify(key, **fields)


# ---------------------------------------------------------------------------------------
# The pipeline: original model, forget set, retrain reference, method, evaluation.


def model_outputs(setup: Setup, states: TrainState, forget: List[np.ndarray],
                  reference: Optional[ModelOutputs] = None, retain: Optional[List[np.ndarray]] = None) -> ModelOutputs:
  """Every seed's logits on every split, as the metrics' inputs (`METRICS` by name)."""
  logits, _ = accuracies(setup, states, setup.config.train.eval_batch_size)
  labels = {split: setup.dataset.split(split).y for split in logits}
  return ModelOutputs(logits, labels, forget, reference, retain=retain)


def reference_record(config: ml_collections.ConfigDict, forget_digest: str) -> Dict[str, Any]:
  """Everything that decides a retrain reference (what `claim` records as having made it)."""
  return {"training": training_config(config).to_dict(), "augment": augments(config), "forget": forget_digest}


def _reference_key(train_config: ml_collections.ConfigDict, forget: List[np.ndarray]) -> str:
  blob = json.dumps({"training": train_config.to_dict(), "forget": [f.tolist() for f in forget]}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _values(outputs: ModelOutputs, names) -> Dict[str, np.ndarray]:
  return {n: outputs.value(n) for n in names}


@dataclasses.dataclass
class Prepared:
  """An unlearning work directory made ready for methods: its original models, forget set and
  retrain reference, all seeds (what every method run of the directory shares)."""
  config: ml_collections.ConfigDict
  folder: RunFolder
  setup: Setup
  original: TrainState
  original_folder: RunFolder
  original_digest: str  # of its saved predictions: which original models the runs start from
  forget: List[np.ndarray]
  retain: List[np.ndarray]
  forget_digest: str
  report: Dict[str, Any]
  retrain_folder: RunFolder
  retrain_digest: str  # what made the reference (`reference_record`), checked where it is used
  reference: TrainState
  retrain_history: Dict[str, list]
  retrain_seconds: float
  reference_outputs: ModelOutputs  # the retrain reference's logits (its own reference: itself)
  original_outputs: ModelOutputs   # the original models' logits, against the reference

  @property
  def workdir(self) -> str:
    return self.folder.path


def prepare(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False,
            setup: Optional[Setup] = None) -> Prepared:
  """Scores (if needed) -> original model -> forget set -> retrain reference, in `workdir`."""
  folder = RunFolder.of(workdir)
  own = workdir_check(config, folder, overwrite)
  setup = setup or Setup.create(config)
  train = setup.dataset.train
  check_forget_size(config, len(train))  # before any training
  original_folder, retrain_original = _original_check(config, folder, overwrite)
  memorization.ensure_scores(config, folder)
  if retrain_original:
    original_folder.discard()
  original = training.load_or_train(training_config(config), original_folder, setup)[1]
  forget, report = build_forget_set(config, folder, setup, original)
  forget_digest, stale = _forget_set_check(folder, forget, overwrite)
  retrain_folder = folder.retrain(_reference_key(training_config(config), forget))
  record = reference_record(config, forget_digest)
  _reference_check(retrain_folder, record)
  original_digest = original_folder.predictions_digest()

  # Nothing refuses the run from here: its files are written.
  own.apply()
  for name in stale:
    logging.warning("--overwrite: discarding %s, unlearned from the previous forget set", folder.method(name))
    folder.method(name).discard()
  retain = [np.setdiff1d(np.arange(len(train)), f) for f in forget]
  folder.write("forget_set", forget_arrays(train, forget, retain))
  folder.write("forget_set_info", {**report, "digest": forget_digest,
                                   "original_workdir": folder.relative(original_folder.path),
                                   "original_digest": original_digest,
                                   "forget_positions": [f.tolist() for f in forget],
                                   "forget_index": [train.index[f].tolist() for f in forget]})
  if "entanglement_per_group" in report:
    rows = _entanglement_rows(report["entanglement_per_group"])
    folder.write("entanglement", {"groups": rows})
    folder.write("entanglement_rows", rows)
  logging.info("forget set: %s of %d train examples (%s)", f"{len(forget[0])}", len(train),
               ", ".join(f"{k}={v}" for k, v in report.items() if not isinstance(v, list)))

  # What made the reference travels with it: a folder replaced by another reference (other
  # training, augmentation or forget set) is retrained here, and evaluate.py refuses it.
  retrain_digest = claim(retrain_folder, record, "retrain reference")
  t0 = time.time()
  reference, retrain_history = unlearn(setup, None, "retrain", config.train, forget, retain,
                                       base_seed=config.seed, run_dir=retrain_folder.path)
  retrain_seconds = time.time() - t0
  if not retrain_folder.exists("forget_set"):
    retrain_folder.write("forget_set", {"forget_positions": np.stack(forget)})
  reference_outputs = model_outputs(setup, reference, forget)
  reference_outputs.reference = reference_outputs
  if not all(retrain_folder.exists("predictions", split=s) for s in evaluation.SPLITS):
    training.write_predictions(retrain_folder, setup.dataset, reference_outputs.logits)
  original_outputs = model_outputs(setup, original, forget, reference_outputs)
  return Prepared(config, folder, setup, original, original_folder, original_digest, forget, retain, forget_digest,
                  report, retrain_folder, retrain_digest, reference, retrain_history, retrain_seconds,
                  reference_outputs, original_outputs)


def run_unlearning(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False,
                   setup: Optional[Setup] = None, evaluate: bool = True) -> Dict[str, Any]:
  """Scores (if needed) -> original model -> forget set -> retrain reference -> the method -> metrics.

  Args:
    config: the full config (data, model, train, forget, unlearn), validated.
    workdir: the work directory (a RunFolder, or its path).
    overwrite: discard results made with another forget set / training config.
    setup: reuse this data/model/runner (and its compiled programs) across runs with the
      same data, model and num_seeds (None: made from config).
    evaluate: also evaluate every finished run of the work directory.

  Returns:
    The method's metrics record.
  """
  folder = RunFolder.of(workdir)
  method_check(config, folder, overwrite)  # refuses before anything is written; applied by run_method
  return run_method(prepare(config, folder, overwrite, setup), config, overwrite, evaluate)


def write_report(folder: RunFolder, report: Report, history: Dict[str, list], title: str) -> None:
  """A method run's training curves (history, curves) and what its `report` holds."""
  histories = {"": (title, history), **report.histories}
  for under, (name, curves) in histories.items():
    if curves:
      folder.write("history", results.history_rows(curves), under=under)
      folder.write("curves", results.history_figure(curves, name), under=under)
  for stem, (record, rows) in report.tables.items():
    folder.write("report_table", record, stem=stem)
    folder.write("report_rows", rows, stem=stem)


def run_records(config: Any, record: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The tidy rows of a run's record: the run, its retrain reference and the original."""
  rows = []
  for name, part, settings in ((record["method"], record, record["settings"]), ("retrain", record["retrain"], {}),
                               ("original", record["original"], {})):
    if name == "retrain" and record["method"] == "retrain" and part is not record:
      continue  # the retrain run is its own reference
    rows += results.record_rows(part["per_seed"], **results.run_columns(config, name, settings,
                                                                         record.get("forget_digest", "")))
  return rows


def write_summary(folder: Any, forget_digest: str, records: Optional[Dict[str, Dict[str, Any]]] = None) -> str:
  """The summary record and table (means, 95% intervals) over every finished method of the work
  directory unlearned from the forget set `forget_digest`; `records`: those in memory (a run
  just finished), the others are read. Returns the markdown."""
  folder = RunFolder.of(folder)
  records = dict(records or {})
  for name in folder.finished_runs():
    records.setdefault(name, folder.method(name).read("metrics"))
  config = config_of(folder) or {}
  rows, seconds = [], {}
  runs = [n for n in sorted(records) if records[n].get("forget_digest") == forget_digest]
  for i, name in enumerate(runs):
    record = records[name]
    # The references are the same in every record: taken from the first.
    own = [r for r in run_records(config, io.as_json(record)) if i == 0 or r["method"] == record["method"]]
    rows += [r for r in own if not (r["method"] == "retrain" and any(x["method"] == "retrain" for x in rows))]
    seconds[record["method"]] = record.get("seconds", "")
    seconds.setdefault("retrain", record["retrain"].get("seconds", ""))
  folder.write("summary_record", rows)
  order = ["original", "retrain"] + [r for r in dict.fromkeys(x["method"] for x in rows) if r not in ("original", "retrain")]
  text = reports.table(results.summary_frame(rows), RUN_METRICS, rows=[r for r in order if any(x["method"] == r for x in rows)],
                       extra={"seconds": {k: f"{v:.1f}" for k, v in seconds.items() if isinstance(v, (int, float))}})
  folder.write("summary_table", text)
  return text


def run_method(prep: Prepared, config: ml_collections.ConfigDict, overwrite: bool = False,
               evaluate: bool = True) -> Dict[str, Any]:
  """config.unlearn.method on a prepared work directory: its run, metrics, summary (and evaluation)."""
  method = UNLEARNING_METHODS.get(config.unlearn.method)
  folder, setup, forget, retain, forget_digest = prep.folder, prep.setup, prep.forget, prep.retain, prep.forget_digest
  run_name, settings = method.folder_of(config), method.settings_of(config, folder.path)
  run = folder.method(run_name)
  method_check(config, folder, overwrite).apply()
  if run.readable("forget_set") and digest(run.read("forget_set")["forget_positions"]) != forget_digest:
    # An unfinished run of another forget set (a finished one was refused or discarded above):
    # its checkpoints belong to that set.
    logging.warning("%s was started on another forget set: starting it over", run)
    run.discard("checkpoints", "steps")
  run.write("forget_set", forget_arrays(setup.dataset.train, forget))
  t0 = time.time()
  report = Report()
  if method.from_scratch:  # the retrain reference itself, trained in `prepare`
    states, history, seconds = prep.reference, prep.retrain_history, prep.retrain_seconds
  else:
    states, history = unlearn(setup, prep.original, method.name, settings, forget, retain, base_seed=config.seed,
                              run_dir=run.path, saliency_path=folder.file("saliency"), name=run_name, report=report)
    seconds = time.time() - t0
  outputs = model_outputs(setup, states, forget, prep.reference_outputs)
  unlearned = _values(outputs, RUN_METRICS)
  retrained = _values(prep.reference_outputs, RUN_METRICS)
  original = _values(prep.original_outputs, RUN_METRICS)
  record = {
      "method": run_name, "settings": recorded_settings(settings, folder), "seconds": seconds,
      "forget_set": {k: v for k, v in prep.report.items() if k != "entanglement_per_group"},
      "forget_digest": forget_digest,
      "retrain_reference": folder.relative(prep.retrain_folder.path),
      "retrain_digest": prep.retrain_digest,
      "original_digest": prep.original_digest,
      "per_seed": unlearned, "summary": results.summarize_columns(unlearned),
      "retrain": {"per_seed": retrained, "summary": results.summarize_columns(retrained),
                  "seconds": prep.retrain_seconds},
      "original": {"per_seed": original, "summary": results.summarize_columns(original)},
  }
  training.write_predictions(run, setup.dataset, outputs.logits)
  write_report(run, report, history, f"{setup.dataset.name}: {run_name}")
  run.write("metrics_record", run_records(prep.config, io.as_json(record)))
  run.write("metrics", record)  # last: marks the run finished
  # As it is read back (keys sorted), so the summary lists a run's metrics in one order, fresh or not.
  table = write_summary(folder, forget_digest, {run_name: json.loads(json.dumps(io.as_json(record), sort_keys=True))})
  logging.info("%s (mean over %d seeds): %s", run_name, config.num_seeds,
               "  ".join(f"{k} {v['mean']:.4f}" for k, v in record["summary"].items()))
  if not evaluate:  # else the evaluation's table, which has these columns too, is the one shown
    logging.info("%s", table)
  if evaluate:  # every finished run's; this one's as just computed (the returned record's "evaluation")
    table, values = evaluation.evaluate(folder, computed=evaluation.Computed.of(prep, run_name, outputs))
    logging.info("evaluation of %s:\n%s\ntable: %s\nfigure: %s", folder, table, folder.file("evaluation_table"),
                 folder.file("evaluation_figure"))
    record = {**record, "evaluation": values}
  return record
