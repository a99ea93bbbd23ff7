"""Sweeps: per-model settings inside one program equal separate runs; validation forget sets are
disjoint from the reported ones and of the same level; swept values are checked before any work."""
import os

import jax
import ml_collections
import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax import commands, io
from rum_jax.checks import ConfigError
from rum_jax.pipelines import sweep as sweep_lib
from rum_jax.training import optim
from rum_jax.training.setup import Setup
from rum_jax.unlearning import forget_sets, grid as grid_lib, unlearn
from rum_jax.unlearning.forget_kinds import FORGET_KINDS, ForgetRequest


def _config():
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=2, batch_size=128)
  for name in ("neggrad_plus", "salun", "scrub", "l1_sparse"):
    c.unlearn[name].update(epochs=2, batch_size=128)
  c.unlearn.scrub.msteps = 1
  c.unlearn.wfisher.update(num_samples=64, chunk_size=32)
  c.forget.size = 60
  return c


@pytest.fixture(scope="module")
def setup():
  return Setup.create(_config())


@pytest.mark.parametrize("method,points", [
    ("neggrad_plus", [{"lr": 0.01, "alpha": 0.9}, {"lr": 0.05, "alpha": 0.5}]),
    ("salun", [{"lr": 0.05, "mask_ratio": 0.2}, {"lr": 0.02, "mask_ratio": 0.7}]),
    ("scrub", [{"temperature": 2.0, "gamma": 0.9, "beta": 0.1}, {"temperature": 4.0, "gamma": 0.5, "beta": 1.0}]),
    ("wfisher", [{"alpha": 10.0, "damping": 1.0}, {"alpha": 50.0, "damping": 0.5}]),
])
def test_per_model_settings_equal_separate_runs(setup, method, points):
  """A grid of 2 points x 2 seeds as ONE program of 4 models: each point's models equal a run of
  that point alone (2 seeds), to float tolerance."""
  config = _config()
  n = len(setup.dataset.train)
  states = setup.init_states(optim.make_optimizer(0.1), 0)  # any models: the update rule is tested
  forget, retain = [np.arange(0, 60), np.arange(60, 120)], [np.arange(120, n), np.arange(120, n)]
  seed_ids = [0, 1, 0, 1]
  grid = setup.with_models(4)
  per_model = {k: [p[k] for p in points for _ in range(2)] for k in points[0]}
  tiled = jax.tree.map(lambda x: np.asarray(x)[np.asarray(seed_ids)], states)
  together, _ = unlearn(grid, tiled, method, config.unlearn[method], [forget[s] for s in seed_ids],
                        [retain[s] for s in seed_ids], seed_ids=seed_ids, per_model=per_model)
  for g, point in enumerate(points):
    settings = ml_collections.ConfigDict(config.unlearn[method].to_dict())
    settings.update(point)
    alone, _ = unlearn(setup, states, method, settings, forget, retain)
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(together.params)):
      np.testing.assert_allclose(np.asarray(b)[2 * g:2 * g + 2], np.asarray(a)[:2], rtol=2e-5, atol=2e-6)
  # The points differ: the grid is not one setting repeated.
  first = jax.tree.leaves(together.params)[0]
  assert not np.allclose(first[0], first[2])


def test_a_method_cannot_vary_a_setting_that_sets_shapes(setup):
  n = len(setup.dataset.train)
  states = setup.init_states(optim.make_optimizer(0.1), 0)
  with pytest.raises(ValueError, match=r"neggrad_plus cannot vary \['epochs'\] between the models of one program"):
    unlearn(setup, states, "neggrad_plus", _config().unlearn.neggrad_plus, np.arange(10), np.arange(10, n),
            per_model={"epochs": [1, 2]})


@pytest.mark.parametrize("level", ["high", "low", "mid", "mix"])
def test_validation_forget_set_is_disjoint_and_of_the_same_level(level):
  rng = np.random.default_rng(0)
  scores = rng.permutation(400) / 400 * 2 - 1  # distinct memorization-like scores in [-1, 1)
  f = ml_collections.ConfigDict(dict(size=30, level=level, seed=0, group=0, split="report"))
  kind = FORGET_KINDS.get("memorization")
  report = kind.build(ForgetRequest(f, 1, 400, scores))[0][0]
  f.split = "validation"
  validation = kind.build(ForgetRequest(f, 1, 400, scores))[0][0]
  assert len(validation) == len(report) == 30 and not np.intersect1d(report, validation).size
  rest = np.setdiff1d(np.arange(400), np.union1d(report, validation))
  # Independently: the validation set is the same rule applied to what the reported set left.
  np.testing.assert_array_equal(validation, forget_sets.select_by_score(
      30, scores, level, forget_sets.MEMORIZATION_CENTER, exclude=report))
  if level == "high":
    assert scores[validation].min() >= scores[rest].max() and scores[validation].max() <= scores[report].min()
  if level == "low":
    assert scores[validation].max() <= scores[rest].min() and scores[validation].min() >= scores[report].max()
  if level == "mid":
    d = lambda p: np.abs(scores[p] - 0.5)
    assert d(validation).max() <= d(rest).min() and d(validation).min() >= d(report).max()
  if level == "mix":  # a third of each level, each next to the reported third
    high = np.sort(np.argsort(-np.where(np.isin(np.arange(400), report), -np.inf, scores))[:10])
    assert set(high) <= set(validation)
  f.update(split="report")
  random = FORGET_KINDS.get("random")
  r = random.build(ForgetRequest(f, 1, 400))[0][0]
  f.split = "validation"
  v = random.build(ForgetRequest(f, 1, 400))[0][0]
  assert len(v) == 30 and not np.intersect1d(r, v).size


