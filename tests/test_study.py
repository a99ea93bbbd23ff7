"""The study's design: matched forget sets drawn per seed, doses per forget example, RUM's plan
searched on whole sequences with the single side's budget, every claim chosen by its own metric
(the registry's), Holm's correction, grid edges, and the whole study end to end."""
import itertools
import math
import os

import ml_collections
import numpy as np
import pytest
from scipy import stats as scipy_stats

from rum_jax import commands, io, results, runfolder
from rum_jax.pipelines.study import claims as claims_lib, plan as plan_lib, report, sets
from rum_jax.unlearning import UNLEARNING_METHODS, forget_kinds, runners
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
  phases = UNLEARNING_METHODS.get("neggrad_plus").phases(settings, ctx)
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


# ---------------------------------------------------------------------------------------
# RUM's plan search on complete sequences.

# A toy mix whose forget accuracy is pooled over its thirds, as the mix's is: retraining gets
# the low third right, half the mid third, none of the high one. A candidate sets its stage's
# third to its accuracy at a damage (to retain and test accuracy) that is largest on the low
# third (typical examples). Scores are ToW-like: (1 - |pooled acc - retraining's|)(1 - damage).
GOAL = np.array([1.0, 0.5, 0.0])
ACCURACY = {"half": 0.5, "full": 0.0}
DAMAGE = {("half", 0): 0.025, ("full", 0): 0.05, ("half", 1): 0.005, ("full", 1): 0.01,
          ("half", 2): 0.0025, ("full", 2): 0.005}
TOY_SEEDS = 4


def _toy_score(methods):
  """The toy's score of a sequence; stages not in `methods` are left as they are (a partial sequence)."""
  acc, damage = np.ones(3), 0.0
  for k, m in enumerate(methods):
    if m != "none":
      acc[k] = ACCURACY[m]
      damage += DAMAGE[(m, k)]
  return (1 - abs(acc.mean() - GOAL.mean())) * (1 - damage)


def _toy_scorer(calls):
  options = {}

  def score_round(stage, plan, cands):
    calls.append((stage, plan_lib.plan_label(plan), [c.label for c in cands]))
    out = []
    for c in cands:
      seq = [x.method for x in plan[:stage] + (c,) + plan[stage + 1:]]
      if "broken" in seq:
        out.append(None)
        continue
      noise = np.random.default_rng(abs(hash(tuple(seq))) % 2**32).normal(0, 1e-5, TOY_SEEDS)
      out.append(_toy_score(seq) + noise)
    return out
  return score_round, options


def _toy_options():
  return [plan_lib.Candidate("none")] + [plan_lib.Candidate(m, (("lr", 0.1),)) for m in ("half", "full", "broken")]


def test_partial_scoring_picks_a_wrong_plan_where_complete_sequences_find_the_planted_one():
  names = ["none", "half", "full"]
  ranked = sorted(itertools.product(names, repeat=3), key=_toy_score, reverse=True)
  assert ranked[0] == ("none", "half", "full") and _toy_score(ranked[0]) > _toy_score(ranked[1]) + 0.002
  # Scoring each stage by the pooled score of the partial sequence (the earlier search): over-forgetting
  # the low third moves the pooled accuracy toward retraining's and wins the first stage.
  greedy = []
  for k in range(3):
    greedy.append(max(names, key=lambda m: _toy_score(greedy + [m])))
  assert greedy == ["full", "half", "none"] and _toy_score(greedy) < _toy_score(ranked[0]) - 0.04

  calls = []
  score_round, _ = _toy_scorer(calls)
  options = _toy_options()
  full = plan_lib.Candidate("full", (("lr", 0.1),))
  found = plan_lib.coordinate_descent(3, options, [(full,) * 3], score_round, budget=100)
  assert tuple(c.method for c in found["plan"]) == ("none", "half", "full")
  assert found["converged"] == [True]
  np.testing.assert_allclose(found["mean"], _toy_score(("none", "half", "full")), atol=1e-4)
  # Every score is of a complete sequence, each asked for once; a diverged one is never chosen.
  asked = [tuple(lbl) for _, _, lbl in calls]
  assert all(len(label.split(" -> ")) == 3 for _, label, _ in calls)
  assert found["evaluated"] == len(found["sequences"]) == 1 + sum(len(a) for a in asked[1:])
  assert any(v is None for v in found["sequences"].values())
  # The last pass changed nothing: its rounds keep the plan.
  assert [r["plan"] for r in found["rounds"][-3:]] == [found["rounds"][-1]["plan"]] * 3


