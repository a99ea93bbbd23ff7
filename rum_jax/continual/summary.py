"""The metrics of finished continual runs, and the comparison table of several runs.

`run_metrics` turns a run's per-step accuracy matrices into per-seed values (ACC, BWT, FWT,
CL-ToW at every forget step, CLU_mix after every step, the retained and forgotten tasks'
accuracies), their means with 95% t-intervals, and CL-ToW and CLU computed once on the
seed-AVERAGED matrices. The two CL-ToW aggregates differ (CL-ToW is a product of absolute
differences, not linear in the accuracies):

- per-seed mean ("cl_tow" in the summary): CL-ToW of each seed's matrices, then the mean
  over seeds, with a 95% interval;
- on averaged matrices ("of_mean_matrices"): the matrices averaged over seeds first, then
  CL-ToW, as the thesis' ToW/tow.py does with its *_AVERAGED.csv files; one number per run.

`comparison` renders runs side by side; it reads the records, it never recomputes them.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rum_jax import results
from rum_jax.continual import metrics as cl_metrics
from rum_jax.continual import sequences
from rum_jax.continual.sequences import Step


def _nan_mean(values) -> float:
  return float(np.mean(values)) if len(values) else float("nan")


def tow_and_clu(train: np.ndarray, test: np.ndarray, sequence: Sequence[Step], chance: float,
                clu_beta: float) -> Dict[str, Any]:
  """CL-ToW (final, mean, per forget step) and CLU_mix (final, per step) of one set of
  matrices [steps + 1, T] (row 0: the initial model)."""
  forget_rows = [i for i, step in enumerate(sequence) if step.is_forget]
  out: Dict[str, Any] = {}
  if forget_rows:
    tow = cl_metrics.cl_tow(train[1:], test[1:], sequence, train[0], test[0])
    out["cl_tow"] = tow[forget_rows].tolist()
    out["final_cl_tow"] = float(tow[forget_rows[-1]])
    out["mean_cl_tow"] = float(np.mean(tow[forget_rows]))
  clu = cl_metrics.clu(train[1:], sequence, chance, clu_beta)
  out["clu_mix"] = clu.tolist()
  out["final_clu_mix"] = float(clu[-1])
  return out


def run_metrics(matrices: Mapping[str, np.ndarray], sequence: Sequence[Step], chance: float,
                clu_beta: float, stopped: Optional[np.ndarray] = None) -> Dict[str, Any]:
  """Per-seed metrics of a run, their summary, and CL-ToW / CLU on averaged matrices.

  Args:
    matrices: {"train_accuracy", "test_accuracy"}: [S, steps + 1, T] (row 0: initial model).
    sequence: the run's task sequence.
    chance: accuracy of a guess among a task's classes (CLU's floor).
    clu_beta: CLU's weight of positive backward transfer.
    stopped: optional [S, forget steps] booleans: the stop rule ended that forget request
      (its unlearn buffer reached the threshold) rather than the pass limit. Gives each seed's
      `forget_requests_stopped`, the fraction of its forget requests the stop rule ended.
  """
  forget_rows = [i for i, step in enumerate(sequence) if step.is_forget]
  retained, forgotten = (sorted(x) for x in sequences.task_sets(sequence)[-1])
  learned_at = sequences.last_learned_steps(sequence)[-1]
  learned = len({step.task for step in sequence if step.is_learn})
  train_all, test_all = (np.asarray(matrices[k], np.float64) for k in ("train_accuracy", "test_accuracy"))
  per_seed = []
  for train_s, test_s in zip(train_all, test_all):
    train, test = train_s[1:], test_s[1:]
    entry: Dict[str, Any] = {}
    if learned >= 2:
      entry.update(cl_metrics.transfer_metrics(test, sequence, test_s[0]))
    entry.update(tow_and_clu(train_s, test_s, sequence, chance, clu_beta))
    entry["final_retained_test_accuracy"] = _nan_mean(test[-1, retained])
    entry["retained_test_accuracy_after_learning"] = _nan_mean([test[learned_at[k], k] for k in retained])
    if forget_rows and forget_rows[0] > 0:
      # A4: task 0 after all tasks are learned, the thesis' "task 0 at step 19".
      entry["retained_test_accuracy_before_forgetting"] = _nan_mean(test[forget_rows[0] - 1, retained])
    entry["final_forgotten_test_accuracy"] = _nan_mean(test[-1, forgotten])
    entry["final_forgotten_train_accuracy"] = _nan_mean(train[-1, forgotten])
    per_seed.append(entry)
  if stopped is not None and np.size(stopped):
    for entry, row in zip(per_seed, np.asarray(stopped, bool)):
      entry["forget_requests_stopped"] = float(row.mean())
  averaged = tow_and_clu(train_all.mean(0), test_all.mean(0), sequence, chance, clu_beta)
  return {"sequence": sequences.format_sequence(sequence), "num_tasks": int(train_all.shape[2]),
          "chance": chance, "forget_steps": forget_rows, "retained_tasks": retained,
          "forgotten_tasks": forgotten, "per_seed": per_seed, "summary": results.summarize(per_seed),
          "of_mean_matrices": averaged}


def curve_rows(summary: Mapping[str, Any], step_labels: Sequence[str],
               forget_steps: Sequence[int]) -> List[Dict[str, Any]]:
  """curves.csv: per step, CLU_mix (and at forget steps CL-ToW), mean and 95% half width."""
  rows = []
  for i, label in enumerate(step_labels[1:]):
    row = {"step": i + 1, "action": label, "clu_mix_mean": summary["clu_mix"]["mean"][i],
           "clu_mix_ci95": summary["clu_mix"]["ci95"][i]}
    if i in forget_steps:
      j = list(forget_steps).index(i)
      row.update(cl_tow_mean=summary["cl_tow"]["mean"][j], cl_tow_ci95=summary["cl_tow"]["ci95"][j])
    rows.append(row)
  return rows


# ---------------------------------------------------------------------------------------
# Several runs side by side.

COMPARISON_COLUMNS = (
    ("ACC after learning", "acc"),
    ("BWT of learning", "bwt_paper"),
    ("kept, before forgetting", "retained_test_accuracy_before_forgetting"),
    ("kept, final", "final_retained_test_accuracy"),
    ("forgotten, final", "final_forgotten_test_accuracy"),
    ("final CL-ToW (per-seed mean)", "final_cl_tow"),
    ("mean CL-ToW (per-seed mean)", "mean_cl_tow"),
    ("final CLU_mix", "final_clu_mix"),
    ("forget requests ended by the stop rule", "forget_requests_stopped"),
)
AVERAGED_COLUMNS = (
    ("final CL-ToW (averaged matrices)", "final_cl_tow"),
    ("mean CL-ToW (averaged matrices)", "mean_cl_tow"),
    ("final CLU_mix (averaged matrices)", "final_clu_mix"),
)


def ranks(values) -> list:
  """1 = the largest value."""
  order = np.argsort(-np.asarray(values, float), kind="stable")
  out = np.empty(len(order), int)
  out[order] = np.arange(1, len(order) + 1)
  return out.tolist()


def comparison(runs: Sequence[Tuple[str, Mapping[str, Any]]], title: str,
               reference: Optional[Mapping[str, Mapping[str, float]]] = None,
               failed: Optional[Mapping[str, str]] = None) -> Tuple[str, List[Dict[str, Any]]]:
  """(markdown, csv rows) of finished runs, one row per run.

  Args:
    runs: [(label, metrics)] with each run's `run_metrics` record (its metrics record).
    title: the table's heading.
    reference: optional {label: {"final_cl_tow": x, "mean_cl_tow": y}}: published values on
      averaged matrices, shown beside ours (averaged the same way) with both rankings.
    failed: optional {label: reason} of runs that did not finish.
  """
  header = ["run"] + [name for name, _ in COMPARISON_COLUMNS + AVERAGED_COLUMNS]
  rows, csv_rows = [], []
  for label, m in runs:
    s, avg = m["summary"], m.get("of_mean_matrices", {})
    rows.append([label] + [results.cell(s[key], scale=1.0, digits=3) if key in s else "-"
                           for _, key in COMPARISON_COLUMNS]
                + [f"{avg[key]:.3f}" if key in avg else "-" for _, key in AVERAGED_COLUMNS])
    row = {"run": label, "seeds": len(m["per_seed"])}
    for _, key in COMPARISON_COLUMNS:
      if key in s:
        row[f"{key}_mean"], row[f"{key}_ci95"] = s[key]["mean"], s[key]["ci95"]
    for _, key in AVERAGED_COLUMNS:
      if key in avg:
        row[f"{key}_of_mean_matrices"] = avg[key]
    csv_rows.append(row)
  seeds = sorted({len(m["per_seed"]) for _, m in runs})
  text = (f"### {title}\n\nMeans over {', '.join(map(str, seeds))} seeds with 95% t-intervals; "
          "accuracies are test accuracies (fractions); \"kept\" are the tasks never forgotten. "
          "Per-seed mean: the metric of each seed, then the mean; averaged matrices: the "
          "accuracy matrices averaged over seeds, then the metric (the thesis' tow.py).\n\n"
          + results.markdown_table(header, rows))
  for label, reason in (failed or {}).items():
    text += f"\n{label}: not finished, {reason}\n"
  if reference:
    labels = [label for label, _ in runs if label in reference and "of_mean_matrices" in dict(runs)[label]]
    ours = [dict(runs)[label]["of_mean_matrices"]["final_cl_tow"] for label in labels]
    theirs = [reference[label]["final_cl_tow"] for label in labels]
    rank_rows = [[label, f"{o:.3f}", r_o, f"{t:.3f}", f"{reference[label]['mean_cl_tow']:.3f}", r_t]
                 for label, o, r_o, t, r_t in zip(labels, ours, ranks(ours), theirs, ranks(theirs))]
    text += ("\nRanking by final CL-ToW on averaged matrices, ours against the thesis' "
             "(its Split CIFAR-100 A4 runs, recomputed from its result files):\n\n"
             + results.markdown_table(["run", "final CL-ToW (ours)", "rank", "final CL-ToW (thesis)",
                                       "mean CL-ToW (thesis)", "rank (thesis)"], rank_rows))
  return text, csv_rows
