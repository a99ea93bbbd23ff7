"""The study of the RUM paper, in one resumable command (evaluate.py with a study config).

Zhao et al. 2024, "What makes unlearning hard and what to do about it" (NeurIPS,
arXiv:2406.01257), Sec. 4-6, claims (i) that forget sets of more memorized examples are harder
to unlearn for most methods, and (ii) that RUM, refining a mixed forget set by memorization
and unlearning its parts in sequence, improves the methods it uses. Its follow-up (Zhao &
Triantafillou 2024, arXiv:2410.16516) does the same with a cheap proxy instead of memorization.
`run_study(config, workdir)` tests both on one data set, with no number tuned on the set it
reports:

  1. the original models (<workdir>/original), Feldman-Zhang memorization
     (<workdir>/scores/memorization, or the file `config.study.scores`, e.g. RUM's published
     CIFAR-10 estimate) and the one-run proxies (<workdir>/scores/proxies);
  2. for each score source (memorization; the proxy `config.study.proxy`) and each forget set
     of `config.study.levels` (low, mid, high, mix; `config.forget.size` examples), an
     unlearning work directory <workdir>/sets/<source>_<level>; in it every method of
     `config.study.methods` is first tuned on the set's VALIDATION forget set (same kind, level
     and size, disjoint; sets/<set>/validation, `sweep.tune`: the grid `config.sweep.<method>`,
     or just the method's settings), and only its chosen settings run on the reported set;
  3. on each `mix` set: RUM^F for every method (the method on low -> mid -> high, each step with
     the settings tuned on that level's validation set: refinement alone), RUM (`rum`) with a
     per-level plan (`config.study.rum_plan = "auto"`: per level the method with the highest
     validation ToW, with its tuned settings, or none if the original model scores higher;
     "config": `config.unlearn.rum`), and the Shuffle control (`rum_shuffle`, Fig. 3 of the
     paper: RUM's plan on three RANDOM equal parts of the mix set), which separates refinement
     by memorization from unlearning in steps;
  4. `evaluation.evaluate_workdir` on every set (the attacks of `config.study.mia_features`),
     then study.json/.csv, study.md (ToW and ToW-MIA per method x forget set, mean ± 95%
     t-interval over seeds; paired per-seed differences: high - low per method, RUM - the best
     single method (chosen on validation), RUM - Shuffle, RUM^F - the method alone; which
     settings were tuned on which set) and study.png, copied to `config.study.results_dir`.

Every finished (forget set, run) is skipped on a rerun (same settings, same forget set), grids
are cached, and every run resumes from its checkpoints, so a killed study continues where it
stopped; a run whose files were deleted is redone.
"""
import functools
import os
import time
from typing import Any, Dict, List, Sequence, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, provenance, results, workdir as workdir_lib
from rum_jax.evaluation import mia
from rum_jax.evaluation.tow import tow
from rum_jax.pipelines import evaluation, forgetting, memorization, sweep, training, unlearning
from rum_jax.training import loop
from rum_jax.training.config import training_config
from rum_jax.training.setup import Setup
from rum_jax.unlearning import METHODS, grid as grid_lib, rum
from rum_jax.unlearning.config import sweep_grid

MEMORIZATION = "memorization"
RUM_NAME = "rum"
SHUFFLE_NAME = "rum_shuffle"
RUM_F_PREFIX = "rum_f_"
LEVEL_ORDER = ("low", "mid", "high", "mix")


def _sources(config: ml_collections.ConfigDict) -> List[Tuple[str, str]]:
  """(name, score key) of each score source: memorization, then the proxy if any."""
  out = [(MEMORIZATION, MEMORIZATION)]
  if config.study.proxy:
    out.append(("proxy", config.study.proxy))
  return out


def _scores_path(config: ml_collections.ConfigDict, workdir: str, source: str) -> str:
  """The score file of a source: config.study.scores (memorization) if given, else computed in workdir."""
  if source == MEMORIZATION and config.study.scores:
    return config.study.scores
  return os.path.join(workdir, "scores", "memorization" if source == MEMORIZATION else "proxies",
                      "memorization.npz")