def test_a_swept_value_out_of_range_is_refused_before_any_work(tmp_path):
  c = _config()
  c.unlearn.method = "salun"
  c.sweep.salun.mask_ratio = "0.3,1.5"
  with pytest.raises(ConfigError, match=r"config.sweep.salun.mask_ratio must be a number in \(0.0, 1.0\], got 1.5"):
    commands.unlearn(c, str(tmp_path / "w"))
  c.sweep.salun.mask_ratio = "0.3,x"
  with pytest.raises(ConfigError, match="'x' is not a number"):
    commands.unlearn(c, str(tmp_path / "w"))
  c.sweep.salun.mask_ratio = ""
  c.sweep.salun.epochs = "2.5"
  with pytest.raises(ConfigError, match="'2.5' is not an integer"):
    commands.unlearn(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_unlearn_with_a_sweep_tunes_on_validation_and_reports_the_chosen_point(tmp_path, monkeypatch):
  c = _config()
  c.unlearn.method = "neggrad_plus"
  c.sweep.neggrad_plus.lr = "0.001,0.1"
  workdir = str(tmp_path / "w")
  out = commands.unlearn(c, workdir)
  grid = out["grid"]
  means = [r["summary"]["tow"]["mean"] for r in grid]
  assert out["chosen"] == int(np.argmax(means))
  chosen_lr = out["points"][out["chosen"]]["lr"]
  recorded = io.read_json(os.path.join(workdir, "methods", "neggrad_plus", "config.json"))
  assert recorded["settings"]["lr"] == chosen_lr, "the reported run used the chosen setting"
  report = np.load(os.path.join(workdir, "forget_set.npz"))["forget_positions"]
  validation = np.load(os.path.join(workdir, "validation", "forget_set.npz"))["forget_positions"]
  assert not np.intersect1d(report[0], validation[0]).size
  text = open(os.path.join(workdir, "sweeps", "neggrad_plus", "sweep.md")).read()
  assert "**(chosen)**" in text and "VALIDATION forget set" in text and "REPORTED forget set" in text
  assert os.path.exists(os.path.join(workdir, "sweeps", "neggrad_plus", "sweep.png"))
  recorded_set = io.read_json(os.path.join(workdir, "sweeps", "neggrad_plus", "sweep.json"))["validation"]["forget_set"]
  assert recorded_set == os.path.join("validation", "forget_set.json"), "relative to the work directory"
  # ToW of a point: the product formula on its per-seed accuracies against the validation reference.
  reference = io.read_json(os.path.join(workdir, "validation", "methods", "neggrad_plus", "metrics.json")) \
      if os.path.exists(os.path.join(workdir, "validation", "methods")) else None
  assert reference is None, "only the grid runs on the validation set"
  # A rerun reads the grid back instead of training it again.
  monkeypatch.setattr(grid_lib, "unlearn", lambda *a, **k: pytest.fail("the grid was trained again"))
  again = commands.unlearn(c, workdir)
  assert again["chosen"] == out["chosen"]


def test_a_diverged_grid_point_is_listed_and_never_chosen_the_others_rerun(tmp_path, monkeypatch):
  from rum_jax.training import loop
  c = _config()
  c.unlearn.method = "neggrad_plus"
  c.sweep.neggrad_plus.lr = "0.001,0.01,0.1"
  real = grid_lib.unlearn
  calls = []

  def second_point_diverges(setup, original, method, settings, forget, retain, **kwargs):
    calls.append(list(kwargs["per_model"]["lr"]))
    if len(calls) == 1:  # models 2, 3 are point 1 (0.01) on seeds 0, 1
      raise loop.NonFiniteLossError("[sweep neggrad_plus] non-finite loss at epoch 1 for seeds [3]", seeds=[3])
    return real(setup, original, method, settings, forget, retain, **kwargs)
  monkeypatch.setattr(grid_lib, "unlearn", second_point_diverges)
  workdir = str(tmp_path / "w")
  out = commands.unlearn(c, workdir)
  assert calls == [[0.001, 0.001, 0.01, 0.01, 0.1, 0.1], [0.001, 0.001, 0.1, 0.1]]
  grid = out["grid"]
  assert "diverged" in grid[1] and "summary" not in grid[1]
  assert out["chosen"] == (0 if grid[0]["summary"]["tow"]["mean"] >= grid[2]["summary"]["tow"]["mean"] else 2)
  text = open(os.path.join(workdir, "sweeps", "neggrad_plus", "sweep.md")).read()
  assert "lr=0.01 (diverged)" in text
  # every point diverging is an error naming the fix
  with pytest.raises(loop.NonFiniteLossError, match="every point of the grid diverged"):
    sweep_lib.choose([{"point": {"lr": 1.0}, "diverged": "x"}], "tow")