def test_the_search_spends_exactly_its_budget_restarting_and_cutting_the_last_round():
  calls = []
  score_round, _ = _toy_scorer(calls)
  options = _toy_options()
  starts = [(c,) * 3 for c in options[1:3]]
  for budget in (4, 11, 17):
    found = plan_lib.coordinate_descent(3, options, starts, score_round, budget=budget)
    assert found["evaluated"] == len(found["sequences"]) == budget
  found = plan_lib.coordinate_descent(3, options, starts, score_round, budget=17)
  assert len(found["converged"]) == 2 and found["converged"][0], "the budget left after converging restarts"
  # Lower is better: the same search minimising finds the worst sequence's side.
  low = plan_lib.coordinate_descent(3, options, starts, score_round, budget=200, higher_is_better=False)
  finite = [k for k, v in low["sequences"].items() if v is not None]
  assert plan_lib.plan_label(low["plan"]) == min(finite, key=lambda k: np.mean(low["sequences"][k]))


def test_a_stage_shortlist_takes_each_methods_best_first():
  C = plan_lib.Candidate
  ranked = [C("a", (("lr", 1),)), C("a", (("lr", 2),)), C("none"), C("b", (("lr", 1),)), C("a", (("lr", 3),)),
            C("c", (("lr", 1),))]
  assert [c.label for c in plan_lib.shortlist(ranked, 4)] == ["a (lr=1)", "b (lr=1)", "c (lr=1)", "a (lr=2)"]
  assert plan_lib.shortlist_size(66) == 10 and plan_lib.shortlist_size(6) == 2


# ---------------------------------------------------------------------------------------
# Claims: Holm's correction, each metric's own choices; grid edges.


def test_holm_matches_its_definition():
  rng = np.random.default_rng(1)
  for _ in range(20):
    p = rng.uniform(0, 0.2, rng.integers(1, 9))
    adjusted = claims_lib.holm(p)
    order = np.argsort(p)
    m = len(p)
    for rank, i in enumerate(order):  # the definition, term by term
      expected = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
      assert adjusted[i] == pytest.approx(expected)
    # Holm rejects at alpha exactly where its step-down procedure does: the first ordered p above
    # alpha / (m - j) stops it.
    stop = next((j for j in range(m) if p[order[j]] > 0.05 / (m - j)), m)
    assert set(np.flatnonzero(adjusted < 0.05)) == set(order[:stop])
  assert np.isnan(claims_lib.holm([0.01, np.nan])[1]) and claims_lib.holm([0.01, np.nan])[0] == 0.01


def _model(tow, tow_mia):
  per_seed = {"tow": list(tow), "tow_mia": list(tow_mia)}
  return {"per_seed": per_seed, "summary": results.summarize_columns(per_seed)}


def test_each_claim_compares_the_runs_its_own_metric_chose():
  # ToW chose x (tuned at one point) and ToW-MIA chose y; RUM's plans differ by metric too.
  mix = {"x": _model([0.8, 0.82, 0.81], [0.5, 0.52, 0.49]), "y": _model([0.6, 0.6, 0.62], [0.9, 0.91, 0.9]),
         "rum": _model([0.9, 0.91, 0.92], [0.6, 0.6, 0.61]), "rum_by_tow_mia": _model([0.5, 0.5, 0.5], [0.95, 0.97, 0.96]),
         "rum_shuffle": _model([0.9, 0.91, 0.92], [0.6, 0.6, 0.61]),
         "rum_shuffle_by_tow_mia": _model([0.5, 0.5, 0.5], [0.9, 0.9, 0.9])}
  choices = {"tow": claims_lib.Choices(levels={}, best="x", rum="rum", shuffle="rum_shuffle"),
             "tow_mia": claims_lib.Choices(levels={}, best="y", rum="rum_by_tow_mia", shuffle="rum_shuffle_by_tow_mia")}
  records = claims_lib.claims({"mix": mix}, ["x", "y"], choices, False)
  by = {(r["claim"], r["metric"]): r for r in records}
  tow = by[("(ii) RUM vs the best single method", "tow")]
  mia = by[("(ii) RUM vs the best single method", "tow_mia")]
  assert (tow["a"], tow["b"], mia["a"], mia["b"]) == ("rum", "x", "rum_by_tow_mia", "y")
  diff = np.array([0.95, 0.97, 0.96]) - np.array([0.9, 0.91, 0.9])
  np.testing.assert_allclose([mia["mean"], mia["p"]], [diff.mean(), scipy_stats.ttest_1samp(diff, 0).pvalue])
  assert by[("(iii) RUM vs Shuffle", "tow")]["verdict"] == claims_lib.NOT_DISTINGUISHABLE  # identical seeds
  # Holm over the family: the verdicts follow the adjusted p, not the raw one.
  for r in records:
    assert r["p_holm"] >= r["p"] and (r["verdict"] in ("higher", "lower")) == (r["p_holm"] < 0.05)
  # The best single configuration per metric, from the validation grids (`none` a candidate; lower
  # is better for a metric that says so).
  tuned = {"x": {"grid": [{"summary": {"tow": {"mean": 0.7}, "tow_mia": {"mean": 0.2}}}], "chosen": {"tow": 0, "tow_mia": 0}},
           "none": {"grid": [{"summary": {"tow": {"mean": 0.5}, "tow_mia": {"mean": 0.9}}}], "chosen": {"tow": 0, "tow_mia": 0}}}
  assert claims_lib.best_single(tuned, "tow") == "x" and claims_lib.best_single(tuned, "tow_mia") == "none"


