"""The study's runs, in order, every one skipped when finished (package docstring, steps 1-5).

Work directory:
  original/                      the original models (train.py's layout), num_seeds of them
  scores/memorization|proxies/   Feldman-Zhang memorization and the one-run proxies (unless
                                 config.study.scores names a memorization file)
  sets/memorization_<level>/     an unlearning work directory per level: each seed's reported
                                 forget set and retrain reference, methods/<run>/ (a method at
                                 the point the first claim metric chose; <method>_by_<metric>
                                 where another claim metric chose another point; rum, rum_shuffle,
                                 rum_proxy likewise, and rum_paper), noise_ceiling/<forget
                                 digest>/ (the second retrain), audit/seed_<s>/ (the strong
                                 metric's banks, mix only) and validation/ (each seed's
                                 validation set, its retrain reference, sweeps/<method>/ the
                                 grids, plan/ RUM's plan search on the mix)
  shadow/                        the strong metric's shadow bank (shared by the seeds' mixes)
  timings                        seconds per piece of every invocation
  study, study_record, ...       the results (report.py), also in config.study.results_dir
"""
import functools
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, provenance, results
from rum_jax.evaluation.metrics import DEFAULT_BANK_METRICS, METRICS
from rum_jax.memorization import files as score_files
from rum_jax.pipelines import audit, evaluation, memorization, sweep, unlearning
from rum_jax.pipelines.study import plan as plan_lib
from rum_jax.training import loop
from rum_jax.pipelines.training import write_predictions
from rum_jax.runfolder import RunFolder, flatten, layout
from rum_jax.training.setup import Setup
from rum_jax.unlearning import UNLEARNING_METHODS, rum, unlearn
from rum_jax.unlearning.config import sweep_grid

MEMORIZATION = "memorization"
PROXY = "proxy"
RUM_NAME = "rum"                # the plan searched on the validation mix, thirds by memorization
SHUFFLE_NAME = "rum_shuffle"    # the same plan on three random parts (the paper's Shuffle control)
PAPER_NAME = "rum_paper"        # the paper's plan (config.study.paper_plan), thirds by memorization
PROXY_NAME = "rum_proxy"        # the searched plan with thirds by the proxy (Zhao & Triantafillou 2024)
NOISE_CEILING = "noise_ceiling"  # a second retrain judged against the reference
SECOND_RETRAIN = "retrain_2"     # its row in the tables


def scores_path(config: ml_collections.ConfigDict, workdir: str, source: str) -> str:
  """The score file of a source: config.study.scores (memorization) if given, else computed in workdir."""
  if source == MEMORIZATION and config.study.scores:
    return config.study.scores
  return RunFolder(workdir).child("scores", "memorization" if source == MEMORIZATION else "proxies").file("scores")


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
  folder = RunFolder(os.path.dirname(path))
  if folder.readable("scores") and folder.readable("config") and (
      flatten(folder.read("config")) == flatten(score_config)):
    return False
  (memorization.run_memorization if mode == "memorization" else memorization.run_proxies)(score_config, folder.path)
  return True


def train_scores(config: ml_collections.ConfigDict, workdir: str, setup: Setup, source: str) -> np.ndarray:
  """The source's score of every train example (the proxy oriented: high = more memorized)."""
  key = "" if source == MEMORIZATION else config.study.proxy
  return score_files.scores_for_split(scores_path(config, workdir, source), setup.dataset.train, key)


def set_config(config: ml_collections.ConfigDict, workdir: str, level: str, method: str) -> ml_collections.ConfigDict:
  """The unlearn.py config of one run: the study's data/model/training/unlearning settings, the
  forget set `level` by memorization, the shared original model, unlearn.method = `method`."""
  d = config.to_dict()
  for field in ("study", "mode", "memorization", "proxies", "audit"):
    d.pop(field, None)  # not part of an unlearning run: changing them must not invalidate it
  d["forget"].update(kind=MEMORIZATION, level=level, score_key="",
                     scores=os.path.abspath(scores_path(config, workdir, MEMORIZATION)))
  d["unlearn"].update(method=method, original_workdir=os.path.abspath(RunFolder(workdir).original().path))
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
  return RunFolder(workdir).child("sets", f"{MEMORIZATION}_{level}").path


