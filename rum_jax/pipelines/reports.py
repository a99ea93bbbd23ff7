"""Reports: markdown tables and figures rendered from records (never a metric recomputed here).

A record is tidy rows (`results.record_rows`); `results.summary_frame` turns them into means and
95% t-intervals over seeds per group (`results.summarize`), and this module shows those, each metric as its
`METRICS` entry says (header, unit, digits):

  table(summary, metrics)          one row per method, a 'mean ± ci95' cell per metric
  bar_figure(summary, panels, ..)  grouped bars with 95% interval whiskers, a panel per list
  leaderboard(records, metrics)    one table over many work directories (`results.collect`), a row per run
  continual_run_figures(...)       a continual run's heat map, task curves, CL-ToW and CLU curves
  continual_table(records, ..)     continual runs side by side (records with a 'run' column)
  continual_comparison_figure(..)  their CL-ToW per forget step and final accuracies
  tradeoff_figure(trace, runs, ..)  kept against forgotten held-out accuracy over the passes
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd

from rum_jax import io, results
from rum_jax.runfolder import RunFolder, layout
from rum_jax.evaluation.metrics import METRICS


def format_value(metric: str, mean: float, half: float = np.nan) -> str:
  """'mean ± half' in the metric's unit ('±' dropped where the interval is undefined)."""
  m = METRICS.get(metric)
  return results.cell({"mean": mean, "ci95": None if half is None or np.isnan(half) else half},
                      scale=m.scale, digits=m.digits)


def _lookup(summary: pd.DataFrame, row_key: str) -> Dict[Any, Dict[str, Dict[str, float]]]:
  out: Dict[Any, Dict[str, Dict[str, float]]] = {}
  for r in summary.itertuples(index=False):
    out.setdefault(getattr(r, row_key), {})[r.metric] = {"mean": r.mean, "ci95": r.ci95}
  return out


def header(metric: str) -> str:
  """A metric's column header: its display name, with '(%)' for percent metrics."""
  m = METRICS.get(metric)
  return m.display + (" (%)" if m.unit == "%" else "")


def table(summary: pd.DataFrame, metrics: Sequence[str], row_key: str = "method",
          rows: Optional[Sequence[Any]] = None, labels: Optional[Dict[Any, str]] = None,
          extra: Optional[Dict[str, Dict[Any, str]]] = None) -> str:
  """A markdown table: one row per value of `row_key` (order `rows`, default first-seen), one
  column per metric (`header`); 'n/a' where a row lacks the metric. `labels` rename rows;
  `extra` adds columns after the metrics: {column: {row: text}}."""
  cells = _lookup(summary, row_key)
  rows = list(rows if rows is not None else dict.fromkeys(summary[row_key]))
  extra = extra or {}
  body = []
  for r in rows:
    line = [(labels or {}).get(r, r)]
    for m in metrics:
      stat = cells.get(r, {}).get(m)
      line.append("n/a" if stat is None else format_value(m, stat["mean"], stat["ci95"]))
    body.append(line + [column.get(r, "") for column in extra.values()])
  return results.markdown_table([row_key] + [header(m) for m in metrics] + list(extra), body)


def bar_figure(summary: pd.DataFrame, panels: Sequence[Sequence[str]], title: str,
               row_key: str = "method", ylabels: Sequence[str] = ()) -> Any:
  """One panel per metric list: bars of every row's mean per metric, 95% whiskers (a figure)."""
  plt = io.pyplot()
  cells = _lookup(summary, row_key)
  names = list(dict.fromkeys(summary[row_key]))
  x = np.arange(len(names))
  fig, axes = plt.subplots(1, len(panels), figsize=(max(8, 1.6 * len(names)), 3.8), squeeze=False)
  for p, (ax, metrics) in enumerate(zip(axes[0], panels)):
    metrics = [m for m in metrics if any(m in cells[n] for n in names)]
    width = 0.8 / max(len(metrics), 1)
    for i, m in enumerate(metrics):
      means = [cells[n].get(m, {}).get("mean", np.nan) for n in names]
      errors = [np.nan_to_num(cells[n].get(m, {}).get("ci95", np.nan)) for n in names]
      ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means, width, yerr=errors, capsize=2,
             label=METRICS.get(m).display)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    if all(METRICS.get(m).unit == "%" or m.startswith("tow") for m in metrics):
      ax.set_ylim(0, 1.05)
    if p < len(ylabels):
      ax.set_ylabel(ylabels[p])
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


