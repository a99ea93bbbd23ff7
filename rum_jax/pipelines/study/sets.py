"""The study's forget sets: how well each level's reported and validation sets match, and
whether a data set's levels differ enough to test a memorization claim.

Every seed draws its reported and validation sets at random from the same band of the ranking
(`unlearning.forget_kinds.matched_sets`), so the two have one score distribution. `set_stats`
measures it per level and seed; `check_matched` refuses a level whose two sets differ by more
than `config.study.match_tolerance` in mean score (the numbers in the message), since a setting
tuned on a validation set unlike the reported one does not say what it would do there (on
digits' old validation sets, every one of memorization about 0, doing nothing was optimal).
`criterion` decides whether the levels really differ (high mean >= high_min, mid mean within
mid_range, low mean <= low_max, all in config.study.criterion): only then is "harder when more
memorized" tested on the data set.
"""
from typing import Any, Dict, List, Sequence

import ml_collections
import numpy as np

from rum_jax.unlearning.forget_kinds import matched_sets
from rum_jax.unlearning.forget_sets import MEMORIZATION_CENTER

QUANTILES = (0.25, 0.5, 0.75)


def _describe(values: np.ndarray) -> Dict[str, float]:
  q = np.quantile(values, QUANTILES)
  return {"mean": float(values.mean()), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
          "min": float(values.min()), "max": float(values.max())}


def set_stats(scores: np.ndarray, size: int, levels: Sequence[str], seed: int, num_seeds: int,
              center: float = MEMORIZATION_CENTER) -> Dict[str, Dict[str, Any]]:
  """Per level: every seed's reported and validation sets' score statistics, their means over
  seeds, the largest gap in mean score between a seed's two sets, and the overlaps.

  Returns:
    level -> {"report", "validation": mean over seeds of `_describe` of each seed's set,
    "per_seed": [{"report", "validation"}], "max_mean_gap", "overlap" (examples a seed's two
    sets share, summed over seeds: 0 by construction), "distinct_across_seeds" (whether seed
    0's reported set differs from every other seed's)}.
  """
  out = {}
  for level in levels:
    pairs = matched_sets(np.asarray(scores, np.float64), size, level, center, seed, num_seeds)
    per_seed = [{"report": _describe(scores[r]), "validation": _describe(scores[v])} for r, v in pairs]
    mean_of = lambda split: {k: float(np.mean([p[split][k] for p in per_seed])) for k in per_seed[0][split]}
    out[level] = {"report": mean_of("report"), "validation": mean_of("validation"), "per_seed": per_seed,
                  "max_mean_gap": float(max(abs(p["report"]["mean"] - p["validation"]["mean"]) for p in per_seed)),
                  "overlap": int(sum(len(np.intersect1d(r, v)) for r, v in pairs)),
                  "distinct_across_seeds": bool(all(not np.array_equal(pairs[0][0], r) for r, _ in pairs[1:]))}
  return out


def check_matched(stats: Dict[str, Dict[str, Any]], tolerance: float) -> None:
  """Raises ValueError naming every level whose reported and validation sets differ by more than
  `tolerance` in mean score for some seed (or overlap), with both sets' numbers."""
  bad = []
  for level, st in stats.items():
    if st["max_mean_gap"] > tolerance or st["overlap"]:
      r, v = st["report"], st["validation"]
      bad.append(f"{level}: reported mean {r['mean']:.3f} (quartiles {r['q25']:.3f}/{r['median']:.3f}/"
                 f"{r['q75']:.3f}), validation mean {v['mean']:.3f} ({v['q25']:.3f}/{v['median']:.3f}/"
                 f"{v['q75']:.3f}), largest gap of one seed {st['max_mean_gap']:.3f}, shared examples "
                 f"{st['overlap']}")
  if bad:
    raise ValueError(f"the validation sets do not match the reported ones within config.study.match_tolerance="
                     f"{tolerance:g}: " + "; ".join(bad) + ". Use config.forget.draw='band' (matched sets), "
                     "a smaller config.forget.size or a larger tolerance")


def criterion(stats: Dict[str, Dict[str, Any]], rule: ml_collections.ConfigDict) -> Dict[str, Any]:
  """Whether the levels differ enough to test a memorization claim (module docstring).

  Returns:
    {"met": bool, "checks": [{"level", "mean", "rule", "met"}]} over the levels in `stats`.
  """
  rules = {"high": (lambda m: m >= rule.high_min, f">= {rule.high_min:g}"),
           "mid": (lambda m: rule.mid_range[0] <= m <= rule.mid_range[1],
                   f"in [{rule.mid_range[0]:g}, {rule.mid_range[1]:g}]"),
           "low": (lambda m: m <= rule.low_max, f"<= {rule.low_max:g}")}
  checks: List[Dict[str, Any]] = []
  for level, (test, text) in rules.items():
    if level in stats:
      mean = stats[level]["report"]["mean"]
      checks.append({"level": level, "mean": mean, "rule": text, "met": bool(test(mean))})
  return {"met": all(c["met"] for c in checks), "checks": checks}


def sets_table(stats: Dict[str, Dict[str, Any]]) -> List[str]:
  """Markdown rows: per level, both sets' mean score and quartiles (means over seeds)."""
  lines = ["| level | reported: mean (q25 / median / q75) | validation: mean (q25 / median / q75) | "
           "largest gap of one seed | shared |", "|---|---|---|---|---|"]
  for level, st in stats.items():
    cells = [f"{st[s]['mean']:.3f} ({st[s]['q25']:.3f} / {st[s]['median']:.3f} / {st[s]['q75']:.3f})"
             for s in ("report", "validation")]
    lines.append(f"| {level} | {cells[0]} | {cells[1]} | {st['max_mean_gap']:.3f} | {st['overlap']} |")
  return lines
