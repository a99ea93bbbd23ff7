"""Results: records of runs, means over seeds with t intervals, markdown tables and histories.

A record is the per-seed values of every metric of a run with the run's settings, as tidy
rows: one per run x seed x metric (`record_rows`, columns `RECORD_COLUMNS`), written as CSV
beside the run's JSON. Means and intervals are computed from records, never stored as rows;
`collect(paths)` reads the records of many work directories into one pandas DataFrame. Tables
(`markdown_table`, `cell`) and training curves (`history_rows`, `history_figure`) are made the
same way by every command.

Means over seeds come with Student-t confidence intervals, as RUM reports its results, and
one function computes them: `summarize(values)` -> {mean, ci95, n}; `summarize_columns` (a
run's metrics) and `summary_frame` (groups of records) apply it. For values v_1..v_n (one per
seed) the interval is mean +- h with

  h = t_{0.975, n-1} * s / sqrt(n),   s = sample std (ddof = 1),

the two-sided 95% t interval of the mean (RUM's `analysis.py` computes it with
`scipy.stats.t.ppf(0.975, n - 1) * scipy.stats.sem(...)`). With one seed there is no
spread to estimate: h is NaN, not 0, so a single run is never mistaken for an exact one.
"""
import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from rum_jax import provenance

# What a record's row says about its run (data set, model, forget set, method and settings),
# then which value it is (seed, metric, value), then where it came from.
RUN_COLUMNS = ("data", "model", "forget_kind", "forget_level", "forget_size", "forget_split", "method",
               "settings")
RECORD_COLUMNS = RUN_COLUMNS + ("seed", "metric", "value", "forget_digest", "version", "original_digest")
# What makes two rows one run: the recipe's columns, the forget set and the original models.
RUN_KEY = RUN_COLUMNS + ("forget_digest", "original_digest")
# The comparison rows every work directory of one forget set and one original shares.
REFERENCE_METHODS = ("original", "retrain")

CONFIDENCE = 0.95  # of every interval rum-jax reports (the 'ci95' of a summary)


def summarize(values: Any) -> Dict[str, Any]:
  """Mean, 95% t-interval half width and number of values over the first axis (the seeds).

  The one place rum-jax computes a mean with its interval: every table, figure and summary is
  built on it (`summarize_columns`, `summary_frame`).

  Args:
    values: array-like [n] or [n, ...]; extra axes are summarised elementwise (e.g. an
      accuracy matrix per seed).

  Returns:
    {"mean", "ci95", "n"}: mean and half width h (module docstring) as floats for 1-D input,
    arrays of shape values.shape[1:] otherwise; n the number of values. h is NaN when n == 1;
    a NaN among the values makes its mean and h NaN (a diverged seed is never averaged away).

  Raises:
    ValueError: no value along the first axis.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.ndim == 0 or values.shape[0] == 0:
    raise ValueError(f"summarize needs at least one value along the seed axis; got shape {values.shape}")
  n = values.shape[0]
  mean = values.mean(axis=0)
  if n == 1:
    half = np.full_like(mean, np.nan)
  else:
    half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * scipy_stats.sem(values, axis=0, ddof=1)
  if values.ndim == 1:
    return {"mean": float(mean), "ci95": float(half), "n": n}
  return {"mean": mean, "ci95": half, "n": n}


def summarize_columns(columns: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
  """{metric: per-seed values} -> {metric: {"mean", "ci95", "n", "values"}} (`summarize` of
  each), JSON-serialisable: plain floats, or nested lists for per-seed arrays.

  Raises:
    ValueError: the metrics have different numbers of seeds.
  """
  arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
  lengths = {len(v) if v.ndim else 0 for v in arrays.values()}
  if len(lengths) > 1:
    raise ValueError(f"every metric needs one value per seed; got lengths {sorted(lengths)}")
  out = {}
  for k, v in arrays.items():
    stats = summarize(v)
    out[k] = {"mean": np.asarray(stats["mean"]).tolist(), "ci95": np.asarray(stats["ci95"]).tolist(),
              "n": stats["n"], "values": v.tolist()}
  return out


def run_columns(config: Mapping[str, Any], method: str, settings: Optional[Mapping[str, Any]] = None,
                forget_digest: str = "", original_digest: str = "") -> Dict[str, Any]:
  """The run columns of a record from a config (a ConfigDict or its JSON dict); `forget_digest`
  and `original_digest` name the forget set and the original models' predictions (`RUN_KEY`)."""
  def get(section, key, default=""):
    part = config.get(section) or {}
    return part.get(key, default) if hasattr(part, "get") else default
  kind = get("forget", "kind")
  return {"data": get("data", "name"), "model": get("model", "name"), "forget_kind": kind,
          # A level means something only for the kinds that rank by a score.
          "forget_level": get("forget", "level") if kind in ("memorization", "proxy") else "",
          "forget_size": get("forget", "size"), "forget_split": get("forget", "split", "report"),
          "method": method, "settings": json.dumps(dict(settings or {}), sort_keys=True, default=str),
          "forget_digest": forget_digest, "original_digest": original_digest, "version": provenance.VERSION}


