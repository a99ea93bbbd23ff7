"""The audit's formulas (forgetting quality from many models): closed-form cases, the published loop,
LiRA/U-LiRA."""
import numpy as np
import pytest
from scipy import special
from scipy import stats

from bench import epsilon_reference
from rum_jax.evaluation import challenge, confidence, lira


# --- logit-scaled confidence --------------------------------------------------------------

def test_logit_scaled_confidence_matches_direct_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, size=(4, 30, 7))
  labels = rng.integers(0, 7, 30)
  p = special.softmax(logits, axis=-1)[..., np.arange(30), labels]
  np.testing.assert_allclose(confidence.logit_scaled_confidence(logits, labels),
                             np.log(p / (1 - p)), rtol=1e-10, atol=1e-10)


def test_logit_scaled_confidence_stays_finite_on_extreme_logits():
  # p_y rounds to 1 (or 0) in float64, so log(p / (1 - p)) is inf; the exact values are
  # z_y - log(sum_{j != y} e^{z_j}).
  logits = np.array([[1000.0, 0.0, -5.0], [1000.0, 0.0, -5.0], [0.0, -1000.0, -2000.0]])
  conf = confidence.logit_scaled_confidence(logits, np.array([0, 1, 2]))
  expected = [1000 - np.log1p(np.exp(-5.0)), -1000.0, -2000.0]
  np.testing.assert_allclose(conf, expected, rtol=1e-12)


def test_logit_scaled_confidence_rejects_bad_input():
  with pytest.raises(ValueError, match="labels must have shape"):
    confidence.logit_scaled_confidence(np.zeros((3, 4)), np.zeros(2, int))
  with pytest.raises(ValueError, match="NaN or inf"):
    confidence.logit_scaled_confidence(np.array([[0.0, np.nan]]), np.array([0]))
  with pytest.raises(ValueError, match="C >= 2"):
    confidence.logit_scaled_confidence(np.zeros((3, 1)), np.zeros(3, int))


# --- epsilons on closed-form cases ---------------------------------------------------------

def test_the_same_confidences_give_epsilon_zero_and_full_points():
  # With equal banks every threshold has FNR = 1 - FPR (both rules), so
  # log(1 - d - FPR) - log FNR = log((FNR - d) / FNR) < 0 and likewise the other order:
  # every epsilon is clipped to 0, worth 1 point.
  rng = np.random.default_rng(1)
  bank = rng.normal(size=(64, 10)) * rng.uniform(0.5, 2, 10)
  np.testing.assert_array_equal(challenge.challenge_epsilons(bank, bank), 0.0)
  assert challenge.forget_score(bank, bank) == 1.0


def test_identical_distributions_give_small_epsilons():
  # Independent samples of one distribution: an epsilon of 3 or more would need a threshold
  # with FNR = k / N and 1 - FPR >= e^3 k / N, i.e. at most k of one bank among the lowest
  # ~20 k pooled values (or the highest): for k = 1 a chance of about 22 / 2^21 per tail.
  rng = np.random.default_rng(2)
  eps = challenge.challenge_epsilons(rng.normal(size=(512, 40)), rng.normal(size=(512, 40)))
  assert eps.max() < 3.0
  points = challenge.epsilon_points(eps, 512)
  assert points.min() >= 2.0 ** -5  # eps < 3: bucket floor(2 eps) <= 5


def test_perfectly_separated_distributions_get_the_cap_and_no_points():
  # A threshold in the gap has FPR = FNR = 0: infinite epsilon, clipped to 50.
  rng = np.random.default_rng(3)
  unlearned = rng.normal(size=(128, 6))
  retrained = rng.normal(size=(128, 6)) + 20
  eps = challenge.challenge_epsilons(unlearned, retrained)
  np.testing.assert_array_equal(eps, challenge.EPSILON_CAP)
  assert challenge.forget_score(unlearned, retrained) == 0.0


