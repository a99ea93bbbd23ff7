"""The unlearning driver end to end on digits with a tiny MLP: files, forget sets, bad input."""
import csv
import os

import jax
import ml_collections
import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax import io
from rum_jax.memorization import files as score_files
from rum_jax import commands
from rum_jax.pipelines import unlearning as run
from rum_jax.training import loop, optim
from rum_jax.training import setup as trainer
from rum_jax.training.checkpoint import Checkpointer
from rum_jax.unlearning import forget_sets, interface, runners


def _config(method="finetune", **forget):
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=3, batch_size=128)
  for name in ("finetune", "scrub", "salun", "neggrad", "neggrad_plus"):
    c.unlearn[name].update(epochs=2, batch_size=128)
  c.unlearn.scrub.msteps = 1
  c.unlearn.wfisher.update(num_samples=100, chunk_size=64)
  c.unlearn.method = method
  c.forget.update(size=60, **forget)
  return c


@pytest.fixture(scope="module")
def setup():
  return trainer.Setup.create(_config())


def _files(directory):
  return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)


def test_methods_share_the_retrain_reference_and_write_their_results(tmp_path):
  workdir = str(tmp_path / "run")
  records = {"salun": commands.unlearn(_config("salun"), workdir)}
  retrain_root = os.path.join(workdir, "retrain")
  assert len(os.listdir(retrain_root)) == 1, "one forget set and training config: one reference"
  before = {f: os.path.getmtime(os.path.join(retrain_root, f)) for f in _files(retrain_root)}
  records["scrub"] = commands.unlearn(_config("scrub"), workdir)
  after = {f: os.path.getmtime(os.path.join(retrain_root, f)) for f in _files(retrain_root)}
  assert before == after, "the cached reference must be reused, not retrained"

  sets = np.load(os.path.join(workdir, "forget_set.npz"))
  setup = trainer.Setup.create(_config())
  train = setup.dataset.train
  for s in range(2):
    f, r = sets["forget_positions"][s], sets["retain_positions"][s]
    assert len(f) == 60 and np.array_equal(np.union1d(f, r), np.arange(len(train)))
    np.testing.assert_array_equal(sets["forget_index"][s], train.index[f])
  np.testing.assert_array_equal(sets["forget_positions"][0],
                                forget_sets.select_random(60, num_train=len(train), seed=0))

  for method, record in records.items():
    directory = os.path.join(workdir, "methods", method)
    assert {"metrics.json", "metrics.csv", "predictions/train.npz"} <= set(_files(directory))
    logits = np.load(os.path.join(directory, "predictions", "train.npz"))["logits"]
    correct = logits.argmax(-1) == train.y[None]
    np.testing.assert_allclose(record["per_seed"]["forget_accuracy"],
                               [correct[s, sets["forget_positions"][s]].mean() for s in range(2)])
    np.testing.assert_allclose(record["per_seed"]["retain_accuracy"],
                               [correct[s, sets["retain_positions"][s]].mean() for s in range(2)])
    assert record["summary"]["test_accuracy"]["mean"] == pytest.approx(np.mean(record["per_seed"]["test_accuracy"]))
  for key in ("forget_accuracy", "test_accuracy"):
    np.testing.assert_allclose(records["scrub"]["retrain"]["per_seed"][key], records["salun"]["retrain"]["per_seed"][key])
  with open(os.path.join(workdir, "methods", "scrub", "history.csv")) as f:
    rows = list(csv.DictReader(f))
  epochs = lambda metric: sorted({r["epoch"] for r in rows if r["metric"] == metric})
  assert epochs("loss") == ["1", "2"] and epochs("max_forget_kl") == ["1"]  # max passes: msteps = 1
  assert os.path.exists(os.path.join(workdir, "saliency.npz"))
  summary = open(os.path.join(workdir, "summary.md")).read()
  for name in ("original", "retrain", "salun", "scrub"):
    assert f"| {name} |" in summary


def test_memorization_forget_set_from_score_files(tmp_path, setup):
  config = _config(kind="memorization", level="high")
  config.forget.draw = "ranking"  # the n highest for every seed (the band draw: test_study.py)
  train = setup.dataset.train
  n = len(train)
  rng = np.random.default_rng(0)
  scores = rng.permutation(n) / n  # distinct: the top 60 are known by hand
  expected = np.sort(np.argsort(-scores)[:60])
  # A rum-jax file (rows by original index, in any order) and a published file (original order).
  order = rng.permutation(n)
  ours = str(tmp_path / "memorization.npz")
  io.write_npz(ours, index=train.index[order], labels=train.y[order], memorization=scores[order])
  full = np.zeros(train.index.max() + 1)
  full[train.index] = scores
  published = str(tmp_path / "estimates_results_woShuffle.npz")
  score_files.save_scores(published, full, fmt="rum")
  for path in (ours, published):
    config.forget.scores = path
    forget, report = run.build_forget_set(config, str(tmp_path), setup, None)
    assert len(forget) == 2
    np.testing.assert_array_equal(forget[0], expected)
    assert report["forget_score_range"][0] == pytest.approx(np.sort(scores)[-60])
  config.forget.draw = "band"  # each seed: 60 of the 120 highest, its own
  forget, _ = run.build_forget_set(config, str(tmp_path), setup, None)
  band = np.argsort(-scores)[:120]
  assert all(np.isin(f, band).all() and len(f) == 60 for f in forget) and not np.array_equal(*forget)

  config.forget.update(scores=ours, score_key="confidence")
  with pytest.raises(ValueError, match="choose one with --config.forget.score_key: memorization"):
    run.build_forget_set(config, str(tmp_path), setup, None)
  config.forget.update(scores="", score_key="")
  with pytest.raises(FileNotFoundError, match="configs/digits_memorization.py"):
    run.build_forget_set(config, str(tmp_path), setup, None)
  config.forget.size = n
  with pytest.raises(ValueError, match=r"config.forget.size=\d+ must be in \[1, \d+\]"):
    run.build_forget_set(config, str(tmp_path), setup, None)