def _ensure_scores(config: ml_collections.ConfigDict, workdir: str, source: str) -> bool:
  """Runs memorization (or the proxies) into <workdir>/scores/ unless done with the same config
  or given as a file; returns whether it ran."""
  if source == MEMORIZATION and config.study.scores:
    if not os.path.exists(config.study.scores):
      raise FileNotFoundError(f"config.study.scores={config.study.scores} does not exist; give a score "
                              f"file (e.g. RUM's estimates_results_woShuffle.npz) or '' to compute them")
    return False
  mode = "memorization" if source == MEMORIZATION else "proxies"
  score_config = memorization.score_run_config(config, mode)
  path = _scores_path(config, workdir, source)
  directory = os.path.dirname(path)
  config_file = os.path.join(directory, workdir_lib.CONFIG_FILE)
  if workdir_lib.readable(path) and workdir_lib.readable(config_file) and (
      workdir_lib.flatten(io.read_json(config_file)) == workdir_lib.flatten(score_config)):
    return False
  run = memorization.run_memorization if mode == "memorization" else memorization.run_proxies
  run(score_config, directory)
  return True


def set_config(config: ml_collections.ConfigDict, workdir: str, source: str, key: str, level: str,
               method: str) -> ml_collections.ConfigDict:
  """The unlearn.py config of one run: the study's data/model/training/unlearning settings, the
  forget set `level` by `source`, the shared original model, and unlearn.method = `method`."""
  d = config.to_dict()
  for field in ("study", "mode", "memorization", "proxies", "forgetting"):
    d.pop(field, None)  # not part of an unlearning run: changing them must not invalidate it
  d["forget"].update(kind=MEMORIZATION if source == MEMORIZATION else "proxy", level=level,
                     scores=os.path.abspath(_scores_path(config, workdir, source)),
                     score_key="" if source == MEMORIZATION else key)
  d["unlearn"].update(method=method, original_workdir=os.path.abspath(os.path.join(workdir, "original")))
  return ml_collections.ConfigDict(d)


def _rum_config(cfg: ml_collections.ConfigDict, name: str, plan: Dict[str, Tuple[str, Dict[str, Any]]],
                refine: str = "score") -> ml_collections.ConfigDict:
  """cfg running RUM as `name` with plan level -> (method, settings overrides), refining by the
  forget set's own scores (or at random: the Shuffle control)."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.unlearn.method = rum.NAME
  cfg.unlearn.rum.name = name
  cfg.unlearn.rum.scores = ""
  cfg.unlearn.rum.score_key = ""
  cfg.unlearn.rum.refine = refine
  for level in rum.LEVELS:
    method, overrides = plan[level]
    cfg.unlearn.rum[level] = ml_collections.ConfigDict({"method": method, "overrides": dict(overrides)})
  return cfg


def _finished(cfg: ml_collections.ConfigDict, set_dir: str, forget: List[np.ndarray]) -> bool:
  """Whether the run of cfg in set_dir is done with the same settings and forget set, and
  everything it and its evaluation read is there and readable (its predictions, its retrain
  reference); otherwise it is run again, which redoes only what is missing."""
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


def _run(prep: unlearning.Prepared, cfg: ml_collections.ConfigDict, overwrite: bool, timings: Dict[str, float],
         failures: Dict[str, str]) -> None:
  """Runs one (forget set, method) unless it is finished; a diverging method is recorded, not fatal."""
  set_dir = prep.workdir
  key = f"{os.path.basename(set_dir)}/{METHODS.get(cfg.unlearn.method).folder_of(cfg)}"
  if _finished(cfg, set_dir, prep.forget):
    logging.info("study: %s is done", key)
    return
  t0 = time.time()
  try:
    unlearning.run_method(prep, cfg, overwrite, evaluate=False)
  except loop.NonFiniteLossError as e:
    logging.warning("study: %s diverged; it is left out of the tables: %s", key, e)
    failures[key] = str(e)
  timings[key] = time.time() - t0


def _tune(cfg: ml_collections.ConfigDict, set_dir: str, method: str, setup: Setup, overwrite: bool,
          timings: Dict[str, float]) -> Dict[str, Any]:
  """The method tuned on the set's validation forget set (its grid, or its settings alone)."""
  t0 = time.time()
  points = sweep_grid(cfg, method) or [{}]
  out = sweep.tune(cfg, set_dir, method, overwrite, setup, points=points)
  if not out["cached"]:
    timings[f"{os.path.basename(set_dir)}/validation/{method}"] = time.time() - t0
  out["validation_tow"] = out["grid"][out["chosen"]]["summary"]["tow"]["mean"]
  return out


def _models(set_dir: str) -> Dict[str, Dict[str, Any]]:
  """model -> {"per_seed", "summary"} of a set's evaluation.json."""
  return io.read_json(os.path.join(set_dir, "evaluation.json"))["models"]


