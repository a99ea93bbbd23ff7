"""Figures of a continual run (task-accuracy heat map, per-task curves, CL-ToW and CLU) and
of a comparison of runs.

Each function takes means (and 95% half widths) over seeds and writes one PNG atomically.
"""
import os
from typing import Sequence

import numpy as np

from rum_jax import io, results


def _save(fig, path: str) -> None:
  fig.tight_layout()
  io.save_figure(fig, path)


def _pyplot():
  return io.pyplot()


def accuracy_heatmap(mean: np.ndarray, step_labels: Sequence[str], path: str, title: str) -> None:
  """Rows = states of the model (initial, then after each step), columns = tasks."""
  plt = _pyplot()
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
  plt = _pyplot()
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


def unlearning_scores(step_labels: Sequence[str], cl_tow_rows: Sequence[int], tow_mean: np.ndarray,
                      tow_half: np.ndarray, clu_mean: np.ndarray, clu_half: np.ndarray,
                      path: str, title: str) -> None:
  """CL-ToW at the forget steps (left) and CLU_mix after every step (right), mean +- 95%."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  ax = axes[0]
  if len(cl_tow_rows):
    x = np.arange(len(cl_tow_rows))
    ax.errorbar(x, tow_mean, yerr=np.nan_to_num(tow_half), marker="o", capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels([step_labels[r] for r in cl_tow_rows], rotation=90, fontsize=7)
  else:
    ax.text(0.5, 0.5, "no forget steps", ha="center", va="center", transform=ax.transAxes)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("forget step")
  ax.set_ylabel("CL-ToW")
  ax = axes[1]
  x = np.arange(len(clu_mean))
  ax.plot(x, clu_mean, marker=".")
  ax.fill_between(x, clu_mean - np.nan_to_num(clu_half), clu_mean + np.nan_to_num(clu_half), alpha=0.2)
  ax.set_xticks(x)
  ax.set_xticklabels(step_labels[1:], rotation=90, fontsize=7)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("after step")
  ax.set_ylabel("CLU_mix")
  fig.suptitle(title)
  _save(fig, path)


def _mean_half(leaf) -> tuple:
  """Summary leaf (`results.summarize`) -> (mean, 95% half width) arrays; NaN where undefined."""
  mean = np.asarray(leaf["mean"], float)
  ci = leaf["ci95"]
  if ci is None:
    return mean, np.full_like(mean, np.nan)
  return mean, np.asarray([np.nan if v is None else v for v in np.atleast_1d(ci)], float).reshape(mean.shape)


def comparison(runs: Sequence, forget_labels: Sequence[str], chance: float, path: str, title: str) -> None:
  """Runs side by side: CL-ToW at every forget step (left), final accuracies and CL-ToW (right).

  runs: [(label, summary)] with each run's metrics record's "summary"; forget_labels: the forget
  steps ("-4", ...); chance: a task's chance accuracy (a dotted line on the right).
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
  ax = axes[0]
  spread = 0.3 / max(len(runs) - 1, 1)
  for r, (label, summary) in enumerate(runs):
    if "cl_tow" in summary:
      mean, half = _mean_half(summary["cl_tow"])
      x = np.arange(len(mean)) + (r - (len(runs) - 1) / 2) * spread
      ax.errorbar(x, mean, yerr=np.nan_to_num(half), marker="o", ms=3, capsize=2, lw=1, label=label)
  ax.set_xticks(range(len(forget_labels)))
  ax.set_xticklabels(forget_labels)
  ax.set_xlabel("forget step")
  ax.set_ylabel("CL-ToW (mean, 95% interval)")
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=7)
  ax = axes[1]
  bars = (("final CL-ToW", "final_cl_tow"), ("retained, final", "final_retained_test_accuracy"),
          ("forgotten, final", "final_forgotten_test_accuracy"))
  width = 0.8 / len(bars)
  x = np.arange(len(runs))
  for j, (name, key) in enumerate(bars):
    values = [_mean_half(summary[key]) if key in summary else (np.nan, np.nan) for _, summary in runs]
    ax.bar(x + (j - (len(bars) - 1) / 2) * width, [float(m) for m, _ in values], width,
           yerr=[float(np.nan_to_num(h)) for _, h in values], capsize=2, label=name)
  ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
  ax.set_xticks(x)
  ax.set_xticklabels([label for label, _ in runs], rotation=30, ha="right", fontsize=8)
  ax.set_ylim(0, 1.02)
  ax.set_ylabel("test accuracy / CL-ToW")
  ax.legend(fontsize=7, loc="lower right")
  fig.suptitle(title)
  _save(fig, path)


def run_figures(test_accuracy: np.ndarray, summary, step_labels: Sequence[str],
                forget_steps: Sequence[int], directory: str, title: str) -> None:
  """A run's three figures: task_accuracy_heatmap.png, task_curves.png and cl_tow.png.

  test_accuracy: [S, steps + 1, T]; summary: the run's metric summary (`summary.run_metrics`).
  """
  mean, half = results.mean_ci(test_accuracy)
  rows = [r + 1 for r in forget_steps]
  accuracy_heatmap(mean, step_labels, os.path.join(directory, "task_accuracy_heatmap.png"), title)
  task_curves(mean, half, step_labels, rows, os.path.join(directory, "task_curves.png"), title)
  tow = summary.get("cl_tow", {"mean": [], "ci95": []})
  as_array = lambda values: np.asarray(values, float)  # noqa: E731
  unlearning_scores(step_labels, rows, as_array(tow["mean"]), as_array(tow["ci95"]),
                    as_array(summary["clu_mix"]["mean"]), as_array(summary["clu_mix"]["ci95"]),
                    os.path.join(directory, "cl_tow.png"), title)
