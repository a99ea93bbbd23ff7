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
                              metrics.json, metrics.csv, history.csv, curves.png,
                              predictions/, forget_set.npz
  summary.csv / summary.md    every finished method of this work directory, mean and 95% CI
  evaluation.{json,csv,md,png}  accuracies, attacks, ToW and ToW-MIA of every finished run
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
from rum_jax.evaluation.tow import set_accuracies, tow
from rum_jax.memorization import files as score_files
from rum_jax.pipelines import evaluation, memorization, training
from rum_jax.training import loop
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import Setup, accuracies, save_predictions
from rum_jax.training.state import TrainState
from rum_jax.unlearning import METHODS, unlearn
from rum_jax.unlearning.forget_kinds import FORGET_KINDS, ForgetRequest
from rum_jax.unlearning.interface import ScoreSource
from rum_jax.unlearning.runners import augments

SPLIT_METRICS = ("forget_accuracy", "retain_accuracy", "val_accuracy", "test_accuracy")
# A RUM run's recorded score path may move with its work directory; its digest may not change.
METHOD_PATH_KEYS = ("settings.scores",)


# ---------------------------------------------------------------------------------------
# Scores.


def missing_scores_message(path: str, data_name: str, proxies: bool) -> str:
  """What to do when a score file a run needs is absent."""
  published = ", ".join(score_files.FORMATS.get(f).filename for f in score_files.FORMATS.names())
  mode = "proxies" if proxies else "memorization"
  return (f"no {'proxy' if proxies else 'memorization'} scores at {path}. Compute them with `python train.py "
          f"--config=configs/{data_name}_{mode}.py --workdir={os.path.dirname(path) or '.'}` (or let "
          f"unlearn.py do it: --config.unlearn.compute_scores=True), or point --config.forget.scores to a score "
          f"file: a rum-jax memorization.npz or a published one ({published})")


def forget_score_source(config: ml_collections.ConfigDict, workdir: str) -> Optional[ScoreSource]:
  """The score file the forget set ranks by (None for kinds that use no scores)."""
  kind = FORGET_KINDS.get(config.forget.kind)
  if kind.score_file is None:
    return None
  return ScoreSource(config.forget.scores or workdir_lib.default_scores_path(workdir), config.forget.score_key,
                     proxies=kind.score_file == "proxies")


def score_run_config(config: ml_collections.ConfigDict, mode: str) -> ml_collections.ConfigDict:
  """Only what decides the scores, so later unlearning settings never invalidate their folder."""
  section = "memorization" if mode == "memorization" else "proxies"
  return ml_collections.ConfigDict({**training_config(config).to_dict(), "mode": mode,
                                    section: config[section].to_dict()})


def ensure_scores(config: ml_collections.ConfigDict, workdir: str) -> List[str]:
  """Makes sure every score file the run reads exists, before any training.

  The default file (<workdir>/memorization/memorization.npz) is computed there when absent and
  config.unlearn.compute_scores allows: Feldman-Zhang memorization (config.memorization), or
  the one-run proxies (config.proxies) when the first reader wants a proxy.

  Returns:
    The paths computed.

  Raises:
    FileNotFoundError: a score file is absent and may not be computed (the message says how).
  """
  sources = [forget_score_source(config, workdir)] + METHODS.get(config.unlearn.method).score_sources(config, workdir)
  default = workdir_lib.default_scores_path(workdir)
  computed = []
  for source in [s for s in sources if s is not None]:
    if os.path.exists(source.path):
      continue
    if source.path != default or not config.unlearn.get("compute_scores", True):
      raise FileNotFoundError(missing_scores_message(source.path, config.data.name, source.proxies))
    mode = "proxies" if source.proxies else "memorization"
    logging.info("no scores at %s: computing %s there first (config.unlearn.compute_scores)", default, mode)
    run = memorization.run_proxies if source.proxies else memorization.run_memorization
    run(score_run_config(config, mode), os.path.dirname(default))
    computed.append(default)
  return computed


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
  source = forget_score_source(config, workdir)
  if source is not None:
    if not os.path.exists(source.path):
      raise FileNotFoundError(missing_scores_message(source.path, config.data.name, source.proxies))
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


def reference_record(config: ml_collections.ConfigDict, forget_digest: str) -> Dict[str, Any]:
  """Everything that decides a retrain reference (its made_by.json)."""
  return {"training": training_config(config).to_dict(), "augment": augments(config), "forget": forget_digest}


