"""LiRA (Carlini et al. 2022) and U-LiRA (Hayes et al. 2024): likelihood-ratio membership attacks
from a shadow bank's confidences.

* `fit_gaussians`, `lira_scores`: Gaussian fits of a target example's logit-scaled confidence
  (`confidence.logit_scaled_confidence`) under shadow models that had it ("in": trained on it,
  or for U-LiRA trained on it and then unlearned it) and that never saw it ("out"), and the
  log-likelihood ratio of a target model's confidence;
* `leave_one_out_scores`: every model of a bank attacked in turn by the others;
* `attack_metrics`: AUC, balanced accuracy, TPR at low FPR and the ROC curve.

References:
  Carlini et al. 2022, "Membership Inference Attacks From First Principles", IEEE S&P,
  arXiv:2112.03570.
  Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a false sense
  of privacy", arXiv:2403.01218.
"""
from typing import Tuple

import numpy as np
from sklearn import metrics


def _check_shadow(confidences, mask, name: str) -> Tuple[np.ndarray, np.ndarray]:
  confidences = np.asarray(confidences, dtype=np.float64)
  mask = np.asarray(mask)
  if confidences.ndim != 2:
    raise ValueError(f"shadow confidences must have shape [num_models, num_examples]; got {confidences.shape}")
  if mask.shape != confidences.shape or mask.dtype != bool:
    raise ValueError(f"{name} must be a boolean array of the confidences' shape {confidences.shape}; "
                     f"got {mask.dtype} {mask.shape}")
  if not np.all(np.isfinite(confidences[mask])):
    raise ValueError("shadow confidences contain NaN or inf; compute them with logit_scaled_confidence")
  return confidences, mask


CENTRINGS = ("mean", "median")


def fit_gaussians(confidences, mask, fixed_variance: bool = True,
                  centring: str = "mean") -> Tuple[np.ndarray, np.ndarray]:
  """Per-example Gaussian (mean, std) of the confidences of the models selected by `mask`:

    mu_i = mean_{k : mask[k, i]} c[k, i]   (centring 'median': their median),
    per-example:  s_i^2 = sum_{k : mask[k, i]} (c[k, i] - mu_i)^2 / (n_i - 1),
    fixed variance: s^2 = sum_i sum_{k : mask[k, i]} (c[k, i] - mu_i)^2 / sum_i (n_i - 1),

  n_i = #{k : mask[k, i]}. The fixed variance pools every example's spread around its own
  mean into one s shared by all examples (the unbiased pooled variance); it needs only one
  example with two models, and examples with one model still get a mean.

  Args:
    confidences: [K, N] confidences of N examples under K shadow models.
    mask: [K, N] bool, which models' confidences to fit for each example.
    fixed_variance: pool the variance over examples (see lira_scores for the default).
    centring: 'mean' (the maximum-likelihood Gaussian) or 'median' (tensorflow/privacy's
      mi_lira_2021, robust to a few outlying models); the spread is measured around it.

  Returns:
    (mean [N], std [N]) float64; with fixed_variance every std is the same.

  References: Carlini et al. 2022, "Membership Inference Attacks From First Principles"
  (per-example and fixed-variance LiRA).
  """
  confidences, mask = _check_shadow(confidences, mask, "mask")
  if centring not in CENTRINGS:
    raise ValueError(f"unknown centring {centring!r}; valid choices: {', '.join(CENTRINGS)}")
  count = mask.sum(axis=0)
  need = 1 if fixed_variance else 2
  if np.any(count < need):
    raise ValueError(f"{np.sum(count < need)} example(s) (e.g. {np.flatnonzero(count < need)[:5].tolist()}) "
                     f"have fewer than {need} selected model(s); "
                     + ("train more shadow models" if fixed_variance else
                        "train more shadow models or use fixed_variance=True, which needs one"))
  if centring == "median":
    mean = np.nanmedian(np.where(mask, confidences, np.nan), axis=0)
  else:
    mean = np.where(mask, confidences, 0.0).sum(axis=0) / count
  squares = np.where(mask, (confidences - mean) ** 2, 0.0).sum(axis=0)
  if fixed_variance:
    dof = np.sum(count - 1)
    if dof == 0:
      raise ValueError("no example has two selected models: the pooled variance is undefined; train more "
                       "shadow models (config.audit.shadow_models)")
    var = np.full(mean.shape, squares.sum() / dof)
  else:
    var = squares / (count - 1)
  if np.any(var == 0):
    raise ValueError(f"the selected confidences of example(s) {np.flatnonzero(var == 0)[:5].tolist()} "
                     "do not vary, so no Gaussian fits them"
                     + ("" if fixed_variance else "; fixed_variance=True pools the spread of all examples"))
  return mean, np.sqrt(var)