def test_entanglement_groups_and_es_against_numpy(tmp_path, setup):
  config = _config(kind="entanglement", group=3)
  states = setup.init_states(optim.make_optimizer(0.1), 0)  # any model: ES is a function of its features
  forget, report = run.build_forget_set(config, str(tmp_path), setup, states)
  x = setup.dataset.train.x.reshape(len(setup.dataset.train), -1).astype(np.float64)
  for s in range(2):
    p = states.params["Dense_0"]
    phi = np.maximum(x @ np.asarray(p["kernel"][s], np.float64) + np.asarray(p["bias"][s], np.float64), 0)
    order = np.argsort(np.linalg.norm(phi - phi.mean(0), axis=1), kind="stable")
    groups = order[:len(order) // 60 * 60].reshape(-1, 60)
    np.testing.assert_array_equal(forget[s], np.sort(groups[3]))

    def es(g):
      mask = np.zeros(len(phi), bool)
      mask[g] = True
      f, r = phi[mask], phi[~mask]
      mu_f, mu_r = f.mean(0), r.mean(0)
      mu = (mu_f + mu_r) / 2
      within = ((r - mu_r) ** 2).sum(1).mean() + ((f - mu_f) ** 2).sum(1).mean()
      return within / (0.5 * (((mu_r - mu) ** 2).sum() + ((mu_f - mu) ** 2).sum()))
    np.testing.assert_allclose([row[s] for row in report["entanglement_per_group"]], [es(g) for g in groups],
                               rtol=1e-3)
  config.forget.group = 99
  with pytest.raises(ValueError, match=r"valid groups: 0\.\.19"):
    run.build_forget_set(config, str(tmp_path), setup, states)


def test_diverging_method_stops_and_keeps_its_last_good_state(tmp_path, setup):
  states = setup.init_states(optim.make_optimizer(0.1), 0)
  n = len(setup.dataset.train)
  settings = ml_collections.ConfigDict(dict(epochs=5, lr=10.0, batch_size=128, momentum=0.9, weight_decay=5e-4))
  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(loop.NonFiniteLossError, match="non-finite loss at epoch 4") as err:
    interface.unlearn(setup, states, "neggrad", settings, np.arange(300), np.arange(300, n), run_dir=ckpt)
  assert "last good checkpoint (epoch 3)" in str(err.value)
  checkpointer = Checkpointer(os.path.join(ckpt, "checkpoints"))
  checkpointer.claim(io.read_json(os.path.join(ckpt, "checkpoints", "program.json")))  # inspect, as it is
  _, restored, _ = checkpointer.restore(setup.runner.unpad(
      runners.build_program(setup, states, "neggrad", settings, np.arange(300), np.arange(300, n)).states))
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(restored.params))


def test_unlearn_chains_from_given_states_with_per_seed_sets(tmp_path, setup):
  """RUM's use: one call per subset, each starting from the previous call's models."""
  states = setup.init_states(optim.make_optimizer(0.1), 0)
  n = len(setup.dataset.train)
  settings = _config().unlearn.neggrad_plus
  first = [np.arange(0, 40), np.arange(40, 80)]  # each seed its own forget set
  out, history = interface.unlearn(setup, states, "neggrad_plus", settings, first,
                             [np.arange(80, n), np.arange(80, n)])
  assert np.asarray(history["loss"]).shape == (2, 2)
  ckpt = str(tmp_path / "wfisher")
  again, history = interface.unlearn(setup, out, "wfisher", _config().unlearn.wfisher, np.arange(80, 120),
                               np.arange(120, n), run_dir=ckpt)
  assert history == {} and Checkpointer(os.path.join(ckpt, "checkpoints")).latest_step() == 1
  assert jax.tree.structure(again.params) == jax.tree.structure(states.params)
  assert not np.allclose(again.params["Dense_0"]["kernel"], out.params["Dense_0"]["kernel"])
  resumed, _ = interface.unlearn(setup, out, "wfisher", _config().unlearn.wfisher, np.arange(80, 120),
                           np.arange(120, n), run_dir=ckpt)
  np.testing.assert_array_equal(resumed.params["Dense_0"]["kernel"], again.params["Dense_0"]["kernel"])

  with pytest.raises(ValueError, match="overlap"):
    interface.unlearn(setup, states, "finetune", settings, np.arange(10), np.arange(5, n))
  with pytest.raises(ValueError, match="empty"):
    interface.unlearn(setup, states, "finetune", settings, np.arange(0), np.arange(n))
  with pytest.raises(ValueError, match="valid choices: finetune"):
    interface.unlearn(setup, states, "forget_it", settings, np.arange(10), np.arange(10, n))
