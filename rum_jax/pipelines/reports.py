"""Reports: markdown tables and figures rendered from records (never a metric recomputed here).

A record is tidy rows (`results.record_rows`); `results.summary_frame` turns them into means and
95% t-intervals over seeds per group, and this module shows those, each metric as its
`METRICS` entry says (header, unit, digits):

  table(summary, metrics)          one row per method, a 'mean ± ci95' cell per metric
  bar_figure(summary, panels, ..)  grouped bars with 95% interval whiskers, a panel per list
  leaderboard(records, metrics)    one table over many work directories (`results.collect`), a row per run
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd

from rum_jax import io, results
from rum_jax.runfolder import layout
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