def record_rows(values: Mapping[str, Sequence[float]], **run: Any) -> List[Dict[str, Any]]:
  """Tidy rows of one run: one per seed x metric, {**run, seed, metric, value}.

  Args:
    values: metric name -> per-seed values [S].
    run: the run's columns (`run_columns`), repeated in every row.
  """
  rows = []
  for metric, per_seed in values.items():
    for s, v in enumerate(np.asarray(per_seed, dtype=np.float64).ravel()):
      rows.append({**run, "seed": s, "metric": metric, "value": float(v)})
  return rows


def summary_frame(records: Union[pd.DataFrame, Sequence[Mapping[str, Any]]],
                  by: Sequence[str] = ("method",)) -> pd.DataFrame:
  """`summarize` of every metric's values per group of tidy rows.

  Args:
    records: tidy rows (`record_rows`) or their DataFrame.
    by: the columns that make a group besides 'metric' (e.g. method; data and forget set too
      when records of several work directories are mixed).

  Returns:
    A DataFrame with columns by + ['metric', 'mean', 'ci95', 'n'], groups in first-seen order.
  """
  frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
  keys = list(by) + ["metric"]
  out = []
  if frame.empty:
    return pd.DataFrame(out, columns=keys + ["mean", "ci95", "n"])
  for key, group in frame.groupby(keys, sort=False, dropna=False):
    out.append({**dict(zip(keys, key)), **summarize(group["value"].to_numpy(np.float64))})
  return pd.DataFrame(out, columns=keys + ["mean", "ci95", "n"])


def read_records(path: str) -> pd.DataFrame:
  """One tidy record file (CSV) as a DataFrame; settings stay JSON strings. Columns that older
  records lack (e.g. original_digest) are empty strings."""
  text_columns = [c for c in RECORD_COLUMNS if c not in ("forget_size", "seed", "value")]
  frame = pd.read_csv(path, keep_default_na=False, dtype={c: str for c in text_columns})
  missing = [c for c in ("method", "seed", "metric", "value") if c not in frame.columns]
  if missing:
    raise ValueError(f"{path} is no record file of rum-jax (no column {missing}); records are the tidy "
                     f"files of work directories")
  for column in RECORD_COLUMNS:
    if column not in frame.columns:
      frame[column] = ""
  frame["value"] = pd.to_numeric(frame["value"])  # NaN where a value is undefined
  return frame


