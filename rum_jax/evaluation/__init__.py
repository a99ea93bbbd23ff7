"""Evaluation of unlearning, on logits the caller computed with the model.

* `tow`: top-1 `accuracy`, per-seed `set_accuracies`; ToW and ToW-MIA of an unlearned model
  against retraining.
* `mia`: the SalUn/RUM SVC membership-inference attack (MIA-efficacy per output feature),
  the loss-threshold logistic attack's AUC, and `per_example_ce`.
* forgetting quality (the audit) from banks of many models, on `confidence.logit_scaled_confidence`s:
  `challenge`, the NeurIPS 2023 unlearning challenge score (`challenge_epsilons`,
  `forget_score`, `challenge_score`), and `lira`, LiRA / U-LiRA (`lira_scores`,
  `attack_metrics`).
* `metrics`: `METRICS`, the registry of every reported number built on these formulas, each
  found by name from a config (docs/extending.md).
Means over seeds with t intervals are `rum_jax.results.summarize`.

The re-exported function `tow` shadows the submodule of the same name as a package
attribute; import the module's other names with `from rum_jax.evaluation.tow import ...`.
"""
from rum_jax.evaluation.mia import FEATURES
from rum_jax.evaluation.mia import loss_mia_auc
from rum_jax.evaluation.mia import per_example_ce
from rum_jax.evaluation.mia import shadow_positions
from rum_jax.evaluation.mia import svc_mia
from rum_jax.evaluation.tow import accuracy
from rum_jax.evaluation.tow import set_accuracies
from rum_jax.evaluation.tow import tow
from rum_jax.evaluation.tow import tow_mia

__all__ = [
    "FEATURES",
    "accuracy",
    "loss_mia_auc",
    "per_example_ce",
    "set_accuracies",
    "shadow_positions",
    "svc_mia",
    "tow",
    "tow_mia",
]