def finished(cfg: ml_collections.ConfigDict, set_dir: str, forget: List[np.ndarray]) -> bool:
  """Whether the run of cfg in set_dir is done with the same settings and forget sets, and
  everything it and its evaluation read is there (its predictions, its retrain reference)."""
  method = UNLEARNING_METHODS.get(cfg.unlearn.method)
  run = RunFolder(set_dir).method(method.folder_of(cfg))
  if not run.finished(also=("config", "forget_set", "predictions")):
    return False
  reference = run.read("metrics").get("retrain_reference", "")
  ref = RunFolder(RunFolder(set_dir).resolve(reference)) if reference else None
  if not (ref and ref.readable("forget_set") and all(ref.readable("predictions", split=s) for s in layout.SPLITS)):
    return False
  if unlearning.method_check(cfg, RunFolder(set_dir), overwrite=True).diff:  # run with other settings
    return False
  return np.array_equal(run.read("forget_set")["forget_positions"], np.stack(forget))


def run_folder(name: str, metric: str, claim_metrics: Sequence[str]) -> str:
  """The folder of a run chosen by `metric`: `name` for the first claim metric, else
  <name>_by_<metric> (a choice equal to an earlier metric's reuses that run instead)."""
  return name if metric == claim_metrics[0] else f"{name}_by_{metric}"


def none_choice(val: unlearning.Prepared, metrics: Sequence[str]) -> Dict[str, Any]:
  """`none` as a single configuration: the original models scored on the validation sets."""
  per_seed = {m: val.original_outputs.value(m).tolist() for m in metrics}
  return {"points": [{}], "grid": [{"point": {}, "per_seed": per_seed, "summary": results.summarize_columns(per_seed)}],
          "chosen": {m: 0 for m in metrics}, "runs": {m: "original" for m in metrics}}