def test_edges_flag_a_choice_at_either_end_of_its_axis():
  points = [{"lr": lr, "epochs": e} for lr in (0.01, 0.03, 0.1) for e in (5, 10)]
  assert report.edges(points, {"lr": 0.03, "epochs": 5}) == ["epochs=5 (lowest of 5, 10)"]
  assert report.edges(points, {"lr": 0.1, "epochs": 10}) == ["lr=0.1 (highest of 0.01, 0.03, 0.1)",
                                                             "epochs=10 (highest of 5, 10)"]
  assert report.edges([{"alpha": 1.0}], {"alpha": 1.0}) == []  # a single value is no axis
  tuned = {"high": {"m": {"points": points, "chosen": {"tow": 2}}}}
  assert report.edge_flags(tuned, {}, ["tow"]) == ["high, m by ToW: epochs=5 (lowest of 5, 10)"]


# ---------------------------------------------------------------------------------------
# The study configs: epochs in every grid, one budget for both sides.


@pytest.mark.parametrize("name", ["study_mnist1d", "study_digits"])
def test_every_single_method_tunes_its_epochs_and_both_sides_get_the_budget(name):
  import importlib
  from rum_jax.config_validation import validate
  from rum_jax.unlearning.config import sweep_grid
  c = importlib.import_module(f"rum_jax.configs.{name}").get_config()
  validate(c)
  for method in c.study.methods:
    points = sweep_grid(c, method)
    if "epochs" in c.unlearn[method]:
      assert len({p["epochs"] for p in points}) >= 2, f"{method} does not tune its epochs"
  single = 1 + sum(len(sweep_grid(c, m)) for m in c.study.methods)  # `none` and every grid point
  assert c.study.budget == single
  c.study.budget = single + 1
  with pytest.raises(Exception, match=f"set config.study.budget={single}"):
    validate(c)


# ---------------------------------------------------------------------------------------
# The whole study, tiny.


def study_config(results_dir, documented_metric=False):
  """A tiny study on digits: two methods, the high set and the mix, 2 seeds. With
  documented_metric, docs/extending.md's test_loss is added as that page says (one file, one
  config entry) and is a claim metric beside ToW."""
  from rum_jax.configs import default
  c = default.get_config()
  c.mode = "study"
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=3, batch_size=128)
  c.memorization.update(num_models=16, chunk_size=16, ratio=0.5)
  c.forget.size = 30
  c.unlearn.neggrad.update(epochs=2, batch_size=128)
  c.unlearn.neggrad_plus.update(epochs=2, batch_size=128, forget_passes=2)
  c.unlearn.wfisher.update(num_samples=64, chunk_size=64)
  c.sweep.neggrad.lr = "0.01,0.05"
  c.sweep.neggrad.epochs = "1,2"
  c.evaluation.metrics = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_confidence", "tow", "tow_mia")
  claim_metrics = ("tow", "tow_mia")
  if documented_metric:
    from test_extending import NAME, _add_the_documented_metric
    _add_the_documented_metric()
    c.evaluation.metrics += (NAME,)
    claim_metrics = ("tow", NAME)
  c.study = ml_collections.ConfigDict(dict(
      methods=("neggrad", "neggrad_plus", "wfisher"), levels=("high", "mix"), claim_metrics=claim_metrics, budget=7,
      proxy="",
      shuffle=True, paper_plan={"low": {"method": "none", "overrides": {}}, "mid": {"method": "neggrad", "overrides": {}},
                                "high": {"method": "neggrad", "overrides": {"lr": 0.1}}},
      match_tolerance=0.3, criterion=dict(high_min=-1.0, mid_range=(-1.0, 1.0), low_max=1.0),
      mix_when_unmet=False, strong=False, strong_seeds=2, results_dir=results_dir, scores=""))
  return c