def collect(paths: Iterable[str], record_files: Sequence[str]) -> pd.DataFrame:
  """The records of every work directory under `paths`, as one DataFrame.

  Each path is a work directory (or a folder of them, or a record file): every file named in
  `record_files` (`runfolder.layout.RECORD_FILES`) below it is read and a `source` column
  names the file.

  Raises:
    FileNotFoundError: a path holds no record file (the message names the files looked for).
    ValueError: one record file is reached through two paths (named twice, or a folder and one
      inside it): its seeds would count twice.
  """
  frames, reached = [], {}
  for path in paths:
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, names in os.walk(path) for f in names if f in record_files)
    if not files:
      raise FileNotFoundError(f"{path} holds no records ({' or '.join(record_files)}): run unlearn.py or "
                              f"evaluate.py there first")
    for f in files:
      real = os.path.realpath(f)
      if real in reached:
        raise ValueError(f"{f} is named twice (through {reached[real]} and {path}): its runs would count twice; "
                         f"name each work directory once")
      reached[real] = path
      frame = read_records(f)
      frame["source"] = os.path.abspath(f)
      frames.append(frame)
  return pd.concat(frames, ignore_index=True)


def source_workdir(source: str) -> str:
  """A record file's work directory, relative to the current directory when inside it."""
  folder = os.path.dirname(source)
  relative = os.path.relpath(folder)
  return folder if relative.startswith("..") else relative


def _describe_run(row: Mapping[str, Any]) -> str:
  settings = "" if row["settings"] in ("", "{}") else f" with settings {row['settings']}"
  return (f"{row['method']}{settings}, forget set {row['forget_digest'] or 'unrecorded'}, original "
          f"{row['original_digest'] or 'unrecorded'}")


def identify_runs(records: pd.DataFrame, pool: bool = False) -> Tuple[pd.DataFrame, Dict[str, List[str]]]:
  """Each row's run: records from many work directories, with a `run` column (a short digest of
  `RUN_KEY`: the recipe, the forget set, the original models), so no summary mixes two runs.

  One run found in several record files (`source`):
    - the original and the retrain reference with identical values (work directories that share
      an original and a forget set): counted once;
    - otherwise refused, unless `pool`: identical values are a copy (counted once when pooled),
      different values are reruns of one recipe (their seeds pooled when `pool`).

  Returns:
    (the records that count, with `run`; {run: the record files it comes from}).

  Raises:
    ValueError: a run in several record files without `pool` (the message names them).
  """
  frame = records.reset_index(drop=True)  # positions, which `keep` indexes
  key = frame[list(RUN_KEY)].astype(str).agg("\x1f".join, axis=1)
  frame["run"] = [hashlib.sha256(k.encode()).hexdigest()[:8] for k in key]
  keep = np.ones(len(frame), bool)
  sources: Dict[str, List[str]] = {}
  for (run, metric), group in frame.groupby(["run", "metric"], sort=False):
    files = list(dict.fromkeys(group["source"]))
    sources.setdefault(run, [])
    sources[run] += [f for f in files if f not in sources[run]]
    if len(files) < 2:
      continue
    values = [group[group["source"] == f].sort_values("seed")["value"].to_numpy() for f in files]
    identical = all(v.shape == values[0].shape and np.array_equal(v, values[0], equal_nan=True) for v in values)
    first = group.iloc[0]
    where = " and ".join(source_workdir(f) for f in files[:2])
    if identical and (pool or first["method"] in REFERENCE_METHODS):
      keep[group.index[group["source"] != files[0]]] = False  # one copy counts
    elif identical:
      raise ValueError(f"{where} hold the same run ({_describe_run(first)}) with identical values: it is named "
                       f"twice (a copy?); name it once")
    elif not pool:
      raise ValueError(f"{where} hold two runs of one recipe ({_describe_run(first)}) with different values: "
                       f"name one of them, or pass --pool to pool their seeds into one row (the table says so)")
  return frame[keep], sources


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


def history_figure(history: Mapping[str, list], title: str) -> Any:
  """Train loss and accuracy per epoch, one line per seed: a matplotlib figure."""
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
  return fig