def lira_scores(shadow_confidences, in_mask, out_mask, target_confidences,
                fixed_variance: bool = True, centring: str = "mean") -> np.ndarray:
  """Likelihood-ratio membership score of each example under each target model:

    score = log N(c; mu_in, s_in) - log N(c; mu_out, s_out)
          = log(s_out / s_in) - (c - mu_in)^2 / (2 s_in^2) + (c - mu_out)^2 / (2 s_out^2),

  with (mu, s) the example's Gaussian fit (`fit_gaussians`) over the shadow models of
  `in_mask` and of `out_mask`, and c its confidence under the target model. Higher means
  'looks like in'. For LiRA (Carlini et al. 2022) in = shadow models that trained on the
  example and out = those that did not, scored on the original model; for U-LiRA (Hayes et
  al. 2024) in = shadow models that trained on the example and then unlearned it, out = those
  that never saw it, scored on unlearned target models, so a perfect unlearning method
  (retraining) scores at chance.

  The default is the fixed (pooled) variance: a per-example variance from the few models a
  shadow bank has per example (K/2 for LiRA's random halves, fewer for U-LiRA's forget
  subsets) is itself noisy and makes the ratio of two Gaussians unstable, and Carlini et al.
  2022 find the global variance better with few shadow models; the per-example variances
  (`fixed_variance=False`) pay off with many.

  Args:
    shadow_confidences: [K, N] confidences of N examples under K shadow models.
    in_mask, out_mask: [K, N] bool, disjoint: which shadow models count as in / out per example.
    target_confidences: [..., N] confidences under the target model(s).
    fixed_variance: pool each group's variance over examples (default) or fit it per example.
    centring: 'mean' or 'median' of each Gaussian (`fit_gaussians`).

  Returns:
    [..., N] float64 scores.

  References: Carlini et al. 2022, "Membership Inference Attacks From First Principles",
  arXiv:2112.03570 (LiRA); Hayes et al. 2024, "Inexact unlearning needs more careful
  evaluations to avoid a false sense of privacy", arXiv:2403.01218 (U-LiRA).
  """
  shadow, in_mask = _check_shadow(shadow_confidences, in_mask, "in_mask")
  _, out_mask = _check_shadow(shadow, out_mask, "out_mask")
  if np.any(in_mask & out_mask):
    raise ValueError(f"in_mask and out_mask overlap at {np.sum(in_mask & out_mask)} (model, example) "
                     "pairs; a shadow model is either in or out for an example")
  target = np.asarray(target_confidences, dtype=np.float64)
  if target.ndim < 1 or target.shape[-1] != shadow.shape[1]:
    raise ValueError(f"target_confidences must have shape [..., {shadow.shape[1]}] (one per example); "
                     f"got {target.shape}")
  if not np.all(np.isfinite(target)):
    raise ValueError("target confidences contain NaN or inf")
  mu_in, s_in = fit_gaussians(shadow, in_mask, fixed_variance, centring)
  mu_out, s_out = fit_gaussians(shadow, out_mask, fixed_variance, centring)
  return (np.log(s_out / s_in) - 0.5 * ((target - mu_in) / s_in) ** 2
          + 0.5 * ((target - mu_out) / s_out) ** 2)


