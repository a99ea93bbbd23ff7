"""Sweeps of a method's settings as one program, tuned against retraining on a held-out forget set.

`run_sweep(config, workdir)` is unlearn.py when config.sweep.<method> lists values
(`--config.sweep.salun.lr=0.01,0.03,0.1`):

  1. the work directory is prepared as for any method (scores, original models, the REPORTED
     forget set and its retrain reference);
  2. <workdir>/validation is an unlearning work directory of the same original models whose
     forget set is the VALIDATION set: chosen by the same rule (kind, level, size), disjoint
     from the reported one (config.forget.split = "validation"), with its own retrain reference;
  3. every grid point x seed is unlearned there, each program holding all points that differ
     only in settings the method can vary per model (`Method.swept`: the learning rate, alpha,
     the mask ratio, ...; one program per value of the others); per point ToW and ToW-MIA
     against the validation set's reference, mean and 95% interval over seeds;
  4. the point with the highest mean `config.sweep.select_by` is chosen, and only it runs on the
     reported forget set, as methods/<method> (evaluated like every run).

So no reported number is tuned on the set it reports. The work directory's sweep folder of the
method (`RunFolder.sweep`) gets the sweep's record, rows and table (one row per point, the
chosen one marked, and the reported set's result of it) and a figure (ToW and ToW-MIA against
every swept setting). A work directory holds one grid per method: another grid is refused
before anything is written, unless --overwrite.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results
from rum_jax.evaluation.metrics import METRICS, ModelOutputs
from rum_jax.pipelines import reports, unlearning
from rum_jax.runfolder import RunFolder, WorkdirError, layout
from rum_jax.training import loop
from rum_jax.training.checkpoint import tree_digest
from rum_jax.training.setup import Setup
from rum_jax.unlearning import UNLEARNING_METHODS, grid as grid_lib
from rum_jax.unlearning.config import sweep_grid



VALIDATION = layout.FOLDERS["validation"]


def sweep_metrics(config: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """What every grid point is scored by: accuracies and ToW, the SVC attack and ToW-MIA with
  config.sweep.mia, and config.sweep.select_by (any metric of one run's logits)."""
  sw = config.get("sweep") or {}
  names = unlearning.RUN_METRICS + (("mia_confidence", "tow_mia") if sw.get("mia", True) else ())
  return tuple(dict.fromkeys(names + (sw.get("select_by", "tow"),)))


def run_grid(prep: unlearning.Prepared, method_name: str, points: Sequence[Dict[str, Any]],
             run_root: Any, metrics: Sequence[str] = unlearning.RUN_METRICS) -> Tuple[List[Dict[str, Any]], bool]:
  """Every grid point on every seed of a prepared work directory; per point its metrics.

  Points that differ only in per-model settings share one program of len(points) x seeds
  models: model (point g, seed s) starts from seed s's original model with seed s's batch
  order, so the points are compared on the same seeds (paired). Results are cached in
  run_root's grid record (keyed by the points, settings, forget set, original models and
  retrain reference), checkpoints below it (each program's own: `Checkpointer.claim`).

  Returns:
    (one dict per point: {"point", "per_seed": {metric: [S]} of every metric of `metrics`,
    "summary"}; whether they came from the cache).
  """
  config, setup = prep.config, prep.setup
  base = ml_collections.ConfigDict(config.unlearn[method_name].to_dict())
  key = {"points": list(points), "settings": base.to_dict(), "forget_digest": prep.forget_digest,
         "seeds": config.num_seeds, "metrics": list(metrics), "reference": prep.retrain_digest,
         "original": tree_digest(prep.original)}
  root = RunFolder.of(run_root)
  if root.readable("grid"):
    cached = root.read("grid")
    if cached.get("key") == io.as_json(key):
      return cached["results"], True
  num_seeds = config.num_seeds
  out: List[Optional[Dict[str, Any]]] = [None] * len(points)
  for program in grid_lib.unlearn_points(setup, prep.original, method_name, base, points, prep.forget, prep.retain,
                                         base_seed=config.seed, root=root.path, name=f"sweep {method_name}"):
    for i, error in program.diverged.items():
      out[i] = {"point": dict(points[i]), "diverged": error}
      logging.warning("sweep %s: %s diverged on the validation set; it cannot be chosen", method_name,
                      grid_lib.label(points[i]))
    if not program.members:
      continue
    forget = [prep.forget[s] for s in program.seed_ids]
    grid_outputs = unlearning.model_outputs(setup.with_models(len(program.seed_ids)), program.states, forget)
    for g, i in enumerate(program.members):
      rows = slice(g * num_seeds, (g + 1) * num_seeds)  # point g's models, seed s its seed s
      if not all(np.isfinite(v[rows]).all() for v in grid_outputs.logits.values()):
        # A finite loss can still leave logits beyond float range (gradient ascent): as diverged.
        out[i] = {"point": dict(points[i]), "diverged": "non-finite logits"}
        logging.warning("sweep %s: %s gives non-finite logits; it cannot be chosen", method_name,
                        grid_lib.label(points[i]))
        continue
      point = ModelOutputs({k: v[rows] for k, v in grid_outputs.logits.items()}, grid_outputs.labels,
                           forget[rows], prep.reference_outputs)
      per_seed = {name: point.value(name).tolist() for name in metrics}
      out[i] = {"point": dict(points[i]), "per_seed": per_seed, "summary": results.summarize_columns(per_seed)}
  root.write("grid", {"key": key, "results": out})
  return out, False


def choose(grid_results: Sequence[Dict[str, Any]], metric: str) -> int:
  """The index of the point with the best mean `metric` (the highest, or the lowest for a metric
  where lower is better; the first of equals); diverged points are never chosen."""
  sign = 1.0 if METRICS.get(metric).higher_is_better is not False else -1.0
  means = [sign * r["summary"][metric]["mean"] if "summary" in r else -np.inf for r in grid_results]
  if np.all(np.isneginf(means)):
    raise loop.NonFiniteLossError(f"every point of the grid diverged on the validation forget set "
                                  f"({len(means)} points); lower the learning rates of config.sweep")
  return int(np.argmax(means))


def validation_config(config: ml_collections.ConfigDict, original_dir: Any) -> ml_collections.ConfigDict:
  """The config of the validation work directory: the validation split, the shared original
  (recorded relative to the validation work directory)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.forget.split = VALIDATION
  c.unlearn.original_workdir = os.path.abspath(os.fspath(original_dir))
  return c


def _original_of(config: ml_collections.ConfigDict, folder: RunFolder) -> Any:
  return config.unlearn.original_workdir or folder.original().path


def tuned(config: ml_collections.ConfigDict, method_name: str, point: Dict[str, Any]) -> ml_collections.ConfigDict:
  """config with config.unlearn.<method_name> set to a grid point (and no sweep left)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.unlearn[method_name].update(point)
  c.unlearn.method = method_name
  for key in c.sweep[method_name]:
    c.sweep[method_name][key] = ""
  return c


def tune(config: ml_collections.ConfigDict, workdir: Any, method_name: str, overwrite: bool = False,
         setup: Optional[Setup] = None, points: Optional[Sequence[Dict[str, Any]]] = None) -> Dict[str, Any]:
  """Steps 2-3 of the module docstring for one method: the grid on the validation forget set of
  `workdir` (whose original models must exist) and the chosen point.

  points: the grid (default config.sweep.<method_name>); [{}] runs the method's settings alone
    (a study compares methods on the validation set even when it tunes none of them).

  Returns:
    {"points", "grid" (run_grid's results), "chosen" (index), "select_by", "validation_dir",
    "original_tow" (the original model's mean ToW on the validation set), "cached" (the grid was
    read back, not run)}.
  """
  points = list(points if points is not None else sweep_grid(config, method_name))
  if not points:
    raise ValueError(f"config.sweep.{method_name} lists no values to sweep")
  folder = RunFolder.of(workdir)
  val = folder.validation()
  prep = unlearning.prepare(validation_config(config, _original_of(config, folder)), val, overwrite, setup)
  select_by = config.sweep.get("select_by", "tow")
  grid_results, cached = run_grid(prep, method_name, points, val.sweep(method_name), sweep_metrics(config))
  chosen = choose(grid_results, select_by)
  logging.info("sweep %s: chosen on the validation forget set by %s: %s", method_name, select_by,
               grid_lib.label(points[chosen]))
  original_tow = float(np.mean(prep.original_outputs.value("tow")))
  return {"points": list(points), "grid": grid_results, "chosen": chosen, "select_by": select_by,
          "validation_dir": val.path, "original_tow": original_tow, "cached": cached}


def check_sweep(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False) -> None:
  """Refuses, before anything is written, a work directory that holds a sweep of the method over
  another grid (or chosen by another metric), and a finished run of the method whose settings
  are none of the grid's points (unless --overwrite); the configs of the work directory and of
  its validation work directory are checked as every unlearning run checks them."""
  method_name = config.unlearn.method
  points = sweep_grid(config, method_name)
  select_by = config.sweep.get("select_by", "tow")
  old = folder.sweep(method_name)
  if not overwrite and old.readable("sweep"):
    record = old.read("sweep")
    grid = [r["point"] for r in record.get("validation", {}).get("grid", [])]
    if grid != io.as_json(list(points)) or record.get("select_by") != select_by:
      raise WorkdirError(f"{folder} holds a sweep of {method_name} over another grid ({len(grid)} points: "
                         f"{', '.join(grid_lib.label(p) for p in grid[:4])}{', ...' if len(grid) > 4 else ''}; chosen "
                         f"by {record.get('select_by')}). Use another --workdir, or pass --overwrite to discard it.")
  unlearning.workdir_check(config, folder, overwrite)
  unlearning.workdir_check(validation_config(config, _original_of(config, folder)), folder.validation(), overwrite)
  run = folder.method(UNLEARNING_METHODS.get(method_name).folder_of(config))
  if not overwrite and run.finished():
    settings = run.read("metrics")["settings"]
    candidates = [unlearning.recorded_settings(UNLEARNING_METHODS.get(method_name).settings_of(tuned(config, method_name, p),
                                                                                     folder.path), folder)
                  for p in points]
    if io.as_json(settings) not in io.as_json(candidates):
      raise WorkdirError(f"{run} holds a finished run of {method_name} with settings that are none of the grid's "
                         f"points; use another --workdir, or pass --overwrite to discard it")


def run_sweep(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False,
              setup: Optional[Setup] = None) -> Dict[str, Any]:
  """unlearn.py with a sweep: tune config.unlearn.method on the validation forget set, then run
  the chosen settings on the reported forget set (module docstring)."""
  method_name = config.unlearn.method
  folder = RunFolder.of(workdir)
  check_sweep(config, folder, overwrite)
  prep = unlearning.prepare(config, folder, overwrite, setup)  # the original models, the reported set
  sweep = tune(config, folder, method_name, overwrite, prep.setup)
  point = sweep["points"][sweep["chosen"]]
  record = unlearning.run_method(prep, tuned(config, method_name, point), overwrite, evaluate=True)
  reported = record["evaluation"][UNLEARNING_METHODS.get(method_name).folder_of(config)]
  write_sweep(folder, config, method_name, sweep, reported["summary"])
  return {**sweep, "record": record}


def write_sweep(workdir: Any, config: ml_collections.ConfigDict, method_name: str, sweep: Dict[str, Any],
                reported: Optional[Dict[str, Any]]) -> str:
  """The record, rows, table and figure of a tuned method in the work directory's sweep folder
  of it; returns the markdown.

  The table's columns are the metrics every point was scored by, select_by first; `reported`
  is the chosen point's summary on the reported forget set (metric -> {mean, ci95})."""
  points, grid_results, chosen = sweep["points"], sweep["grid"], sweep["chosen"]
  num_seeds = config.num_seeds
  scored = next((r["summary"] for r in grid_results if "summary" in r), {})
  metrics = list(dict.fromkeys([sweep["select_by"]] + [m for m in scored if m in METRICS]))
  rows, cells = [], []
  for i, r in enumerate(grid_results):
    if "summary" not in r:
      rows.append({"point": grid_lib.label(r["point"]), "chosen": False, **r["point"], "diverged": True})
      cells.append([grid_lib.label(r["point"]) + " (diverged)"] + ["n/a"] * len(metrics))
      continue
    sm = r["summary"]
    rows.append({"point": grid_lib.label(r["point"]), "chosen": i == chosen, **r["point"],
                 **{f"{m}_{stat}": sm[m][stat] for m in metrics for stat in ("mean", "ci95")}})
    cells.append([grid_lib.label(r["point"]) + (" **(chosen)**" if i == chosen else "")]
                 + [reports.format_value(m, sm[m]["mean"], results.half_width(sm[m])) for m in metrics])
  workdir = RunFolder.of(workdir)
  folder = workdir.sweep(method_name)
  folder.write("sweep_rows", rows)
  folder.write("sweep", {
      "method": method_name, "select_by": sweep["select_by"], "chosen": points[chosen], "num_seeds": num_seeds,
      # Relative to the work directory, which a copy keeps together.
      "validation": {"forget_set": workdir.relative(RunFolder(sweep["validation_dir"]).file("forget_set_info")),
                     "grid": grid_results},
      "reported": reported})
  better = "highest" if METRICS.get(sweep["select_by"]).higher_is_better is not False else "lowest"
  lines = [f"# Sweep of {method_name}", "",
           f"Tuned on the VALIDATION forget set (same kind, level and size as the reported one, disjoint "
           f"from it), {num_seeds} seeds, mean ± 95% t-interval; chosen by the {better} mean "
           f"{sweep['select_by']}.", "",
           results.markdown_table(["settings (validation set)"] + [reports.header(m) for m in metrics], cells)]
  if reported is not None:
    shown = [m for m in metrics if m in reported]
    lines += [f"The chosen settings ({grid_lib.label(points[chosen])}) on the REPORTED forget set: "
              + ", ".join(f"{reports.header(m)} {reports.format_value(m, reported[m]['mean'], results.half_width(reported[m]))}"
                          for m in shown) + ".", ""]
  text = "\n".join(lines)
  folder.write("sweep_table", text)
  folder.write("sweep_figure", plot_sweep(grid_results, chosen, f"{config.data.name}: {method_name} on the validation "
                                                               f"forget set ({num_seeds} seeds)"))
  logging.info("sweep of %s written to %s:\n%s", method_name, folder.file("sweep_table"), text)
  return text


def plot_sweep(grid_results: Sequence[Dict[str, Any]], chosen: int, title: str) -> Any:
  """One panel per swept setting: mean ToW and ToW-MIA (95% bars) of every point against it (a figure)."""
  plt = io.pyplot()
  keys = list(grid_results[0]["point"])
  chosen_point = grid_results[chosen]["point"]
  grid_results = [r for r in grid_results if "summary" in r]  # diverged points have no scores
  chosen = next(i for i, r in enumerate(grid_results) if r["point"] == chosen_point)
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
  for ax, key in zip(axes[0], keys):
    x = np.array([r["point"][key] for r in grid_results], np.float64)
    for metric, label, marker in (("tow", "ToW", "o"), ("tow_mia", "ToW-MIA", "s")):
      if metric not in grid_results[0]["summary"]:
        continue
      mean = np.array([r["summary"][metric]["mean"] for r in grid_results])
      half = np.nan_to_num([results.half_width(r["summary"][metric]) for r in grid_results])
      ax.errorbar(x, mean, yerr=half, fmt=marker, capsize=2, label=label, alpha=0.8)
    ax.plot([x[chosen]], [grid_results[chosen]["summary"]["tow"]["mean"]], "*", markersize=14, color="k",
            label="chosen")
    if np.all(x > 0) and x.max() / x.min() > 20:
      ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("score (1 = retrained)")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
