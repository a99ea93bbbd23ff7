"""RUM: refinement, the retain set of every step, plans, and the whole pipeline on a tiny digits run."""
import os

import ml_collections
import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax import io
from rum_jax.memorization import files as score_files
from rum_jax.config_validation import ConfigError, validate
from rum_jax import commands
from rum_jax.pipelines import unlearning as run_lib
from rum_jax.training import setup as trainer
from rum_jax.unlearning import rum


def test_step_sets_refine_and_shrink_the_retain_sets():
  num_train = 20
  scores = np.linspace(1.0, 0.0, num_train)  # position p has score 1 - p / 19: higher position, lower score
  forget = [np.array([0, 2, 4, 6, 8, 10, 12, 14, 16]), np.array([1, 3, 5, 7, 9, 11])]
  sets = rum.step_sets(forget, scores, num_train)
  assert [s.level for s in sets] == ["low", "mid", "high"]
  # Seed 0: ascending score is descending position; thirds of 3.
  expected = {"low": [12, 14, 16], "mid": [6, 8, 10], "high": [0, 2, 4]}
  for s in sets:
    np.testing.assert_array_equal(s.forget[0], expected[s.level])
  np.testing.assert_array_equal(sets[0].forget[1], [9, 11])
  # Step k's retain set is everything except the subsets of steps 1..k, written with Python sets.
  for seed, f in enumerate(forget):
    removed = set()
    for s in sets:
      removed |= set(s.forget[seed].tolist())
      assert set(s.retain[seed].tolist()) == set(range(num_train)) - removed
    assert removed == set(f.tolist())
    sizes = [len(s.retain[seed]) for s in sets]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == num_train - len(f)
  with pytest.raises(ValueError, match="one value per train example"):
    rum.step_sets(forget, scores[:-1], num_train)


def _config(**plan):
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=3, batch_size=128)
  c.memorization.update(num_models=16, chunk_size=16, ratio=0.5)  # no example always in or out
  for name in ("finetune", "neggrad", "neggrad_plus", "salun"):
    c.unlearn[name].update(epochs=2, batch_size=128)
  c.forget.update(kind="memorization", level="mix", size=60)
  c.unlearn.method = "rum"
  paper = {"low": ("none", {}), "mid": ("finetune", {"lr": 0.1}), "high": ("salun", {"epochs": 5, "lr": 0.1})}
  for level, (method, overrides) in paper.items():  # the paper's plan, whose steps have overrides
    c.unlearn.rum[level] = ml_collections.ConfigDict({"method": method, "overrides": overrides})
  for level, method in plan.items():
    c.unlearn.rum[level] = ml_collections.ConfigDict({"method": method, "overrides": {}})
  return c


def test_step_settings_overrides_and_validation():
  c = _config()
  settings = rum.step_settings(c.unlearn, "high")  # salun with epochs 5, lr 0.1
  assert settings.epochs == 5 and settings.lr == 0.1 and settings.mask_ratio == c.unlearn.salun.mask_ratio
  assert c.unlearn.salun.epochs == 2, "the base settings are not modified"
  assert rum.step_settings(c.unlearn, "low") is None
  resolved = rum.resolved_settings(c, "/somewhere/run")
  assert resolved.steps.high.method == "salun" and resolved.steps.high.settings.lr == 0.1
  # Refined by the forget set's scores, by default the work directory's memorization file.
  assert resolved.scores == "/somewhere/run/memorization/memorization.npz" and resolved.score_key == ""
  validate(c)

  bad = _config(mid="retrain")
  with pytest.raises(ConfigError, match="not a step method; valid choices: none, finetune"):
    validate(bad)
  bad = _config()
  bad.unlearn.rum.mid.overrides = {"learning_rate": 0.1}
  with pytest.raises(ConfigError, match="not settings of finetune; valid keys: batch_size, epochs, lr"):
    validate(bad)
  with pytest.raises(ValueError, match="not settings of finetune"):
    rum.step_settings(bad.unlearn, "mid")
  bad = _config()
  bad.unlearn.rum.high.overrides = {"mask_ratio": 2.0}
  with pytest.raises(ConfigError, match="mask_ratio"):
    validate(bad)
  bad = _config()
  bad.unlearn.rum.name = "salun"
  with pytest.raises(ConfigError, match="must be a folder name other than another method's"):
    validate(bad)
  with pytest.raises(ValueError, match="valid choices: low, mid, high"):
    rum.step_settings(c.unlearn, "mix")


@pytest.fixture(scope="module")
def setup():
  return trainer.Setup.create(_config())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, setup):
  """One tiny whole-pipeline run (memorization computed on the way), plus a neggrad run beside it."""
  workdir = str(tmp_path_factory.mktemp("rum") / "run")
  config = _config(low="none", mid="finetune", high="neggrad_plus")
  calls = []  # RUM's calls of its step methods
  real_unlearn = rum.unlearn

  def recording_unlearn(setup, states, method, settings, forget, retain, **kwargs):
    calls.append((method, [np.array(f) for f in forget], [np.array(r) for r in retain], kwargs))
    return real_unlearn(setup, states, method, settings, forget, retain, **kwargs)

  rum.unlearn, saved = recording_unlearn, rum.unlearn
  try:
    record = run_lib.run_unlearning(config, workdir, setup=setup)
  finally:
    rum.unlearn = saved
  single = _config()
  single.unlearn.method = "neggrad"
  run_lib.run_unlearning(single, workdir, setup=setup)
  return workdir, config, record, calls


