"""Accuracy and the Tug-of-War (ToW) score of an unlearned model against retraining.

ToW (Zhao et al. 2024, "What makes unlearning hard and what to do about it", NeurIPS,
arXiv:2406.01257, the "Tug-of-War" metric) rewards an unlearned model u for matching the model r
retrained from scratch on the same retain set, on the forget, retain and test sets at once:

  ToW = (1 - |A_f^u - A_f^r|) (1 - |A_r^u - A_r^r|) (1 - |A_t^u - A_t^r|),

with accuracies in [0, 1], so ToW is in [0, 1] and equals 1 exactly when every accuracy
matches the retrained model's. ToW-MIA (the same paper's MIA variant; RUM's analysis code
uses the SVC MIA-efficacy of the 'confidence' feature, see `mia.svc_mia`) replaces the forget-accuracy factor by
(1 - |MIA^u - MIA^r|).
"""
import math
from typing import Dict, Mapping, Sequence

import numpy as np

SPLITS = ("forget", "retain", "test")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Top-1 accuracy in [0, 1]: mean over examples of [argmax_c logits[i, c] == labels[i]].

  Args:
    logits: [N, C] logits (or probabilities: argmax is the same).
    labels: [N] integer labels.
  """
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
    raise ValueError(
        f"accuracy needs logits [N, C] and labels [N]; got {logits.shape} and {labels.shape}")
  if len(labels) == 0:
    raise ValueError("accuracy of an empty set is undefined; pass at least one example")
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


def set_accuracies(logits: np.ndarray, labels: np.ndarray,
                   sets: Mapping[str, Sequence[np.ndarray]]) -> Dict[str, np.ndarray]:
  """Per-seed accuracy [S] on each named set of positions into one split.

  Args:
    logits: [S, N, C] every seed's logits on the split.
    labels: [N] the split's labels.
    sets: name -> one position array per seed (at least S; extra padded seeds are ignored).

  Returns:
    name -> float [S], seed s's accuracy on sets[name][s].
  """
  correct = np.argmax(logits, axis=-1) == np.asarray(labels)[None]
  return {name: np.array([correct[s, np.asarray(p)].mean() for s, p in zip(range(len(correct)), positions)])
          for name, positions in sets.items()}


def _unit_interval(name: str, value: float) -> float:
  value = float(value)
  if not (math.isfinite(value) and 0.0 <= value <= 1.0):
    raise ValueError(f"{name} must be in [0, 1] (accuracies as fractions, not percent); got {value}")
  return value


def _split_accuracies(acc: Mapping[str, float], which: str) -> dict:
  missing = [s for s in SPLITS if s not in acc]
  if missing:
    raise ValueError(f"{which} accuracies lack {missing}; required keys: {', '.join(SPLITS)}")
  return {s: _unit_interval(f"{which} accuracy[{s!r}]", acc[s]) for s in SPLITS}


def tow(acc_u: Mapping[str, float], acc_r: Mapping[str, float]) -> float:
  """ToW = (1 - |A_f^u - A_f^r|)(1 - |A_r^u - A_r^r|)(1 - |A_t^u - A_t^r|) (Zhao et al. 2024).

  Args:
    acc_u: accuracies of the unlearned model, keys 'forget', 'retain', 'test', in [0, 1].
    acc_r: the same for the model retrained on the same retain set.
  """
  u = _split_accuracies(acc_u, "unlearned")
  r = _split_accuracies(acc_r, "retrained")
  return float(np.prod([1.0 - abs(u[s] - r[s]) for s in SPLITS]))


def tow_mia(acc_u: Mapping[str, float], acc_r: Mapping[str, float],
            mia_u: float, mia_r: float) -> float:
  """ToW-MIA = (1 - |MIA^u - MIA^r|)(1 - |A_r^u - A_r^r|)(1 - |A_t^u - A_t^r|).

  The forget-accuracy factor of `tow` is replaced by the gap in MIA-efficacy (Zhao et al.
  2024; RUM reports it with the SVC 'confidence' feature).

  Args:
    acc_u: accuracies of the unlearned model, keys 'forget', 'retain', 'test', in [0, 1]
      ('forget' is validated but not used).
    acc_r: the same for the retrained model.
    mia_u: MIA-efficacy of the unlearned model on the forget set, in [0, 1].
    mia_r: MIA-efficacy of the retrained model, in [0, 1].
  """
  u = _split_accuracies(acc_u, "unlearned")
  r = _split_accuracies(acc_r, "retrained")
  mia_gap = abs(_unit_interval("mia_u", mia_u) - _unit_interval("mia_r", mia_r))
  return float((1.0 - mia_gap) * np.prod([1.0 - abs(u[s] - r[s]) for s in ("retain", "test")]))