GROUP = ("data", "model", "forget_kind", "forget_level", "forget_size", "forget_split")


def leaderboard(records: pd.DataFrame, metrics: Optional[Sequence[str]] = None, pool: bool = False) -> str:
  """One markdown table over the records of many work directories (`results.collect`).

  Rows: one per run (`results.identify_runs`: its settings, forget set and original models), the
  original and the retrain reference first within each forget set; cells: mean ± 95% interval
  over the run's seeds (`summary_frame`); then the seeds, the run's id and where it comes from,
  and below the table what each id stands for (pooled runs say what they pooled).
  """
  metrics = list(metrics or [m for m in dict.fromkeys(records["metric"]) if m in METRICS])
  unknown = [m for m in metrics if m not in METRICS]
  if unknown:
    raise ValueError(f"unknown metric(s) {unknown} for the leaderboard; valid choices: {', '.join(METRICS.names())}")
  frame, sources = results.identify_runs(records, pool)
  group = [c for c in GROUP if c in frame.columns]
  summary = results.summary_frame(frame, by=["run"])
  runs = frame.drop_duplicates("run")
  rank = [0 if m == "original" else 1 if str(m).startswith("retrain") else 2 for m in runs["method"]]
  # Each forget set and original models together: the original, the retrain reference, the methods.
  runs = runs.assign(_rank=rank).sort_values(group + ["forget_digest", "original_digest", "_rank"], kind="stable",
                                             key=lambda c: c.astype(str))
  labels = {r["run"]: " / ".join(str(r[c]) for c in group + ["method"]) for _, r in runs.iterrows()}
  seeds = {run: str(int(n)) for run, n in summary.groupby("run", sort=False)["n"].max().items()}
  counted = frame.groupby("run", sort=False)["source"].unique()
  text = table(summary, metrics, row_key="run", rows=list(runs["run"]), labels=labels,
               extra={"seeds": seeds, "run": {r: f"`{r}`" for r in runs["run"]},
                      "from": {r: ", ".join(results.source_workdir(f) for f in sources[r]) for r in runs["run"]}})
  text = text.replace("| run |", "| " + " / ".join(group + ["method"]) + " |", 1)
  legend = []
  for _, r in runs.iterrows():
    line = (f"- `{r['run']}`: {r['method']}, settings {r['settings'] or '{}'}, forget set "
            f"{r['forget_digest'] or 'unrecorded'}, original models {r['original_digest'] or 'unrecorded'}")
    pooled = counted[r["run"]]
    if len(pooled) > 1:
      line += "; POOLED (--pool): the seeds of " + ", ".join(
          f"{results.source_workdir(f)} ({frame[(frame['run'] == r['run']) & (frame['source'] == f)]['seed'].nunique()})"
          for f in pooled)
    copies = [f for f in sources[r["run"]] if f not in pooled]
    if pool and copies and r["method"] not in results.REFERENCE_METHODS:
      line += "; identical copies counted once: " + ", ".join(results.source_workdir(f) for f in copies)
    legend.append(line)
  return text + "\nRuns (a row is one run: its settings, forget set and original models):\n\n" + "\n".join(legend) + "\n"


def write_leaderboard(paths: Sequence[str], markdown: str, csv: str, metrics: Optional[Sequence[str]] = None,
                      pool: bool = False) -> str:
  """leaderboard(collect(paths)) written to `markdown`, the records it read to `csv` (tidy)."""
  records = results.collect(paths, layout.RECORD_FILES)
  text = leaderboard(records, metrics, pool)
  io.write_text(markdown, f"# Leaderboard over {len(set(records['source']))} record files\n\n"
                "Mean ± 95% t-interval over each run's seeds.\n\n" + text)
  io.write_csv(csv, records.to_dict("records"))
  return text


# ---------------------------------------------------------------------------------------
# Continual runs: a run's figures (from its matrices and curve rows) and comparisons of runs
# (from their records, one 'run' label per run).


def _save(fig, path: str) -> None:
  fig.tight_layout()
  io.save_figure(fig, path)


