"""Membership-inference attacks (MIA) used to judge forgetting.

Two attacks, both on model outputs the caller computed (logits), never on the model:

* `svc_mia`: the SVC attack of SalUn / RUM (`SVC_MIA` in OPTML-Group/Unlearn-Saliency and
  kairanzhao/RUM, `evaluation/SVC_MIA.py`). A shadow set of members (a retain sample,
  label 1) and non-members (the test set, label 0) trains one RBF SVC per output feature
  (Song & Mittal 2021, "Systematic Evaluation of Privacy Risks of Machine Learning
  Models", USENIX Security, arXiv:2003.10595: correctness, true-class confidence, entropy,
  modified entropy; plus the whole probability vector). The attack is then run on the
  forget set, and

    MIA-efficacy = (1 / |F|) sum_{x in F} [SVC(x) = non-member],

  the fraction of the forget set the attack believes was never trained on (the original's
  `1 - clf.predict(X_target_test).mean()` with `target_train=None`). Higher means the
  forget set looks more like unseen data; a model retrained without F sets the target.
  RUM's ToW-MIA and SalUn's tables use the 'confidence' feature.
* `loss_mia_auc`: a loss-threshold attack (logistic regression on the per-example
  cross-entropy, cross-validated) summarised by its ROC AUC; 0.5 means no leakage. It is
  cheap enough to run per task in continual learning.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import stats
from scipy import special
from sklearn import linear_model
from sklearn import metrics
from sklearn import model_selection
from sklearn import svm


def _check_logits_labels(logits, labels, name: str) -> Tuple[np.ndarray, np.ndarray]:
  """float64 logits [N, C>=2] and int labels [N] in [0, C), or a ValueError."""
  logits = np.asarray(logits, dtype=np.float64)
  labels = np.asarray(labels)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"{name} logits must have shape [N, C] with C >= 2; got {logits.shape}")
  if labels.shape != (len(logits),):
    raise ValueError(f"{name} labels must have shape [{len(logits)}]; got {labels.shape}")
  if len(labels) == 0:
    raise ValueError(f"{name} set is empty; the attack needs at least one example")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} labels must be integers; got dtype {labels.dtype}")
  if labels.min() < 0 or labels.max() >= logits.shape[1]:
    raise ValueError(f"{name} labels must lie in [0, {logits.shape[1]}); "
                     f"got range [{labels.min()}, {labels.max()}]")
  if not np.all(np.isfinite(logits)):
    raise ValueError(f"{name} logits contain NaN or inf")
  return logits, labels


def per_example_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Cross-entropy of each example, l_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_{i,y_i}.

  Computed with log-softmax, so it stays finite for confident logits where softmax rounds
  to 0 or 1.

  Args:
    logits: [N, C] logits.
    labels: [N] integer labels.

  Returns:
    [N] float64 losses.
  """
  logits, labels = _check_logits_labels(logits, labels, "per_example_ce")
  log_p = special.log_softmax(logits, axis=-1)
  return -np.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]


