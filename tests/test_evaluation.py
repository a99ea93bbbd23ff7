"""Tests of rum_jax.evaluation: accuracy, ToW, MIA features and attacks (seed statistics: test_summary.py)."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from rum_jax.evaluation import mia
from rum_jax.evaluation.tow import SPLITS
from rum_jax.evaluation.tow import accuracy
from rum_jax.evaluation.tow import tow
from rum_jax.evaluation.tow import tow_mia


# ----------------------------------------------------------------------------- accuracy, ToW


def test_accuracy_by_hand():
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, 0.0, 6.0], [1.0, 0.0, 0.0]])
  labels = np.array([0, 1, 0, 2])
  # Predictions are 0, 1, 2, 0: two of four right.
  assert accuracy(logits, labels) == 0.5


def test_tow_by_hand():
  u = {"forget": 0.9, "retain": 0.8, "test": 0.7}
  r = {"forget": 0.6, "retain": 0.85, "test": 0.75}
  # (1 - 0.3) * (1 - 0.05) * (1 - 0.05)
  np.testing.assert_allclose(tow(u, r), 0.7 * 0.95 * 0.95)
  # The forget factor becomes 1 - |0.1 - 0.5| = 0.6.
  np.testing.assert_allclose(tow_mia(u, r, mia_u=0.1, mia_r=0.5), 0.6 * 0.95 * 0.95)


def test_tow_is_one_at_the_reference_and_symmetric():
  rng = np.random.default_rng(0)
  for _ in range(5):
    r = dict(zip(SPLITS, rng.uniform(size=3)))
    u = dict(zip(SPLITS, rng.uniform(size=3)))
    assert tow(r, dict(r)) == 1.0
    assert tow_mia(r, dict(r), 0.3, 0.3) == 1.0
    assert 0.0 <= tow(u, r) < 1.0
    np.testing.assert_allclose(tow(u, r), tow(r, u))


def test_tow_mia_ignores_forget_accuracy():
  r = {"forget": 0.5, "retain": 0.9, "test": 0.8}
  u1 = {"forget": 0.0, "retain": 0.9, "test": 0.7}
  u2 = dict(u1, forget=1.0)
  assert tow_mia(u1, r, 0.2, 0.4) == tow_mia(u2, r, 0.2, 0.4)


@pytest.mark.parametrize("acc_u", [
    {"forget": 95.0, "retain": 0.9, "test": 0.8},       # percent instead of fraction
    {"forget": -0.1, "retain": 0.9, "test": 0.8},
    {"forget": float("nan"), "retain": 0.9, "test": 0.8},
    {"retain": 0.9, "test": 0.8},                        # missing key
])
def test_tow_rejects_bad_accuracies(acc_u):
  r = {"forget": 0.5, "retain": 0.9, "test": 0.8}
  with pytest.raises(ValueError):
    tow(acc_u, r)
  with pytest.raises(ValueError):
    tow(r, acc_u)


def test_tow_mia_rejects_bad_mia():
  r = {"forget": 0.5, "retain": 0.9, "test": 0.8}
  with pytest.raises(ValueError, match="mia_u"):
    tow_mia(r, r, 1.5, 0.5)
  with pytest.raises(ValueError, match="mia_r"):
    tow_mia(r, r, 0.5, -0.5)


def test_accuracy_rejects_bad_shapes():
  with pytest.raises(ValueError):
    accuracy(np.zeros((3, 2)), np.zeros(4, int))
  with pytest.raises(ValueError):
    accuracy(np.zeros((0, 2)), np.zeros(0, int))


# ----------------------------------------------------------------------------- MIA features


def _naive_softmax_rows(logits):
  """Row-by-row softmax in plain Python, for moderate logits only."""
  out = []
  for row in logits:
    e = [math.exp(v) for v in row]
    s = sum(e)
    out.append([v / s for v in e])
  return np.array(out)


def test_per_example_ce_matches_naive_formula():
  rng = np.random.default_rng(1)
  logits = rng.normal(scale=3.0, size=(20, 7))
  labels = rng.integers(0, 7, size=20)
  p = _naive_softmax_rows(logits)
  expected = [-math.log(p[i][labels[i]]) for i in range(20)]
  np.testing.assert_allclose(mia.per_example_ce(logits, labels), expected, rtol=1e-10)


def test_per_example_ce_extreme_logits_closed_form():
  # -log softmax([1000, 0])[1] = logsumexp(1000, 0) - 0 = 1000 + log1p(e^-1000) = 1000.
  ce = mia.per_example_ce(np.array([[1000.0, 0.0], [1000.0, 0.0]]), np.array([1, 0]))
  np.testing.assert_allclose(ce, [1000.0, 0.0], atol=1e-12)


def test_features_match_independent_formulas():
  rng = np.random.default_rng(2)
  n, c = 25, 5
  logits = rng.normal(scale=2.0, size=(n, c))
  labels = rng.integers(0, c, size=n)
  p = _naive_softmax_rows(logits)
  entropy = [-sum(p[i][k] * math.log(p[i][k]) for k in range(c)) for i in range(n)]
  # Song & Mittal's Mentr, written out term by term.
  mentr = []
  for i in range(n):
    y = labels[i]
    value = -(1 - p[i][y]) * math.log(p[i][y])
    for k in range(c):
      if k != y:
        value -= p[i][k] * math.log(1 - p[i][k])
    mentr.append(value)
  np.testing.assert_allclose(mia.entropy(logits, labels)[:, 0], entropy, rtol=1e-10)
  np.testing.assert_allclose(mia.m_entropy(logits, labels)[:, 0], mentr, rtol=1e-10)
  np.testing.assert_allclose(mia.confidence(logits, labels)[:, 0],
                             [p[i][labels[i]] for i in range(n)], rtol=1e-10)
  np.testing.assert_allclose(mia.probabilities(logits, labels), p, rtol=1e-10)
  np.testing.assert_array_equal(mia.correctness(logits, labels)[:, 0],
                                [float(np.argmax(p[i]) == labels[i]) for i in range(n)])
  for name, feature in mia.FEATURES.items():
    out = feature(logits, labels)
    assert out.ndim == 2 and len(out) == n, name


@pytest.mark.parametrize("a", [5.0, 50.0, 800.0])
def test_m_entropy_binary_closed_form_at_extreme_logits(a):
  # With two classes 1 - p_other = p_y, so Mentr = -2 (1 - p_y) log p_y. For logits [a, 0]
  # and label 1: log p_y = -log(1 + e^a), 1 - p_y = 1 / (1 + e^-a). A version that takes
  # log(1 - p) of a probability rounded to 1 would be off (or infinite) for large a.
  logits = np.array([[a, 0.0], [a, 0.0]])
  labels = np.array([1, 0])
  expected_wrong = 2.0 * np.logaddexp(0.0, a) / (1.0 + np.exp(-a))
  # Label 0 (right): 1 - p_y = 1 / (1 + e^a), log p_y = -log(1 + e^-a).
  expected_right = 2.0 * np.log1p(np.exp(-a)) * np.exp(-a) / (1.0 + np.exp(-a))
  got = mia.m_entropy(logits, labels)[:, 0]
  np.testing.assert_allclose(got, [expected_wrong, expected_right], rtol=1e-10, atol=1e-300)
  assert np.all(np.isfinite(mia.entropy(logits, labels)))


def test_features_reject_bad_input():
  with pytest.raises(ValueError, match="labels must lie"):
    mia.entropy(np.zeros((2, 3)), np.array([0, 3]))
  with pytest.raises(ValueError, match="C >= 2"):
    mia.per_example_ce(np.zeros((2, 1)), np.array([0, 0]))
  with pytest.raises(ValueError, match="integers"):
    mia.per_example_ce(np.zeros((2, 3)), np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="NaN"):
    mia.per_example_ce(np.array([[np.nan, 0.0]]), np.array([0]))


# ----------------------------------------------------------------------------- SVC MIA


def _member_like(rng, n, c=10):
  """Confident correct predictions: near-zero loss, low entropy."""
  labels = rng.integers(0, c, size=n)
  logits = rng.normal(size=(n, c))
  logits[np.arange(n), labels] += 12.0
  return logits, labels


def _nonmember_like(rng, n, c=10):
  """Near-uniform predictions with the true class pushed down: wrong, high loss, high entropy."""
  labels = rng.integers(0, c, size=n)
  logits = rng.normal(scale=0.3, size=(n, c))
  logits[np.arange(n), labels] -= 1.0
  return logits, labels


def test_svc_mia_known_answers():
  rng = np.random.default_rng(3)
  retain = _member_like(rng, 400)
  test = _nonmember_like(rng, 250)
  like_members = mia.svc_mia(*retain, *test, *_member_like(rng, 150), seed=0)
  like_nonmembers = mia.svc_mia(*retain, *test, *_nonmember_like(rng, 150), seed=0)
  assert set(like_members) == set(mia.FEATURES)
  for name in mia.FEATURES:
    assert like_members[name] <= 0.02, (name, like_members[name])
    assert like_nonmembers[name] >= 0.98, (name, like_nonmembers[name])
  # A forget set of 60 member-like and 140 non-member-like examples: efficacy ~ 140 / 200.
  f_in, y_in = _member_like(rng, 60)
  f_out, y_out = _nonmember_like(rng, 140)
  mixed = mia.svc_mia(*retain, *test, np.concatenate([f_in, f_out]),
                      np.concatenate([y_in, y_out]), seed=1)
  for name in mia.FEATURES:
    np.testing.assert_allclose(mixed[name], 0.7, atol=0.03, err_msg=name)


def test_svc_mia_rejects_mismatched_classes():
  rng = np.random.default_rng(4)
  with pytest.raises(ValueError, match="number of classes"):
    mia.svc_mia(*_member_like(rng, 20, c=10), *_nonmember_like(rng, 20, c=10),
                *_member_like(rng, 5, c=5))


def test_shadow_positions_balanced_capped_and_seeded():
  r, t = mia.shadow_positions(num_retain=1000, num_test=300, num_shadow=10_000, seed=0)
  assert len(r) == len(t) == 300  # capped at the test size, both sides balanced
  assert len(np.unique(r)) == 300 and r.min() >= 0 and r.max() < 1000
  np.testing.assert_array_equal(t, np.arange(300))  # all test examples used
  r2, t2 = mia.shadow_positions(1000, 300, 10_000, seed=0)
  np.testing.assert_array_equal(r, r2)
  np.testing.assert_array_equal(t, t2)
  r3, _ = mia.shadow_positions(1000, 300, 10_000, seed=1)
  assert not np.array_equal(r, r3)
  r4, t4 = mia.shadow_positions(1000, 300, num_shadow=50, seed=0)
  assert len(r4) == len(t4) == 50 and len(np.unique(t4)) == 50
  r5, t5 = mia.shadow_positions(100, 300, num_shadow=None)
  assert len(r5) == len(t5) == 100  # capped at the retain size
  with pytest.raises(ValueError):
    mia.shadow_positions(100, 300, num_shadow=0)


# ----------------------------------------------------------------------------- loss MIA


def test_loss_mia_auc_separable_is_one():
  rng = np.random.default_rng(5)
  members = mia.per_example_ce(*_member_like(rng, 300))
  nonmembers = mia.per_example_ce(*_nonmember_like(rng, 200))
  assert members.max() < nonmembers.min()
  assert mia.loss_mia_auc(members, nonmembers, seed=0) > 0.99


def test_loss_mia_auc_identical_distributions_is_half():
  rng = np.random.default_rng(6)
  aucs = [mia.loss_mia_auc(rng.exponential(size=400), rng.exponential(size=400), seed=s)
          for s in range(3)]
  np.testing.assert_allclose(np.mean(aucs), 0.5, atol=0.05)


def test_loss_mia_auc_gaussian_closed_form():
  # Member losses N(0, 1), non-member losses N(1, 1): the optimal (monotone) score has
  # AUC = P(X_nonmember > X_member) = Phi(1 / sqrt(2)).
  rng = np.random.default_rng(7)
  auc = mia.loss_mia_auc(rng.normal(0.0, 1.0, size=2000), rng.normal(1.0, 1.0, size=1500))
  np.testing.assert_allclose(auc, scipy_stats.norm.cdf(1 / math.sqrt(2)), atol=0.03)


def test_loss_mia_auc_rejects_bad_input():
  with pytest.raises(ValueError, match="at least 2"):
    mia.loss_mia_auc(np.array([1.0]), np.array([1.0, 2.0]))
  with pytest.raises(ValueError, match="NaN"):
    mia.loss_mia_auc(np.array([1.0, np.inf]), np.array([1.0, 2.0]))


def test_loss_mia_auc_is_not_fooled_by_near_zero_losses_with_outliers():
  """A trained model: members ~1e-4, non-members ~1e-3 with a few huge losses. Members have
  the lower loss everywhere, so the attack must rank them first (the fit on raw losses used
  to flip its sign here and report an AUC below 0.5)."""
  rng = np.random.default_rng(0)
  members = 1e-4 * np.exp(rng.normal(size=300) * 0.3)
  nonmembers = 1e-3 * np.exp(rng.normal(size=300) * 0.3)
  nonmembers[:10] = 5.0 + rng.random(10)
  assert mia.loss_mia_auc(members, nonmembers, seed=0) > 0.95