def accuracy_heatmap(mean: np.ndarray, step_labels: Sequence[str], path: str, title: str) -> None:
  """Rows = states of the model (initial, then after each step), columns = tasks."""
  plt = io.pyplot()
  rows, tasks = mean.shape
  fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * tasks + 2), max(3.0, 0.3 * rows + 1.5)))
  image = ax.imshow(mean, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
  ax.set_xticks(range(tasks))
  ax.set_xlabel("task")
  ax.set_yticks(range(rows))
  ax.set_yticklabels(step_labels, fontsize=7)
  ax.set_ylabel("after step")
  if rows * tasks <= 400:  # values stay legible
    for i in range(rows):
      for j in range(tasks):
        if np.isfinite(mean[i, j]):
          ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=6,
                  color="white" if mean[i, j] < 0.6 else "black")
  fig.colorbar(image, ax=ax, label="test accuracy (mean over seeds)")
  ax.set_title(title)
  _save(fig, path)


def task_curves(mean: np.ndarray, half: np.ndarray, step_labels: Sequence[str],
                forget_rows: Sequence[int], path: str, title: str) -> None:
  """One line per task over the steps, with a 95% band; forget steps shaded."""
  plt = io.pyplot()
  rows, tasks = mean.shape
  fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * rows + 3), 4.0))
  x = np.arange(rows)
  colors = plt.get_cmap("tab20" if tasks > 10 else "tab10")
  for k in range(tasks):
    color = colors(k % colors.N)
    ax.plot(x, mean[:, k], color=color, lw=1.5, label=f"task {k}")
    band = np.nan_to_num(half[:, k])
    ax.fill_between(x, mean[:, k] - band, mean[:, k] + band, color=color, alpha=0.15)
  for r in forget_rows:
    ax.axvspan(r - 0.5, r + 0.5, color="grey", alpha=0.12, lw=0)
  ax.set_xticks(x)
  ax.set_xticklabels(step_labels, rotation=90, fontsize=7)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("after step (grey: forget steps)")
  ax.set_ylabel("test accuracy")
  ax.legend(fontsize=6, ncol=2 if tasks > 10 else 1, loc="lower left")
  ax.set_title(title)
  _save(fig, path)