def strong_methods(s: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """The study methods the strong metric scores: config.study.forgetting_methods, or all."""
  return tuple(s.get("forgetting_methods", ()) or s.methods)


def _strong_metric(config: ml_collections.ConfigDict, workdir: str, source: str, key: str, level: str,
                   prep: unlearning.Prepared, tuned_level: Dict[str, Dict[str, Any]], overwrite: bool,
                   timings: Dict[str, float]) -> None:
  """The challenge score and U-LiRA (pipelines/forgetting.py) of every study method, with its
  tuned settings, on seed 0's original model and forget set of one set: banks of
  config.forgetting.num_models models in sets/<set>/forgetting, one shadow bank shared by every
  set (they have one size) in <workdir>/shadow."""
  t0 = time.time()
  cfg = set_config(config, workdir, source, key, level, config.study.methods[0])
  methods = strong_methods(config.study)
  for method in methods:
    cfg = sweep.tuned(cfg, method, tuned_level[method]["point"])
  cfg.forgetting = ml_collections.ConfigDict(config.forgetting.to_dict())
  cfg.forgetting.methods = ("retrain",) + methods  # retrain: the ideal's F at this N
  cfg.forgetting.results_dir = ""
  set_dir = os.path.join(workdir, "sets", f"{source}_{level}")
  forgetting.evaluate_forget_set(cfg, os.path.join(set_dir, "forgetting"), prep.forget[0], original=prep.original,
                                 shadow_dir=os.path.join(workdir, "shadow"), overwrite=overwrite)
  timings[f"{source}_{level}/forgetting"] = time.time() - t0


def auto_plan(tuning: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str]) -> Dict[str, str]:
  """Per level, the method with the highest mean ToW on that level's VALIDATION forget set (its
  tuned settings); "none" when the original model (unlearning nothing) scores higher there.

  Args:
    tuning: level -> method -> `_tune` result, plus level -> "original" -> {"validation_tow"}.
    methods: the candidate methods.
  """
  plan = {}
  for level in rum.LEVELS:
    found = tuning[level]
    candidates = {m: found[m]["validation_tow"] for m in methods if m in found}
    if "original" in found:
      candidates[rum.NO_METHOD] = found["original"]["validation_tow"]
    if not candidates:
      raise ValueError(f"no tuned method on the {level} validation set to choose RUM's {level} step from")
    plan[level] = max(candidates, key=candidates.get)
  return plan