class Runner:
  """The study's pieces on one work directory, each timed (the timings file) and skipped when done."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup: Setup, overwrite: bool,
               timings: "InvocationLog"):
    self.config, self.workdir, self.setup, self.overwrite, self.timings = config, workdir, setup, overwrite, timings
    self.failures: Dict[str, str] = {}
    s = config.study
    self.metrics = tuple(config.evaluation.metrics)    # what every set is evaluated and reported by
    self.claim_metrics = tuple(s.claim_metrics)        # what the claims are about, each chosen by itself
    # Every grid point and plan sequence is scored by these (the accuracies and ToW come with every run).
    self.scored = tuple(dict.fromkeys(unlearning.RUN_METRICS + self.claim_metrics))
    self.evaluate = functools.partial(evaluation.evaluate_workdir, metrics=self.metrics)
    self._scorer: Optional[plan_lib.ValidationMixScorer] = None

  def set_dir(self, level: str) -> str:
    return set_dir(self.workdir, level)

  def models(self, level: str) -> Dict[str, Dict[str, Any]]:
    """model -> {"per_seed", "summary"} of the level's evaluation."""
    return RunFolder(self.set_dir(level)).read("evaluation")["models"]

  def run(self, prep: unlearning.Prepared, cfg: ml_collections.ConfigDict) -> None:
    """One (forget set, method) unless finished; a diverging method is recorded, not fatal."""
    key = f"{prep.folder.name()}/{UNLEARNING_METHODS.get(cfg.unlearn.method).folder_of(cfg)}"
    if finished(cfg, prep.folder.path, prep.forget):
      logging.info("study: %s is done", key)
      return
    method = UNLEARNING_METHODS.get(cfg.unlearn.method)
    run = prep.folder.method(method.folder_of(cfg))
    if run.readable("config") and unlearning.method_check(cfg, prep.folder, overwrite=True).diff:
      # The study's own run of an earlier choice (other grids, or a choice that changed): replaced.
      logging.info("study: %s was run with other settings (an earlier choice); running it again", key)
      io.remove(run.path)
    t0 = time.time()
    try:
      unlearning.run_method(prep, cfg, self.overwrite, evaluate=False)
      for split in layout.SPLITS:
        if not np.isfinite(run.read("predictions", split=split)["logits"]).all():
          io.remove(run.path)  # out of the evaluation; tried again on a rerun, as a diverged run
          raise loop.NonFiniteLossError(f"[{key}] non-finite logits on the {split} split")
    except loop.NonFiniteLossError as e:
      logging.warning("study: %s diverged; it is left out of the tables: %s", key, e)
      self.failures[key] = str(e)
    self.timings[key] = time.time() - t0

  def validation(self, level: str) -> unlearning.Prepared:
    """The level's validation work directory (each seed's validation set and retrain reference)."""
    cfg = set_config(self.config, self.workdir, level, self.config.study.methods[0])
    return unlearning.prepare(sweep.validation_config(cfg, RunFolder(self.workdir).original().path),
                              RunFolder(self.set_dir(level)).validation(), self.overwrite, self.setup)

  def tune(self, level: str, method: str, val: unlearning.Prepared) -> Optional[Dict[str, Any]]:
    """The method's grid on the level's validation sets, scored by every claim metric, and the
    point each chooses: {"points", "grid" (sweep.run_grid's), "chosen": {metric: index}};
    None when every point diverged."""
    cfg = set_config(self.config, self.workdir, level, method)
    points = sweep_grid(cfg, method) or [{}]
    t0 = time.time()
    grid, cached = sweep.run_grid(val, method, points, val.folder.sweep(method).path, self.scored)
    if not cached:
      self.timings[f"{MEMORIZATION}_{level}/validation/{method}"] = time.time() - t0
    try:
      chosen = {m: sweep.choose(grid, m) for m in self.claim_metrics}
    except loop.NonFiniteLossError as e:
      self.failures[f"{MEMORIZATION}_{level}/validation/{method}"] = str(e)
      return None
    return {"points": points, "grid": grid, "chosen": chosen}

  def level(self, level: str) -> Tuple[unlearning.Prepared, unlearning.Prepared, Dict[str, Dict[str, Any]]]:
    """Every method tuned on the level's validation sets and run on the reported sets with the
    point each claim metric chose (one run per distinct point); on the mix, `none` too.

    Returns (the reported sets, the validation sets, method -> tune's result with "runs":
    {metric: run folder})."""
    s = self.config.study
    prep = unlearning.prepare(set_config(self.config, self.workdir, level, s.methods[0]), self.set_dir(level),
                              self.overwrite, self.setup)
    val = self.validation(level)
    tuned = {}
    for method in s.methods:
      t = self.tune(level, method, val)
      if t is None:
        continue
      t["runs"] = {}
      for metric in self.claim_metrics:
        point = t["points"][t["chosen"][metric]]
        same = [m for m in t["runs"] if t["points"][t["chosen"][m]] == point]
        t["runs"][metric] = t["runs"][same[0]] if same else run_folder(method, metric, self.claim_metrics)
        if not same:
          cfg = sweep.tuned(set_config(self.config, self.workdir, level, method), method, point)
          if t["runs"][metric] != method:
            cfg.unlearn.folder = t["runs"][metric]
          self.run(prep, cfg)
      tuned[method] = t
    if level == "mix":
      tuned[plan_lib.NONE] = none_choice(val, self.scored)
    return prep, val, tuned

  def search_plan(self, val: unlearning.Prepared, tuned_mix: Dict[str, Dict[str, Any]], metric: str) -> Dict[str, Any]:
    """RUM's plan searched by `metric` on the validation mix (plan.py), with config.study.budget
    sequences; returns coordinate_descent's record with "plan" as level -> (method, settings)."""
    s = self.config.study
    if self._scorer is None:
      cfg = set_config(self.config, self.workdir, "mix", s.methods[0])
      scores = train_scores(self.config, self.workdir, self.setup, MEMORIZATION)
      self._scorer = plan_lib.ValidationMixScorer(val, scores, lambda m: cfg.unlearn[m], self.scored)
    higher = METRICS.get(metric).higher_is_better is not False
    singles = single_configurations(tuned_mix, metric)
    ranked = sorted(singles, key=lambda c: singles[c], reverse=higher)
    options = [plan_lib.Candidate(plan_lib.NONE)] + plan_lib.shortlist(ranked, plan_lib.shortlist_size(s.budget))
    starts = [(c,) * len(plan_lib.STAGES) for c in ranked if c.method != plan_lib.NONE]
    t0 = time.time()
    found = plan_lib.coordinate_descent(len(plan_lib.STAGES), options, starts, self._scorer.for_metric(metric),
                                        s.budget, higher)
    self.timings[f"{MEMORIZATION}_mix/validation/plan_search_{metric}"] = time.time() - t0
    found["plan"] = {level: (c.method, c.settings) for level, c in zip(plan_lib.STAGES, found["plan"])}
    found.update(metric=metric, options=[c.label for c in options], single_evaluated=len(singles))
    return found

  def mix_runs(self, prep: unlearning.Prepared, searches: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, str]]:
    """RUM with each claim metric's plan, the Shuffle control and the proxy variant of it, and
    the paper's plan; returns metric -> {"rum", "shuffle", "proxy", "paper"} run folders."""
    s = self.config.study
    base = set_config(self.config, self.workdir, "mix", s.methods[0])
    names: Dict[str, Dict[str, str]] = {}
    paper = ""
    if s.get("paper_plan"):
      paper = PAPER_NAME
      self.run(prep, rum_config(base, PAPER_NAME, {lv: (s.paper_plan[lv].method,
                                                        dict(s.paper_plan[lv].get("overrides", {})))
                                                   for lv in rum.LEVELS}))
    for metric, search in searches.items():
      plan = search["plan"]
      same = [m for m in names if searches[m]["plan"] == plan]
      if same:
        names[metric] = dict(names[same[0]])
        continue
      folder = functools.partial(run_folder, metric=metric, claim_metrics=self.claim_metrics)
      names[metric] = {"rum": folder(RUM_NAME), "paper": paper, "shuffle": "", "proxy": ""}
      self.run(prep, rum_config(base, folder(RUM_NAME), plan))
      if s.get("shuffle", True):
        names[metric]["shuffle"] = folder(SHUFFLE_NAME)
        self.run(prep, rum_config(base, folder(SHUFFLE_NAME), plan, refine="shuffle"))
      if s.proxy:
        names[metric]["proxy"] = folder(PROXY_NAME)
        self.run(prep, rum_config(base, folder(PROXY_NAME), plan, scores=os.path.abspath(
            scores_path(self.config, self.workdir, PROXY)), score_key=s.proxy))
    return names

  def noise_ceiling(self, prep: unlearning.Prepared) -> Dict[str, List[float]]:
    """A second retrain (another initialisation and batch order: base seed config.seed + 1)
    of every seed, judged against the reference like any run: how close to a perfect score a
    perfect method gets. Trained in <set>/noise_ceiling/<forget digest>/ (resumes there)."""
    t0 = time.time()
    run = noise_ceiling_folder(prep.folder.path, prep.forget_digest)
    states, _ = unlearn(prep.setup, None, "retrain", prep.config.train, prep.forget, prep.retain,
                        base_seed=prep.config.seed + 1, run_dir=run.path, name="second retrain")
    outputs = unlearning.model_outputs(prep.setup, states, prep.forget, prep.reference_outputs)
    write_predictions(run, prep.setup.dataset, outputs.logits)
    values = {m: outputs.value(m).tolist() for m in self.metrics}
    self.timings[f"{prep.folder.name()}/{NOISE_CEILING}"] = time.time() - t0
    return values

  def strong_metric(self, prep: unlearning.Prepared, best: Optional[Tuple[str, Dict[str, Any]]],
                    plan: Dict[str, Tuple[str, Dict[str, Any]]], names: Dict[str, str]) -> Dict[str, Any]:
    """The bank metrics of config.audit.metrics (the challenge's forgetting score F,
    U-LiRA; pipelines/audit/, docs/audit.md) of the best single configuration, RUM
    and Shuffle (the first claim metric's) on the reported mix of each of the first
    config.study.strong_seeds seeds, from that seed's original model: banks of
    config.audit.num_models models in sets/memorization_mix/audit/seed_<s>, the
    shadow bank (shadow_models, it depends on the forget set's size only) shared in
    <workdir>/shadow. Returns {"seeds", "num_models", "shadow_models", "models": role ->
    {"name", "per_seed": {metric: [one value per seed]}, "ci95": {metric: [F's interval over
    the forget examples, per seed]}}} with roles retrain, best, rum, shuffle."""
    s = self.config.study
    method = best[0] if best else s.methods[0]
    base = sweep.tuned(set_config(self.config, self.workdir, "mix", method), method, best[1] if best else {})
    calls = [(base, ("retrain",) + ((method,) if best else ()), {"retrain": "retrain", method: "best"}),
             (rum_config(base, names["rum"], plan), (rum.NAME,), {names["rum"]: "rum"})]
    if names.get("shuffle"):
      calls.append((rum_config(base, names["shuffle"], plan, refine="shuffle"), (rum.NAME,), {names["shuffle"]: "shuffle"}))
    bank_metrics = list(self.config.audit.get("metrics", DEFAULT_BANK_METRICS))
    out: Dict[str, Any] = {"seeds": s.strong_seeds, "models": {}}
    t0 = time.time()
    for seed in range(s.strong_seeds):
      original = jax.tree.map(lambda x: np.asarray(x)[seed:seed + 1], prep.original)
      for cfg, methods, roles in calls:
        cfg.audit = ml_collections.ConfigDict(self.config.audit.to_dict())
        cfg.audit.update(methods=methods, results_dir="")
        record = audit.evaluate_forget_set(cfg, RunFolder(self.set_dir("mix")).sub("audits", f"seed_{seed}"),
                                           prep.forget[seed], original=original,
                                           shadow_dir=RunFolder(self.workdir).sub("shadow").path,
                                           overwrite=self.overwrite)
        out.update(num_models=record["num_models"], shadow_models=record["shadow_models"])
        for r in record["rows"]:
          role = roles.get(r["model"])
          if role is None:
            continue
          model = out["models"].setdefault(role, {"name": r["model"] if role != "best" else best_name(best),
                                                  "per_seed": {m: [] for m in bank_metrics}, "ci95": {}})
          for m in bank_metrics:
            model["per_seed"][m].append(r.get(m, float("nan")))
          model["ci95"].setdefault("forget_score", []).append(r.get("forget_score_ci95", float("nan")))
    self.timings[f"{MEMORIZATION}_mix/audit"] = time.time() - t0
    return out