def _curve(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
  """Mean and 95% half width over seeds of one curve of a run's curve rows, per step."""
  part = curves[curves["metric"] == metric]
  return results.summary_frame(part, by=("step", "action")).sort_values("step")


def unlearning_scores(curves: pd.DataFrame, step_labels: Sequence[str], path: str, title: str) -> None:
  """CL-ToW at the forget steps (left) and CLU_mix after every step (right), mean +- 95%."""
  plt = io.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  ax = axes[0]
  tow = _curve(curves, "cl_tow")
  if len(tow):
    x = np.arange(len(tow))
    ax.errorbar(x, tow["mean"], yerr=np.nan_to_num(tow["ci95"].to_numpy(float)), marker="o", capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels(tow["action"], rotation=90, fontsize=7)
  else:
    ax.text(0.5, 0.5, "no forget steps", ha="center", va="center", transform=ax.transAxes)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("forget step")
  ax.set_ylabel("CL-ToW")
  ax = axes[1]
  clu = _curve(curves, "clu_mix")
  x = np.arange(len(clu))
  mean, half = clu["mean"].to_numpy(float), np.nan_to_num(clu["ci95"].to_numpy(float))
  ax.plot(x, mean, marker=".")
  ax.fill_between(x, mean - half, mean + half, alpha=0.2)
  ax.set_xticks(x)
  ax.set_xticklabels(step_labels[1:], rotation=90, fontsize=7)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("after step")
  ax.set_ylabel("CLU_mix")
  fig.suptitle(title)
  _save(fig, path)


def continual_run_figures(test_accuracy: np.ndarray, curves: Sequence[Dict[str, Any]], step_labels: Sequence[str],
                          forget_steps: Sequence[int], folder: Any, title: str) -> None:
  """A continual run's accuracy heat map, task curves and CL-ToW / CLU curves, into its run
  folder (a RunFolder or its path).

  test_accuracy: [S, steps + 1, T]; curves: the rows of its curves record.
  """
  folder = RunFolder.of(folder)
  summary = results.summarize(test_accuracy)
  mean, half = summary["mean"], summary["ci95"]
  rows = [r + 1 for r in forget_steps]
  accuracy_heatmap(mean, step_labels, folder.file("heatmap_figure"), title)
  task_curves(mean, half, step_labels, rows, folder.file("task_curves_figure"), title)
  unlearning_scores(pd.DataFrame(list(curves), columns=["step", "action", "seed", "metric", "value"]), step_labels,
                    folder.file("cl_tow_figure"), title)


def continual_table(records: pd.DataFrame, metrics: Sequence[str], runs: Sequence[str]) -> str:
  """One row per run (records' 'run' column, in the order `runs`), a 'mean ± 95%' cell per
  metric ('n/a' where a run lacks it; a pooled metric is one value, without interval)."""
  summary = results.summary_frame(records, by=("run",))
  metrics = [m for m in metrics if m in set(summary["metric"])]
  return table(summary, metrics, row_key="run", rows=list(runs))


def continual_comparison_figure(records: pd.DataFrame, curves: pd.DataFrame, runs: Sequence[str], chance: float,
                                path: str, title: str) -> None:
  """Runs side by side: CL-ToW at every forget step (left, from the runs' curve rows with
  a 'run' column), final accuracies and CL-ToW (right, from their records)."""
  plt = io.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
  ax = axes[0]
  spread = 0.3 / max(len(runs) - 1, 1)
  labels = []
  for r, run in enumerate(runs):
    tow = _curve(curves[curves["run"] == run], "cl_tow")
    if len(tow):
      labels = list(tow["action"])
      x = np.arange(len(tow)) + (r - (len(runs) - 1) / 2) * spread
      ax.errorbar(x, tow["mean"], yerr=np.nan_to_num(tow["ci95"].to_numpy(float)), marker="o", ms=3, capsize=2,
                  lw=1, label=run)
  ax.set_xticks(range(len(labels)))
  ax.set_xticklabels(labels)
  ax.set_xlabel("forget step")
  ax.set_ylabel("CL-ToW (mean, 95% interval)")
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=7)
  ax = axes[1]
  cells = _lookup(results.summary_frame(records, by=("run",)), "run")
  bars = ("final_cl_tow", "final_retained_test_accuracy", "final_forgotten_test_accuracy")
  width = 0.8 / len(bars)
  x = np.arange(len(runs))
  for j, key in enumerate(bars):
    stats = [cells.get(run, {}).get(key, {"mean": np.nan, "ci95": np.nan}) for run in runs]
    ax.bar(x + (j - (len(bars) - 1) / 2) * width, [s["mean"] for s in stats], width,
           yerr=[float(np.nan_to_num(s["ci95"])) for s in stats], capsize=2, label=METRICS.get(key).display)
  ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
  ax.set_xticks(x)
  ax.set_xticklabels(list(runs), rotation=30, ha="right", fontsize=8)
  ax.set_ylim(0, 1.02)
  ax.set_ylabel("test accuracy / CL-ToW")
  ax.legend(fontsize=7, loc="lower right")
  fig.suptitle(title)
  _save(fig, path)


def tradeoff_figure(trace: pd.DataFrame, runs: Sequence[str], chance: float, path: str, title: str,
                    target: Optional[float] = None) -> None:
  """One panel per run (trace rows with a 'run' column): the kept tasks' held-out accuracy
  against the forgotten task's over the passes of every forget step (mean over seeds; a line
  per forget step from its start, a dot where it ended), chance and the stop target marked."""
  plt = io.pyplot()
  cols = min(4, len(runs))
  rows = -(-len(runs) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
  for ax, run in zip(axes.ravel(), runs):
    part = trace[trace["run"] == run]
    steps = list(dict.fromkeys(part["step"]))
    colors = plt.get_cmap("viridis")(np.linspace(0, 1, max(len(steps), 2)))
    for color, step in zip(colors, steps):
      mean = part[part["step"] == step].groupby("pass")[["forgotten_held_out", "kept_held_out"]].mean()
      ax.plot(mean["forgotten_held_out"], mean["kept_held_out"], color=color, lw=1, alpha=0.8)
      ax.plot(mean["forgotten_held_out"].iloc[-1], mean["kept_held_out"].iloc[-1], "o", color=color, ms=3)
    ax.axvline(chance, color="grey", ls=":", lw=1)
    if target is not None:
      ax.axvline(target, color="red", ls="--", lw=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(run, fontsize=9)
    ax.set_xlabel("forgotten task, held out")
    ax.set_ylabel("kept tasks, held out")
  for ax in axes.ravel()[len(runs):]:
    ax.axis("off")
  fig.suptitle(title + "\n(one line per forget step, early steps dark; dotted: chance"
               + (", dashed: the stop target" if target is not None else "") + ")", fontsize=9)
  _save(fig, path)
