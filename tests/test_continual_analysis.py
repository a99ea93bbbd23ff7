"""The continual benchmark's statistics (bench/continual_analysis.py) against closed forms."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench import continual_analysis as analysis


def test_exact_spearman_p_counts_the_permutations_at_least_as_extreme():
  # rho = 1 over 5 runs: only the identity and the reversal reach |rho| = 1 among 120 orders.
  assert analysis.exact_p([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(2 / 120)
  x, y = [3, 1, 4, 5, 2, 7, 6], [2, 1, 5, 3, 4, 7, 6]
  rho = stats.spearmanr(x, y)[0]
  import itertools
  count = sum(abs(stats.spearmanr(x, p)[0]) >= abs(rho) - 1e-12 for p in itertools.permutations(y))
  assert analysis.exact_p(x, y) == pytest.approx(count / 5040)


def test_holm_adjusts_step_down_and_keeps_order():
  adjusted = analysis.holm([0.01, 0.04, 0.03, np.nan])
  # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
  np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
  assert np.isnan(adjusted[3])


def test_pairs_are_paired_exactly_when_runs_share_their_learning():
  rng = np.random.default_rng(0)
  acc = rng.uniform(0.6, 0.7, 6)
  rows = []
  for run, shift, learned in (("a", 0.0, acc), ("b", 0.05, acc), ("c", 0.0, acc + 0.1)):
    kept = acc + shift + rng.normal(0, 0.01, 6)
    rows += [{"run": run, "seed": s, "metric": "acc", "value": learned[s]} for s in range(6)]
    rows += [{"run": run, "seed": s, "metric": "kept", "value": kept[s]} for s in range(6)]
  records = pd.DataFrame(rows)
  pairs = analysis.separating_pairs(records, ["a", "b", "c"], ["kept"]).set_index(["a", "b"])
  assert pairs.loc[("a", "b"), "test"] == "paired t" and pairs.loc[("a", "c"), "test"] == "Welch t"
  x, y = analysis.per_seed(records, "a", "kept"), analysis.per_seed(records, "b", "kept")
  assert pairs.loc[("a", "b"), "p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
  assert bool(pairs.loc[("a", "b"), "separates"])


def test_kept_at_forgetting_takes_the_first_pass_at_or_below_the_level():
  trace = pd.DataFrame({"run": "r", "step": 1, "seed": 0, "pass": [0, 1, 2, 3],
                        "forgotten_held_out": [0.9, 0.4, 0.15000000596, 0.1], "kept_held_out": [0.8, 0.7, 0.6, 0.5]})
  text = analysis.kept_at_forgetting(trace, ["r"], (0.15, 0.05))
  assert "| r | 0.600 | 1.00 | n/a | 0.00 |" in text  # float32 0.15 counts as 0.15
