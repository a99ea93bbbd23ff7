"""The paper's claims as paired differences over seeds, each with its 95% interval and verdict.

Seeds pair: seed s has one original model and, per level, its own reported forget set and
retrain reference, so two runs on one set differ by their method alone, and seed s's high and
low sets share its original model. Each claim is a record {claim, a, b, metric, mean, ci95, n,
verdict} (study.json, study.csv) and a sentence (study.md):

  (i)   harder when more memorized: per method, high - low (ToW, ToW-MIA); only where the
        data set meets the criterion (sets.py), else recorded as untested;
  (ii)  RUM (plan searched on the validation mix) - the best single method (chosen on the same
        validation mix), by ToW and ToW-MIA; RUM - the paper's plan;
  (iii) RUM - the Shuffle control (refinement by memorization vs steps alone);
  (iv)  the proxy variant (the searched plan, thirds by the proxy) - the best single method,
        - RUM, - Shuffle.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rum_jax import results

METRICS = (("tow", "ToW"), ("tow_mia", "ToW-MIA"))


def values(model: Dict[str, Any], metric: str) -> np.ndarray:
  return np.array(model["per_seed"][metric])


def paired_difference(a: Dict[str, Any], b: Dict[str, Any], metric: str = "tow") -> Tuple[float, float]:
  """(mean, 95% t half width) over seeds of metric(a) - metric(b), seeds paired."""
  return results.mean_ci(values(a, metric) - values(b, metric))


def verdict(mean: float, half: float, higher: str = "higher", lower: str = "lower") -> str:
  """What a paired difference says at 95%: its interval above 0, below 0, or around it."""
  if np.isnan(half):
    return "one seed: no interval"
  return higher if mean - half > 0 else lower if mean + half < 0 else "not distinguishable at 95%"


def best_on_validation(validation: Dict[str, Dict[str, Any]], methods: Sequence[str]) -> str:
  """The single method with the highest mean ToW on the VALIDATION mix (each at its tuned point):
  the one RUM is compared with, chosen without looking at the reported numbers."""
  return max((m for m in methods if m in validation), key=lambda m: validation[m]["validation_tow"])


def _record(claim: str, a_name: str, b_name: str, a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]],
            metric: str) -> Optional[Dict[str, Any]]:
  if a is None or b is None:
    return None
  mean, half = paired_difference(a, b, metric)
  return {"claim": claim, "a": a_name, "b": b_name, "metric": metric, "mean": mean, "ci95": half,
          "n": len(a["per_seed"][metric]), "verdict": verdict(mean, half)}


def claims(by_level: Dict[str, Dict[str, Dict[str, Any]]], methods: Sequence[str], best: Optional[str],
           criterion_met: bool, names: Dict[str, str]) -> List[Dict[str, Any]]:
  """Every claim's record (module docstring).

  Args:
    by_level: level -> model -> {"per_seed", "summary"} (evaluation.json of each set).
    methods: the single methods.
    best: the best single method on the validation mix (None: no mix set).
    criterion_met: whether (i) is tested on this data set.
    names: {"rum", "shuffle", "paper", "proxy"} -> the run names.
  """
  out = []
  high, low, mix = by_level.get("high", {}), by_level.get("low", {}), by_level.get("mix", {})
  if criterion_met:
    for m in methods:
      for metric, _ in METRICS:
        out.append(_record("(i) harder when more memorized", f"{m} on high", f"{m} on low", high.get(m), low.get(m),
                           metric))
  rum, shuffle, paper, proxy = (mix.get(names[k]) for k in ("rum", "shuffle", "paper", "proxy"))
  if best is not None:
    for metric, _ in METRICS:
      out.append(_record("(ii) RUM vs the best single method", names["rum"], best, rum, mix.get(best), metric))
    for metric, _ in METRICS:
      out.append(_record("(ii) RUM vs the paper's plan", names["rum"], names["paper"], rum, paper, metric))
    for metric, _ in METRICS:
      out.append(_record("(iii) RUM vs Shuffle", names["rum"], names["shuffle"], rum, shuffle, metric))
    for metric, _ in METRICS:
      out.append(_record("(iv) proxy variant vs the best single method", names["proxy"], best, proxy,
                         mix.get(best), metric))
    out.append(_record("(iv) proxy variant vs RUM", names["proxy"], names["rum"], proxy, rum, "tow"))
    out.append(_record("(iv) proxy variant vs Shuffle", names["proxy"], names["shuffle"], proxy, shuffle, "tow"))
  return [r for r in out if r is not None]


def sentence(r: Dict[str, Any]) -> str:
  label = dict(METRICS)[r["metric"]]
  return (f"{r['claim']}: {r['a']} - {r['b']}, {label}: {results.signed(r['mean'], r['ci95'])} points "
          f"({r['n']} seeds): {r['verdict']}.")


def summary_lines(records: List[Dict[str, Any]], methods: Sequence[str]) -> List[str]:
  """(i) summarised per metric (how many methods lower / higher / not distinguishable), the others one line each."""
  lines = []
  for metric, label in METRICS:
    harder = [r for r in records if r["claim"].startswith("(i)") and r["metric"] == metric]
    if harder:
      by: Dict[str, List[str]] = {}
      for r in harder:
        by.setdefault(r["verdict"], []).append(r["a"].split(" on ")[0])
      lines.append(f"- (i) {label}, high - low memorization, paired over seeds: lower for "
                   f"{len(by.get('lower', []))} of {len(harder)} methods ({', '.join(by.get('lower', [])) or 'none'}), "
                   f"higher for {len(by.get('higher', []))} ({', '.join(by.get('higher', [])) or 'none'}), not "
                   f"distinguishable for {len(by.get('not distinguishable at 95%', []))} "
                   f"({', '.join(by.get('not distinguishable at 95%', [])) or 'none'}).")
  lines += ["- " + sentence(r) for r in records if not r["claim"].startswith("(i)")]
  return lines
