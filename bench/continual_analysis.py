"""Statistics of a continual benchmark: which runs separate, and how their ordering agrees with
the thesis', read from the runs' tidy records (and, for CL-ToW of averaged matrices, their
matrices).

- `separating_pairs`: for every pair of runs and metric, a paired t-test over seeds where the two
  runs share their learning phase (the same learning algorithm and seeds learn the same models:
  checked on the per-seed ACC after learning), else Welch's t-test; Holm's correction over the
  pairs of each metric. A pair separates when some metric's corrected p < 0.05.
- `correlation`: Spearman's rho between our runs' values and a reference set, its exact p-value
  (every permutation of the n runs: 5,040 for 7, 120 for 5) and a 95% bootstrap interval over
  seeds (the same resampled seeds for every run, so paired runs stay paired; the value of each
  run recomputed from the resampled seeds, for a pooled metric from their averaged matrices).
"""
import itertools
import os
import platform
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from rum_jax import io, results
from rum_jax.continual import sequences
from rum_jax.evaluation.metrics import METRICS
from rum_jax.evaluation.metrics.continual import SequenceOutputs

ALPHA = 0.05
# The metrics pairs of runs are tested on, and the orderings compared with the thesis':
# (our metric, the reference's key, a title).
SEPARATING = ("final_retained_test_accuracy", "final_cl_tow")
ORDERINGS = (("final_retained_test_accuracy", "task0_final", "kept task, final accuracy"),
             ("final_cl_tow_of_mean_matrices", "final_cl_tow_of_mean_matrices", "final CL-ToW (averaged matrices)"))


def per_seed(records: pd.DataFrame, run: str, metric: str) -> np.ndarray:
  """A run's per-seed values of a metric, in seed order."""
  part = records[(records["run"] == run) & (records["metric"] == metric) & (records["seed"].astype(str) != "all")]
  return part.assign(seed=part["seed"].astype(int)).sort_values("seed")["value"].to_numpy(np.float64)


def shares_learning(records: pd.DataFrame, a: str, b: str) -> bool:
  """Whether two runs learned the same models (equal per-seed ACC after learning)."""
  x, y = per_seed(records, a, "acc"), per_seed(records, b, "acc")
  return len(x) == len(y) and len(x) > 0 and np.array_equal(x, y)


def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm's step-down adjusted p-values (Holm 1979), NaN kept as NaN."""
  p = np.asarray(p_values, np.float64)
  out = np.full(len(p), np.nan)
  valid = np.flatnonzero(~np.isnan(p))
  order = valid[np.argsort(p[valid])]
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(order) - rank) * p[i]))
    out[i] = running
  return out


def separating_pairs(records: pd.DataFrame, runs: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
  """One row per pair of runs and metric: the test, the mean difference, p and Holm's p."""
  rows = []
  for metric in metrics:
    part = []
    for a, b in itertools.combinations(runs, 2):
      x, y = per_seed(records, a, metric), per_seed(records, b, metric)
      if len(x) < 2 or len(y) < 2:
        continue
      paired = shares_learning(records, a, b) and len(x) == len(y)
      if np.allclose(x, y):  # identical values: no difference to test
        p = 1.0
      else:
        p = (stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)).pvalue
      part.append({"metric": metric, "a": a, "b": b, "test": "paired t" if paired else "Welch t",
                   "difference": float(np.mean(x) - np.mean(y)), "p": float(p)})
    for row, adjusted in zip(part, holm([r["p"] for r in part])):
      row["p_holm"] = float(adjusted)
      row["separates"] = bool(adjusted < ALPHA)
    rows += part
  return pd.DataFrame(rows)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  return float(stats.spearmanr(x, y)[0])


def exact_p(x: Sequence[float], y: Sequence[float]) -> float:
  """Two-sided p of Spearman's rho against every permutation of y (exact for no ties)."""
  observed = abs(spearman(x, y))
  rhos = [abs(spearman(x, perm)) for perm in itertools.permutations(y)]
  return float(np.mean(np.asarray(rhos) >= observed - 1e-12))


def correlation(values: Callable[[np.ndarray], Dict[str, float]], reference: Mapping[str, float],
                runs: Sequence[str], num_seeds: int, boot: int = 2000, seed: int = 0) -> Dict[str, float]:
  """rho of our values against the reference over `runs`, exact p and a bootstrap interval.

  values(seed_indices) -> {run: our value from those seeds}; reference: {run: its value}.
  """
  runs = [r for r in runs if r in reference]
  ours = values(np.arange(num_seeds))
  theirs = [reference[r] for r in runs]
  rho = spearman([ours[r] for r in runs], theirs)
  rng = np.random.default_rng(seed)
  draws = []
  for _ in range(boot):
    resampled = values(rng.integers(0, num_seeds, num_seeds))
    draws.append(spearman([resampled[r] for r in runs], theirs))
  draws = np.asarray(draws)
  draws = draws[np.isfinite(draws)]
  low, high = np.percentile(draws, [2.5, 97.5]) if len(draws) else (np.nan, np.nan)
  return {"n": len(runs), "rho": rho, "p_exact": exact_p([ours[r] for r in runs], theirs),
          "low": float(low), "high": float(high), "order": " > ".join(sorted(runs, key=lambda r: -ours[r])),
          "reference_order": " > ".join(sorted(runs, key=lambda r: -reference[r]))}


