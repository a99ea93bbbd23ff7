"""U-LiRA on a method's shadow bank (Hayes et al. 2024): how well a likelihood-ratio attack tells
the examples a shadow model unlearned from those it never saw (every model the target in turn,
`lira.leave_one_out_scores`), summarised by `lira.attack_metrics` over the pool's
(model, example) pairs: ROC AUC, balanced accuracy and the TPR at 1% and 0.1% FPR. 0.5 / chance
is what retraining scores.

options['centring'] ('mean' default, or 'median' as tensorflow/privacy's LiRA) and
options['fixed_variance'] choose the Gaussians' fit (docs/audit.md).

References: Hayes et al. 2024, arXiv:2403.01218; Carlini et al. 2022, arXiv:2112.03570.
"""
from typing import Any, Dict, Optional

import numpy as np

from rum_jax.evaluation import lira
from rum_jax.evaluation.metrics.interface import BankOutputs, Metric, register


def attack(scores: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray, pool: np.ndarray) -> Dict[str, Any]:
  """attack_metrics of the scored (model, example) pairs of the pool's examples, with counts."""
  scored = np.isfinite(scores) & pool[None]
  members, nonmembers = scores[scored & in_mask], scores[scored & out_mask]
  if not (members.size and nonmembers.size):
    raise ValueError(f"the attack has {members.size} member and {nonmembers.size} non-member pairs to score: "
                     "too few shadow models for every example to be unlearned (or held out) by one of them; "
                     "raise audit.shadow_models")
  metrics = lira.attack_metrics(members, nonmembers)
  metrics.update(members=int(members.size), nonmembers=int(nonmembers.size),
                 examples=int((scored & (in_mask | out_mask)).any(0).sum()))
  return metrics


def scores(outputs: BankOutputs) -> np.ndarray:
  """[K, N_train] U-LiRA scores, every shadow model the target in turn (computed once per bank)."""
  shadow = outputs.need("shadow", "ulira")
  return outputs.cached("ulira_scores", lambda: lira.leave_one_out_scores(
      shadow["confidence"], shadow["forget_mask"], shadow["held_out"],
      fixed_variance=outputs.options.get("fixed_variance", True), centring=outputs.options.get("centring", "mean")))


def ulira(outputs: BankOutputs, pool: Optional[np.ndarray] = None) -> Dict[str, Any]:
  """U-LiRA's attack metrics and ROC curve on `pool` (default: the bank's, the forget set)."""
  shadow = outputs.need("shadow", "ulira")
  if pool is not None:
    return attack(scores(outputs), shadow["forget_mask"], shadow["held_out"], pool)
  return outputs.cached("ulira", lambda: attack(scores(outputs), shadow["forget_mask"], shadow["held_out"],
                                                shadow["pool"]))


for _key, _display, _unit in (("auc", "U-LiRA AUC", ""), ("balanced_accuracy", "U-LiRA bal. acc", "%"),
                              ("tpr_at_fpr_0.01", "TPR @ 1% FPR", "%"), ("tpr_at_fpr_0.001", "TPR @ 0.1% FPR", "%")):
  register(Metric(f"ulira_{_key}", lambda o, k=_key: np.array([ulira(o)[k]]), needs=frozenset({"shadow"}),
                  display=_display, unit=_unit, higher_is_better=False,
                  description=f"U-LiRA {_key.replace('_', ' ')} on the forget set (retraining: chance)"))