def test_pipeline_steps_get_the_refined_forget_and_shrinking_retain_sets(pipeline, setup):
  workdir, config, record, calls = pipeline
  assert os.path.exists(os.path.join(workdir, "memorization", "memorization.npz")), "scores computed"
  scores = score_files.scores_for_split(os.path.join(workdir, "memorization", "memorization.npz"),
                                     setup.dataset.train)
  forget = np.load(os.path.join(workdir, "forget_set.npz"))["forget_positions"]
  num_train = len(scores)
  step_calls = calls
  assert [c[0] for c in step_calls] == ["finetune", "neggrad_plus"], "low is 'none': no call"
  for seed in range(config.num_seeds):
    f = forget[seed]
    by_score = f[np.lexsort((f, scores[f]))]  # ascending score, ties by position
    low, mid, high = np.sort(by_score[:20]), np.sort(by_score[20:40]), np.sort(by_score[40:])
    for (method, forgets, retains, kwargs), subset, removed in (
        (step_calls[0], mid, np.concatenate([low, mid])),
        (step_calls[1], high, f)):
      np.testing.assert_array_equal(forgets[seed], subset)
      np.testing.assert_array_equal(retains[seed], np.setdiff1d(np.arange(num_train), removed))
      assert "steps" in kwargs["run_dir"]
  # The run is evaluated against the WHOLE forget set and the shared retrain reference.
  neggrad = io.read_json(os.path.join(workdir, "methods", "neggrad", "metrics.json"))
  assert record["retrain_reference"] == neggrad["retrain_reference"]
  logits = np.load(os.path.join(workdir, "methods", "rum", "predictions", "train.npz"))["logits"]
  y = setup.dataset.train.y
  for seed in range(config.num_seeds):
    np.testing.assert_allclose(record["per_seed"]["forget_accuracy"][seed],
                               np.mean(logits[seed, forget[seed]].argmax(-1) == y[forget[seed]]))


def test_pipeline_writes_steps_and_evaluation(pipeline, setup):
  workdir, config, _, _ = pipeline
  run_dir = os.path.join(workdir, "methods", "rum")
  steps = io.read_json(os.path.join(run_dir, "steps.json"))["steps"]
  assert [s["level"] for s in steps] == ["original", "low", "mid", "high"]
  assert steps[1]["method"] == "none" and steps[2]["forget_size"] == [20, 20]
  assert steps[2]["retain_size"] == [len(setup.dataset.train) - 40] * 2
  assert os.path.isdir(os.path.join(run_dir, "steps", "2_mid", "checkpoints"))
  assert not os.path.exists(os.path.join(run_dir, "steps", "1_low"))
  # The 'none' step leaves the model as it is: accuracies after it equal the original's.
  assert steps[1]["after"] == steps[0]["after"]
  for f in ("evaluation.md", "evaluation.png", "evaluation.csv"):
    assert os.path.exists(os.path.join(workdir, f))
  table = open(os.path.join(workdir, "evaluation.md")).read()
  assert "| rum |" in table and "| original |" in table and "| neggrad |" in table


def test_rum_of_nothing_is_the_original_and_reruns_resume(pipeline, setup):
  workdir, config, _, _ = pipeline
  nothing = _config(low="none", mid="none", high="none")
  nothing.unlearn.rum.name = "rum_nothing"
  record = run_lib.run_unlearning(nothing, workdir, setup=setup)
  rum_logits = np.load(os.path.join(workdir, "methods", "rum_nothing", "predictions", "train.npz"))["logits"]
  original = np.load(os.path.join(workdir, "original", "predictions", "train.npz"))["logits"]
  np.testing.assert_array_equal(rum_logits, original)
  assert record["summary"]["forget_accuracy"]["mean"] == record["original"]["summary"]["forget_accuracy"]["mean"]
  # Rerunning RUM restores every step from its checkpoints: the same model comes back.
  first = io.read_json(os.path.join(workdir, "methods", "rum", "metrics.json"))
  again = run_lib.run_unlearning(config, workdir, setup=setup)
  for key, values in first["per_seed"].items():
    np.testing.assert_array_equal(again["per_seed"][key], values)
  # A plan change in the same folder is refused without --overwrite.
  changed = _config(low="none", mid="neggrad", high="neggrad_plus")
  with pytest.raises(ValueError, match="different config"):
    run_lib.run_unlearning(changed, workdir, setup=setup)


def test_missing_scores_say_how_to_make_them(tmp_path):
  config = _config()
  config.unlearn.compute_scores = False
  with pytest.raises(FileNotFoundError, match="configs/digits_memorization.py"):
    commands.unlearn(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "original"), "refused before any training"
  config.unlearn.method = "finetune"  # the forget set (by memorization) needs them too
  with pytest.raises(FileNotFoundError, match="configs/digits_memorization.py"):
    commands.unlearn(config, str(tmp_path / "run"))
  config.forget.kind = "random"  # RUM refines by them even when the forget set is random
  config.unlearn.method = "rum"
  with pytest.raises(FileNotFoundError, match="configs/digits_memorization.py"):
    commands.unlearn(config, str(tmp_path / "random"))