def noise_ceiling_folder(set_dir: str, forget_digest: str) -> RunFolder:
  """Where a set's second retrain is trained and its predictions kept."""
  return RunFolder(set_dir).child(NOISE_CEILING, forget_digest)


def best_name(best: Optional[Tuple[str, Dict[str, Any]]]) -> str:
  return best[0] if best else "original"


def single_configurations(tuned: Dict[str, Dict[str, Any]], metric: str) -> Dict[plan_lib.Candidate, float]:
  """Every single configuration scored on the validation sets (`none` and every grid point of
  every method that did not diverge) -> its mean `metric`."""
  out = {}
  for method, t in tuned.items():
    for point, r in zip(t["points"], t["grid"]):
      if "summary" in r:
        out[plan_lib.Candidate(method, tuple(sorted(point.items())))] = r["summary"][metric]["mean"]
  return out


class InvocationLog(dict):
  """This invocation's timings (piece -> seconds, plus "total"), saved in <workdir>/timings.json
  after every finished piece, so that an invocation killed part-way still counts in the
  study's cost with the work it finished. A new original model starts the list over. Each
  invocation's command line and machine are kept beside (the report names the last)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, start_over: bool):
    super().__init__()
    self._path = RunFolder(workdir).file("timings")
    self._start = time.time()
    earlier = {} if start_over or not RunFolder(workdir).readable("timings") else io.read_json(self._path)
    self._earlier = earlier.get("invocations", [])
    fallback = f"python evaluate.py --config=<a study config of {config.data.name}> --workdir={workdir}"
    self._commands = earlier.get("commands", []) + [{"command": provenance.command(fallback),
                                                      "machine": provenance.machine()}]
    self._load_start = _load()
    self._save()

  def _save(self) -> None:
    # The load average when this invocation started and now: the cores may be shared.
    self._commands[-1]["load"] = f"{self._load_start} at the start, {_load()} at the end (1/5/15 min)"
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


def _load() -> str:
  return "/".join(f"{v:.1f}" for v in os.getloadavg())