def test_tiny_study_end_to_end_resumes_reports_divergence_and_reads_the_registry(tmp_path, monkeypatch):
  from rum_jax.evaluation.metrics import METRICS
  from rum_jax.pipelines import unlearning
  from rum_jax.training import loop
  from rum_jax.unlearning import UNLEARNING_METHODS
  results_dir = str(tmp_path / "results")
  workdir = str(tmp_path / "study")
  tried = []
  real = unlearning.run_method

  def diverging_neggrad_plus(prep, cfg, *args, **kwargs):
    name = UNLEARNING_METHODS.get(cfg.unlearn.method).folder_of(cfg)
    tried.append(name)
    if name.startswith("neggrad_plus") and prep.workdir.endswith("memorization_high"):
      raise loop.NonFiniteLossError(f"[{name}] non-finite loss at epoch 1")
    return real(prep, cfg, *args, **kwargs)
  monkeypatch.setattr(unlearning, "run_method", diverging_neggrad_plus)

  config = study_config(results_dir, documented_metric=True)
  text = commands.evaluate(workdir, config)
  for name in ("study.md", "study.png", "study.csv", "study.json", "study.timings.json", "study.steps.csv"):
    assert os.path.exists(os.path.join(results_dir, name)), name
  record = io.read_json(os.path.join(workdir, "study.json"))
  assert {k.split("_by_")[0] for k in record["diverged"]} == {"memorization_high/neggrad_plus"}
  assert "Runs left out because their loss diverged" in text and "| neggrad_plus | n/a |" in text

  # The registry's metric reaches the study: its own table, its column, its claims, with its
  # direction (lower is better): both sides of its claims are the runs IT chose on validation.
  loss = METRICS.get("test_loss")
  assert f"## {loss.display} per method and level" in text and f"| {loss.display} |" in text
  assert "| ToW-MIA (%) |" in text  # evaluated, not a claim metric
  val = os.path.join(workdir, "sets", "memorization_mix", "validation", "sweeps", "neggrad", "grid.json")
  grid = io.read_json(val)["results"]
  points = [r["point"] for r in grid]
  for metric, pick in (("tow", np.argmax), ("test_loss", np.argmin)):
    chosen = points[int(pick([r["summary"][metric]["mean"] for r in grid]))]
    assert record["tuned"]["mix"]["neggrad"]["points"][record["tuned"]["mix"]["neggrad"]["chosen"][metric]] == chosen
    run = record["choices"][metric]["levels"]["mix"]["neggrad"]
    settings = io.read_json(os.path.join(workdir, "sets", "memorization_mix", "methods", run, "config.json"))["settings"]
    assert {k: settings[k] for k in chosen} == chosen
  claims = {(r["claim"], r["metric"]): r for r in record["claims"]}
  for metric in ("tow", "test_loss"):
    mine = record["choices"][metric]
    assert claims[("(ii) RUM vs the best single method", metric)]["b"] == mine["best"]
    assert claims[("(iii) RUM vs Shuffle", metric)]["a"] == mine["rum"]
    assert record["plan_searches"][metric]["metric"] == metric
  # Holm over the whole family.
  np.testing.assert_allclose([r["p_holm"] for r in record["claims"]], claims_lib.holm([r["p"] for r in record["claims"]]))

  # Both sides evaluated the budget: `none` + 4 neggrad points + neggrad_plus's and wfisher's
  # settings, and as many complete sequences (a one-shot edit's models and a training method's in
  # one program); each sequence's score is what RUM scores with that plan there.
  for search in record["plan_searches"].values():
    assert search["single_evaluated"] == search["evaluated"] == config.study.budget == 7
    assert len(search["sequences"]) == 7 and all(len(k.split(" -> ")) == 3 for k in search["sequences"])
  val_prep = unlearning.prepare(
      __import__("rum_jax.pipelines.sweep", fromlist=["x"]).validation_config(
          __import__("rum_jax.pipelines.study.runs", fromlist=["x"]).set_config(config, workdir, "mix", "neggrad"),
          os.path.join(workdir, "original")), os.path.join(workdir, "sets", "memorization_mix", "validation"))
  from rum_jax.pipelines.study import runs as runs_lib
  plan = record["plan_searches"]["tow"]["plan"]
  cfg = runs_lib.rum_config(runs_lib.set_config(config, workdir, "mix", "neggrad"), "rum_check",
                            {lv: tuple(v) for lv, v in plan.items()})
  check = real(val_prep, cfg, evaluate=False)
  label = plan_lib.plan_label([plan_lib.Candidate(plan[lv][0], tuple(sorted(plan[lv][1].items()))) for lv in plan_lib.STAGES])
  np.testing.assert_allclose(check["per_seed"]["tow"], record["plan_searches"]["tow"]["sequences"][label], atol=0.02)

  # The noise ceiling: a second retrain judged like any run, in the tables and the record.
  assert "retrain_2 (a second retrain" in text
  records = results.read_records(os.path.join(results_dir, "study.csv"))
  assert list(records.columns) == list(results.RECORD_COLUMNS)
  assert set(records["forget_level"]) == {"high", "mix"} and {"rum", "retrain_2"} <= set(records["method"])
  models = io.read_json(os.path.join(workdir, "sets", "memorization_high", "evaluation.json"))["models"]
  tow = records.query("forget_level == 'high' and method == 'neggrad' and metric == 'tow'")
  np.testing.assert_allclose(tow.sort_values("seed")["value"], models["neggrad"]["per_seed"]["tow"], rtol=1e-12)
  # Per-seed accuracy on every third after every RUM step, and every mix model's on the memorization thirds.
  # They are in the record layout, each row with its run's columns in study.csv.
  steps = results.read_records(os.path.join(results_dir, "study.steps.csv"))
  assert list(steps.columns) == list(results.RECORD_COLUMNS + ("thirds", "step", "stage", "step_method"))
  mix = records[records["forget_level"] == "mix"].drop_duplicates("method").set_index("method")
  run_columns = [c for c in results.RUN_KEY if c != "method"]
  for method, part in steps.groupby("method"):
    assert (part[run_columns].astype(str) == mix.loc[method, run_columns].astype(str)).all(axis=None), method
  rum_steps = steps.query("method == 'rum' and step != 'end'")
  assert set(rum_steps["metric"]) >= {"low_accuracy", "mid_accuracy", "high_accuracy", "retain_accuracy",
                                      "test_accuracy"} and set(rum_steps["seed"]) == {0, 1}
  ends = steps.query("step == 'end'")
  assert {"original", "retrain", "retrain_2", "rum", "rum_shuffle"} <= set(ends["method"])
  with np.load(os.path.join(workdir, "sets", "memorization_mix", "methods", "rum", "predictions", "train.npz")) as p:
    correct = p["logits"].argmax(-1) == p["labels"][None]
  with np.load(os.path.join(workdir, "sets", "memorization_mix", "forget_set.npz")) as f:
    forget = f["forget_positions"]
  scores = runs_lib.train_scores(config, workdir, val_prep.setup, runs_lib.MEMORIZATION)
  high = np.sort(forget[1])[np.argsort(scores[np.sort(forget[1])], kind="stable")][-10:]
  np.testing.assert_allclose(ends.query("method == 'rum' and metric == 'high_accuracy' and seed == 1")["value"],
                             correct[1, high].mean())
  # study.md's table of the thirds is a groupby of this record.
  high_mean = 100 * ends.query("method == 'rum' and metric == 'high_accuracy'")["value"].mean()
  assert any(line.startswith("| rum | ") and f"| {high_mean:.1f} ± " in line for line in text.splitlines())
  # Reproducible: the score file's digest, a relative command.
  assert record["scores"]["sha256"] == runfolder.file_digest(
      os.path.join(workdir, "scores", "memorization", "memorization.npz"))
  assert f"sha256 {record['scores']['sha256']}" in text

  # Rerun: every finished run is skipped, only the diverged ones are tried again, and the plan
  # search reads its sequences back.
  tried.clear()
  monkeypatch.setattr(__import__("rum_jax.unlearning.grid", fromlist=["x"]), "unlearn",
                      lambda *a, **k: pytest.fail("a grid or plan sequence was trained again"))
  again = commands.evaluate(workdir, study_config(results_dir, documented_metric=True))
  assert tried and all(t.startswith("neggrad_plus") for t in tried)
  drop_timing = lambda t: [line for line in t.split("## Where the time went")[0].splitlines()
                           if "wall-clock" not in line]
  assert drop_timing(again) == drop_timing(text)

  # The strong metric added to the finished study: banks of each of 2 seeds' mix, an interval
  # over the seeds, its claims in Holm's family; no run redone.
  strong = study_config(results_dir, documented_metric=True)
  strong.study.strong = True
  strong.audit = ml_collections.ConfigDict(dict(methods=("retrain",), num_models=4, shadow_models=16, chunk_size=8,
                                                seed=0, svc_targets=4, results_dir="",
                                                metrics=("forget_score", "ulira_auc")))
  tried.clear()
  scored = commands.evaluate(workdir, strong)
  assert all(t.startswith("neggrad_plus") for t in tried)
  banks = io.read_json(os.path.join(workdir, "study.json"))["audit"]
  assert banks["seeds"] == 2 and {"retrain", "rum", "shuffle"} <= set(banks["models"])
  for seed in range(2):
    rows = {r["model"]: r for r in io.read_json(os.path.join(
        workdir, "sets", "memorization_mix", "audit", f"seed_{seed}", "audit.json"))["rows"]}
    # audit.json holds the last bank scored there (Shuffle's); the study keeps every one's.
    assert banks["models"]["shuffle"]["per_seed"]["forget_score"][seed] == rows["rum_shuffle"]["forget_score"]
    epsilons = np.load(os.path.join(workdir, "sets", "memorization_mix", "audit", f"seed_{seed}", "epsilons.npz"))
    np.testing.assert_array_equal(epsilons["position"], np.sort(forget[seed]))  # that seed's reported mix
  claims = io.read_json(os.path.join(workdir, "study.json"))["claims"]
  f = next(r for r in claims if r["metric"] == "forget_score" and r["claim"].startswith("(iii)"))
  diff = np.subtract(banks["models"]["rum"]["per_seed"]["forget_score"], banks["models"]["shuffle"]["per_seed"]["forget_score"])
  np.testing.assert_allclose([f["mean"], f["n"]], [diff.mean(), 2])
  assert "## The strong metric on the mix (2 seeds' banks)" in scored


