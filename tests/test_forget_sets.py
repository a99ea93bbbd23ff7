"""Forget-set selection on hand-built scores, and the entanglement score against closed forms."""
import ml_collections
import numpy as np
import pytest

from rum_jax.unlearning.forget_kinds import FORGET_KINDS, ForgetRequest
from rum_jax.unlearning.forget_sets import (MEMORIZATION_CENTER, entanglement_groups, entanglement_score,
                                            group_entanglement, refine, select_by_score, select_random)

# Multiples of 1/8, so every distance below is exact and the ties are real ties.
#           pos:  0      1      2     3      4      5     6      7     8     9
SCORES = np.array([0.875, 0.125, 0.5, 0.375, -0.25, 0.75, 0.625, 0.25, 1.0, 0.0])
# |score - 0.5|:  .375   .375    0    .125   .75    .25   .125   .25   .5    .5


def _select(level, n, center=MEMORIZATION_CENTER):
  return select_by_score(n, SCORES, level, center).tolist()


def test_levels_by_hand():
  assert _select("high", 3) == [0, 5, 8]
  assert _select("low", 3) == [1, 4, 9]
  assert _select("mid", 3) == [2, 3, 6]
  with pytest.warns(UserWarning, match=r"tie with 1 left out \(distance to 0.5 0.25\)"):
    assert _select("mid", 4) == [2, 3, 5, 6]  # 5 and 7 tie at .25: the lower position wins.
  assert _select("mid", 1, center=0.0) == [9]


def test_mix_thirds_and_remainder():
  assert _select("mix", 3) == [2, 4, 8]
  # n = 4: high gets the extra one (8, 0), low 4, mid 2.
  assert _select("mix", 4) == [0, 2, 4, 8]
  # n = 5: high 8, 0; low 4; mid 2 then 3 (ties with 6 at .125, lower position first).
  with pytest.warns(UserWarning, match="mix, mid third"):
    assert _select("mix", 5) == [0, 2, 3, 4, 8]
  # n = 9: high 8, 0, 5; low 4, 9, 1; mid 2, 3, 6, all disjoint.
  assert _select("mix", 9) == [0, 1, 2, 3, 4, 5, 6, 8, 9]


def test_ties_broken_by_position_with_a_warning_when_the_cut_splits_a_tie():
  scores = np.array([0.5, 0.5, 0.5, 0.1])
  with pytest.warns(UserWarning, match=r"high forget set: the last 2 chosen examples tie with 1 left out \(score 0.5\)"):
    assert select_by_score(2, scores, "high").tolist() == [0, 1]
  with pytest.warns(UserWarning, match=r"\(score -0.5\)"):  # the score itself, sign included
    assert select_by_score(2, -scores, "high").tolist() == [0, 3]
  with pytest.warns(UserWarning, match=r"low forget set: the last 1 chosen examples tie with 2 left out"):
    assert select_by_score(2, scores, "low").tolist() == [0, 3]
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a cut between distinct scores says nothing
    assert select_by_score(3, scores, "high").tolist() == [0, 1, 2]
    assert _select("high", 3) == [0, 5, 8]


def test_proxy_mid_uses_median():
  scores = np.array([3.0, 10.0, 1.0, 7.0, 5.0])  # median 5; distances 2, 5, 4, 2, 0.
  assert select_by_score(1, scores, "mid").tolist() == [4]
  assert select_by_score(3, scores, "mid").tolist() == [0, 3, 4]
  assert select_by_score(1, scores, "mid", MEMORIZATION_CENTER).tolist() == [2]  # Center 0.5 instead.
  # The registry's kinds: 'proxy' ranks around the median, 'memorization' around 0.5.
  f = ml_collections.ConfigDict(dict(size=1, level="mid", seed=0, group=0))
  for kind, expected in (("proxy", [4]), ("memorization", [2])):
    forget, report = FORGET_KINDS.get(kind).build(ForgetRequest(f, 2, 5, scores))
    assert [p.tolist() for p in forget] == [expected, expected] and report["level"] == "mid"


def test_random_selection():
  a = select_random(30, num_train=100, seed=1)
  assert len(a) == 30 and len(np.unique(a)) == 30 and np.all(np.diff(a) > 0)
  assert a.min() >= 0 and a.max() < 100
  np.testing.assert_array_equal(a, select_random(30, num_train=100, seed=1))
  assert not np.array_equal(a, select_random(30, num_train=100, seed=2))
  assert select_random(100, num_train=100).tolist() == list(range(100))