@pytest.mark.parametrize("n,shift", [(1000, 2.0), (2000, 1.5), (1000, 3.0)])
def test_shifted_gaussians_give_the_closed_form_epsilon(n, shift):
  # Unlearned ~ N(0, 1), retrained ~ N(shift, 1), each bank the N quantiles
  # z_k = Phi^-1((k - 1/2) / N) (a sample without sampling noise). The likelihood ratio of
  # a shift is monotone, so eps is largest in the tails: thresholds t between the two lowest
  # retrained values have FNR = 1/N and 1 - FPR = #{unlearned < t} / N, best for t just
  # below shift + z_2: eps = log(N Phi(shift + z_2)) (and the mirror image in the upper tail,
  # the same by symmetry). Tolerance: t sits on a 0.01 grid, so it may miss up to
  # 0.01 N phi(shift + z_2) + 1 unlearned values: under 3% of the count, 0.03 in the log.
  z = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
  eps = challenge.challenge_epsilons(z[:, None], (z + shift)[:, None])
  expected = np.log(n * stats.norm.cdf(shift + z[1]))
  assert abs(eps[0] - expected) < 0.03


def test_a_far_peakier_distribution_gets_the_cap():
  # Range ratio 0.005 < 0.01: the cap, although the two overlap around the same median.
  rng = np.random.default_rng(4)
  wide = rng.uniform(-1, 1, size=(100, 3))
  wide[0], wide[1] = -1.0, 1.0  # range exactly 2
  peaky = np.tile(np.linspace(-0.005, 0.005, 100)[:, None], (1, 3))  # range 0.01
  np.testing.assert_array_equal(challenge.challenge_epsilons(peaky, wide), challenge.EPSILON_CAP)
  # Range ratio 0.02: not capped, an epsilon from the thresholds.
  eps = challenge.challenge_epsilons(2 * peaky, wide)
  assert np.all(eps < challenge.EPSILON_CAP)


def test_bucket_points_by_hand():
  # N = 512: ceil(ln 511) = 7, buckets [0, .5), [.5, 1), ..., [6.5, 7) worth 1, 1/2, ..., 2^-13.
  eps = np.array([0.0, 0.49, 0.5, 1.2, 6.99, 7.0, 50.0])
  np.testing.assert_array_equal(challenge.epsilon_points(eps, 512),
                                [1, 1, 0.5, 0.25, 2.0 ** -13, 0, 0])
  # N = 3: ceil(ln 2) = 1, two buckets; N = 2: ceil(ln 1) = 0, none.
  np.testing.assert_array_equal(challenge.epsilon_points([0.2, 0.6, 1.0], 3), [1, 0.5, 0])
  np.testing.assert_array_equal(challenge.epsilon_points([0.0, 0.2], 2), [0, 0])


def test_forget_score_matches_the_published_bucket_loop():
  rng = np.random.default_rng(5)
  unlearned = rng.normal(size=(16, 12)) * rng.uniform(0.3, 2, 12)
  retrained = rng.normal(size=(16, 12)) + rng.uniform(-2, 2, 12)
  assert challenge.forget_score(unlearned, retrained) == pytest.approx(
      epsilon_reference.forget_score(unlearned, retrained), abs=1e-12)


def test_challenge_score_by_hand():
  score = challenge.challenge_score(0.5, [0.9, 0.7], [1.0, 1.0], 0.6, [0.8, 0.7])
  assert score == pytest.approx(0.5 * 0.8 / 1.0 * 0.6 / 0.75)
  with pytest.raises(ValueError, match="forget must be"):
    challenge.challenge_score(1.5, 1, 1, 1, 1)
  with pytest.raises(ValueError, match="retain_acc_retrained is 0"):
    challenge.challenge_score(0.5, 1, 0, 1, 1)


def test_challenge_epsilons_rejects_bad_input():
  with pytest.raises(ValueError, match="between 2 and"):
    challenge.challenge_epsilons(np.zeros((1, 3)), np.zeros((1, 3)))
  with pytest.raises(ValueError, match="both have shape"):
    challenge.challenge_epsilons(np.zeros((4, 3)), np.zeros((4, 2)))
  bad = np.zeros((4, 3))
  bad[2, 1] = np.nan
  with pytest.raises(ValueError, match=r"NaN or inf \(at example\(s\) \[1\]\)"):
    challenge.challenge_epsilons(bad, np.zeros((4, 3)))
  with pytest.raises(ValueError, match="epsilons must lie in"):
    challenge.epsilon_points([np.nan], 10)


