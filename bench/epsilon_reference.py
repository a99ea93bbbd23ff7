"""A plain NumPy port of the published per-example epsilon loop, FOR COMPARISON ONLY.

The NeurIPS 2023 Machine Unlearning challenge scores forgetting with the per-example loop of
google-deepmind/unlearning_evaluation, `metric.py` (`_get_epsilons` and the functions it
calls; Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the
first NeurIPS unlearning competition", arXiv:2406.09073). This module follows that loop
step by step, one forget example at a time, with each threshold family evaluated as
[models, thresholds] comparison matrices, so that `bench/epsilon.py` and the tests can check
`rum_jax.evaluation.challenge.challenge_epsilons` (the vectorised version the library uses)
against it and time the two. Nothing in rum_jax imports it.

Where the port departs from the published code, and why:
* NumPy float64 on the host instead of torch tensors on a GPU. The published code averages
  the 0/1 decisions in float32 and builds the single-threshold grid with `torch.linspace`,
  which makes float32 thresholds by default; here the rates are count / N in float64 and
  both grids come from `np.linspace` in float64 (the double-threshold grid already does in
  the published code), so the only differences are float32 roundings.
* The comparison matrices are broadcast ([N, 1] against [T]) rather than tiled to [N, T]
  first; the decisions are the same.
* The published `assert thr_eps` is evaluated on a NumPy array, which raises for any array
  of more than one element; the port reads its intent (some threshold survived). When none
  survives (both distributions the same constant: every threshold has exactly one of FPR,
  FNR equal to 0) nothing distinguishes them and the port returns epsilon 0, as the
  library does.
"""
import warnings

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # the double-threshold family's margin around the peakier distribution


def _rates(pos_in: np.ndarray, neg_in: np.ndarray):
  """(tpr, fnr, fpr, tnr) from [N, T] 'predicted positive' matrices: means over models."""
  return pos_in.mean(0), (~pos_in).mean(0), neg_in.mean(0), (~neg_in).mean(0)


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray):
  """Rates of 'inside [left, right] = the peakier distribution' (`_get_double_threshold_rates`)."""
  pos_diff = pos.max() - pos.min()
  neg_diff = neg.max() - neg.min()
  smallest = neg_diff if pos_diff > neg_diff else pos_diff
  if pos_diff >= neg_diff:  # 'positive' is the peakier one from here on
    pos, neg = neg, pos
  width = smallest
  lo = pos.min() + width - BUFFER
  hi = pos.max() + BUFFER
  rights = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  num_left = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
  lefts = np.concatenate(
      [np.linspace(r - width - BUFFER, r - width + BUFFER, num=num_left) for r in rights])
  rights = np.repeat(rights, num_left)

  def predicted_positive(c):
    return (lefts <= c[:, None]) & (c[:, None] <= rights)

  return _rates(predicted_positive(pos), predicted_positive(neg))


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray):
  """Rates of 'at or above the threshold = positive' (`_get_single_threshold_rates`)."""
  both = np.concatenate([pos, neg])
  lo, hi = both.min(), both.max()
  thresholds = np.linspace(lo, hi, int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  return _rates(pos[:, None] >= thresholds, neg[:, None] >= thresholds)


def epsilons(pos_confs: np.ndarray, neg_confs: np.ndarray, delta: float = DELTA) -> np.ndarray:
  """Per-example epsilons from [N, E] confidences of the two classes (`_get_epsilons`)."""
  out = []
  for i in range(pos_confs.shape[1]):
    pos, neg = pos_confs[:, i], neg_confs[:, i]
    pos_diff = pos.max() - pos.min()
    neg_diff = neg.max() - neg.min()
    largest = pos_diff if pos_diff > neg_diff else neg_diff
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    with np.errstate(invalid="ignore"):  # 0 / 0 when both are constant: NaN, not capped
      peaky = smallest / largest < 0.01
    if peaky:
      out.append(EPSILON_CAP)
      continue
    tpr_d, fnr_d, fpr_d, tnr_d = double_threshold_rates(pos, neg)
    tpr_s, fnr_s, fpr_s, tnr_s = single_threshold_rates(pos, neg)
    tpr = np.concatenate([tpr_d, tpr_s])
    fnr = np.concatenate([fnr_d, fnr_s])
    fpr = np.concatenate([fpr_d, fpr_s])
    tnr = np.concatenate([tnr_d, tnr_s])
    thr_eps = np.zeros(len(tpr))
    thr_eps[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf
    thr_eps[(thr_eps == 0) & (fpr * fnr == 0)] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of an all-NaN column
      computed = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr),
                                    np.log(1 - delta - fnr) - np.log(fpr)], axis=0), 0, None)
    thr_eps = np.where(thr_eps == 0, computed, thr_eps)
    kept = thr_eps[~np.isnan(thr_eps)]
    out.append(kept.max() if kept.size else 0.0)
  return np.clip(np.asarray(out, dtype=np.float64), 0, EPSILON_CAP)


def split_by_median(unlearned: np.ndarray, retrained: np.ndarray):
  """(pos, neg) [N, E]: per example, positive = the one with the larger median."""
  retrain_is_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
  return (np.where(retrain_is_positive, retrained, unlearned),
          np.where(retrain_is_positive, unlearned, retrained))


def forget_score(unlearned: np.ndarray, retrained: np.ndarray) -> float:
  """F from [N, E] confidences (`compute_forget_score_from_confs`): bucketed points, averaged."""
  eps = epsilons(*split_by_median(unlearned, retrained))
  max_epsilon = np.ceil(np.log(unlearned.shape[0] - 1))
  start, bucket, points, buckets = 0, 0.5, 1, {}
  while start + bucket <= max_epsilon:
    buckets[start] = points
    points /= 2
    start += bucket
  score = 0
  for e in eps:
    for start, points in buckets.items():
      if e < start + bucket:
        score += points
        break
  return score / unlearned.shape[1]
