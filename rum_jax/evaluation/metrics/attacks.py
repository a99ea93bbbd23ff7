"""Membership-inference attacks of one run on its forget set (`evaluation.mia`'s attacks).

* `mia_<feature>`, one per SVC feature (`mia.FEATURES`): MIA-efficacy, the fraction of the
  forget set the SVC attack (shadow members: a retain sample of at most options['num_shadow'],
  non-members: test) predicts as non-member (SalUn / RUM). One SVC per feature, on the same
  shadow draw (seed options['seed'] + s), so each feature's value is the same whether it is
  computed alone or with the others.
* `loss_mia_auc`: the cross-validated loss-threshold attack's ROC AUC of the forget set
  against test (0.5 = no leakage).
"""
import numpy as np

from rum_jax.evaluation import mia
from rum_jax.evaluation.metrics.interface import Metric, ModelOutputs, register

NUM_SHADOW = 10_000  # RUM/SalUn: a 10k retain sample as shadow members (capped at the test size)


def svc_efficacy(outputs: ModelOutputs, feature: str) -> np.ndarray:
  """Per-seed MIA-efficacy of the SVC attack with one feature."""
  y, y_test = outputs.labels["train"], outputs.labels["test"]
  out = []
  for s in range(outputs.num_seeds):
    train, test = outputs.logits["train"][s], outputs.logits["test"][s]
    f, r = np.asarray(outputs.forget[s]), outputs.retain[s]
    out.append(mia.svc_mia(train[r], y[r], test, y_test, train[f], y[f],
                           num_shadow=outputs.options.get("num_shadow", NUM_SHADOW),
                           seed=outputs.options.get("seed", 0) + s, features=(feature,))[feature])
  return np.array(out)


def loss_auc(outputs: ModelOutputs) -> np.ndarray:
  """Per-seed ROC AUC of the loss-threshold attack, forget set against test."""
  y, y_test = outputs.labels["train"], outputs.labels["test"]
  out = []
  for s in range(outputs.num_seeds):
    f = np.asarray(outputs.forget[s])
    out.append(mia.loss_mia_auc(mia.per_example_ce(outputs.logits["train"][s][f], y[f]),
                                mia.per_example_ce(outputs.logits["test"][s], y_test),
                                seed=outputs.options.get("seed", 0) + s))
  return np.array(out)


for _feature in mia.FEATURES:
  register(Metric(f"mia_{_feature}", lambda o, f=_feature: svc_efficacy(o, f), needs=frozenset({"train", "test"}),
                  display=f"MIA-efficacy ({_feature})", higher_is_better=None,
                  description=f"SVC attack on the '{_feature}' feature: fraction of the forget set judged unseen"))
register(Metric("loss_mia_auc", loss_auc, needs=frozenset({"train", "test"}), display="loss-MIA AUC",
                higher_is_better=None, description="loss-threshold attack's ROC AUC, forget set vs test"))
