"""Comparisons of finished continual runs for the continual benchmarks: their tidy records side
by side (`results.RECORD_COLUMNS` plus the run's label), a table and a figure
(`pipelines.reports`).
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from rum_jax import io, results
from rum_jax.pipelines import reports

# The columns of a comparison table: metrics of the registry, in this order.
COLUMNS = ("acc", "bwt_paper", "retained_test_accuracy_before_forgetting", "final_retained_test_accuracy",
           "final_forgotten_test_accuracy", "final_cl_tow", "mean_cl_tow", "final_clu_mix",
           "forget_requests_stopped", "forget_requests_without_update", "final_cl_tow_of_mean_matrices",
           "mean_cl_tow_of_mean_matrices", "final_clu_mix_of_mean_matrices")


def run_records(runs: Sequence[Tuple[str, str]]) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """(records, curves) of finished runs [(label, work directory)], each row with its 'run' label."""
  records, curves = [], []
  for label, workdir in runs:
    records.append(results.read_records(os.path.join(workdir, "metrics.csv")).assign(run=label))
    curves.append(pd.read_csv(os.path.join(workdir, "curves.csv")).assign(run=label))
  return pd.concat(records, ignore_index=True), pd.concat(curves, ignore_index=True)


def comparison(runs: Sequence[Tuple[str, str]], out_prefix: str, title: str, chance: float,
               columns: Sequence[str] = COLUMNS, failed: Optional[Dict[str, str]] = None) -> str:
  """<out_prefix>.md (the table), .csv (the runs' tidy records) and .png; returns the markdown."""
  records, curves = run_records(runs)
  labels: List[str] = [label for label, _ in runs]
  seeds = sorted({int(s) for s in records["seed"] if str(s).isdigit()})
  text = (f"### {title}\n\nMeans over {len(seeds)} seeds with 95% t-intervals; accuracies are test accuracies "
          "(fractions); \"kept\" are the tasks never forgotten. Per-seed mean: the metric of each seed, then the "
          "mean; averaged matrices: the accuracy matrices averaged over seeds, then the metric (the thesis' "
          "tow.py), one value per run.\n\n" + reports.continual_table(records, columns, labels))
  for label, reason in (failed or {}).items():
    text += f"\n{label}: not finished, {reason}\n"
  io.write_text(out_prefix + ".md", text)
  io.write_csv(out_prefix + ".csv", records.to_dict("records"), fields=list(results.RECORD_COLUMNS) + ["run"])
  reports.continual_comparison_figure(records, curves, labels, chance, out_prefix + ".png", title)
  return text
