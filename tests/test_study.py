"""The study's design: matched forget sets drawn per seed, doses per forget example, RUM's plan search."""
import itertools
import math

import ml_collections
import numpy as np
import pytest

from rum_jax.pipelines.study import plan as plan_lib, sets
from rum_jax.unlearning import METHODS, forget_kinds, runners
from rum_jax.unlearning.interface import MethodContext

N, SIZE, SEEDS = 900, 40, 16


@pytest.fixture(scope="module")
def planted():
  """Memorization-like scores: a third about 0, a spread middle, a third near 1, shuffled."""
  rng = np.random.default_rng(0)
  scores = np.concatenate([rng.uniform(0, 0.02, 300), rng.uniform(0.05, 0.95, 300), rng.uniform(0.9, 1.0, 300)])
  return rng.permutation(scores)


def _bands_by_numpy(scores, n, center=0.5):
  """The three bands, computed independently: high = the 2n largest, low = the 2n smallest of the
  rest, mid = the 2n closest to the centre of what is left."""
  left = np.arange(len(scores))
  high = left[np.argsort(-scores[left], kind="stable")[:2 * n]]
  left = np.setdiff1d(left, high)
  low = left[np.argsort(scores[left], kind="stable")[:2 * n]]
  left = np.setdiff1d(left, low)
  mid = left[np.argsort(np.abs(scores[left] - center), kind="stable")[:2 * n]]
  return {"high": set(high), "low": set(low), "mid": set(mid)}


def test_reported_and_validation_sets_match_never_overlap_and_differ_per_seed(planted):
  bands = _bands_by_numpy(planted, SIZE)
  for level in ("low", "mid", "high"):
    pairs = forget_kinds.matched_sets(planted, SIZE, level, 0.5, seed=0, num_seeds=SEEDS)
    for report, validation in pairs:
      assert len(report) == len(validation) == SIZE and not np.intersect1d(report, validation).size
      assert set(report) | set(validation) == bands[level], "both halves of the level's band"
    reports = [tuple(r) for r, _ in pairs]
    assert len(set(reports)) == SEEDS, "every seed draws its own sets"
    # Same distribution: over seeds the two sets' means and quartiles agree to a fraction of the
    # band's spread (halves of one band), and no seed's gap exceeds it.
    r = np.array([np.quantile(planted[p], [0.25, 0.5, 0.75]).tolist() + [planted[p].mean()] for p, _ in pairs])
    v = np.array([np.quantile(planted[q], [0.25, 0.5, 0.75]).tolist() + [planted[q].mean()] for _, q in pairs])
    spread = np.ptp(planted[list(bands[level])])
    np.testing.assert_allclose(r.mean(0), v.mean(0), atol=0.1 * spread)
  stats = sets.set_stats(planted, SIZE, ("low", "mid", "high", "mix"), seed=0, num_seeds=SEEDS)
  assert all(st["overlap"] == 0 and st["distinct_across_seeds"] for st in stats.values())
  sets.check_matched(stats, tolerance=0.05)
  with pytest.raises(ValueError, match=r"match_tolerance=0: low: .*; high: reported mean 0\.9\d\d \(quartiles"):
    sets.check_matched(stats, tolerance=0.0)


def test_a_mix_takes_its_thirds_from_the_seeds_level_sets(planted):
  level_sets = {lv: forget_kinds.matched_sets(planted, SIZE, lv, 0.5, 3, SEEDS) for lv in ("low", "mid", "high")}
  mix = forget_kinds.matched_sets(planted, SIZE, "mix", 0.5, 3, SEEDS)
  counts = {"high": 14, "low": 13, "mid": 13}  # 40 = 3 x 13 + 1
  for s, (report, validation) in enumerate(mix):
    for split, part in ((0, report), (1, validation)):
      for lv, count in counts.items():
        assert len(np.intersect1d(part, level_sets[lv][s][split])) == count


def test_the_old_ranking_draw_is_refused_where_its_validation_set_is_less_extreme(planted):
  f = ml_collections.ConfigDict(dict(size=SIZE, level="high", seed=0, group=0, draw="ranking"))
  build = forget_kinds.FORGET_KINDS.get("memorization").build
  report, _ = build(forget_kinds.ForgetRequest(f, 2, N, planted))
  f.split = "validation"
  validation, _ = build(forget_kinds.ForgetRequest(f, 2, N, planted))
  assert np.array_equal(report[0], report[1]), "one set for every seed"
  assert planted[report[0]].min() >= planted[validation[0]].max(), "the next examples of the ranking"
  f.update(draw="band", split="report")
  banded, info = build(forget_kinds.ForgetRequest(f, 2, N, planted))
  assert not np.array_equal(banded[0], banded[1]) and info["draw"] == "band"


