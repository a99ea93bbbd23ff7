"""The paper's claims as paired differences over seeds, each by one metric, with Holm's correction.

Seeds pair: seed s has one original model and, per level, its own reported forget set and
retrain reference, so two runs on one set differ by their method alone, and seed s's high and
low sets share its original model. For every claim metric M (config.study.claim_metrics) both
sides of a claim are the runs chosen on the validation sets BY M (`Choices`):

  (i)   harder when more memorized: per method, M on high - M on low; only where the data set
        meets the criterion (sets.py);
  (ii)  RUM (plan searched by M) - the best single configuration by M (`none` included);
        RUM - the paper's plan;
  (iii) RUM - the Shuffle control (the same plan on random thirds);
  (iv)  the proxy variant - the best single configuration, - RUM, - Shuffle;

and with the strong metric (the metrics of config.audit.metrics that have a direction,
over the banks of the first config.study.strong_seeds seeds): (ii) and (iii) again.

Each record {claim, a, b, metric, mean, ci95, n, p, p_holm, verdict}: the mean paired
difference with its 95% t-interval, the two-sided paired t-test's p, and Holm's step-down
adjustment over the whole family of records (`holm`); the verdict is 'higher' or 'lower' where
the adjusted p is below 0.05 (a family-wise error rate of 5%), else 'not distinguishable'.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

from rum_jax import results
from rum_jax.evaluation.metrics import METRICS

ALPHA = 0.05
NOT_DISTINGUISHABLE = "not distinguishable"


@dataclasses.dataclass
class Choices:
  """The runs one claim metric chose on the validation sets (run folder names).

  levels: level -> method -> the method's run at the point chosen by the metric.
  best: the best single configuration on the validation mix (a run, or 'original' for `none`).
  rum, shuffle, proxy: the runs of the plan searched by the metric; paper: the paper's plan.
  """
  levels: Dict[str, Dict[str, str]]
  best: Optional[str] = None
  rum: str = ""
  shuffle: str = ""
  proxy: str = ""
  paper: str = ""


def values(model: Dict[str, Any], metric: str) -> np.ndarray:
  return np.array(model["per_seed"][metric], np.float64)


def paired_p(diff: np.ndarray) -> float:
  """Two-sided p of the paired t-test of mean(diff) = 0 (1 where every difference is 0)."""
  diff = np.asarray(diff, np.float64)
  if len(diff) < 2:
    return float("nan")
  if np.allclose(diff, diff[0]):
    return 1.0 if diff[0] == 0 else 0.0
  return float(scipy_stats.ttest_1samp(diff, 0.0).pvalue)


def holm(p: Sequence[float]) -> np.ndarray:
  """Holm's (1979) step-down adjustment: with p sorted ascending, p_(1) <= ... <= p_(m),

    adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)),

  so rejecting where the adjusted p < alpha keeps the family-wise error rate at alpha. NaN
  entries (no test) stay NaN and do not count in m."""
  p = np.asarray(p, np.float64)
  out = np.full_like(p, np.nan)
  tested = np.flatnonzero(~np.isnan(p))
  order = tested[np.argsort(p[tested], kind="stable")]
  m = len(order)
  running = 0.0
  for j, i in enumerate(order):
    running = max(running, min(1.0, (m - j) * p[i]))
    out[i] = running
  return out


def best_single(validation: Dict[str, Dict[str, Any]], metric: str) -> str:
  """The single method (or `none`) whose chosen point has the best mean `metric` on the
  VALIDATION mix: the one RUM is compared with, chosen without looking at the reported numbers."""
  sign = 1.0 if METRICS.get(metric).higher_is_better is not False else -1.0

  def mean(name: str) -> float:
    tuned = validation[name]
    return sign * tuned["grid"][tuned["chosen"][metric]]["summary"][metric]["mean"]
  return max(validation, key=mean)


def _record(claim: str, a_name: str, b_name: str, a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]],
            metric: str) -> Optional[Dict[str, Any]]:
  if a is None or b is None or metric not in a["per_seed"] or metric not in b["per_seed"]:
    return None
  diff = values(a, metric) - values(b, metric)
  return {"claim": claim, "a": a_name, "b": b_name, "metric": metric, **results.summarize(diff), "p": paired_p(diff)}


def claims(by_level: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str], choices: Dict[str, Choices],
           criterion_met: bool, strong: Optional[Dict[str, Dict[str, Any]]] = None,
           strong_metrics: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """Every claim's record (module docstring), verdicts Holm-corrected over all of them.

  Args:
    by_level: level -> run -> {"per_seed": {metric: [S]}} (each set's evaluation).
    methods: the single methods.
    choices: claim metric -> the runs it chose.
    criterion_met: whether (i) is tested on this data set.
    strong: model ('best', 'rum', 'shuffle') -> {"name", "per_seed": {metric: [seeds]}} of the
      bank metrics (None: not run).
    strong_metrics: the bank metrics claims are made about.
  """
  out = []
  high, low, mix = by_level.get("high", {}), by_level.get("low", {}), by_level.get("mix", {})
  for metric, ch in choices.items():
    if criterion_met:
      for m in methods:
        a, b = ch.levels.get("high", {}).get(m), ch.levels.get("low", {}).get(m)
        out.append(_record("(i) harder when more memorized", f"{a} on high", f"{b} on low", high.get(a), low.get(b),
                           metric))
    if ch.best is None:
      continue
    rum, best, shuffle, paper, proxy = (mix.get(n) for n in (ch.rum, ch.best, ch.shuffle, ch.paper, ch.proxy))
    out += [_record("(ii) RUM vs the best single method", ch.rum, ch.best, rum, best, metric),
            _record("(ii) RUM vs the paper's plan", ch.rum, ch.paper, rum, paper, metric),
            _record("(iii) RUM vs Shuffle", ch.rum, ch.shuffle, rum, shuffle, metric),
            _record("(iv) proxy variant vs the best single method", ch.proxy, ch.best, proxy, best, metric),
            _record("(iv) proxy variant vs RUM", ch.proxy, ch.rum, proxy, rum, metric),
            _record("(iv) proxy variant vs Shuffle", ch.proxy, ch.shuffle, proxy, shuffle, metric)]
  if strong:
    for metric in strong_metrics:
      for claim, other in (("(ii) RUM vs the best single method", "best"), ("(iii) RUM vs Shuffle", "shuffle")):
        a, b = strong.get("rum"), strong.get(other)
        out.append(_record(claim, a and a["name"], b and b["name"], a, b, metric))
  out = [r for r in out if r is not None]
  adjusted = holm([r["p"] for r in out])
  for r, p in zip(out, adjusted):
    r["p_holm"] = float(p)
    r["verdict"] = ("one seed: no test" if np.isnan(p) else NOT_DISTINGUISHABLE if p >= ALPHA
                    else "higher" if r["mean"] > 0 else "lower")
  return out


def signed(metric: str, mean: float, half: float) -> str:
  """A difference in the metric's unit: '+1.2 ± 3.4' (percent points) or '+0.012 ± 0.003'."""
  m = METRICS.get(metric)
  return f"{m.scale * mean:+.{m.digits}f}" + ("" if np.isnan(half) else f" ± {m.scale * half:.{m.digits}f}")


def _p(p: float) -> str:
  return "n/a" if np.isnan(p) else f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def table(records: List[Dict[str, Any]]) -> str:
  """Markdown: one row per record (claim, difference, metric, mean ± 95% interval, n, p, Holm p, verdict)."""
  rows = [[r["claim"], f"{r['a']} - {r['b']}", METRICS.get(r["metric"]).display, signed(r["metric"], r["mean"], r["ci95"]),
           r["n"], _p(r["p"]), _p(r["p_holm"]), r["verdict"]] for r in records]
  return results.markdown_table(["claim", "difference", "metric", "mean ± 95% interval", "n", "p", "Holm p",
                                 "verdict"], rows)


def summary_lines(records: List[Dict[str, Any]]) -> List[str]:
  """Per metric: (i) summarised (how many methods lower / higher / not distinguishable after
  Holm), the other claims one line each."""
  lines = []
  for metric in dict.fromkeys(r["metric"] for r in records):
    display = METRICS.get(metric).display
    mine = [r for r in records if r["metric"] == metric]
    harder = [r for r in mine if r["claim"].startswith("(i)")]
    if harder:
      by: Dict[str, List[str]] = {}
      for r in harder:
        by.setdefault(r["verdict"], []).append(r["a"].split(" on ")[0])
      lines.append(f"- (i) {display}, high - low memorization: lower for {len(by.get('lower', []))} of {len(harder)} "
                   f"methods ({', '.join(by.get('lower', [])) or 'none'}), higher for {len(by.get('higher', []))} "
                   f"({', '.join(by.get('higher', [])) or 'none'}), not distinguishable for "
                   f"{len(by.get(NOT_DISTINGUISHABLE, []))} ({', '.join(by.get(NOT_DISTINGUISHABLE, [])) or 'none'}).")
    for r in mine:
      if not r["claim"].startswith("(i)"):
        lines.append(f"- {r['claim']}, {display}: {r['a']} - {r['b']} {signed(metric, r['mean'], r['ci95'])} "
                     f"({r['n']} seeds, Holm p {_p(r['p_holm'])}): {r['verdict']}.")
  return lines
