"""The study's runs, in order, every one skipped when finished (package docstring, steps 1-5).

Work directory:
  original/                      the original models (train.py's layout), num_seeds of them
  scores/memorization|proxies/   Feldman-Zhang memorization and the one-run proxies (unless
                                 config.study.scores names a memorization file)
  sets/memorization_<level>/     an unlearning work directory per level: each seed's reported
                                 forget set and retrain reference, methods/<run>/, and
                                 validation/ (each seed's validation set, its retrain reference,
                                 sweeps/<method>/ the grids, plan/ RUM's plan search on the mix)
  timings.json                   seconds per piece of every invocation
  study.json / .csv / .md / .png the results (report.py), also in config.study.results_dir
"""
import functools
import os
import time
from typing import Any, Dict, List, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, provenance, workdir as workdir_lib
from rum_jax.evaluation import mia
from rum_jax.memorization import files as score_files
from rum_jax.pipelines import evaluation, forgetting, memorization, sweep, unlearning
from rum_jax.pipelines.study import plan as plan_lib
from rum_jax.training import loop
from rum_jax.training.setup import Setup
from rum_jax.unlearning import METHODS, rum
from rum_jax.unlearning.config import sweep_grid

MEMORIZATION = "memorization"
PROXY = "proxy"
RUM_NAME = "rum"                # the plan searched on the validation mix, thirds by memorization
SHUFFLE_NAME = "rum_shuffle"    # the same plan on three random parts (the paper's Shuffle control)
PAPER_NAME = "rum_paper"        # the paper's plan (config.study.paper_plan), thirds by memorization
PROXY_NAME = "rum_proxy"        # the searched plan with thirds by the proxy (Zhao & Triantafillou 2024)


def scores_path(config: ml_collections.ConfigDict, workdir: str, source: str) -> str:
  """The score file of a source: config.study.scores (memorization) if given, else computed in workdir."""
  if source == MEMORIZATION and config.study.scores:
    return config.study.scores
  return os.path.join(workdir, "scores", "memorization" if source == MEMORIZATION else "proxies",
                      "memorization.npz")


def ensure_scores(config: ml_collections.ConfigDict, workdir: str, source: str) -> bool:
  """Runs memorization (or the proxies) into <workdir>/scores/ unless done with the same config
  or given as a file; returns whether it ran."""
  if source == MEMORIZATION and config.study.scores:
    if not os.path.exists(config.study.scores):
      raise FileNotFoundError(f"config.study.scores={config.study.scores} does not exist; give a score "
                              f"file (e.g. RUM's estimates_results_woShuffle.npz) or '' to compute them")
    return False
  mode = "memorization" if source == MEMORIZATION else "proxies"
  score_config = memorization.score_run_config(config, mode)
  path = scores_path(config, workdir, source)
  directory = os.path.dirname(path)
  config_file = os.path.join(directory, workdir_lib.CONFIG_FILE)
  if workdir_lib.readable(path) and workdir_lib.readable(config_file) and (
      workdir_lib.flatten(io.read_json(config_file)) == workdir_lib.flatten(score_config)):
    return False
  (memorization.run_memorization if mode == "memorization" else memorization.run_proxies)(score_config, directory)
  return True


def train_scores(config: ml_collections.ConfigDict, workdir: str, setup: Setup, source: str) -> np.ndarray:
  """The source's score of every train example (the proxy oriented: high = more memorized)."""
  key = "" if source == MEMORIZATION else config.study.proxy
  return score_files.scores_for_split(scores_path(config, workdir, source), setup.dataset.train, key)


def set_config(config: ml_collections.ConfigDict, workdir: str, level: str, method: str) -> ml_collections.ConfigDict:
  """The unlearn.py config of one run: the study's data/model/training/unlearning settings, the
  forget set `level` by memorization, the shared original model, unlearn.method = `method`."""
  d = config.to_dict()
  for field in ("study", "mode", "memorization", "proxies", "forgetting"):
    d.pop(field, None)  # not part of an unlearning run: changing them must not invalidate it
  d["forget"].update(kind=MEMORIZATION, level=level, score_key="",
                     scores=os.path.abspath(scores_path(config, workdir, MEMORIZATION)))
  d["unlearn"].update(method=method, original_workdir=os.path.abspath(os.path.join(workdir, "original")))
  return ml_collections.ConfigDict(d)


def rum_config(cfg: ml_collections.ConfigDict, name: str, plan: Dict[str, Tuple[str, Dict[str, Any]]],
               refine: str = "score", scores: str = "", score_key: str = "") -> ml_collections.ConfigDict:
  """cfg running RUM as `name` with plan level -> (method, settings overrides), refining by
  `scores` (default the forget set's) or at random (refine='shuffle': the Shuffle control)."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.unlearn.method = rum.NAME
  cfg.unlearn.rum.update(name=name, scores=scores, score_key=score_key, refine=refine)
  for level in rum.LEVELS:
    method, overrides = plan[level]
    cfg.unlearn.rum[level] = ml_collections.ConfigDict({"method": method, "overrides": dict(overrides)})
  return cfg


def set_dir(workdir: str, level: str) -> str:
  """The work directory of a study level's reported forget sets (its validation sets below it)."""
  return os.path.join(workdir, "sets", f"{MEMORIZATION}_{level}")


