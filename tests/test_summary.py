"""The one summary of values over seeds (`results.summarize`: mean, 95% t half width, n), the
summaries built on it, and that no other module computes a t interval of its own."""
import ast
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rum_jax import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_summarize_is_scipys_95_percent_t_interval():
  values = np.array([0.61, 0.64, 0.58, 0.66, 0.63])
  out = results.summarize(values)
  lo, hi = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
  assert set(out) == {"mean", "ci95", "n"} and out["n"] == 5
  np.testing.assert_allclose(out["mean"], (lo + hi) / 2, rtol=1e-14)
  np.testing.assert_allclose(out["ci95"], (hi - lo) / 2, rtol=1e-12)
  # By hand: t_{0.975, 4} = 2.7764451, s / sqrt(5) with the sample std.
  np.testing.assert_allclose(out["ci95"], 2.7764451 * np.std(values, ddof=1) / math.sqrt(5), rtol=1e-6)
  assert isinstance(out["mean"], float) and isinstance(out["ci95"], float)


def test_summarize_one_value_has_no_interval_and_nan_is_not_averaged_away():
  one = results.summarize([0.7])
  assert one["mean"] == 0.7 and math.isnan(one["ci95"]) and one["n"] == 1
  nan = results.summarize([0.5, np.nan, 0.7])
  assert math.isnan(nan["mean"]) and math.isnan(nan["ci95"]) and nan["n"] == 3
  two = results.summarize([1.0, 1.0])  # no spread: an interval of width 0, not NaN
  assert two == {"mean": 1.0, "ci95": 0.0, "n": 2}
  for empty in ([], 0.5):
    with pytest.raises(ValueError, match="at least one value"):
      results.summarize(empty)


def test_summarize_is_elementwise_over_extra_axes():
  values = np.random.default_rng(8).normal(size=(4, 3, 2))  # e.g. an accuracy matrix per seed
  out = results.summarize(values)
  assert out["mean"].shape == out["ci95"].shape == (3, 2) and out["n"] == 4
  for i in range(3):
    for j in range(2):
      lo, hi = scipy_stats.t.interval(0.95, 3, loc=values[:, i, j].mean(), scale=scipy_stats.sem(values[:, i, j]))
      np.testing.assert_allclose([out["mean"][i, j], out["ci95"][i, j]], [(lo + hi) / 2, (hi - lo) / 2])
  assert np.isnan(results.summarize(values[:1])["ci95"]).all()


def test_summarize_columns_summarizes_each_metric_as_json():
  per_seed = {"forget_accuracy": np.array([0.2, 0.4, 0.3], np.float32), "R": [[[1.0, 0.0]], [[0.6, 0.8]], [[0.8, 1.0]]]}
  out = results.summarize_columns(per_seed)
  forget = out["forget_accuracy"]
  assert forget["values"] == [float(v) for v in per_seed["forget_accuracy"]] and forget["n"] == 3
  assert forget["mean"] == results.summarize(per_seed["forget_accuracy"])["mean"]
  assert forget["ci95"] == results.summarize(per_seed["forget_accuracy"])["ci95"]
  np.testing.assert_allclose(out["R"]["mean"], [[0.8, 0.6]])
  np.testing.assert_allclose(out["R"]["ci95"][0][0], scipy_stats.t.ppf(0.975, 2) * scipy_stats.sem([1.0, 0.6, 0.8]))
  json.dumps(out)  # plain floats and lists
  with pytest.raises(ValueError, match="one value per seed"):
    results.summarize_columns({"a": [1.0, 2.0], "b": [1.0]})


def test_summary_frame_is_summarize_per_group():
  rows = (results.record_rows({"tow": [0.5, 0.7, 0.9], "forget_accuracy": [1.0, 0.8, 0.9]}, method="x")
          + results.record_rows({"tow": [0.2]}, method="y"))
  summary = results.summary_frame(rows)
  assert list(summary.columns) == ["method", "metric", "mean", "ci95", "n"]
  groups = pd.DataFrame(rows).groupby(["method", "metric"], sort=False)["value"]
  np.testing.assert_allclose(summary["mean"], groups.mean())
  np.testing.assert_allclose(summary["ci95"], scipy_stats.t.ppf(0.975, groups.count() - 1) * groups.sem())
  assert list(summary["n"]) == list(groups.count())
  assert np.isnan(summary["ci95"].iloc[-1])  # one seed: no interval


# The only module that computes a t interval (or a normal one) of means.
SUMMARY_MODULE = os.path.join("rum_jax", "results.py")


def _python_files():
  for top in ("rum_jax", "bench", "configs"):
    for directory, _, files in os.walk(os.path.join(ROOT, top)):
      yield from (os.path.join(directory, f) for f in files if f.endswith(".py"))
  yield from (os.path.join(ROOT, f) for f in os.listdir(ROOT) if f.endswith(".py"))


def interval_code(source: str):
  """What in `source` computes an interval of a mean by itself: the t distribution's quantiles
  (`t.ppf`, `t.interval`, `t.isf`, importing scipy.stats' `t`), standard errors (`sem`, a
  sample std `ddof=1`) or the normal 1.96. Tests of a difference (t-tests, Holm) are not."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if (isinstance(node, ast.Attribute) and node.attr in ("ppf", "interval", "isf")
            and isinstance(node.value, (ast.Name, ast.Attribute))
            and (node.value.id if isinstance(node.value, ast.Name) else node.value.attr) == "t"):
      found.append(f"line {node.lineno}: t.{node.attr}")
    elif isinstance(node, ast.Attribute) and node.attr == "sem":
      found.append(f"line {node.lineno}: .sem")
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scipy.stats") and any(
        a.name in ("t", "sem") for a in node.names):
      found.append(f"line {node.lineno}: from {node.module} import t/sem")
    elif isinstance(node, ast.keyword) and node.arg == "ddof" and getattr(node.value, "value", None) == 1:
      found.append(f"line {node.value.lineno}: ddof=1")
    elif isinstance(node, ast.Constant) and node.value == 1.96:
      found.append(f"line {node.lineno}: 1.96")
  return found


def test_the_check_finds_home_made_intervals():
  assert interval_code("from scipy import stats\nh = stats.t.ppf(0.975, n - 1) * s") == ["line 2: t.ppf"]
  assert interval_code("import scipy.stats\nscipy.stats.t.interval(0.95, 3)")
  assert interval_code("from scipy.stats import t, sem")
  assert interval_code("h = 1.96 * x.std(ddof=1) / n ** 0.5")
  assert interval_code("frame.groupby('m')['value'].sem()")
  assert not interval_code("from scipy import stats\np = stats.ttest_rel(a, b).pvalue\nq = stats.ttest_1samp(d, 0)")


def test_no_module_but_results_computes_an_interval():
  offenders = {}
  for path in _python_files():
    rel = os.path.relpath(path, ROOT)
    if rel == SUMMARY_MODULE:
      assert interval_code(open(path).read()), "the check no longer sees the one summary function"
      continue
    found = interval_code(open(path).read())
    if found:
      offenders[rel] = found
  assert not offenders, f"means and 95% intervals come from rum_jax.results.summarize only; found {offenders}"