# --- the vectorised epsilons equal the published loop ----------------------------------------

def _reference(unlearned, retrained):
  return epsilon_reference.epsilons(*epsilon_reference.split_by_median(unlearned, retrained))


@pytest.mark.parametrize("n", [2, 3, 7, 64, 200])
def test_epsilons_equal_the_published_loop_on_random_confidences(n):
  rng = np.random.default_rng(n)
  e = 12 if n < 100 else 4
  unlearned = rng.normal(size=(n, e)) * rng.uniform(0.2, 3, e)
  retrained = rng.standard_t(3, size=(n, e)) * rng.uniform(0.2, 3, e) + rng.uniform(-3, 3, e)
  np.testing.assert_allclose(challenge.challenge_epsilons(unlearned, retrained, chunk_size=5),
                             _reference(unlearned, retrained), rtol=0, atol=1e-6)


def test_epsilons_equal_the_published_loop_on_ties_and_degenerate_cases():
  rng = np.random.default_rng(7)
  n = 20
  columns = {
      # confidences on a coarse grid: many ties between models
      "rounded": (np.round(rng.normal(size=n) * 2) / 4, np.round(rng.normal(size=n) * 2 + 1) / 4),
      # confidences exactly on the single-threshold grid np.linspace(0, 1, 100) (ends included)
      "on grid": (rng.choice(np.linspace(0, 1, 100), n), rng.choice(np.linspace(0, 1, 100), n)),
      "both the same constant": (np.full(n, 0.3), np.full(n, 0.3)),
      "two constants": (np.full(n, 0.3), np.full(n, 1.7)),
      "one constant": (np.full(n, 0.3), rng.normal(size=n)),
      "equal medians": (np.r_[np.zeros(n // 2), np.ones(n // 2)], np.r_[np.zeros(n // 2), 2 * np.ones(n // 2)]),
      "equal ranges": (np.linspace(0, 1, n), np.linspace(0.5, 1.5, n)),
      "two values": (np.r_[np.zeros(15), np.ones(5)], np.r_[np.zeros(5), np.ones(15)]),
      "tiny spread": (1e-3 * rng.normal(size=n), 1e-3 * rng.normal(size=n) + 1e-3),
      "large values": (rng.normal(size=n) + 900, rng.normal(size=n) * 3 + 901),
  }
  unlearned = np.stack([u for u, _ in columns.values()], axis=1)
  retrained = np.stack([r for _, r in columns.values()], axis=1)
  fast = challenge.challenge_epsilons(unlearned, retrained, chunk_size=3)
  ref = _reference(unlearned, retrained)
  for name, a, b in zip(columns, fast, ref):
    assert abs(a - b) <= 1e-6, (name, a, b)
  assert fast[list(columns).index("both the same constant")] == 0.0
  assert fast[list(columns).index("two constants")] == challenge.EPSILON_CAP


def _on_the_grids(rng, n):
  """(peaky, wide) confidences placed on the thresholds of the published grids, ends included.

  Peaky spans [0, 1] and wide [-0.5, 2], so the grids are known in advance: single
  thresholds np.linspace(-0.5, 2, 250); right ends np.linspace(-1, 3, ceil(100 x 4)) (the
  peakier range is 1); left ends np.linspace(r - 3, r + 1, 400) for each right end r.
  """
  rights = np.linspace(-1.0, 3.0, int(np.ceil((3.0 - -1.0) * 100)))
  lefts = np.concatenate([np.linspace(r - 1.0 - 2.0, r - 1.0 + 2.0, 400)
                          for r in rng.choice(rights, 20)])
  grid = np.concatenate([np.linspace(-0.5, 2.0, 250), rights, lefts])
  peaky = rng.choice(grid[(grid >= 0) & (grid <= 1)], n - 2)
  wide = rng.choice(grid[(grid >= -0.5) & (grid <= 2)], n - 2)
  return np.r_[0.0, 1.0, peaky], np.r_[-0.5, 2.0, wide]


def test_epsilons_equal_the_published_loop_with_confidences_on_the_thresholds():
  # A confidence equal to a threshold is where < and <=, or a grid point off by one ulp,
  # change a count: place them on all three grids, in both roles (positive by median).
  rng = np.random.default_rng(11)
  pairs = [_on_the_grids(rng, 24) for _ in range(10)]
  unlearned = np.stack([p if i % 2 else w for i, (p, w) in enumerate(pairs)], axis=1)
  retrained = np.stack([w if i % 2 else p for i, (p, w) in enumerate(pairs)], axis=1)
  np.testing.assert_allclose(challenge.challenge_epsilons(unlearned, retrained, chunk_size=4),
                             _reference(unlearned, retrained), rtol=0, atol=1e-6)


def test_epsilons_equal_the_published_loop_when_ranges_tie():
  # Equal ranges: the double-threshold family's 'inside' class is the negative one.
  rng = np.random.default_rng(12)
  n, e = 16, 30
  values = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
  unlearned = rng.choice(values, size=(n, e), p=[0.1, 0.1, 0.6, 0.1, 0.1])
  retrained = rng.choice(values, size=(n, e), p=[0.35, 0.1, 0.1, 0.1, 0.35])
  unlearned[:2] = retrained[:2] = [[0.0], [1.0]]  # both ranges exactly 1
  np.testing.assert_allclose(challenge.challenge_epsilons(unlearned, retrained),
                             _reference(unlearned, retrained), rtol=0, atol=1e-6)


def test_threshold_grids_are_np_linspace_bit_for_bit():
  rng = np.random.default_rng(13)
  start = rng.normal(size=40) * 100
  stop = start + rng.uniform(0, 30, 40)
  num = np.ceil((stop - start) * 100).astype(int)
  num[:4] = [0, 1, 2, 3]
  grids = challenge._linspace(start, stop, num, int(num.max()))
  for g, a, b, k in zip(grids, start, stop, num):
    np.testing.assert_array_equal(g[:k], np.linspace(a, b, k))


def test_leading_at_most_counts_grid_points_exactly():
  rng = np.random.default_rng(15)
  grids = np.stack([np.linspace(a, a + 4, 400) for a in rng.normal(size=30) * 10])
  # values on grid points and one ulp either side, where an estimate from the step can slip
  on = grids[np.arange(30), rng.integers(0, 400, 30)]
  for v in (on, np.nextafter(on, -np.inf), np.nextafter(on, np.inf)):
    np.testing.assert_array_equal(challenge._leading_at_most(grids, v),
                                  np.sum(grids <= v[:, None], axis=1))


@pytest.mark.parametrize("side", ["left", "right"])
def test_count_codes_equal_a_binary_search_per_row(side):
  # Only the max over thresholds reaches the epsilon, so check the counts themselves:
  # ties, queries equal to data values, data outside [lo, hi].
  rng = np.random.default_rng(14)
  b, n, q = 5, 50, 3000
  first = np.sort(np.round(rng.normal(size=(b, n)), 1), axis=1)
  second = np.sort(np.round(rng.normal(size=(b, n)) * 2, 2), axis=1)
  lo, hi = np.full(b, -1.5), np.full(b, 1.5)
  queries = rng.uniform(-1.5, 1.5, size=(b, q))
  queries[:, :100] = rng.choice(np.r_[first.ravel(), second.ravel()], size=(b, 100)).clip(-1.5, 1.5)
  queries[:, 100], queries[:, 101] = lo, hi
  codes = challenge._count_codes(first, second, queries, lo, hi, side, cells=256)
  expected = np.stack([(n + 1) * np.searchsorted(second[i], queries[i], side)
                       - np.searchsorted(first[i], queries[i], side) for i in range(b)])
  np.testing.assert_array_equal(codes, expected)


# --- LiRA / U-LiRA ----------------------------------------------------------------------------

def test_fit_gaussians_by_hand():
  conf = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
  mask = np.ones_like(conf, bool)
  mean, std = lira.fit_gaussians(conf, mask, fixed_variance=False)
  np.testing.assert_allclose(mean, [3, 5])
  np.testing.assert_allclose(std, [2, np.sqrt(13)])  # (4 + 0 + 4) / 2, (9 + 1 + 16) / 2
  _, pooled = lira.fit_gaussians(conf, mask, fixed_variance=True)
  np.testing.assert_allclose(pooled, np.sqrt((8 + 26) / 4))
  mask[0, 1] = False  # example 1: models 1 and 2 only, mean 6.5, squares 12.5
  mean, std = lira.fit_gaussians(conf, mask, fixed_variance=False)
  np.testing.assert_allclose(mean, [3, 6.5])
  np.testing.assert_allclose(std, [2, np.sqrt(12.5)])


def test_lira_scores_are_the_gaussian_log_likelihood_ratio():
  rng = np.random.default_rng(8)
  shadow = rng.normal(size=(10, 6))
  in_mask = rng.random((10, 6)) < 0.5
  in_mask[:2], in_mask[2:4] = True, False  # every example has >= 2 in and >= 2 out
  target = rng.normal(size=(3, 6))
  scores = lira.lira_scores(shadow, in_mask, ~in_mask, target, fixed_variance=False)
  expected = np.empty((3, 6))
  for i in range(6):
    c_in, c_out = shadow[in_mask[:, i], i], shadow[~in_mask[:, i], i]
    expected[:, i] = (stats.norm.logpdf(target[:, i], c_in.mean(), c_in.std(ddof=1))
                      - stats.norm.logpdf(target[:, i], c_out.mean(), c_out.std(ddof=1)))
  np.testing.assert_allclose(scores, expected, rtol=1e-10)


def _planted_bank(rng, shift, num_shadow=64, n=500):
  """Per-example confidence level m_i; 'in' confidences are shifted by `shift`, noise sd 1."""
  level = rng.normal(0, 2, n)
  in_mask = rng.random((num_shadow, n)) < 0.5
  shadow = level + shift * in_mask + rng.normal(size=(num_shadow, n))
  member = rng.random(n) < 0.5
  target = level + shift * member + rng.normal(size=n)
  return shadow, in_mask, target, member


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_lira_auc_on_a_planted_shift_matches_two_normals(fixed_variance):
  # With equal unit variances the log-likelihood ratio is increasing in c - m_i, so the AUC
  # is that of N(shift, 1) against N(0, 1): Phi(shift / sqrt(2)); tolerance 0.02 covers the
  # sampling error of an AUC over ~250 + 250 examples (sd ~ 0.005 near 1) and the fits.
  rng = np.random.default_rng(9)
  shift = 4.0
  shadow, in_mask, target, member = _planted_bank(rng, shift)
  scores = lira.lira_scores(shadow, in_mask, ~in_mask, target, fixed_variance)
  result = lira.attack_metrics(scores[member], scores[~member])
  assert result["auc"] == pytest.approx(stats.norm.cdf(shift / np.sqrt(2)), abs=0.02)
  assert result["auc"] > 0.97
  assert result["balanced_accuracy"] > 0.9


def test_ulira_scores_retraining_near_chance():
  # Shadow models that trained on and unlearned an example (in) and models that never saw it
  # (out) give the same confidences, as for retraining: AUC 0.5 up to sampling error, sd
  # sqrt((m + n + 1) / (12 m n)) ~ 0.026 for ~250 + 250 examples; 0.08 is 3 sd.
  rng = np.random.default_rng(10)
  shadow, in_mask, target, member = _planted_bank(rng, shift=0.0)
  scores = lira.lira_scores(shadow, in_mask, ~in_mask, target)
  assert lira.attack_metrics(scores[member], scores[~member])["auc"] == pytest.approx(0.5, abs=0.08)


def test_attack_metrics_by_hand():
  # Members [3, 2], non-members [2, 1]. ROC points (FPR, TPR): (0, 0), (0, 1/2) at >= 3,
  # (1/2, 1) at >= 2 (the tie moves both), (1, 1). AUC = (1 + 1 + 1/2 + 1) / 4;
  # balanced accuracy = max (1 + TPR - FPR) / 2 = 3/4; at FPR f on the segment from (0, 1/2)
  # to (1/2, 1): TPR = 1/2 + f.
  result = lira.attack_metrics([3.0, 2.0], [2.0, 1.0], fprs=(0.01, 0.001, 0.25, 0.5))
  assert result["auc"] == pytest.approx(0.875)
  assert result["balanced_accuracy"] == pytest.approx(0.75)
  assert result["tpr_at_fpr_0.01"] == pytest.approx(0.51)
  assert result["tpr_at_fpr_0.001"] == pytest.approx(0.501)
  assert result["tpr_at_fpr_0.25"] == pytest.approx(0.75)
  assert result["tpr_at_fpr_0.5"] == pytest.approx(1.0)
  np.testing.assert_allclose(result["fpr"], [0, 0, 0.5, 1])
  np.testing.assert_allclose(result["tpr"], [0, 0.5, 1, 1])


def test_lira_rejects_bad_masks():
  shadow = np.zeros((4, 3))
  mask = np.ones((4, 3), bool)
  with pytest.raises(ValueError, match="overlap"):
    lira.lira_scores(shadow, mask, mask, np.zeros(3))
  one = np.zeros((4, 3), bool)
  one[0] = True
  with pytest.raises(ValueError, match="fewer than 2 selected"):
    lira.fit_gaussians(np.arange(12.0).reshape(4, 3), one, fixed_variance=False)
  with pytest.raises(ValueError, match="no example has two"):
    lira.fit_gaussians(np.arange(12.0).reshape(4, 3), one, fixed_variance=True)
  with pytest.raises(ValueError, match=r"target_confidences must have shape \[\.\.\., 3\]"):
    lira.lira_scores(np.arange(12.0).reshape(4, 3), mask, ~mask, np.zeros(2))


def test_fit_gaussians_median_centring_by_hand():
  # tensorflow/privacy's mi_lira_2021 centres each example's Gaussian on the median; the spread
  # is then measured around that centre.
  conf = np.array([[1.0, 2.0], [3.0, 4.0], [8.0, 9.0]])
  mask = np.ones_like(conf, bool)
  mean, std = lira.fit_gaussians(conf, mask, fixed_variance=False, centring="median")
  np.testing.assert_allclose(mean, [3, 4])
  np.testing.assert_allclose(std, [np.sqrt((4 + 0 + 25) / 2), np.sqrt((4 + 0 + 25) / 2)])
  mask[2, 0] = False  # example 0: models 0 and 1 only, median 2
  mean, _ = lira.fit_gaussians(conf, mask, fixed_variance=True, centring="median")
  np.testing.assert_allclose(mean, [2, 4])
  with pytest.raises(ValueError, match="valid choices: mean, median"):
    lira.fit_gaussians(conf, mask, centring="mode")


def test_median_centring_reaches_lira_scores_and_leave_one_out():
  rng = np.random.default_rng(3)
  conf = rng.normal(size=(9, 5))
  in_mask = np.zeros((9, 5), bool)
  in_mask[:5] = True
  target = rng.normal(size=(2, 5))
  scores = lira.lira_scores(conf, in_mask, ~in_mask, target, fixed_variance=False, centring="median")
  expected = np.empty((2, 5))
  for i in range(5):
    c_in, c_out = conf[in_mask[:, i], i], conf[~in_mask[:, i], i]
    m_in, m_out = np.median(c_in), np.median(c_out)
    s_in = np.sqrt(((c_in - m_in) ** 2).sum() / (len(c_in) - 1))
    s_out = np.sqrt(((c_out - m_out) ** 2).sum() / (len(c_out) - 1))
    expected[:, i] = stats.norm.logpdf(target[:, i], m_in, s_in) - stats.norm.logpdf(target[:, i], m_out, s_out)
  np.testing.assert_allclose(scores, expected, rtol=1e-10)
  loo = lira.leave_one_out_scores(conf, in_mask, ~in_mask, centring="median")
  others = np.arange(9) != 0
  np.testing.assert_allclose(loo[0], lira.lira_scores(conf[others], in_mask[others], ~in_mask[others],
                                                            conf[0], centring="median"))
  assert not np.allclose(loo, lira.leave_one_out_scores(conf, in_mask, ~in_mask))