def run_study(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> str:
  """Runs (or resumes) the whole study; returns study.md (also in config.study.results_dir).

  Args:
    config: a study config (config.mode == 'study'; configs/study_*.py), validated.
    workdir: the study's work directory (layout in the module docstring).
    overwrite: discard results made with another training config or other settings.
  """
  failures: Dict[str, str] = {}
  s = config.study
  workdir_lib.prepare(workdir, config, overwrite, clear=(),
                      ignore=[k for k in workdir_lib.flatten(config)
                              if k.startswith(("study.", "unlearn.", "sweep.", "forgetting."))],
                      outputs=("sets", "study.json"))
  original_dir = workdir_lib.original_dir(workdir)
  t0 = time.time()
  new_original = not workdir_lib.is_finished(original_dir)
  timings = _InvocationLog(workdir, config, start_over=new_original)
  setup = Setup.create(config)
  if new_original:
    training.train_and_evaluate(training_config(config), original_dir, overwrite, setup=setup)
    timings["original"] = time.time() - t0
  sources = _sources(config)
  for source, _ in sources:
    t0 = time.time()
    if _ensure_scores(config, workdir, source):
      timings[f"scores/{source}"] = time.time() - t0
  features = tuple(s.get("mia_features", ())) or mia.FEATURES
  evaluate = functools.partial(evaluation.evaluate_workdir, metrics=unlearning.SPLIT_METRICS + tuple(
      f"mia_{f}" for f in features) + (("loss_mia_auc",) if s.get("loss_mia", True) else ()) + ("tow", "tow_mia"))
  plans: Dict[str, Dict[str, str]] = {}
  tuned: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for source, key in sources:
    set_dirs = {level: os.path.join(workdir, "sets", f"{source}_{level}") for level in s.levels}
    tuning: Dict[str, Dict[str, Any]] = {}
    preps = {}
    for level, set_dir in set_dirs.items():
      base = set_config(config, workdir, source, key, level, s.methods[0])
      preps[level] = unlearning.prepare(base, set_dir, overwrite, setup)
      tuning[level] = {}
      for method in s.methods:
        cfg = set_config(config, workdir, source, key, level, method)
        found = tuning[level][method] = _tune(cfg, set_dir, method, setup, overwrite, timings)
        tuning[level]["original"] = {"validation_tow": found["original_tow"], "points": [{}], "chosen": 0}
        _run(preps[level], sweep.tuned(cfg, method, found["points"][found["chosen"]]), overwrite, timings, failures)
      evaluate(set_dir)
    tuned[source] = {level: {m: {"point": t["points"][t["chosen"]], "validation_tow": t["validation_tow"]}
                             for m, t in by_method.items()}
                     for level, by_method in tuning.items()}
    for level in s.get("forgetting_levels", ()):
      if level != "mix":
        _strong_metric(config, workdir, source, key, level, preps[level], tuned[source][level], overwrite, timings)
    if "mix" not in s.levels:
      continue
    mix_config = set_config(config, workdir, source, key, "mix", s.methods[0])
    if s.rum_f:
      for method in s.methods:
        # each step with the settings tuned on its level's validation set (the mix one's if the
        # study has no set of that level)
        plan = {level: (method, tuned[source][level if level in tuned[source] else "mix"][method]["point"])
                for level in rum.LEVELS}
        _run(preps["mix"], _rum_config(mix_config, RUM_F_PREFIX + method, plan), overwrite, timings, failures)
    if s.rum_plan == "auto":
      chosen = auto_plan(tuning, s.methods)
      plan = {level: (m, tuned[source][level][m]["point"] if m in s.methods else {}) for level, m in chosen.items()}
    else:
      plan = {level: (config.unlearn.rum[level].method, dict(config.unlearn.rum[level].get("overrides", {})))
              for level in rum.LEVELS}
    plans[source] = {level: m for level, (m, _) in plan.items()}
    logging.info("study: RUM plan on %s mix: %s", source, plans[source])
    _run(preps["mix"], _rum_config(mix_config, RUM_NAME, plan), overwrite, timings, failures)
    if s.get("shuffle", True):
      _run(preps["mix"], _rum_config(mix_config, SHUFFLE_NAME, plan, refine="shuffle"), overwrite, timings, failures)
    evaluate(set_dirs["mix"])
    if "mix" in s.get("forgetting_levels", ()):
      _strong_metric(config, workdir, source, key, "mix", preps["mix"], tuned[source]["mix"], overwrite, timings)
  return write_study(config, workdir, plans, tuned, timings.invocations(), timings.commands(), failures)


class _InvocationLog(dict):
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


# ---------------------------------------------------------------------------------------
# Tables, figure and claims.


def _collect(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """source -> level -> model -> {"per_seed", "summary"}."""
  return {source: {level: _models(os.path.join(workdir, "sets", f"{source}_{level}"))
                   for level in config.study.levels}
          for source, _ in _sources(config)}


def _values(model: Dict[str, Any], metric: str) -> np.ndarray:
  return np.array(model["per_seed"][metric])


def paired_difference(a: Dict[str, Any], b: Dict[str, Any], metric: str = "tow") -> Tuple[float, float]:
  """(mean, 95% t half width) over seeds of metric(a) - metric(b); seeds are paired (same
  original model, same retrain reference)."""
  return results.mean_ci(_values(a, metric) - _values(b, metric))


def _method_table(by_level: Dict[str, Dict[str, Any]], levels: Sequence[str], rows: Sequence[str],
                  metric: str) -> List[str]:
  cells = [[name] + [results.cell(by_level[level][name]["summary"][metric]) if name in by_level[level] else "n/a"
                     for level in levels] for name in rows]
  return results.markdown_table(["method"] + list(levels), cells).splitlines()


def _best(models: Dict[str, Dict[str, Any]], names: Sequence[str], metric: str = "tow") -> str:
  present = [n for n in names if n in models]
  return max(present, key=lambda n: models[n]["summary"][metric]["mean"])


def best_on_validation(validation: Dict[str, Dict[str, Any]], methods: Sequence[str]) -> str:
  """The single method with the highest mean ToW on a set's VALIDATION forget set (tuned): the
  'best single method' RUM is compared with, chosen without looking at the reported numbers."""
  return max((m for m in methods if m in validation), key=lambda m: validation[m]["validation_tow"])


def verdict(mean: float, half: float, higher: str = "higher", lower: str = "lower") -> str:
  """What a paired difference says at 95%: its interval above 0, below 0, or around it."""
  if np.isnan(half):
    return "one seed: no interval"
  return higher if mean - half > 0 else lower if mean + half < 0 else "not distinguishable at 95%"


def claims(collected: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str], rum_f: bool,
           validation: Dict[str, Dict[str, Dict[str, Any]]]) -> List[str]:
  """Plain statements of the numbers behind the paper's two claims, per score source, each a
  paired difference over seeds with its 95% t-interval and what it decides."""
  lines = []
  for source, by_level in collected.items():
    if "low" in by_level and "high" in by_level:
      for metric, label in (("tow", "ToW"), ("tow_mia", "ToW-MIA")):
        outcome: Dict[str, List[str]] = {"lower": [], "higher": [], "not distinguishable at 95%": []}
        for m in methods:
          if m in by_level["high"] and m in by_level["low"]:
            outcome.setdefault(verdict(*paired_difference(by_level["high"][m], by_level["low"][m], metric)),
                               []).append(m)
        lines.append(f"- {source}, {label}, high - low memorization (paired over seeds): lower for "
                     f"{len(outcome['lower'])} of {sum(map(len, outcome.values()))} methods "
                     f"({', '.join(outcome['lower']) or 'none'}), higher for {len(outcome['higher'])} "
                     f"({', '.join(outcome['higher']) or 'none'}), not distinguishable for "
                     f"{len(outcome['not distinguishable at 95%'])} "
                     f"({', '.join(outcome['not distinguishable at 95%']) or 'none'}).")
    mix = by_level.get("mix")
    if mix is None:
      continue
    if rum_f:
      outcome = {}
      for m in methods:
        if RUM_F_PREFIX + m in mix and m in mix:
          outcome.setdefault(verdict(*paired_difference(mix[RUM_F_PREFIX + m], mix[m])), []).append(m)
      lines.append(f"- {source} mix, RUM^F - the method on the whole mix, ToW: higher for "
                   f"{', '.join(outcome.get('higher', [])) or 'none'}; lower for "
                   f"{', '.join(outcome.get('lower', [])) or 'none'}; not distinguishable for "
                   f"{', '.join(outcome.get('not distinguishable at 95%', [])) or 'none'}.")
    if RUM_NAME in mix and source in validation and "mix" in validation[source]:
      best = best_on_validation(validation[source]["mix"], methods)
      for metric, label in (("tow", "ToW"), ("tow_mia", "ToW-MIA")):
        if best in mix:
          mean, half = paired_difference(mix[RUM_NAME], mix[best], metric)
          lines.append(f"- {source} mix: RUM - the best single method ({best}, chosen on the validation mix "
                       f"set) by {label}: {results.signed(mean, half)} points: {verdict(mean, half)}.")
      if SHUFFLE_NAME in mix:
        mean, half = paired_difference(mix[RUM_NAME], mix[SHUFFLE_NAME])
        lines.append(f"- {source} mix: RUM - the Shuffle control (the same plan on random thirds) by ToW: "
                     f"{results.signed(mean, half)} points: {verdict(mean, half)} (refinement by "
                     f"{'memorization' if source == MEMORIZATION else 'the proxy'} vs unlearning in steps alone).")
  return lines


def _strong_records(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """source -> level -> {"num_models", "shadow_models", "rows": model -> forgetting.json row} of the
  sets scored by the strong metric (config.study.forgetting_levels)."""
  out: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for source, _ in _sources(config):
    for level in config.study.get("forgetting_levels", ()):
      record = io.read_json(os.path.join(workdir, "sets", f"{source}_{level}", "forgetting", "forgetting.json"))
      out.setdefault(source, {})[level] = {"num_models": record["num_models"],
                                           "shadow_models": record["shadow_models"],
                                           "rows": {r["model"]: r for r in record["rows"]}}
  return out


def _strong_lines(source: str, by_level: Dict[str, Dict[str, Any]], methods: Sequence[str]) -> List[str]:
  levels = [level for level in LEVEL_ORDER if level in by_level]
  first = by_level[levels[0]]
  lines = [f"## Forgetting score and U-LiRA, forget sets by {source} (seed 0)", "",
           f"The NeurIPS 2023 challenge's forgetting score F (mean points over the forget examples ± 95% "
           f"interval over them; {first['num_models']} unlearned vs {first['num_models']} retrained models from "
           f"seed 0's original model and forget set, each method with its tuned settings) and U-LiRA's AUC "
           f"({first['shadow_models']} shadow models; 0.5 = indistinguishable from never trained on). "
           f"docs/forgetting.md defines both. 'retrain' is retraining judged the same way: what the ideal "
           f"method scores with this number of models.", ""]
  cells = []
  for name in ["retrain"] + list(methods):
    row = [name]
    for level in levels:
      r = by_level[level]["rows"].get(name)
      if r is None or "forget_score" not in r:
        row.append("n/a")
        continue
      auc = f", AUC {r['ulira_auc']:.3f}" if "ulira_auc" in r else ""
      row.append(f"F {r['forget_score']:.3f} ± {r['forget_score_ci95']:.3f}{auc}")
    cells.append(row)
  return lines + [results.markdown_table(["method"] + levels, cells), ""]


def strong_claims(strong: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str]) -> List[str]:
  """'Harder when more memorized' by the forgetting score: F(high) - F(low) per method, with a 95%
  interval from the two sets' intervals over their examples (independent sets: the half widths
  add in quadrature)."""
  lines = []
  for source, by_level in strong.items():
    if "low" not in by_level or "high" not in by_level:
      continue
    outcome: Dict[str, List[str]] = {}
    for m in methods:
      low, high = by_level["low"]["rows"].get(m, {}), by_level["high"]["rows"].get(m, {})
      if "forget_score" in low and "forget_score" in high:
        mean = high["forget_score"] - low["forget_score"]
        half = float(np.hypot(high["forget_score_ci95"], low["forget_score_ci95"]))
        outcome.setdefault(verdict(mean, half), []).append(m)
    lines.append(f"- {source}, forgetting score F (seed 0), high - low memorization: lower for "
                 f"{', '.join(outcome.get('lower', [])) or 'none'}; higher for "
                 f"{', '.join(outcome.get('higher', [])) or 'none'}; not distinguishable for "
                 f"{', '.join(outcome.get('not distinguishable at 95%', [])) or 'none'}.")
  return lines


def write_study(config: ml_collections.ConfigDict, workdir: str, plans: Dict[str, Dict[str, str]],
                validation: Dict[str, Dict[str, Dict[str, Any]]], invocations: List[Dict[str, float]],
                commands: List[Dict[str, str]], failures: Dict[str, str]) -> str:
  """study.json, study.csv, study.md and study.png in workdir and config.study.results_dir.

  validation: source -> level -> method -> {"point" (the tuned settings), "validation_tow"}.
  """
  s = config.study
  collected = _collect(config, workdir)
  levels = [level for level in LEVEL_ORDER if level in s.levels]
  first = collected[MEMORIZATION][levels[0]]
  num_seeds = len(next(iter(first.values()))["per_seed"])
  seeds = f"{num_seeds} seeds"
  rum_rows = ([RUM_F_PREFIX + m for m in s.methods] if s.rum_f else []) + [RUM_NAME, SHUFFLE_NAME]
  rows_csv = []
  for source, by_level in collected.items():
    for level, models in by_level.items():
      for name, m in models.items():
        summary = m["summary"]
        rows_csv.append({"source": source, "level": level, "model": name,
                         **{f"{k}_{stat}": summary[k][stat] for k in ("tow", "tow_mia") for stat in ("mean", "ci95")},
                         **{f"{k}_accuracy_mean": summary[f"{k}_accuracy"]["mean"] for k in ("forget", "retain", "test")},
                         "mia_confidence_mean": summary["mia_confidence"]["mean"]})
  statements = claims(collected, s.methods, s.rum_f, validation)
  strong = _strong_records(config, workdir)
  statements += strong_claims(strong, strong_methods(s))
  io.write_json(os.path.join(workdir, "study.json"),
                {"data": config.data.name, "num_seeds": num_seeds, "forget_size": config.forget.size,
                 "methods": list(s.methods), "levels": levels, "rum_plans": plans, "tuned": validation,
                 "claims": statements, "forgetting": strong, "invocations": invocations, "commands": commands,
                 "diverged": failures,
                 "results": {src: {lvl: {n: m["summary"] for n, m in ms.items()} for lvl, ms in bl.items()}
                             for src, bl in collected.items()}})

  lines = [f"# RUM study on {config.data.name}", "",
           f"{seeds} (mean ± 95% t-interval), forget sets of {config.forget.size} train examples, "
           f"{config.model.name} {tuple(config.model.kwargs.hidden) if 'hidden' in config.model.kwargs else ''}. "
           f"ToW and ToW-MIA in percent (100 = the model retrained without the forget set). Every method's "
           f"settings were chosen on the VALIDATION forget set of each table cell (same kind, level and size, "
           f"disjoint from the reported one; sets/<set>/validation): no number below was tuned on the set it "
           f"reports. Command: `{commands[-1]['command']}` (computed in "
           f"{sum(i['total'] for i in invocations) / 60:.1f} min wall-clock over {len(invocations)} "
           f"invocation(s); the last on {commands[-1]['machine']}).",
           "", "![study](study.png)", ""]
  lines += ["## The forget sets", "", "Mean score of the forget set (memorization in [-1, 1]; the proxy "
            "oriented so that high = more memorized) and the accuracy on it of the original and of the "
            "retrained model (percent):", "", "| source | " + " | ".join(levels) + " |",
            "|" + "---|" * (len(levels) + 1)]
  for source, _ in _sources(config):
    cells = []
    for level in levels:
      set_dir = os.path.join(workdir, "sets", f"{source}_{level}")
      score = io.read_json(os.path.join(set_dir, "forget_set.json"))["forget_score_mean"]
      acc = {m: collected[source][level][m]["summary"]["forget_accuracy"]["mean"] for m in ("original", "retrain")}
      cells.append(f"score {score:.2f}, acc {100 * acc['original']:.0f} / {100 * acc['retrain']:.0f}")
    lines.append(f"| {source} | " + " | ".join(cells) + " |")
  lines.append("")
  for source, key in _sources(config):
    by_level = collected[source]
    title = "memorization (Feldman-Zhang)" if source == MEMORIZATION else f"the proxy `{key}`"
    for metric, label in (("tow", "ToW"), ("tow_mia", "ToW-MIA")):
      lines += [f"## {label}, forget sets by {title} ({seeds})", ""]
      lines += _method_table(by_level, levels, ["original"] + list(s.methods), metric) + [""]
    if "low" in by_level and "high" in by_level:
      lines += [f"### Harder when more memorized? High minus low, forget sets by {title} ({seeds}, paired)", ""]
      cells = []
      for m in s.methods:
        row = [m]
        for metric in ("tow", "tow_mia"):
          if m in by_level["high"] and m in by_level["low"]:
            mean, half = paired_difference(by_level["high"][m], by_level["low"][m], metric)
            row.append(f"{results.signed(mean, half)} ({verdict(mean, half)})")
          else:
            row.append("n/a")
        cells.append(row)
      lines += [results.markdown_table(["method", "ToW high - low", "ToW-MIA high - low"], cells)]
    if "mix" in by_level and RUM_NAME in by_level["mix"]:
      mix = by_level["mix"]
      best = best_on_validation(validation[source]["mix"], s.methods)
      plan = plans.get(source, {})
      lines += [f"## RUM on the mix forget set by {title} ({seeds})", "",
                f"RUM plan (low -> mid -> high): {' -> '.join(plan.get(l, '?') for l in rum.LEVELS)}"
                + (" (per level, the best method by ToW on that level's validation set, with its settings tuned "
                   "there)" if s.rum_plan == "auto" else ""),
                "", f"Differences are paired over seeds (mean ± 95% t-interval, points). The best single method "
                f"({best}) is the one with the highest ToW on the mix VALIDATION set. RUM^F (`rum_f_<method>`) is "
                f"the method itself on low -> mid -> high; `{SHUFFLE_NAME}` is RUM's plan on three random equal "
                f"parts of the mix set (the paper's Shuffle control).", ""]
      cells = []
      for name in ["retrain", best] + [r for r in rum_rows if r in mix]:
        sm = mix[name]["summary"]
        alone = name[len(RUM_F_PREFIX):] if name.startswith(RUM_F_PREFIX) else ""
        vs_alone = results.signed(*paired_difference(mix[name], mix[alone])) if alone in mix else ""
        vs_best = results.signed(*paired_difference(mix[name], mix[best])) if name not in ("retrain", best) else ""
        vs_shuffle = (results.signed(*paired_difference(mix[name], mix[SHUFFLE_NAME]))
                      if name == RUM_NAME and SHUFFLE_NAME in mix else "")
        cells.append([f"{name} (best single method)" if name == best else name, results.cell(sm["tow"]),
                      results.cell(sm["tow_mia"]), results.cell(sm["forget_accuracy"]),
                      results.cell(sm["retain_accuracy"]), results.cell(sm["test_accuracy"]),
                      vs_alone, vs_best, vs_shuffle])
      lines += [results.markdown_table(["run", "ToW", "ToW-MIA", "forget acc", "retain acc", "test acc",
                                        "ToW - the method alone", "ToW - best single", "ToW - Shuffle"], cells)]
  for source, by_level in strong.items():
    lines += _strong_lines(source, by_level, strong_methods(s))
  if failures:
    lines += ["Runs left out because their loss diverged (NaN/inf): " + ", ".join(sorted(failures)) + ".", ""]
  lines += ["## Settings: which set tuned what", "", f"Original models: {config.train.epochs} epochs, batch "
            f"{config.train.batch_size}, lr {config.train.lr} ({config.train.schedule}); the retrain references "
            f"are trained the same way without their forget set. Each method's base settings, then the settings "
            f"chosen (by mean ToW over {seeds}) on the validation set of each forget set; the grids are "
            f"config.sweep.<method>, and the reported run of each cell used exactly these.", "",
            results.markdown_table(["method", "base settings"], [
                [m, ", ".join(f"{k}={v}" for k, v in sorted(config.unlearn[m].items()))] for m in s.methods])]
  for source, by_level in validation.items():
    cells = [[m] + [grid_lib.label(by_level[level][m]["point"]) or "(base)" if m in by_level[level] else "n/a"
                    for level in levels] for m in s.methods]
    lines += [f"Chosen on the validation sets by {source} (sets/{source}_<level>/validation):", "",
              results.markdown_table(["method"] + levels, cells)]
  lines += [f"## The paper's claims, as numbers ({seeds})", ""] + statements + [""]
  text = "\n".join(lines)
  for directory in [workdir] + ([s.results_dir] if s.results_dir else []):
    io.write_text(os.path.join(directory, "study.md"), text)
    io.write_csv(os.path.join(directory, "study.csv"), rows_csv)
    plot_study(collected, s.methods, levels, os.path.join(directory, "study.png"),
               f"{config.data.name}: {seeds}, forget sets of {config.forget.size}")
  logging.info("study written to %s (and %s):\n%s", os.path.join(workdir, "study.md"), s.results_dir or "-", text)
  return text


def plot_study(collected: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str], levels: Sequence[str],
               path: str, title: str) -> None:
  """Per score source (rows): ToW and ToW-MIA per method grouped by forget set (bars = levels),
  and on mix, each method beside RUM^F of it and RUM."""
  plt = io.pyplot()
  sources = list(collected)
  fig, axes = plt.subplots(len(sources), 3, figsize=(17, 3.8 * len(sources)), squeeze=False)
  names = ["original"] + list(methods)
  x = np.arange(len(names))
  for row, source in enumerate(sources):
    by_level = collected[source]
    for col, (metric, label) in enumerate((("tow", "ToW"), ("tow_mia", "ToW-MIA"))):
      ax = axes[row, col]
      width = 0.8 / len(levels)
      for i, level in enumerate(levels):
        missing = {"mean": np.nan, "ci95": np.nan}  # a diverged run: no bar
        sm = [by_level[level][n]["summary"][metric] if n in by_level[level] else missing for n in names]
        ax.bar(x + (i - (len(levels) - 1) / 2) * width, [v["mean"] for v in sm], width,
               yerr=[np.nan_to_num(results.half_width(v)) for v in sm], capsize=1.5, label=level)
      ax.set_xticks(x)
      ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
      ax.set_ylim(0, 1.25)  # room for the legend above the bars
      ax.set_ylabel(f"{label} ({source})")
      ax.legend(fontsize=7, title="forget set", title_fontsize=7, ncol=len(levels), loc="upper center")
    ax = axes[row, 2]
    mix = by_level.get("mix", {})
    single = [m for m in methods if m in mix]
    refined = [mix.get(RUM_F_PREFIX + m) for m in single]
    xs = np.arange(len(single))
    sm = [mix[m]["summary"]["tow"] for m in single]
    ax.bar(xs - 0.2, [v["mean"] for v in sm], 0.4, yerr=[np.nan_to_num(results.half_width(v)) for v in sm],
           capsize=1.5, label="method on mix")
    if any(r is not None for r in refined):
      sm = [r["summary"]["tow"] if r is not None else {"mean": np.nan, "ci95": np.nan} for r in refined]
      ax.bar(xs + 0.2, [v["mean"] for v in sm], 0.4, yerr=[np.nan_to_num(results.half_width(v)) for v in sm],
             capsize=1.5, label="RUM^F (low->mid->high)")
    if RUM_NAME in mix:
      v = mix[RUM_NAME]["summary"]["tow"]
      ax.axhline(v["mean"], color="k", linestyle="--", linewidth=1, label=f"RUM {100 * v['mean']:.1f}")
    ax.set_xticks(xs)
    ax.set_xticklabels(single, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel(f"ToW on mix ({source})")
    ax.legend(fontsize=7, loc="upper center", ncol=3)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  io.save_figure(fig, path, dpi=110)