def test_selection_errors():
  for n in (0, -1, 11):
    with pytest.raises(ValueError, match="must be in \\[1, 10\\]"):
      select_by_score(n, SCORES, "high")
    with pytest.raises(ValueError, match="must be in \\[1, 10\\]"):
      select_random(n, num_train=10)
  with pytest.raises(ValueError, match="python train.py --config=configs/<x>_memorization.py"):
    select_by_score(3, None, "high")
  with pytest.raises(ValueError, match="valid choices: entanglement, memorization, proxy, random"):
    FORGET_KINDS.get("es")
  with pytest.raises(ValueError, match="needs level in low, mid, high, mix"):
    select_by_score(3, SCORES, "top")
  with pytest.raises(ValueError, match="n >= 3"):
    select_by_score(2, SCORES, "mix")
  nan_scores = SCORES.copy()
  nan_scores[6] = np.nan
  with pytest.raises(ValueError, match="1 NaN/inf values \\(first positions \\[6\\]"):
    select_by_score(3, nan_scores, "low")


def test_refine_into_thirds():
  # Forget scores ascending: 4 (-.25), 9 (0), 2 (.5), 5 (.75), 0 (.875), 8 (1.0).
  groups = refine([8, 0, 5, 2, 4, 9], SCORES)
  assert [g.tolist() for g in groups] == [[4, 9], [2, 5], [0, 8]]
  # 7 examples: array_split gives sizes 3, 2, 2 (extra to the lowest group).
  groups = refine([8, 0, 5, 2, 4, 9, 7], SCORES)
  assert [g.tolist() for g in groups] == [[4, 7, 9], [2, 5], [0, 8]]
  with pytest.raises(ValueError, match="distinct"):
    refine([1, 1, 2], SCORES)
  with pytest.raises(ValueError, match="\\[0, 10\\)"):
    refine([1, 12, 2], SCORES)
  with pytest.raises(ValueError, match="n_groups must be in \\[1, 2\\]"):
    refine([1, 2], SCORES)


def test_entanglement_groups_by_hand():
  features = np.array([[0.0], [4.0], [-1.0], [2.0], [-5.0]])  # Mean 0.
  np.testing.assert_array_equal(entanglement_groups(features, 2), [[0, 2], [3, 1]])
  ties = np.array([[1.0, 0.0], [0.0, -1.0], [-2.0, 0.0], [0.0, 2.0]])
  np.testing.assert_array_equal(entanglement_groups(ties, 2), [[0, 1], [2, 3]])
  with pytest.raises(ValueError, match="group_size"):
    entanglement_groups(features, 6)


def _es_closed_form(r, f):
  # mean ||phi - mu_S||^2 is the trace of the (1/n) covariance, and mu_R - mu = (mu_R - mu_F)/2,
  # so the denominator is 0.5 * 2 * ||mu_R - mu_F||^2 / 4.
  within = np.trace(np.cov(r.T, bias=True)) + np.trace(np.cov(f.T, bias=True))
  return within / (np.linalg.norm(r.mean(0) - f.mean(0)) ** 2 / 4)


def test_entanglement_score_matches_closed_form():
  rng = np.random.default_rng(0)
  r = rng.normal(size=(40, 3))
  f = rng.normal(size=(15, 3)) + [0.5, -0.2, 0.1]
  np.testing.assert_allclose(entanglement_score(r, f), _es_closed_form(r, f), rtol=1e-10)


def test_well_separated_tight_clusters_have_es_near_zero():
  rng = np.random.default_rng(1)
  r = rng.normal(scale=1e-3, size=(50, 4))
  f = rng.normal(scale=1e-3, size=(20, 4)) + 100.0
  assert entanglement_score(r, f) < 1e-8
  # Same mean: no separation at all.
  same_mean = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
  assert entanglement_score(same_mean, np.array([[1.0, 0.0], [-1.0, 0.0]])) == np.inf


def test_group_entanglement_against_closed_form():
  rng = np.random.default_rng(2)
  features = rng.normal(size=(30, 2)) * [1.0, 3.0]
  groups = entanglement_groups(features, 10)
  es = group_entanglement(features, groups)
  for g, group in enumerate(groups):
    retain = np.setdiff1d(np.arange(30), group)
    np.testing.assert_allclose(es[g], _es_closed_form(features[retain], features[group]),
                               rtol=1e-10)