def leave_one_out_scores(confidences, in_mask, out_mask, fixed_variance: bool = True,
                         centring: str = "mean") -> np.ndarray:
  """`lira_scores` of a bank of K models in which each model is the target in turn.

  For target model k, example i is scored with the Gaussians fitted over the OTHER K - 1
  models' confidences (in: in_mask, out: out_mask), so no target's own confidence enters its
  fit; every (model, example) pair gets a score, and a pair is a member where in_mask[k, i]
  and a non-member where out_mask[k, i]. This is the shadow/target split of LiRA (Carlini et
  al. 2022) and U-LiRA (Hayes et al. 2024) with every model serving as both: each target has
  K - 1 shadow models, as many as a separate bank of K - 1 shadows would give.

  Args:
    confidences: [K, N] confidences of N examples under K models, K >= 3.
    in_mask, out_mask: [K, N] bool, disjoint: which models count as in / out per example.
    fixed_variance, centring: as `lira_scores`.

  Returns:
    [K, N] float64 scores; NaN where example i has no in-model or no out-model among the
    models other than k (it cannot be scored against target k).

  References: Carlini et al. 2022, arXiv:2112.03570; Hayes et al. 2024, arXiv:2403.01218.
  """
  confidences, in_mask = _check_shadow(confidences, in_mask, "in_mask")
  _, out_mask = _check_shadow(confidences, out_mask, "out_mask")
  k_models = len(confidences)
  if k_models < 3:
    raise ValueError(f"need at least 3 models (each target needs an in- and an out-model among the "
                     f"others); got {k_models}")
  scores = np.full(confidences.shape, np.nan)
  n_in, n_out = in_mask.sum(axis=0), out_mask.sum(axis=0)
  for k in range(k_models):
    others = np.arange(k_models) != k
    ok = (n_in - in_mask[k] > 0) & (n_out - out_mask[k] > 0)
    if ok.any():
      scores[k, ok] = lira_scores(confidences[others][:, ok], in_mask[others][:, ok], out_mask[others][:, ok],
                                  confidences[k, ok], fixed_variance, centring)
  return scores


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
  """TPR of the ROC curve at FPR `target`, the curve being sklearn's points joined by straight
  lines (a random mix of two neighbouring thresholds attains every point between them); at
  a vertical step exactly at `target` the higher TPR."""
  i = np.searchsorted(fpr, target, side="right") - 1  # the last point at or left of target
  if fpr[i] == target or i == len(fpr) - 1:
    return float(tpr[i])
  return float(tpr[i] + (tpr[i + 1] - tpr[i]) * (target - fpr[i]) / (fpr[i + 1] - fpr[i]))


def attack_metrics(member_scores, nonmember_scores, fprs=(0.01, 0.001)) -> dict:
  """How well scores separate members (label 1) from non-members (label 0), higher = member:

  * auc: area under the ROC curve (0.5 = chance);
  * balanced_accuracy: max over thresholds of (TPR + TNR) / 2;
  * tpr_at_fpr_<f> for each f in fprs: the TPR at FPR f on the ROC curve with its points
    joined linearly (`_tpr_at_fpr`; LiRA's code instead takes the last point with FPR < f,
    which can only be lower). With M non-members the curve's FPRs are multiples of 1/M, so an
    f below 1/M interpolates between the points at 0 and 1/M: read it with M >> 1/f;
  * fpr, tpr, thresholds: the ROC curve, every threshold kept, for a figure.

  Args:
    member_scores, nonmember_scores: 1-D scores (e.g. `lira_scores` of members, non-members).
    fprs: false positive rates at which to report the TPR.

  Returns:
    dict of floats and the three curve arrays.

  References: Carlini et al. 2022, arXiv:2112.03570 (TPR at low FPR as the attack metric).
  """
  members = np.asarray(member_scores, dtype=np.float64).ravel()
  nonmembers = np.asarray(nonmember_scores, dtype=np.float64).ravel()
  if members.size == 0 or nonmembers.size == 0:
    raise ValueError(f"need members and non-members; got {members.size} and {nonmembers.size}")
  scores = np.concatenate([members, nonmembers])
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores contain NaN or inf")
  labels = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
  fpr, tpr, thresholds = metrics.roc_curve(labels, scores, drop_intermediate=False)
  out = {"auc": float(metrics.roc_auc_score(labels, scores)),
         "balanced_accuracy": float(np.max((tpr + 1 - fpr) / 2))}
  for f in fprs:
    if not 0 <= f <= 1:
      raise ValueError(f"fprs must lie in [0, 1]; got {f}")
    out[f"tpr_at_fpr_{f:g}"] = _tpr_at_fpr(fpr, tpr, f)
  out.update(fpr=fpr, tpr=tpr, thresholds=thresholds)
  return out
