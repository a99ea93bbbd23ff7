"""Tests of ACC/BWT/FWT, CL-ToW and CLU against hand computations on small matrices, and of the
metric registry's continual metrics (per seed and pooled) against the same formulas."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from rum_jax.continual import sequences
from rum_jax.evaluation import continual as metrics
from rum_jax.evaluation.metrics import METRICS, check_names
from rum_jax.evaluation.metrics.continual import DEFAULT_CONTINUAL_METRICS, SequenceOutputs


def parse_sequence(text):
  """The timeline of a sequence written as text ("+0,+1,-1")."""
  return sequences.timeline(sequences.parse_sequence(text))

R3 = np.array([[0.90, 0.10, 0.20],
               [0.70, 0.80, 0.30],
               [0.60, 0.50, 0.95]])


def test_acc_bwt_fwt_by_hand():
  assert_allclose(metrics.average_accuracy(R3), (0.60 + 0.50 + 0.95) / 3)
  assert_allclose(metrics.backward_transfer(R3), ((0.60 - 0.90) + (0.50 - 0.80)) / 2)
  initial = [0.10, 0.20, 0.25]
  assert_allclose(metrics.forward_transfer(R3, initial), ((0.10 - 0.20) + (0.30 - 0.25)) / 2)


def test_bwt_fwt_as_gem_code_averages_them_over_all_tasks():
  # GEM's metrics.py: bwt = result[T-1] - diag (last entry 0), fwt[0] = 0; both .mean() over T.
  initial = [0.10, 0.20, 0.25]
  assert_allclose(metrics.backward_transfer(R3, "gem_code"), ((0.60 - 0.90) + (0.50 - 0.80) + 0.0) / 3)
  assert_allclose(metrics.forward_transfer(R3, initial, "gem_code"), (0.0 + (0.10 - 0.20) + (0.30 - 0.25)) / 3)
  sequence = parse_sequence("0,1,2")
  out = metrics.transfer_metrics(R3, sequence, initial)
  assert_allclose(out["bwt_paper"], -0.30)
  assert_allclose(out["bwt_gem_code"], -0.20)
  assert_allclose(out["fwt_paper"], -0.025)
  assert_allclose(out["fwt_gem_code"], -0.05 / 3)
  with pytest.raises(ValueError, match="valid choices: paper, gem_code"):
    metrics.backward_transfer(R3, "mean")


def test_learning_matrix_keeps_first_learning_steps_in_learning_order():
  # +2 +0 -0 +1 +0 over 3 tasks: first learnings at steps 0 (task 2), 1 (task 0), 3 (task 1).
  sequence = parse_sequence("+2,+0,-0,+1,+0")
  acc = np.array([[0.30, 0.31, 0.90],
                  [0.80, 0.32, 0.85],
                  [0.33, 0.34, 0.84],
                  [0.35, 0.88, 0.83],
                  [0.86, 0.87, 0.82]])
  R, order = metrics.learning_matrix(acc, sequence)
  assert order == [2, 0, 1]
  assert_array_equal(R, [[0.90, 0.30, 0.31],
                         [0.85, 0.80, 0.32],
                         [0.83, 0.35, 0.88]])
  out = metrics.transfer_metrics(acc, sequence, initial_acc=[0.20, 0.21, 0.22])
  assert_allclose(out["acc"], (0.83 + 0.35 + 0.88) / 3)
  assert_allclose(out["bwt_paper"], ((0.83 - 0.90) + (0.35 - 0.80)) / 2)
  # FWT in learning order: task 0 before learning it (row 0) vs b_0, task 1 (row 1) vs b_1.
  assert_allclose(out["fwt_paper"], ((0.30 - 0.20) + (0.32 - 0.21)) / 2)


def test_transfer_metrics_need_two_tasks_and_square_matrices():
  with pytest.raises(ValueError, match="at least 2"):
    metrics.backward_transfer([[0.5]])
  with pytest.raises(ValueError, match="square"):
    metrics.average_accuracy(np.zeros((2, 3)))


TRAIN = np.array([[0.90, 0.30, 0.35],
                  [0.85, 0.92, 0.33],
                  [0.80, 0.88, 0.95],
                  [0.78, 0.86, 0.40],
                  [0.70, 0.50, 0.36]])
TEST = np.array([[0.70, 0.20, 0.30],
                 [0.65, 0.75, 0.25],
                 [0.60, 0.70, 0.80],
                 [0.58, 0.69, 0.30],
                 [0.55, 0.35, 0.28]])


def test_cl_tow_by_hand():
  tow = metrics.cl_tow(TRAIN, TEST, parse_sequence("+0,+1,+2,-2,-1"))
  assert np.all(np.isnan(tow[:3]))  # learning steps.
  # Step 3 forgets task 2 (learned at step 2): mirror b = 1, S = {2}, R = {0, 1}.
  forget = 1 - abs(0.40 - 0.33)
  retain = 1 - (abs(0.78 - 0.85) + abs(0.86 - 0.92)) / 2
  test = 1 - abs((0.58 + 0.69) / 2 - (0.65 + 0.75) / 2)
  assert_allclose(tow[3], forget * retain * test)
  assert_allclose(tow[3], 0.93 * 0.935 * 0.935)
  # Step 4 forgets task 1 (learned at step 1): b = 0, S = {1, 2}, R = {0}.
  forget = 1 - (abs(0.50 - 0.30) + abs(0.36 - 0.35)) / 2
  assert_allclose(tow[4], forget * (1 - abs(0.70 - 0.90)) * (1 - abs(0.55 - 0.70)))
  assert_allclose(tow[4], 0.895 * 0.80 * 0.85)


def test_cl_tow_mirror_of_first_task_is_the_initial_model():
  sequence = parse_sequence("+0,+1,-0")
  train = [[0.90, 0.45], [0.85, 0.90], [0.55, 0.88]]
  test = [[0.80, 0.50], [0.70, 0.80], [0.45, 0.75]]
  with pytest.raises(ValueError, match="initial_train_acc"):
    metrics.cl_tow(train, test, sequence)
  tow = metrics.cl_tow(train, test, sequence, initial_train_acc=[0.50, 0.50],
                       initial_test_acc=[0.40, 0.60])
  assert_allclose(tow[2], (1 - abs(0.55 - 0.50)) * (1 - abs(0.88 - 0.50)) * (1 - abs(0.75 - 0.60)))


def test_cl_tow_with_no_retained_task_has_unit_retain_factors():
  tow = metrics.cl_tow([[0.9], [0.6]], [[0.8], [0.3]], parse_sequence("+0,-0"),
                       initial_train_acc=[0.5], initial_test_acc=[0.5])
  assert_allclose(tow[1], 1 - abs(0.6 - 0.5))


def test_clu_by_hand():
  sequence = parse_sequence("+0,+1,-1,+1")
  acc = np.array([[0.90, 0.50],
                  [0.80, 0.95],
                  [0.85, 0.60],
                  [0.95, 0.90]])
  clu = metrics.clu(acc, sequence, chance=0.5, beta=0.2)
  expected = [
      # Step 0: R = {0}, a_0 = 0.90, nothing lost, nothing forgotten.
      (1.0 * 1.0 + 0.2 * 0.0) / 1.2,
      # Step 1: R = {0, 1}, a = (0.90, 0.95): L_ret = (0.10 + 0) / 2.
      ((1 - 0.05) * 1.0 + 0.2 * 0.0) / 1.2,
      # Step 2: R = {0}: L_ret = 0.90 - 0.85; S = {1}: L_res = 0.60 - 0.50.
      ((1 - 0.05) * (1 - 0.10) + 0.2 * 0.0) / 1.2,
      # Step 3: task 1 relearned, a_1 = 0.90 (this step): L_ret = 0, B = (0.05 + 0) / 2.
      ((1 - 0.0) * 1.0 + 0.2 * 0.025) / 1.2,
  ]
  assert_allclose(clu, expected)
  assert_allclose(clu, [1 / 1.2, 0.95 / 1.2, 0.855 / 1.2, 1.005 / 1.2])
  terms = metrics.clu_terms(acc, sequence, chance=0.5)
  assert_allclose(terms["retention_loss"], [0.0, 0.05, 0.05, 0.0])
  assert_allclose(terms["residual"], [0.0, 0.0, 0.10, 0.0])
  assert_allclose(terms["bonus"], [0.0, 0.0, 0.0, 0.025])
  # Per-task chance: a forgotten task below its chance level leaves no residual.
  assert_allclose(metrics.clu(acc, sequence, chance=[0.5, 0.7])[2], 0.95 / 1.2)


def test_metrics_refuse_bad_accuracies():
  sequence = parse_sequence("+0,+1")
  with pytest.raises(ValueError, match="fractions, not percent"):
    metrics.clu([[90.0, 10.0], [80.0, 95.0]], sequence, chance=0.5)
  with pytest.raises(ValueError, match="one row per step"):
    metrics.clu([[0.9, 0.1]], sequence, chance=0.5)
  with pytest.raises(ValueError, match="uses task 1"):
    metrics.learning_matrix([[0.9], [0.8]], sequence)
  with pytest.raises(ValueError, match="beta"):
    metrics.clu([[0.9, 0.1], [0.8, 0.9]], sequence, chance=0.5, beta=-1)


def _outputs(seed=0, num_seeds=3):
  """A run of "+0,+1,+2,-2,-1" over 3 tasks: random accuracies, the initial model in row 0."""
  rng = np.random.default_rng(seed)
  matrices = {k: rng.uniform(0.2, 1.0, size=(num_seeds, 6, 3)) for k in ("train_accuracy", "test_accuracy")}
  matrices["mia_auc"] = rng.uniform(0.4, 0.7, size=(num_seeds, 6, 3))
  requests = {"updates": np.array([[0, 5], [3, 0], [0, 0]])[:num_seeds],
              "stopped": np.array([[True, False], [True, True], [True, True]])[:num_seeds]}
  return SequenceOutputs(matrices, parse_sequence("+0,+1,+2,-2,-1"), 0.5, {"clu_beta": 0.2}, requests)


def test_registry_metrics_equal_the_formulas_per_seed_and_on_averaged_matrices():
  out = _outputs()
  train, test = out.matrices["train_accuracy"], out.matrices["test_accuracy"]
  timeline = out.timeline
  for s in range(3):
    tow = metrics.cl_tow(train[s, 1:], test[s, 1:], timeline, train[s, 0], test[s, 0])
    assert out.value("final_cl_tow")[s] == tow[4] and out.value("mean_cl_tow")[s] == np.mean(tow[[3, 4]])
    assert out.value("final_clu_mix")[s] == metrics.clu(train[s, 1:], timeline, 0.5, 0.2)[-1]
    assert out.value("acc")[s] == metrics.transfer_metrics(test[s, 1:], timeline, test[s, 0])["acc"]
    # Kept: task 0; forgotten: tasks 1 and 2; before forgetting: after step 2 (row 3).
    assert out.value("final_retained_test_accuracy")[s] == test[s, -1, 0]
    assert out.value("final_forgotten_test_accuracy")[s] == pytest.approx(test[s, -1, 1:].mean())
    assert out.value("retained_test_accuracy_before_forgetting")[s] == test[s, 3, 0]
    assert out.value("forgotten_test_accuracy_before_forgetting")[s] == pytest.approx(test[s, 3, 1:].mean())
    assert out.value("retained_test_accuracy_after_learning")[s] == test[s, 1, 0]
    assert out.value("final_forgotten_mia_auc")[s] == pytest.approx(out.matrices["mia_auc"][s, -1, 1:].mean())
  # Pooled: the metric of the seed-averaged matrices, one value (not the mean of the seeds').
  avg_tow = metrics.cl_tow(train.mean(0)[1:], test.mean(0)[1:], timeline, train.mean(0)[0], test.mean(0)[0])
  assert out.value("final_cl_tow_of_mean_matrices").tolist() == [avg_tow[4]]
  assert out.value("final_cl_tow_of_mean_matrices")[0] != pytest.approx(out.value("final_cl_tow").mean())
  assert METRICS.get("final_cl_tow_of_mean_matrices").pooled and not METRICS.get("final_cl_tow").pooled
  # Requests: the stop rule ended 2 of 2, 2, 1 (seed 0 made no update at its first one).
  assert out.value("forget_requests_stopped").tolist() == [0.5, 1.0, 1.0]
  assert out.value("forget_requests_without_update").tolist() == [0.5, 0.5, 1.0]


def test_continual_metrics_are_their_own_kind_and_listed_by_default():
  assert {METRICS.get(n).kind for n in DEFAULT_CONTINUAL_METRICS} == {"sequence"}
  check_names(list(DEFAULT_CONTINUAL_METRICS), "config.continual.metrics", kind="sequence")
  with pytest.raises(ValueError, match="unknown metric"):
    check_names(["final_cl_tow"], "config.evaluation.metrics", banks=False)  # not a one-shot metric
  without = SequenceOutputs({k: v for k, v in _outputs().matrices.items() if k != "mia_auc"},
                            parse_sequence("+0,+1,+2,-2,-1"), 0.5)
  with pytest.raises(ValueError, match="mia_auc"):
    without.value("final_forgotten_mia_auc")
  with pytest.raises(ValueError, match="updates"):
    without.value("forget_requests_without_update")