def pair_summary(pairs: pd.DataFrame, learning: Mapping[str, str]) -> Tuple[List[Tuple[str, str]], int]:
  """(distinct pairs that separate on some metric, how many of them differ in learning algorithm)."""
  if pairs.empty:
    return [], 0
  found = sorted({(r.a, r.b) for r in pairs.itertuples() if r.separates})
  return found, sum(learning[a] != learning[b] for a, b in found)


def pooled_tow(workdir: str, num_tasks: int):
  """seed indices -> final CL-ToW of those seeds' averaged matrices (bootstrap of the pooled metric)."""
  m = np.load(os.path.join(workdir, "matrices.npz"))
  info = io.read_json(os.path.join(workdir, "metrics.json"))
  timeline = sequences.timeline(sequences.make_sequence("A4", num_tasks))
  def value(idx):
    outputs = SequenceOutputs({k: m[k][idx] for k in ("train_accuracy", "test_accuracy")}, timeline, info["chance"])
    return float(outputs.value("final_cl_tow_of_mean_matrices")[0])
  return value


def analyse(records: pd.DataFrame, labels, workdirs, learning, reference, num_tasks: int) -> str:
  """The separating pairs and the correlations with both reference sets, as markdown.

  records: the runs' tidy records with a 'run' column; workdirs / learning: run -> its work
  directory / learning algorithm; reference: set name -> {run: {key: value}}.
  """
  pairs = separating_pairs(records, labels, SEPARATING)
  found, across = pair_summary(pairs, learning)
  text = (f"\nPairs of runs that separate (Holm-corrected p < 0.05 over the {len(labels) * (len(labels) - 1) // 2} "
          f"pairs of a metric; paired t-tests where two runs share their learning phase, Welch's otherwise) on "
          f"{' or '.join(METRICS.get(m).display for m in SEPARATING)}: {len(found)} distinct pairs, {across} of them "
          f"a GEM-learned run against an A-GEM-learned one (which differ before any forgetting).\n\n")
  shown = pairs[pairs["separates"]] if not pairs.empty else pairs
  text += results.markdown_table(
      ["metric", "run a", "run b", "test", "a - b", "p", "p (Holm)"],
      [[METRICS.get(r.metric).display, r.a, r.b, r.test, f"{r.difference:+.3f}", f"{r.p:.2g}", f"{r.p_holm:.2g}"]
       for r in shown.itertuples()]) if len(shown) else "(none)\n"
  num_seeds = len(per_seed(records, labels[0], "acc"))
  gem = [label for label in labels if learning[label] == "gem"]
  rows = []
  for ours, theirs, title in ORDERINGS:
    if METRICS.get(ours).pooled:
      makers = {label: pooled_tow(workdirs[label], num_tasks) for label in labels}
      values = lambda idx, makers=makers: {label: makers[label](idx) for label in labels}  # noqa: E731
    else:
      columns = {label: per_seed(records, label, ours) for label in labels}
      values = lambda idx, columns=columns: {label: float(np.mean(columns[label][idx])) for label in labels}  # noqa: E731
    for set_name, ref in reference.items():
      for subset, members in (("all seven", labels), ("GEM-learned", gem)):
        c = correlation(values, {k: v[theirs] for k, v in ref.items()}, members, num_seeds)
        rows.append([title, set_name, subset, c["n"], f"{c['rho']:.2f}", f"{c['p_exact']:.3f}",
                     f"[{c['low']:.2f}, {c['high']:.2f}]", c["order"], c["reference_order"]])
  text += ("\nOrdering against the thesis' Split CIFAR-100 A4 runs, both reference sets "
           "(results/continual/thesis_reference.md: its final run folders, and the values it reports, "
           "ToW/ToW_scores_*.csv of commit e08e557), Spearman's rho with the exact p-value (every "
           "permutation of the runs) and a 95% bootstrap interval over seeds (2,000 resamples):\n\n"
           + results.markdown_table(["ours", "reference set", "runs", "n", "rho", "p (exact)", "95% bootstrap",
                                     "ours, best first", "thesis, best first"], rows))
  return text


def cpu_name() -> str:
  """The CPU's model name (/proc/cpuinfo), else what platform says."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def kept_at_forgetting(traces: pd.DataFrame, labels: Sequence[str], levels: Sequence[float]) -> str:
  """From the runs' trace.csv rows (with a 'run' column): for each forgetting level L, the kept
  tasks' held-out accuracy at the first pass where the forgotten task's held-out accuracy was
  <= L, averaged over a seed's forget requests that got there (mean and 95% interval over
  seeds), and the share of requests that got there: the runs compared at equal forgetting
  whatever their stop rule did."""
  header, rows = ["run"], []
  for level in levels:
    header += [f"kept (held out) at forgotten <= {level:g}", f"requests reaching {level:g}"]
  for label in labels:
    part = traces[traces["run"] == label]
    row = [label]
    for level in levels:
      kept, reached = [], []
      for _, seed in part.groupby("seed"):
        values, hits = [], 0
        for _, request in seed.groupby("step"):
          below = request[request["forgotten_held_out"] <= level + 1e-6].sort_values("pass")  # float32 values
          if len(below):
            values.append(below["kept_held_out"].iloc[0])
            hits += 1
        kept.append(np.mean(values) if values else np.nan)
        reached.append(hits / seed["step"].nunique())
      kept = np.asarray(kept)
      kept = kept[np.isfinite(kept)]
      row += [results.cell(results.summarize(kept), scale=1.0, digits=3)
              + (f" ({len(kept)} seeds)" if len(kept) < part["seed"].nunique() else "") if len(kept) else "n/a",
              results.cell(results.summarize(reached), scale=1.0, digits=2)]
    rows.append(row)
  return results.markdown_table(header, rows)
