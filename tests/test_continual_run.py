"""End-to-end continual runs on Split digits (tiny MLP, 2 seeds): outputs, exact resume,
buffers chosen from a score file, refusal of bad sequences and configs before any work."""
import os

import jax
import numpy as np
import pandas as pd
import pytest

from rum_jax.configs import continual_digits
from rum_jax import io
from rum_jax.config_validation import ConfigError
from rum_jax.continual import config as continual_config
from rum_jax.pipelines import continual as run_lib
from rum_jax.training import setup as trainer


def _config(**continual):
  c = continual_digits.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  k = c.continual
  k.sequence = "0,1,2,-2"
  continual_digits.set_memories(c, memories=8, agem_memories=8)
  k.unlearn_max_epochs = 4
  k.agem_ref_size = 16
  for key, value in continual.items():
    k[key] = value
  return c


@pytest.fixture(scope="module")
def setup():
  return trainer.Setup.create(_config())


@pytest.fixture(scope="module")
def full_run(setup, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  return workdir, run_lib.run_continual(_config(), workdir, setup=setup)


def test_run_writes_every_output_and_consistent_metrics(full_run, setup):
  workdir, results = full_run
  for name in ("config.json", "steps.csv", "progress.json", "metrics.json", "metrics.csv",
               "curves.csv", "matrices.npz", "task_accuracy_heatmap.png", "task_curves.png", "cl_tow.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  m = np.load(os.path.join(workdir, "matrices.npz"))
  assert m["test_accuracy"].shape == (2, 5, 5)  # seeds, initial + 4 steps, 5 tasks
  test = m["test_accuracy"]
  for s in range(2):
    # ACC / BWT from the saved matrix by hand: tasks 0, 1, 2 learned at steps 1, 2, 3 (rows).
    R = test[s, 1:4, :3]
    np.testing.assert_allclose(results["per_seed"]["acc"][s], R[-1].mean())
    np.testing.assert_allclose(results["per_seed"]["bwt_paper"][s], np.sum(R[-1, :2] - np.diag(R)[:2]) / 2)
    np.testing.assert_allclose(results["per_seed"]["bwt_gem_code"][s], np.sum(R[-1, :2] - np.diag(R)[:2]) / 3)
    np.testing.assert_allclose(results["per_seed"]["final_forgotten_test_accuracy"][s], test[s, 4, 2])
  assert results["forget_steps"] == [3] and results["forgotten_tasks"] == [2]
  # metrics.csv is the tidy record (seed x metric, no mean rows): its groupby means are the summary's.
  record = pd.read_csv(os.path.join(workdir, "metrics.csv"), dtype={"seed": str})
  assert set(record["seed"]) == {"0", "1", "all"} and record["method"].unique().tolist() == [results["algorithm"]]
  for metric, mean in record.groupby("metric")["value"].mean().items():
    np.testing.assert_allclose(mean, results["summary"][metric]["mean"], rtol=1e-6, err_msg=metric)
  # Pooled metrics are one row of the seed-averaged matrices; every row names what was forgotten:
  # task 2 of the sequence, the digest of its examples (not the one-shot config's forget set).
  assert record[record.seed == "all"]["metric"].tolist() == [
      "final_cl_tow_of_mean_matrices", "mean_cl_tow_of_mean_matrices", "final_clu_mix_of_mean_matrices"]
  assert set(map(tuple, record[["forget_kind", "forget_level", "forget_size", "forget_split"]].to_numpy())) == {
      ("task", "0,1,2,-2", 1, "report")}
  assert record["forget_digest"].nunique() == 1 and len(record["forget_digest"][0]) == 16
  # Forgetting task 2 ran until its unlearn buffer fell to the threshold, or hit the cap.
  # (Paired batches: a pass has ceil(8 / 10) = 1 batch of each buffer.)
  progress = io.read_json(os.path.join(workdir, "progress.json"))
  iterations = progress["steps"][3]["iterations"]
  reached = progress["steps"][3]["reached_threshold"]
  cap = 4 * np.ceil(8 / 10)
  for s in range(2):
    assert m["unlearn_buffer_accuracy"][s, 4, 2] <= results["threshold"] + 1e-9 or iterations[s] == cap
    assert 0 < iterations[s] <= cap and reached[s] == (iterations[s] < cap or
                                                       m["unlearn_buffer_accuracy"][s, 4, 2] <= results["threshold"])
    # The one forget request of each seed counts as ended by the stop rule exactly when it was.
    assert results["per_seed"]["forget_requests_stopped"][s] == float(reached[s])
  # Task-incremental: every learned task is well above chance right after learning it.
  assert np.all(np.diagonal(test[:, 1:4, :3], axis1=1, axis2=2) > 0.8)
  # Buffers hold distinct examples of the right task.
  classes, labels = m["task_classes"], setup.dataset.train.y
  by_index = dict(zip(setup.dataset.train.index.tolist(), labels.tolist()))
  for s in range(2):
    for t in range(3):
      real = m["learn_buffer_index"][s, t][m["learn_buffer_weight"][s, t] > 0]
      assert len(real) == 8 == len(set(real.tolist()))
      assert set(by_index[i] for i in real.tolist()) <= set(classes[s, t].tolist())


class _Killed(Exception):
  pass


def test_killed_run_resumes_after_last_finished_step(full_run, setup, tmp_path, monkeypatch):
  workdir = str(tmp_path / "killed")

  def die(*args, **kwargs):
    raise _Killed()
  with monkeypatch.context() as patch:
    patch.setattr(run_lib.ContinualRun, "forget", die)
    with pytest.raises(_Killed):
      run_lib.run_continual(_config(), workdir, setup=setup)
  assert io.read_json(os.path.join(workdir, "progress.json"))["steps_done"] == 3
  resumed = run_lib.run_continual(_config(), workdir, setup=setup)
  full = np.load(os.path.join(full_run[0], "matrices.npz"))
  again = np.load(os.path.join(workdir, "matrices.npz"))
  for key in run_lib.EVAL_KEYS:  # to the last bit
    np.testing.assert_array_equal(again[key], full[key], err_msg=key)
  assert resumed["per_seed"] == full_run[1]["per_seed"]


def test_a_rerun_of_the_gem_path_on_one_machine_is_identical(full_run, setup, tmp_path):
  # The default method learns with GEM and forgets with GEM-projected steps (its dual QP).
  assert full_run[1]["learn_algorithm"] == "gem" and full_run[1]["algorithm"] == "neggem"
  again = run_lib.run_continual(_config(), str(tmp_path / "again"), setup=setup)
  assert again["per_seed"] == full_run[1]["per_seed"]
  first, second = (np.load(os.path.join(d, "matrices.npz")) for d in (full_run[0], str(tmp_path / "again")))
  for key in first.files:
    np.testing.assert_array_equal(second[key], first[key], err_msg=key)
  steps = [io.read_json(os.path.join(d, "progress.json"))["steps"] for d in (full_run[0], str(tmp_path / "again"))]
  assert [{k: v for k, v in s.items() if k != "seconds"} for s in steps[0]] == \
      [{k: v for k, v in s.items() if k != "seconds"} for s in steps[1]]


def test_held_out_stop_and_requests_without_an_update(setup, tmp_path):
  """Matched forgetting measures the forgotten task's held-out (validation) examples: a stopped
  request ends with them at or below the target. A target no accuracy can exceed stops every
  request before its first batch: counted as a request without an update, the model untouched."""
  config = _config(stop_set="held_out")
  config.continual.unlearn.neggem.update(stop_above_chance=0.3, lr=0.1)  # target 0.8 on 2-class tasks
  out = run_lib.run_continual(config, str(tmp_path / "held_out"), setup=setup)
  m = np.load(str(tmp_path / "held_out" / "matrices.npz"))
  progress = io.read_json(str(tmp_path / "held_out" / "progress.json"))["steps"][3]
  trace = pd.read_csv(str(tmp_path / "held_out" / "trace.csv"))
  for s in range(2):
    held_out = m["val_accuracy"][s, 4, 2]  # task 2 after step 3 (row 4), its validation examples
    last = trace[(trace.seed == s)].sort_values("pass")["forgotten_held_out"].iloc[-1]
    assert last == pytest.approx(held_out, abs=1e-6)  # the trace measures the same examples
    if progress["reached_threshold"][s]:
      assert held_out <= out["threshold"] + 1e-9
  assert any(progress["reached_threshold"]) and min(progress["iterations"]) > 0
  config = _config()
  config.continual.unlearn.neggem.stop_above_chance = 0.6  # target 1.1: reached before any batch
  out = run_lib.run_continual(config, str(tmp_path / "no_update"), setup=setup)
  assert out["per_seed"]["forget_requests_without_update"] == [1.0, 1.0]
  assert out["per_seed"]["forget_requests_stopped"] == [1.0, 1.0]
  m = np.load(str(tmp_path / "no_update" / "matrices.npz"))
  np.testing.assert_array_equal(m["test_accuracy"][:, 4], m["test_accuracy"][:, 3])


def test_buffers_follow_the_score_file(setup, tmp_path):
  tr = setup.dataset.train
  scores = np.random.default_rng(0).random(len(tr))
  path = str(tmp_path / "scores.npz")
  io.write_npz(path, index=tr.index, memorization=scores)
  config = _config(sequence="0,1", learn_algorithm="sgd", scores=path, mia=False,
                   learn_buffer_kind="most", learn_buffer_split=1.0,
                   unlearn_buffer_kind="least", unlearn_buffer_split=0.5)
  run_lib.run_continual(config, str(tmp_path / "run"), setup=setup)
  m = np.load(str(tmp_path / "run" / "matrices.npz"))
  score_of = dict(zip(tr.index.tolist(), scores.tolist()))
  for s in range(2):
    for t in range(2):
      of_task = np.flatnonzero(np.isin(tr.y, m["task_classes"][s, t]))
      ranked = tr.index[of_task[np.argsort(scores[of_task])]]
      np.testing.assert_array_equal(np.sort(m["learn_buffer_index"][s, t]), np.sort(ranked[-8:]))
      unlearn = m["unlearn_buffer_index"][s, t]
      assert set(ranked[:4].tolist()) <= set(unlearn.tolist()) and len(set(unlearn.tolist())) == 8
      assert min(score_of[i] for i in unlearn.tolist()) == score_of[int(ranked[0])]


@pytest.mark.parametrize("sequence,message", [
    ("0,-1", "task 1 cannot be forgotten, it was never learned"),
    ("0,1,5", "task 5 is out of range; valid tasks are 0..4"),
    ("0,x", "unknown task sequence .0,x.; valid names: A4, B4"),
])
def test_bad_sequences_are_refused_before_any_work(sequence, message, tmp_path):
  workdir = str(tmp_path / "never")
  with pytest.raises(ValueError, match=message):
    run_lib.run_continual(_config(sequence=sequence), workdir)
  assert not os.path.exists(workdir)


def test_rotated_tasks_of_one_dimensional_data_are_refused_before_any_work(tmp_path):
  c = _config(tasks="rotated", num_tasks=3)
  c.data.name = "mnist1d"
  workdir = str(tmp_path / "never")
  with pytest.raises(ConfigError, match=r"tasks='rotated': rotated tasks need images .* use config.continual.tasks='permuted'"):
    run_lib.run_continual(c, workdir)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize("classes_per_task", [6, 11])
def test_too_many_classes_per_task_is_refused_before_any_work(classes_per_task, tmp_path):
  # digits has 10 classes: 6 or 11 per task leave fewer than two tasks
  workdir = str(tmp_path / "never")
  with pytest.raises(ConfigError, match=f"classes_per_task={classes_per_task} leaves fewer than 2 tasks of "
                                        "digits's 10 classes; use at most 5"):
    run_lib.run_continual(_config(classes_per_task=classes_per_task), workdir)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize("field,value,message", [
    ("algorithm", "scrub", "valid choices: alt_neggem, alt_neggem_rl, negagem, negagem_rl, neggem"),
    ("learn_algorithm", "ewc", "valid choices: auto, agem, gem, sgd"),
    ("learn_buffer_kind", "middle", "valid choices: most, least, random"),
    ("forget_batches", "pairs", "valid choices: paired, union"),
    ("stop_mode", "test", "valid choices: eval, train"),
    ("salun_batch", "last", "valid choices: buffers, first_batch"),
    ("classes_per_task", 1, "integer >= 2"),
    ("score_key", "memorization", "valid choices: confidence, max_confidence"),
    ("tasks", "shuffled", "valid choices: permuted, rotated, split"),
    ("samples_per_task", -1, "samples_per_task must be an integer >= 0"),
    ("lr_after_forget", "keep", "valid choices: learn, unlearn"),
    ("mia_protocol", "lira", "valid choices: rank_cv, thesis"),
])
def test_bad_config_fields_name_the_valid_choices(field, value, message):
  with pytest.raises(ConfigError, match=message):
    continual_config.validate(_config(**{field: value}))


@pytest.mark.parametrize("section,key,value,message", [
    ("unlearn.neggem", "salun", 1.5, r"unlearn.neggem.salun must be a fraction in \[0, 1\)"),
    ("unlearn.negagem", "batch_size", 0, "unlearn.negagem.batch_size must be a positive integer"),
    ("unlearn.neggem", "alhpa", 0.5, r"unknown \['alhpa'\]"),
    ("learn.gem", "memories", -1, "learn.gem.memories must be a positive integer"),
    ("unlearn.alt_neggem", "salun_batch", "violating", "valid choices: buffers, first_batch, first_violating"),
])
def test_bad_method_sections_are_named(section, key, value, message):
  c = _config()
  group, name = section.split(".")
  c.continual[group][name][key] = value
  with pytest.raises(ConfigError, match=message):
    continual_config.validate(c)


def test_algorithm_alias_auto_learning_and_the_method_sections():
  c = continual_digits.get_config("thesis")
  c.algorithm = "rl_agem"  # what --config.algorithm=rl_agem does
  assert c.continual.algorithm == "rl_agem" and continual_config.learn_algorithm(c) == "agem"
  continual_config.validate(c)
  # The chosen method's and learning algorithm's sections are the ones read.
  assert continual_config.unlearn_section(c).batch_size == 2  # the thesis: 1; 2 with BatchNorm on an MLP
  assert continual_config.learn_section(c).lr == 0.03
  c.sequence = "B4"
  assert c.continual.sequence == "B4"
  with pytest.raises(ValueError, match="valid choices: '' .ours, the default. or 'thesis'"):
    continual_digits.get_config("thesys")


def test_salun_mask_of_the_first_batch_confines_every_update_of_a_forgetting(setup):
  # Forgetting task 0 with nothing retained (no projection adds memory gradients): NegGEM's
  # two updates per batch, over every pass, change only the weights of the mask taken from
  # the first batch, and the stop rule runs in train mode.
  c = _config(sequence="0,-0", stop_mode="train", salun_batch="first_batch", mia=False)
  c.continual.unlearn.neggem.salun = 0.05
  c.continual.unlearn.neggem.batch_size = 2
  run = run_lib.ContinualRun(c, setup)
  run.data = setup.train_data()
  states, _ = run.learn(run.initial_states(), 0, 0, frozenset())
  after, info = run.forget(states, 1, 0, frozenset())
  assert min(info["iterations"]) > 0
  for s in range(2):
    flat = lambda tree: np.concatenate([np.ravel(leaf[s]) for leaf in jax.tree.leaves(tree)])
    mask, changed = flat(after.aux["salun_mask"]), flat(after.params) != flat(states.params)
    assert mask.sum() == round(0.05 * mask.size) and changed.any()
    assert not np.any(changed & (mask == 0))
