"""Evaluation of unlearning (SPEC section 8), on logits the caller computed with the model.

* `tow`: top-1 `accuracy`; ToW and ToW-MIA of an unlearned model against retraining.
* `mia`: the SalUn/RUM SVC membership-inference attack (MIA-efficacy per output feature),
  the loss-threshold logistic attack's AUC, and `per_example_ce`.
* `stats`: means over seeds with t-based confidence intervals (`mean_ci`, `summarize`).
* `forgetting`: forgetting quality from banks of many models: the NeurIPS 2023 unlearning
  challenge score (`challenge_epsilons`, `forget_score`, `challenge_score`) and LiRA / U-LiRA
  (`lira_scores`, `attack_metrics`), on `logit_scaled_confidence`s.

The re-exported function `tow` shadows the submodule of the same name as a package
attribute; import the module's other names with `from rum_jax.evaluation.tow import ...`.
"""
from rum_jax.evaluation.mia import FEATURES
from rum_jax.evaluation.mia import loss_mia_auc
from rum_jax.evaluation.mia import per_example_ce
from rum_jax.evaluation.mia import shadow_positions
from rum_jax.evaluation.mia import svc_mia
from rum_jax.evaluation.stats import mean_ci
from rum_jax.evaluation.stats import summarize
from rum_jax.evaluation.tow import accuracy
from rum_jax.evaluation.tow import tow
from rum_jax.evaluation.tow import tow_mia

__all__ = [
    "FEATURES",
    "accuracy",
    "loss_mia_auc",
    "mean_ci",
    "per_example_ce",
    "shadow_positions",
    "summarize",
    "svc_mia",
    "tow",
    "tow_mia",
]