def evaluate_splits(setup: Setup, states: TrainState, forget: List[np.ndarray],
                    retain: List[np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """Per-seed forget/retain/val/test accuracy [num_seeds] and the logits of every split."""
  logits, acc = accuracies(setup, states, setup.config.train.eval_batch_size)
  per_seed = set_accuracies(logits["train"], setup.dataset.train.y,
                            {"forget_accuracy": forget, "retain_accuracy": retain})
  per_seed.update(val_accuracy=acc["val"], test_accuracy=acc["test"])
  return per_seed, logits


def tow_per_seed(unlearned: Dict[str, Any], retrained: Dict[str, Any]) -> np.ndarray:
  """ToW of each seed's model against the same seed's retrained one, from per-seed accuracies."""
  def split(d, s):
    return {"forget": d["forget_accuracy"][s], "retain": d["retain_accuracy"][s], "test": d["test_accuracy"][s]}
  return np.array([tow(split(unlearned, s), split(retrained, s)) for s in range(len(unlearned["test_accuracy"]))])


def _metrics_rows(models: Dict[str, Dict[str, np.ndarray]]) -> List[Dict[str, Any]]:
  rows = []
  for model, columns in models.items():
    per_seed = results.columns_to_seeds(columns)
    rows += results.seed_rows(per_seed, results.summarize(per_seed), model=model)
  return rows


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


def write_summary(workdir: str, forget_digest: str) -> str:
  """summary.csv and summary.md over every finished method of `workdir` unlearned from the forget
  set `forget_digest` (the work directory's); returns the markdown."""
  rows = []
  runs = [n for n in workdir_lib.finished_runs(workdir) if _run_digest(workdir, n) == forget_digest]
  for i, name in enumerate(runs):
    record = io.read_json(os.path.join(workdir_lib.method_dir(workdir, name), workdir_lib.METRICS_FILE))
    # The references are the same in every record; a `retrain` record is the reference itself.
    models = [("original", record["original"]), ("retrain", record["retrain"])] if i == 0 else []
    for label, part in models + ([(name, record)] if name != "retrain" else []):
      row = {"method": label}
      for k in SPLIT_METRICS + ("tow",):
        if k in part["summary"]:
          row[k] = part["summary"][k]["mean"]
          row[f"{k}_ci95"] = part["summary"][k]["ci95"]
      row["seconds"] = part.get("seconds", "")
      rows.append(row)
  io.write_csv(os.path.join(workdir, "summary.csv"), rows)
  cells = [[r["method"]] + [results.cell({"mean": r[k], "ci95": r[k + "_ci95"]}) if k in r else ""
                            for k in SPLIT_METRICS + ("tow",)]
           + [f"{r['seconds']:.1f}" if isinstance(r["seconds"], (int, float)) else ""] for r in rows]
  text = results.markdown_table(["method", "forget acc", "retain acc", "val acc", "test acc", "ToW", "seconds"],
                                cells)
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
  retrained: Dict[str, np.ndarray]  # per-seed forget/retain/val/test accuracy of the reference
  original_accuracy: Dict[str, np.ndarray]


def prepare(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
            setup: Optional[Setup] = None) -> Prepared:
  """Scores (if needed) -> original model -> forget set -> retrain reference, in `workdir`."""
  _prepare_workdir(workdir, config, overwrite)
  setup = setup or Setup.create(config)
  train = setup.dataset.train
  check_forget_size(config, len(train))  # before any training
  ensure_scores(config, workdir)
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
  retrained, retrain_logits = evaluate_splits(setup, reference, forget, retain)
  if not os.path.exists(os.path.join(retrain_dir, "predictions", "test.npz")):
    save_predictions(setup.dataset, retrain_logits, os.path.join(retrain_dir, "predictions"))
  original_accuracy, _ = evaluate_splits(setup, original, forget, retain)
  return Prepared(config, workdir, setup, original, forget, retain, forget_digest, report, retrain_dir,
                  retrain_digest, reference, retrain_history, retrain_seconds, retrained, original_accuracy)


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
  if method.from_scratch:  # the retrain reference itself, trained in `prepare`
    states, history, seconds = prep.reference, prep.retrain_history, prep.retrain_seconds
  else:
    states, history = unlearn(setup, prep.original, method.name, settings, forget, retain, base_seed=config.seed,
                              run_dir=method_dir, saliency_path=os.path.join(workdir, "saliency.npz"),
                              name=run_name)
    seconds = time.time() - t0
  unlearned, logits = evaluate_splits(setup, states, forget, retain)
  unlearned["tow"] = tow_per_seed(unlearned, prep.retrained)
  record = {
      "method": run_name, "settings": settings.to_dict(), "seconds": seconds,
      "forget_set": {k: v for k, v in prep.report.items() if k != "entanglement_per_group"},
      "forget_digest": forget_digest,
      "retrain_reference": workdir_lib.relative(workdir, prep.retrain_dir),
      "retrain_digest": prep.retrain_digest,
      "per_seed": unlearned, "summary": results.summarize_columns(unlearned),
      "retrain": {"per_seed": prep.retrained, "summary": results.summarize_columns(prep.retrained)},
      "original": {"per_seed": prep.original_accuracy, "summary": results.summarize_columns(prep.original_accuracy)},
  }
  save_predictions(setup.dataset, logits, os.path.join(method_dir, "predictions"))
  if history:
    io.write_csv(os.path.join(method_dir, "history.csv"), results.history_rows(history))
    results.plot_history(history, os.path.join(method_dir, "curves.png"), f"{setup.dataset.name}: {run_name}")
  io.write_csv(os.path.join(method_dir, "metrics.csv"),
               _metrics_rows({"unlearned": unlearned, "retrain": prep.retrained, "original": prep.original_accuracy}))
  io.write_json(os.path.join(method_dir, workdir_lib.METRICS_FILE), record)  # last: marks the run finished
  table = write_summary(workdir, forget_digest)
  logging.info("%s (mean over %d seeds): %s\n%s", run_name, config.num_seeds,
               "  ".join(f"{k} {v['mean']:.4f}" for k, v in record["summary"].items()), table)
  if evaluate:
    table = evaluation.evaluate_workdir(workdir)
    logging.info("evaluation of %s:\n%s\ntable: %s\nfigure: %s", workdir, table,
                 os.path.join(workdir, evaluation.TABLE_FILE), os.path.join(workdir, evaluation.FIGURE_FILE))
  return record
