"""The logit-scaled confidence of the true class: the per-example statistic of LiRA and of the
NeurIPS 2023 unlearning challenge score, computed by `challenge` and `lira` from many models.

References:
  Carlini et al. 2022, "Membership Inference Attacks From First Principles", IEEE S&P,
  arXiv:2112.03570.
"""
import numpy as np
from scipy import special


def logit_scaled_confidence(logits, labels) -> np.ndarray:
  """Logit-scaled confidence of the true class (LiRA's per-example statistic), float64.

    c = log p_y - log(sum_{j != y} p_j) = z_y - logsumexp_{j != y} z_j,

  with p = softmax(z). The second form is the first with logsumexp_j z_j cancelled; it needs
  no probabilities, so it stays finite and exact where p_y rounds to 0 or 1 (logits [1000, 0]
  give c = 1000 for class 0 and -1000 for class 1).

  Args:
    logits: [..., N, C] logits, C >= 2, finite; leading axes are e.g. models.
    labels: [N] integer labels in [0, C).

  Returns:
    [..., N] float64 confidences.

  References: Carlini et al. 2022, "Membership Inference Attacks From First Principles",
  arXiv:2112.03570 (the logit scaling of the model's confidence).
  """
  logits = np.asarray(logits, dtype=np.float64)
  labels = np.asarray(labels)
  if logits.ndim < 2 or logits.shape[-1] < 2:
    raise ValueError(f"logits must have shape [..., N, C] with C >= 2 classes; got {logits.shape}")
  n, c = logits.shape[-2:]
  if labels.shape != (n,):
    raise ValueError(f"labels must have shape [{n}] to match logits {logits.shape}; got {labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
  if n and (labels.min() < 0 or labels.max() >= c):
    raise ValueError(f"labels must lie in [0, {c}); got range [{labels.min()}, {labels.max()}]")
  if not np.all(np.isfinite(logits)):
    raise ValueError("logits contain NaN or inf; compute confidences from finite logits")
  is_label = np.arange(c) == labels[:, None]  # [N, C]
  true = np.sum(np.where(is_label, logits, 0.0), axis=-1)
  others = special.logsumexp(np.where(is_label, -np.inf, logits), axis=-1)
  return true - others