def _log_softmax_and_complement(logits: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(log p_c, log(1 - p_c)) for every class, both accurate when p_c rounds to 1.

  With m = max_c z_c (at class k) and r = sum_{j != k} exp(z_j - m):
  log p_c = (z_c - m) - log(1 + r), so the argmax gets -log1p(r) rather than the 0 a plain
  log-softmax rounds to; log(1 - p_k) = log r - log(1 + r), the mass of the other classes;
  for c != k, p_c <= 1/2 and log1p(-p_c) is accurate. log r is a logsumexp, so it stays
  finite when r underflows.
  """
  rows = np.arange(len(logits))
  top = np.argmax(logits, axis=-1)
  shifted = logits - logits[rows, top][:, None]
  others = shifted.copy()
  others[rows, top] = -np.inf
  log_r = special.logsumexp(others, axis=-1)
  log_1pr = np.logaddexp(0.0, log_r)
  log_p = shifted - log_1pr[:, None]
  with np.errstate(divide="ignore"):  # log1p(-1) where p_k rounds to 1, replaced below
    log_1mp = np.log1p(-np.exp(log_p))
  log_1mp[rows, top] = log_r - log_1pr
  return log_p, log_1mp


def correctness(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """1[argmax_c z_c = y] per example (Song & Mittal 2021, correctness attack), [N, 1]."""
  logits, labels = _check_logits_labels(logits, labels, "correctness")
  return (np.argmax(logits, axis=-1) == labels).astype(np.float64)[:, None]


def confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """True-class probability p_y = softmax(z)_y (Song & Mittal 2021, confidence attack), [N, 1]."""
  logits, labels = _check_logits_labels(logits, labels, "confidence")
  log_p = special.log_softmax(logits, axis=-1)
  return np.exp(np.take_along_axis(log_p, labels[:, None], axis=-1))


def entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Prediction entropy H = -sum_c p_c log p_c (Song & Mittal 2021, entropy attack), [N, 1].

  `labels` is unused by the formula; it is accepted so every feature has one signature.
  """
  logits, _ = _check_logits_labels(logits, labels, "entropy")
  log_p = special.log_softmax(logits, axis=-1)
  return -np.sum(np.exp(log_p) * log_p, axis=-1, keepdims=True)


def m_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Modified entropy (Song & Mittal 2021, Mentr), [N, 1]:

    Mentr(p, y) = -(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c).

  Unlike the entropy it uses the label: it is 0 for a confident correct prediction and
  grows without bound for a confident wrong one. (SalUn's port of it indexes the label
  column of every row with the whole label vector and uses log p_c where log(1 - p_c) is
  meant; this is the paper's definition.)
  """
  logits, labels = _check_logits_labels(logits, labels, "m_entropy")
  log_p, log_1mp = _log_softmax_and_complement(logits)
  is_label = np.arange(logits.shape[1])[None, :] == labels[:, None]
  terms = np.where(is_label, -np.exp(log_1mp) * log_p, -np.exp(log_p) * log_1mp)
  return np.sum(terms, axis=-1, keepdims=True)


def probabilities(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The whole softmax vector p = softmax(z), [N, C] (SalUn's 'prob' feature)."""
  logits, _ = _check_logits_labels(logits, labels, "probabilities")
  return special.softmax(logits, axis=-1)


# Feature name -> (logits [N, C], labels [N]) -> features [N, d]; names as in the original.
FEATURES: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "correctness": correctness,
    "confidence": confidence,
    "entropy": entropy,
    "m_entropy": m_entropy,
    "prob": probabilities,
}


def shadow_positions(num_retain: int, num_test: int, num_shadow: Optional[int] = 10_000,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Positions of the shadow members (in the retain set) and non-members (in the test set).

  The original takes as many retain examples as there are test examples (10k on CIFAR),
  so the two shadow classes are balanced. Here both sides have
  n = min(num_shadow, num_retain, num_test) examples, drawn without replacement with
  `seed` (the original takes the first ones of its retain order); with the CIFAR sizes
  this is the original's 10k vs 10k.

  Args:
    num_retain: size of the retain set.
    num_test: size of the test set.
    num_shadow: the most shadow members to use; None means as many as the test set.
    seed: seed of the draw.

  Returns:
    (retain_positions [n], test_positions [n]), sorted int64 arrays.
  """
  if num_retain < 1 or num_test < 1:
    raise ValueError(f"the retain and test sets must be non-empty; got {num_retain} and {num_test}")
  if num_shadow is not None and num_shadow < 1:
    raise ValueError(f"num_shadow must be a positive integer or None; got {num_shadow}")
  n = min(num_test if num_shadow is None else num_shadow, num_retain, num_test)
  rng = np.random.default_rng(seed)
  retain_pos = np.sort(rng.choice(num_retain, size=n, replace=False))
  test_pos = np.sort(rng.choice(num_test, size=n, replace=False))
  return retain_pos, test_pos


def svc_mia(retain_logits: np.ndarray, retain_labels: np.ndarray,
            test_logits: np.ndarray, test_labels: np.ndarray,
            forget_logits: np.ndarray, forget_labels: np.ndarray,
            num_shadow: Optional[int] = 10_000, seed: int = 0,
            features: Optional[Sequence[str]] = None) -> Dict[str, float]:
  """MIA-efficacy of the forget set for every feature of `FEATURES` (SalUn / RUM SVC MIA).

  For each feature, an SVC (RBF kernel, C=3, gamma='auto' = 1 / num_features, as the
  original) is fit on shadow members (a balanced retain sample, label 1) and non-members
  (test examples, label 0), then MIA-efficacy = the fraction of the forget set it predicts
  as non-member (module docstring).

  Args:
    retain_logits, retain_labels: model outputs [N_r, C] and labels [N_r] on the retain set.
    test_logits, test_labels: the same on the test set.
    forget_logits, forget_labels: the same on the forget set (the attack's target).
    num_shadow: the most shadow members (see `shadow_positions`); None = the test size.
    seed: seed of the shadow draw.
    features: the features to attack with (None: all of `FEATURES`); a sweep needs only ToW-MIA's.

  Returns:
    {feature name: MIA-efficacy in [0, 1]}.
  """
  retain_logits, retain_labels = _check_logits_labels(retain_logits, retain_labels, "retain")
  test_logits, test_labels = _check_logits_labels(test_logits, test_labels, "test")
  forget_logits, forget_labels = _check_logits_labels(forget_logits, forget_labels, "forget")
  num_classes = {retain_logits.shape[1], test_logits.shape[1], forget_logits.shape[1]}
  if len(num_classes) != 1:
    raise ValueError(f"retain, test and forget logits disagree on the number of classes: "
                     f"{retain_logits.shape[1]}, {test_logits.shape[1]}, {forget_logits.shape[1]}")
  retain_pos, test_pos = shadow_positions(len(retain_labels), len(test_labels), num_shadow, seed)
  shadow_logits = np.concatenate([retain_logits[retain_pos], test_logits[test_pos]])
  shadow_labels = np.concatenate([retain_labels[retain_pos], test_labels[test_pos]])
  is_member = np.concatenate([np.ones(len(retain_pos)), np.zeros(len(test_pos))])
  unknown = sorted(set(features or ()) - set(FEATURES))
  if unknown:
    raise ValueError(f"unknown MIA features {unknown}; valid choices: {', '.join(FEATURES)}")
  efficacy = {}
  for name, feature in FEATURES.items():
    if features is not None and name not in features:
      continue
    clf = svm.SVC(C=3.0, kernel="rbf", gamma="auto")
    clf.fit(feature(shadow_logits, shadow_labels), is_member)
    predicted_member = clf.predict(feature(forget_logits, forget_labels))
    efficacy[name] = float(1.0 - np.mean(predicted_member))
  return efficacy


def loss_mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray,
                 seed: int = 0, n_splits: int = 5) -> float:
  """ROC AUC of a cross-validated logistic-regression attack on the per-example loss.

  The larger class is subsampled (seeded) to the size of the smaller, then a logistic
  regression P(member | rank of the loss) is fitted with stratified K-fold and the ROC AUC
  of each held-out fold (`roc_auc_score`) is averaged. 0.5 = the losses reveal nothing about membership,
  1 = members are perfectly separable (lower loss).

  Args:
    member_losses: [M] per-example losses of examples the model was trained on (e.g. the
      forget set, see `per_example_ce`).
    nonmember_losses: [K] losses of examples it never saw (e.g. test).
    seed: seed of the subsampling and of the fold shuffle.
    n_splits: number of folds; reduced to the class size when that is smaller.
  """
  member_losses = np.asarray(member_losses, dtype=np.float64)
  nonmember_losses = np.asarray(nonmember_losses, dtype=np.float64)
  for name, losses in (("member_losses", member_losses), ("nonmember_losses", nonmember_losses)):
    if losses.ndim != 1:
      raise ValueError(f"{name} must be one-dimensional [N]; got shape {losses.shape}")
    if not np.all(np.isfinite(losses)):
      raise ValueError(f"{name} contain NaN or inf")
  n = min(len(member_losses), len(nonmember_losses))
  if n < 2:
    raise ValueError(f"loss_mia_auc needs at least 2 members and 2 non-members; got "
                     f"{len(member_losses)} and {len(nonmember_losses)}")
  if n_splits < 2:
    raise ValueError(f"n_splits must be >= 2; got {n_splits}")
  rng = np.random.default_rng(seed)
  losses = np.concatenate([rng.choice(member_losses, size=n, replace=False),
                           rng.choice(nonmember_losses, size=n, replace=False)])
  # The attack sees the loss's rank, not its value: a threshold on the loss is a threshold on
  # its rank, and ranks keep the logistic fit well conditioned when most losses are ~0
  # (a trained model) and a few are huge (on raw losses the fit can flip its sign).
  x = (stats.rankdata(losses) / len(losses))[:, None]
  y = np.concatenate([np.ones(n), np.zeros(n)])
  folds = model_selection.StratifiedKFold(
      n_splits=min(n_splits, n), shuffle=True, random_state=seed)
  # AUC per held-out fold, averaged: scores of different folds' models are not comparable.
  aucs = []
  for train, test in folds.split(x, y):
    attack = linear_model.LogisticRegression().fit(x[train], y[train])
    aucs.append(metrics.roc_auc_score(y[test], attack.predict_proba(x[test])[:, 1]))
  return float(np.mean(aucs))
