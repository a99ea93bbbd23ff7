"""ToW and ToW-MIA against the retrain reference of the same seed (`evaluation.tow`'s formulas).

  ToW     = (1 - |A_f^u - A_f^r|)(1 - |A_r^u - A_r^r|)(1 - |A_t^u - A_t^r|)
  ToW-MIA = (1 - |MIA^u - MIA^r|)(1 - |A_r^u - A_r^r|)(1 - |A_t^u - A_t^r|)

(Zhao et al. 2024, arXiv:2406.01257), MIA = the SVC attack's efficacy with RUM's feature
(`MIA_FEATURE`, metric 'mia_confidence').
"""
import numpy as np

from rum_jax.evaluation.tow import tow as tow_formula, tow_mia as tow_mia_formula
from rum_jax.evaluation.metrics.interface import Metric, ModelOutputs, register

MIA_FEATURE = "confidence"  # RUM's analysis scores ToW-MIA with the true-class confidence
_SPLITS = ("forget", "retain", "test")


def _accuracies(outputs: ModelOutputs, s: int) -> dict:
  return {k: float(outputs.value(f"{k}_accuracy")[s]) for k in _SPLITS}


def tow(outputs: ModelOutputs) -> np.ndarray:
  reference = outputs.need_reference("tow")
  return np.array([tow_formula(_accuracies(outputs, s), _accuracies(reference, s))
                   for s in range(outputs.num_seeds)])


def tow_mia(outputs: ModelOutputs) -> np.ndarray:
  reference = outputs.need_reference("tow_mia")
  mia_u, mia_r = outputs.value(f"mia_{MIA_FEATURE}"), reference.value(f"mia_{MIA_FEATURE}")
  return np.array([tow_mia_formula(_accuracies(outputs, s), _accuracies(reference, s), mia_u[s], mia_r[s])
                   for s in range(outputs.num_seeds)])


register(Metric("tow", tow, needs=frozenset({"train", "test", "reference"}), display="ToW",
                description="Tug-of-War against retraining: 1 = every accuracy matches it"))
register(Metric("tow_mia", tow_mia, needs=frozenset({"train", "test", "reference"}), display="ToW-MIA",
                description=f"ToW with the forget-accuracy gap replaced by the SVC attack's ({MIA_FEATURE})"))
