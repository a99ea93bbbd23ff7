"""Results: means over seeds with t intervals, result rows, markdown tables and histories.

One summarizer (`summarize`) and one way to turn per-seed values into rows (`seed_rows`),
tables (`markdown_table`, `cell`) and training curves (`history_rows`, `plot_history`), so
every command writes its metrics.json / metrics.csv / *.md the same way.

Means over seeds come with Student-t confidence intervals, as RUM reports its results. For
values v_1..v_n (one per seed) the interval is mean +- h with

  h = t_{(1 + confidence)/2, n-1} * s / sqrt(n),   s = sample std (ddof = 1),

the two-sided t interval of the mean (RUM's `analysis.py` computes it with
`scipy.stats.t.ppf(0.975, n - 1) * scipy.stats.sem(...)`). With one seed there is no
spread to estimate: h is NaN, not 0, so a single run is never mistaken for an exact one.
"""
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import stats as scipy_stats

ArrayOrFloat = Union[float, np.ndarray]


def mean_ci(values: Any, confidence: float = 0.95) -> Tuple[ArrayOrFloat, ArrayOrFloat]:
  """(mean, half width) of the t confidence interval over the first axis (the seeds).

  Args:
    values: array-like [n_seeds] or [n_seeds, ...]; extra axes are summarised elementwise.
    confidence: two-sided level in (0, 1).

  Returns:
    (mean, h): floats for 1-D input, arrays of shape values.shape[1:] otherwise; h is NaN
    when n_seeds == 1.
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1); got {confidence}")
  values = np.asarray(values, dtype=np.float64)
  if values.ndim == 0 or values.shape[0] == 0:
    raise ValueError(f"mean_ci needs at least one value along the seed axis; got shape {values.shape}")
  n = values.shape[0]
  mean = values.mean(axis=0)
  if n == 1:
    half = np.full_like(mean, np.nan)
  else:
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * scipy_stats.sem(values, axis=0, ddof=1)
  if values.ndim == 1:
    return float(mean), float(half)
  return mean, half


def _is_number(x: Any) -> bool:
  return isinstance(x, (numbers.Number, np.number)) and not isinstance(x, complex)


def summarize(per_seed: Sequence[Mapping[str, Any]]) -> dict:
  """Per-seed metric dicts -> the same nesting with {'mean', 'ci95', 'values'} at each leaf.

  Leaves may be numbers or equal-shape numeric arrays/lists (e.g. an accuracy matrix), which
  are summarised elementwise; 'mean' and 'ci95' (the 95% half width of `mean_ci`) then are
  nested lists. Every seed must have the same keys.

  Args:
    per_seed: one (possibly nested) dict of metrics per seed.

  Returns:
    A dict mirroring the input's nesting, JSON-serialisable (plain floats and lists).
  """
  if not per_seed:
    raise ValueError("summarize needs at least one per-seed dict")
  return _summarize(list(per_seed), path="")


def _summarize(nodes: list, path: str) -> Any:
  where = path or "the top level"
  if all(isinstance(node, Mapping) for node in nodes):
    keys = list(nodes[0])
    for i, node in enumerate(nodes[1:], start=1):
      if set(node) != set(keys):
        raise ValueError(f"seed {i} has keys {sorted(node)} at {where}, seed 0 has {sorted(keys)}")
    return {k: _summarize([node[k] for node in nodes], f"{path}.{k}" if path else str(k))
            for k in keys}
  if any(isinstance(node, Mapping) for node in nodes):
    raise ValueError(f"{where} is a dict for some seeds and not for others")
  if all(_is_number(node) for node in nodes):
    mean, half = mean_ci(nodes)
    return {"mean": mean, "ci95": half, "values": [float(v) for v in nodes]}
  try:
    arrays = np.asarray(nodes)
  except ValueError:  # ragged: shapes differ between seeds
    arrays = None
  if arrays is None or arrays.dtype.kind not in "biuf":
    raise ValueError(f"{where} must hold numbers or equal-shape numeric arrays in every seed; "
                     f"got {[type(node).__name__ for node in nodes]}")
  mean, half = mean_ci(arrays)
  return {"mean": mean.tolist(), "ci95": half.tolist(), "values": arrays.astype(np.float64).tolist()}


def summarize_columns(columns: Mapping[str, Any]) -> dict:
  """{metric: per-seed values} -> {metric: {'mean', 'ci95', 'values'}} (`summarize` of the rows)."""
  return summarize(columns_to_seeds(columns))


def columns_to_seeds(columns: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """{metric: [v_seed0, v_seed1, ...]} -> [{metric: v_seed0}, {metric: v_seed1}, ...]."""
  arrays = {k: np.asarray(v) for k, v in columns.items()}
  lengths = {len(v) for v in arrays.values()}
  if len(lengths) != 1:
    raise ValueError(f"every metric needs one value per seed; got lengths {sorted(lengths)}")
  n = lengths.pop()
  return [{k: (v[s].item() if v[s].ndim == 0 else v[s].tolist()) for k, v in arrays.items()} for s in range(n)]


def seed_rows(per_seed: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
              **fixed: Any) -> List[Dict[str, Any]]:
  """CSV rows: one per seed ({'seed': s, ...}), then rows 'mean' and 'ci95' of the scalars.

  `fixed` columns (e.g. model='retrain') come first in every row; per-seed values that are
  lists (curves, matrices) are left out of the rows.
  """
  scalars = [k for k, v in per_seed[0].items() if not isinstance(v, (list, tuple, np.ndarray, Mapping))]
  rows = [{**fixed, "seed": s, **{k: values[k] for k in scalars}} for s, values in enumerate(per_seed)]
  rows += [{**fixed, "seed": stat, **{k: summary[k][stat] for k in scalars}} for stat in ("mean", "ci95")]
  return rows


def half_width(leaf: Mapping[str, Any]) -> float:
  """The 95% half width of a summary leaf; NaN when undefined (one seed: null in the JSON files)."""
  return np.nan if leaf["ci95"] is None else float(leaf["ci95"])


def cell(leaf: Mapping[str, Any], scale: float = 100.0, digits: int = 1) -> str:
  """'mean ± ci95' of a summary leaf, scaled (percent by default); '±' dropped for one seed."""
  mean, half = leaf["mean"] * scale, half_width(leaf) * scale
  return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def signed(mean: float, half: float, scale: float = 100.0) -> str:
  """A difference as '+1.2 ± 3.4' (scaled, percent points by default)."""
  return f"{scale * mean:+.1f}" + ("" if np.isnan(half) else f" ± {scale * half:.1f}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table (cells are written with str())."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def history_rows(history: Mapping[str, list]) -> List[Dict[str, Any]]:
  """A training history (metric -> per epoch -> per seed) as long CSV rows: epoch, seed, metric, value."""
  rows = []
  for k, epochs in history.items():
    for e, per_seed in enumerate(epochs):
      for s, v in enumerate(per_seed):
        rows.append({"epoch": e + 1, "seed": s, "metric": k, "value": v})
  return rows


def plot_history(history: Mapping[str, list], path: str, title: str) -> None:
  """Train loss and accuracy per epoch, one line per seed, as a PNG."""
  from rum_jax import io
  plt = io.pyplot()
  keys = [k for k in ("loss", "accuracy") if k in history]
  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
  for ax, k in zip(axes[0], keys):
    values = np.asarray(history[k])  # [epochs, seeds]
    for s in range(values.shape[1]):
      ax.plot(np.arange(1, len(values) + 1), values[:, s], label=f"seed {s}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"train {k}")
    ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  io.save_figure(fig, path)