def finished(cfg: ml_collections.ConfigDict, set_dir: str, forget: List[np.ndarray]) -> bool:
  """Whether the run of cfg in set_dir is done with the same settings and forget sets, and
  everything it and its evaluation read is there (its predictions, its retrain reference)."""
  method = METHODS.get(cfg.unlearn.method)
  run_dir = workdir_lib.method_dir(set_dir, method.folder_of(cfg))
  predictions = [os.path.join("predictions", f"{split}.npz") for split in ("train", "val", "test")]
  if not workdir_lib.is_finished(run_dir, also=[workdir_lib.CONFIG_FILE, "forget_set.npz"] + predictions):
    return False
  reference = io.read_json(os.path.join(run_dir, workdir_lib.METRICS_FILE)).get("retrain_reference", "")
  if not (reference and all(workdir_lib.readable(os.path.join(workdir_lib.resolve(set_dir, reference), f))
                            for f in ["forget_set.npz"] + predictions)):
    return False
  recorded = io.read_json(os.path.join(run_dir, workdir_lib.CONFIG_FILE))
  settings = method.settings_of(cfg, set_dir)
  if workdir_lib.differences(recorded, {"method": method.name, "settings": settings.to_dict()},
                             ignore=unlearning.METHOD_PATH_KEYS):
    return False
  with np.load(os.path.join(run_dir, "forget_set.npz")) as data:
    return np.array_equal(data["forget_positions"], np.stack(forget))