@pytest.mark.parametrize("update,message", [
    ({"match_tolerance": -1.0}, r"study.match_tolerance"),
    ({"criterion": {"mid_range": (0.7, 0.3)}}, "config.study.criterion needs high_min, mid_range"),
    ({"claim_metrics": ("tow", "mia_confidence")}, r"claim_metrics \['mia_confidence'\] have no better direction"),
    ({"claim_metrics": ("tow", "val_accuracy")}, r"claim_metrics \['val_accuracy'\] are not in config.evaluation.metrics"),
    ({"budget": 8}, r"config.study.budget=8, but the single side evaluates 7 configurations"),
    ({"paper_plan": {"low": {"method": "none"}, "mid": {"method": "nothing"}, "high": {"method": "none"}}},
     "config.study.paper_plan.mid.method must be one of none, "),
])
def test_bad_study_settings_are_named(update, message, tmp_path):
  from rum_jax.checks import ConfigError
  from rum_jax.config_validation import validate
  c = study_config(str(tmp_path))
  c.study.update(update)
  with pytest.raises(ConfigError, match=message):
    validate(c)
  c = study_config(str(tmp_path))
  c.forget.draw = "ranking"
  with pytest.raises(ConfigError, match="set config.forget.draw='band'"):
    validate(c)


def test_a_saliency_cache_of_another_number_of_models_is_stale_not_an_error(tmp_path):
  """A grid's folder is named by its static settings, so a wider grid finds the narrower one's cache."""
  from rum_jax.unlearning import saliency
  params = {"w": np.ones((3, 4), np.float32)}
  forget = [np.arange(5)] * 3
  path = str(tmp_path / "saliency.npz")
  saliency.save_saliency(path, np.ones((3, 4)), forget, params)
  assert saliency.load_saliency(path, forget, params) is not None
  assert saliency.load_saliency(path, forget + [np.arange(5)], {"w": np.ones((4, 4), np.float32)}) is None