def test_the_criterion_says_which_levels_fail_with_their_numbers(planted):
  rule = ml_collections.ConfigDict(dict(high_min=0.5, mid_range=(0.35, 0.65), low_max=0.1))
  assert sets.criterion(sets.set_stats(planted, SIZE, ("low", "mid", "high"), 0, 4), rule)["met"]
  few = np.zeros(N)
  few[:30] = np.linspace(0.2, 1.0, 30)  # digits-like: few memorized examples
  out = sets.criterion(sets.set_stats(few, SIZE, ("low", "mid", "high"), 0, 4), rule)
  failed = {c["level"]: c["mean"] for c in out["checks"] if not c["met"]}
  assert not out["met"] and set(failed) == {"high", "mid"}
  assert abs(failed["high"] - few[np.argsort(-few)[:2 * SIZE]].mean()) < 0.05  # halves of the high band


def _neggrad_plus_ascent(forget, retain, passes, batch=8, epoch=0):
  """Per forget example, the ascent it gets in one epoch of NegGrad+'s plan, in units of lr (1 - alpha):
  the sum over its appearances of 1 / (the weight of its batch), each batch's loss being a weighted mean."""
  settings = ml_collections.ConfigDict(dict(batch_size=batch, forget_passes=passes))
  ctx = MethodContext(None, settings, [forget], [retain])
  phases = METHODS.get("neggrad_plus").phases(settings, ctx)
  plan = runners._plan(ctx, phases, epoch)["forget"]
  idx, w = plan["idx"][0], plan["weight"][0]
  share = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
  return {int(p): float(share[idx == p].sum()) for p in forget}


def test_neggrad_plus_on_a_third_gets_the_same_ascent_per_forget_example_as_on_the_whole():
  forget = np.arange(300, 348)  # 48 = 3 x 16: three passes fill batches of 8 exactly, whole or third
  retain = np.arange(0, 300)
  third = forget[:16]
  rest = np.concatenate([retain, forget[16:]])
  whole = _neggrad_plus_ascent(forget, retain, passes=3)
  part = _neggrad_plus_ascent(third, rest, passes=3)
  # every example 3 times per epoch, each a 1/8 share of its batch's mean
  np.testing.assert_allclose(list(whole.values()), 3 / 8)
  np.testing.assert_allclose(list(part.values()), 3 / 8)
  # RUM's original dose (one retain pass, the forget stream cycled to it): ceil(|R| / 8) batches'
  # worth of forget examples over |F| of them, so a third of the set gets about three times as much
  old_whole = np.mean(list(_neggrad_plus_ascent(forget, retain, passes=0).values()))
  old_part = np.mean(list(_neggrad_plus_ascent(third, rest, passes=0).values()))
  np.testing.assert_allclose(old_whole, math.ceil(300 / 8) / 48, rtol=1e-6)
  np.testing.assert_allclose(old_part, math.ceil(332 / 8) / 16, rtol=1e-6)
  assert old_part > 3 * old_whole


def test_the_plan_search_finds_a_planted_best_plan():
  """A toy mix: the state is how far each third is unlearned (u) and the damage done to the rest
  (d); the ToW of a sequence is 1 - mean |u - goal| - d per seed, with goal (0, 0.5, 1) (the
  retrained model still gets the low third right and the high third wrong). Each method unlearns
  the stage's third by its amount at its damage; a diverged candidate is never chosen. The
  planted best plan is none -> a -> b, and each stage starts from the earlier choices."""
  goal = np.array([0.0, 0.5, 1.0])
  effects = {"none": (0.0, 0.0), "a": (0.5, 0.01), "b": (1.0, 0.02), "c": (0.8, 0.2), "broken": None}
  options = [plan_lib.Candidate("none")] + [plan_lib.Candidate(m, (("lr", 0.1),)) for m in ("a", "b", "c", "broken")]
  noise = np.random.default_rng(0).normal(0, 1e-3, (3, len(options), 4))  # 4 seeds
  calls = []

  def tow(u, d):
    return 1 - np.abs(u - goal).mean() - d

  def apply(state, k, method):
    u, d = state[0].copy(), state[1]
    amount, damage = effects[method]
    u[k] = amount
    return u, d + damage

  def score_stage(k, prefix, start, cands):
    calls.append([c.label for c in prefix])
    out = []
    for j, c in enumerate(cands):
      if effects[c.method] is None:
        out.append(None)
        continue
      end = apply(start, k, c.method)
      out.append((tow(*end) + noise[k, j], end))
    return out

  found = plan_lib.greedy_search(("low", "mid", "high"), options, (np.zeros(3), 0.0), score_stage)
  chosen = tuple(found["plan"][lv].method for lv in ("low", "mid", "high"))

  def final(seq):  # brute force: the ToW of every whole sequence of the four working candidates
    state = (np.zeros(3), 0.0)
    for k, m in enumerate(seq):
      state = apply(state, k, m)
    return tow(*state)
  ranked = sorted(itertools.product(["none", "a", "b", "c"], repeat=3), key=final, reverse=True)
  assert final(ranked[0]) > final(ranked[1]) + 0.01, "the planted optimum is unique"
  assert chosen == ranked[0] == ("none", "a", "b")
  assert calls == [[], ["none"], ["none", "a (lr=0.1)"]], "each stage starts from the earlier choices"
  assert found["evaluated"] == 3 * len(options)
  np.testing.assert_allclose(found["state"][0], goal)
  assert found["stages"][0]["scores"]["broken (lr=0.1)"] is None