class Runner:
  """The study's pieces on one work directory, each timed (timings.json) and skipped when done."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup: Setup, overwrite: bool,
               timings: "InvocationLog"):
    self.config, self.workdir, self.setup, self.overwrite, self.timings = config, workdir, setup, overwrite, timings
    self.failures: Dict[str, str] = {}
    s = config.study
    features = tuple(s.get("mia_features", ())) or mia.FEATURES
    self.evaluate = functools.partial(evaluation.evaluate_workdir, metrics=unlearning.SPLIT_METRICS + tuple(
        f"mia_{f}" for f in features) + (("loss_mia_auc",) if s.get("loss_mia", True) else ()) + ("tow", "tow_mia"))

  def set_dir(self, level: str) -> str:
    return set_dir(self.workdir, level)

  def models(self, level: str) -> Dict[str, Dict[str, Any]]:
    """model -> {"per_seed", "summary"} of the level's evaluation.json."""
    return io.read_json(os.path.join(self.set_dir(level), "evaluation.json"))["models"]

  def run(self, prep: unlearning.Prepared, cfg: ml_collections.ConfigDict) -> None:
    """One (forget set, method) unless finished; a diverging method is recorded, not fatal."""
    key = f"{os.path.basename(prep.workdir)}/{METHODS.get(cfg.unlearn.method).folder_of(cfg)}"
    if finished(cfg, prep.workdir, prep.forget):
      logging.info("study: %s is done", key)
      return
    t0 = time.time()
    try:
      unlearning.run_method(prep, cfg, self.overwrite, evaluate=False)
    except loop.NonFiniteLossError as e:
      logging.warning("study: %s diverged; it is left out of the tables: %s", key, e)
      self.failures[key] = str(e)
    self.timings[key] = time.time() - t0

  def tune(self, level: str, method: str) -> Dict[str, Any]:
    """The method tuned on the level's validation sets: {"point", "validation_tow", "grid", "original_tow"}."""
    cfg = set_config(self.config, self.workdir, level, method)
    t0 = time.time()
    out = sweep.tune(cfg, self.set_dir(level), method, self.overwrite, self.setup, points=sweep_grid(cfg, method) or [{}])
    if not out["cached"]:
      self.timings[f"{MEMORIZATION}_{level}/validation/{method}"] = time.time() - t0
    return {"point": out["points"][out["chosen"]], "validation_tow": out["grid"][out["chosen"]]["summary"]["tow"]["mean"],
            "original_tow": out["original_tow"], "points": len(out["points"])}

  def level(self, level: str) -> Tuple[unlearning.Prepared, Dict[str, Dict[str, Any]]]:
    """Every method tuned on the level's validation sets and run with its choice on the reported sets."""
    s = self.config.study
    prep = unlearning.prepare(set_config(self.config, self.workdir, level, s.methods[0]), self.set_dir(level),
                              self.overwrite, self.setup)
    tuned = {}
    for method in s.methods:
      tuned[method] = self.tune(level, method)
      self.run(prep, sweep.tuned(set_config(self.config, self.workdir, level, method), method, tuned[method]["point"]))
    return prep, tuned

  def search_plan(self, tuned_mix: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """RUM's plan searched on the validation mix (plan.py); returns greedy_search's record (no state)."""
    s = self.config.study
    cfg = set_config(self.config, self.workdir, "mix", s.methods[0])
    val = unlearning.prepare(sweep.validation_config(cfg, os.path.join(self.workdir, "original")),
                             os.path.join(self.set_dir("mix"), sweep.VALIDATION), self.overwrite, self.setup)
    scores = train_scores(self.config, self.workdir, self.setup, MEMORIZATION)
    scorer = plan_lib.ValidationMixScorer(val, scores, lambda m: cfg.unlearn[m],
                                          os.path.join(val.workdir, "plan"))
    grids = {m: sweep_grid(cfg, m) for m in s.methods}
    t0 = time.time()
    found = plan_lib.greedy_search(rum.LEVELS, plan_lib.candidates(s.methods, grids), val.original, scorer)
    self.timings[f"{MEMORIZATION}_mix/validation/plan_search"] = time.time() - t0
    found.pop("state")
    found["plan"] = {level: (c.method, c.settings) for level, c in found["plan"].items()}
    found["single_evaluated"] = sum(t["points"] for t in tuned_mix.values())
    return found

  def mix_runs(self, prep: unlearning.Prepared, plan: Dict[str, Tuple[str, Dict[str, Any]]]) -> None:
    """RUM with the searched plan, the Shuffle control, the paper's plan and the proxy variant."""
    s = self.config.study
    base = set_config(self.config, self.workdir, "mix", s.methods[0])
    self.run(prep, rum_config(base, RUM_NAME, plan))
    if s.get("shuffle", True):
      self.run(prep, rum_config(base, SHUFFLE_NAME, plan, refine="shuffle"))
    if s.get("paper_plan"):
      paper = {lv: (s.paper_plan[lv].method, dict(s.paper_plan[lv].get("overrides", {}))) for lv in rum.LEVELS}
      self.run(prep, rum_config(base, PAPER_NAME, paper))
    if s.proxy:
      self.run(prep, rum_config(base, PROXY_NAME, plan, scores=os.path.abspath(
          scores_path(self.config, self.workdir, PROXY)), score_key=s.proxy))


  def strong_metric(self, prep: unlearning.Prepared, best: str, point: Dict[str, Any],
                    plan: Dict[str, Tuple[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """The challenge's forgetting score F and U-LiRA (pipelines/forgetting.py, docs/forgetting.md)
    of the best single method, RUM and Shuffle on seed 0's reported mix, from its original model:
    banks of config.forgetting.num_models models in sets/memorization_mix/forgetting (the
    retrained bank shared), shadow_models shadow models in <workdir>/shadow. Returns model ->
    forgetting.json row (retrain: what the ideal scores with this many models)."""
    base = sweep.tuned(set_config(self.config, self.workdir, "mix", best), best, point)
    calls = [(base, ("retrain", best)), (rum_config(base, RUM_NAME, plan), (rum.NAME,)),
             (rum_config(base, SHUFFLE_NAME, plan, refine="shuffle"), (rum.NAME,))]
    rows: Dict[str, Dict[str, Any]] = {}
    t0 = time.time()
    for cfg, methods in calls:
      cfg.forgetting = ml_collections.ConfigDict(self.config.forgetting.to_dict())
      cfg.forgetting.update(methods=methods, results_dir="")
      record = forgetting.evaluate_forget_set(cfg, os.path.join(self.set_dir("mix"), "forgetting"), prep.forget[0],
                                              original=prep.original, shadow_dir=os.path.join(self.workdir, "shadow"),
                                              overwrite=self.overwrite)
      rows.update({r["model"]: {**r, "num_models": record["num_models"], "shadow_models": record["shadow_models"]}
                   for r in record["rows"] if r["model"] in (best, "retrain", RUM_NAME, SHUFFLE_NAME)})
    self.timings[f"{MEMORIZATION}_mix/forgetting"] = time.time() - t0
    return rows


class InvocationLog(dict):
  """This invocation's timings (piece -> seconds, plus "total"), saved in <workdir>/timings.json
  after every finished piece, so that an invocation killed part-way still counts in the
  study's cost with the work it finished. A new original model starts the list over. Each
  invocation's command line and machine are kept beside (study.md names the last)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, start_over: bool):
    super().__init__()
    self._path = os.path.join(workdir, "timings.json")
    self._start = time.time()
    earlier = {} if start_over or not workdir_lib.readable(self._path) else io.read_json(self._path)
    self._earlier = earlier.get("invocations", [])
    fallback = f"python evaluate.py --config=<a study config of {config.data.name}> --workdir={workdir}"
    self._commands = earlier.get("commands", []) + [{"command": provenance.command(fallback),
                                                      "machine": provenance.machine()}]
    self._save()

  def _save(self) -> None:
    io.write_json(self._path, {"invocations": self.invocations(), "commands": self._commands})

  def __setitem__(self, piece: str, seconds: float) -> None:
    super().__setitem__(piece, seconds)
    super().__setitem__("total", time.time() - self._start)
    self._save()

  def invocations(self) -> List[Dict[str, float]]:
    """Earlier invocations, then this one if it computed anything."""
    return self._earlier + ([dict(self)] if self else [])

  def commands(self) -> List[Dict[str, str]]:
    """The command line and machine of every invocation, this one last."""
    return list(self._commands)
