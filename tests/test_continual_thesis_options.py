"""The thesis' behaviours offered as settings: the lr after a forget step, its MIA protocol,
ALT-NegGEM's SalUn mask from the first violating batch; CL-ToW on seed-averaged matrices."""
import jax
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rum_jax.configs import continual_digits
from rum_jax.continual import buffers, mia as continual_mia, programs, sequences
from rum_jax.evaluation.metrics.continual import SequenceOutputs
from rum_jax.pipelines import continual as run_lib
from rum_jax.training import loop, setup as trainer


def _config(**continual):
  c = continual_digits.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  continual_digits.set_memories(c, memories=8, agem_memories=8)
  c.continual.unlearn_max_epochs = 2
  c.continual.mia = False
  for key, value in continual.items():
    c.continual[key] = value
  return c


@pytest.fixture(scope="module")
def setup():
  return trainer.Setup.create(_config())


def test_learning_lrs_switch_to_the_unlearning_lr_after_the_first_forget_step():
  b4 = sequences.make_sequence("B4", 4)  # 0, 1, -1, 1, 2, -2, 2, ...
  theirs = programs.learning_lrs(b4, 0.1, 0.01, "unlearn")
  ours = programs.learning_lrs(b4, 0.1, 0.01, "learn")
  assert theirs[:2] == [0.1, 0.1] and theirs[2] is None and theirs[3] == 0.01
  assert all(lr == 0.01 for lr, step in zip(theirs[3:], b4[3:]) if step.is_learn)
  assert all(lr == 0.1 for lr, step in zip(ours, b4) if step.is_learn)
  with pytest.raises(ValueError, match="valid choices: learn, unlearn"):
    programs.learning_lrs(b4, 0.1, 0.01, "keep")


def test_relearning_after_a_forget_step_uses_the_unlearning_lr_when_asked(setup):
  # "0,-0,0": relearning task 0 at step 2 comes after a forget step. With an unlearning lr
  # of 1e-9 the thesis' setting barely moves the weights; ours relearns at lr 0.1.
  moved = {}
  for mode in ("learn", "unlearn"):
    c = _config(sequence="0,-0,0", lr_after_forget=mode)
    c.continual.learn.gem.lr = 0.1
    c.continual.unlearn.neggem.lr = 1e-9
    run = run_lib.ContinualRun(c, setup)
    run.data = setup.train_data()
    states = run.initial_states()
    after, _ = run.learn(states, 2, 0, frozenset())
    flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
    moved[mode] = np.abs(flat(after.params) - flat(states.params)).max()
  assert moved["unlearn"] < 1e-6 < 1e-2 < moved["learn"]


def test_thesis_mia_separates_a_planted_gap_and_clips_raw_losses():
  rng = np.random.default_rng(0)
  members, outsiders = rng.uniform(0.0, 0.5, 40), rng.uniform(1.0, 3.0, 60)
  auc = continual_mia.thesis_loss_mia_auc(members, outsiders, seed=1)
  assert auc == 1.0
  # The direction is learned from the attacker's half: higher member losses separate too.
  assert continual_mia.thesis_loss_mia_auc(outsiders, members, seed=1) == 1.0
  # Raw losses beyond 400 are clipped to 400: all equal, so the attack cannot separate.
  assert continual_mia.thesis_loss_mia_auc(np.full(20, 900.0), np.full(20, 500.0)) == 0.5
  # Fewer than 2 pairs for each half: 0.5 (the thesis' early return).
  assert continual_mia.thesis_loss_mia_auc(members[:3], outsiders) == 0.5
  # One 50/50 split: the AUC of the eval half, the same as scoring it by the loss itself
  # (a one-feature logistic regression is monotone in the loss).
  noisy_m, noisy_o = rng.normal(0.0, 1.0, 50), rng.normal(0.8, 1.0, 50)
  auc = continual_mia.thesis_loss_mia_auc(noisy_m, noisy_o, seed=3)
  pick = np.random.default_rng(3)
  m = noisy_m[pick.choice(50, 50, replace=False)][25:]
  o = noisy_o[pick.choice(50, 50, replace=False)][25:]
  by_loss = roc_auc_score(np.r_[np.ones(25), np.zeros(25)], -np.r_[m, o])
  assert auc == pytest.approx(by_loss)
  thesis = continual_mia.MIA_PROTOCOLS.get("thesis")
  assert [t for t in range(12) if thesis.scores_task(t)] == list(range(1, 9))
  assert all(continual_mia.MIA_PROTOCOLS.get("rank_cv").scores_task(t) for t in range(12))


def test_cl_tow_on_averaged_matrices_by_hand():
  seq = sequences.parse_sequence("0,1,-1")  # forget step 2 mirrors step 0 (before task 1)
  # [seeds, initial + 3 steps, 2 tasks]
  train = np.array([[[0.5, 0.5], [0.9, 0.5], [0.8, 0.9], [0.7, 0.5]],
                    [[0.5, 0.5], [1.0, 0.4], [0.9, 1.0], [0.9, 0.8]]])
  test = np.array([[[0.5, 0.5], [0.8, 0.5], [0.7, 0.8], [0.6, 0.5]],
                   [[0.5, 0.5], [0.9, 0.5], [0.8, 0.9], [0.8, 0.6]]])
  out = SequenceOutputs({"train_accuracy": train, "test_accuracy": test}, sequences.timeline(seq), 0.5)
  # Averaged: train after step 2 (0.8, 0.65), after step 0 (0.95, 0.45); test task 0: 0.7 vs 0.85.
  by_hand = (1 - abs(0.65 - 0.45)) * (1 - abs(0.8 - 0.95)) * (1 - abs(0.7 - 0.85))
  assert out.value("final_cl_tow_of_mean_matrices")[0] == pytest.approx(by_hand)
  # Per seed: seed 0 (1 - 0)(1 - 0.2)(1 - 0.2), seed 1 (1 - 0.4)(1 - 0.1)(1 - 0.1); their mean.
  seeds = [(1 - 0.0) * (1 - 0.2) * (1 - 0.2), (1 - 0.4) * (1 - 0.1) * (1 - 0.1)]
  np.testing.assert_allclose(out.value("final_cl_tow"), seeds)
  assert out.value("final_cl_tow_of_mean_matrices")[0] != pytest.approx(np.mean(seeds))
  # Without a record of the stop rule there is no such metric; with one, the fraction per seed.
  with pytest.raises(ValueError, match="stopped"):
    out.value("forget_requests_stopped")
  stopped = SequenceOutputs({"train_accuracy": train, "test_accuracy": test}, sequences.timeline(seq), 0.5,
                            requests={"stopped": np.array([[True], [False]])})
  assert stopped.value("forget_requests_stopped").tolist() == [1.0, 0.0]


def test_first_violating_batch_is_taken_per_seed_else_the_first():
  plan = {"forget": {"idx": np.arange(2 * 4 * 3).reshape(2, 4, 3), "weight": np.ones((2, 4, 3))}}
  flags = np.array([[False, False, True, True], [False, False, False, False]])
  called = []
  picked = buffers.SALIENCY_BATCHES.get("first_violating")(
      plan, [], [], (3, 3), lambda: called.append(1) or flags)
  np.testing.assert_array_equal(picked["forget"]["idx"][:, 0], plan["forget"]["idx"][[0, 1], [2, 0]])
  assert picked["forget"]["idx"].shape == (2, 1, 3) and called == [1]
  buffers.SALIENCY_BATCHES.get("first_batch")(plan, [], [], (3, 3), lambda: called.append(1))
  assert called == [1]  # the other choices never compute violations


def test_alt_neggem_forgets_with_the_mask_of_its_first_violating_batch(setup):
  c = _config(sequence="0,1,-1", algorithm="alt_neggem")
  c.continual.unlearn.alt_neggem.salun = 0.05
  c.continual.unlearn.alt_neggem.salun_batch = "first_violating"
  run = run_lib.ContinualRun(c, setup)
  run.data = setup.train_data()
  states, _ = run.learn(run.initial_states(), 0, 0, frozenset())
  states, _ = run.learn(states, 1, 1, frozenset({0}))
  after, info = run.forget(states, 2, 1, frozenset({0}))
  for s in range(2):
    mask = np.concatenate([np.ravel(leaf[s]) for leaf in jax.tree.leaves(after.aux["salun_mask"])])
    assert mask.sum() == round(0.05 * mask.size)


def test_clipped_sgd_is_the_closed_form():
  # lr * g * min(1, c / |g|): a gradient of norm 5 is scaled to norm 2, one of norm 1 is kept.
  for grad, expected_scale in ((np.array([3.0, 4.0], np.float32), 2.0 / 5.0), (np.array([0.6, 0.8], np.float32), 1.0)):
    tx = programs.sgd(None, 0.1, clip_norm=2.0)
    update, _ = tx.update({"w": grad}, tx.init({"w": np.zeros(2, np.float32)}), {"w": np.zeros(2, np.float32)})
    np.testing.assert_allclose(update["w"], -0.1 * expected_scale * grad, rtol=1e-6)
  plain = programs.sgd(None, 0.1)
  update, _ = plain.update({"w": np.array([3.0, 4.0], np.float32)}, plain.init({"w": np.zeros(2, np.float32)}))
  np.testing.assert_allclose(update["w"], [-0.3, -0.4], rtol=1e-6)


def test_clip_norm_bounds_every_forget_step(setup):
  # NegGrad+ at lr 10: each updating batch moves the weights by at most lr * clip_norm, so a
  # pass of n updates by at most n * lr * clip_norm (triangle inequality); unclipped it does not.
  moved, bound = {}, {}
  for clip in (0.0, 0.05):
    c = _config(sequence="0,1,-1", algorithm="neggrad_plus")
    c.continual.unlearn_max_epochs = 1
    c.continual.unlearn.neggrad_plus.lr = 10.0
    c.continual.unlearn.neggrad_plus.stop_above_chance = 0.0
    c.continual.unlearn.neggrad_plus.clip_norm = clip
    run = run_lib.ContinualRun(c, setup)
    run.data = setup.train_data()
    states, _ = run.learn(run.initial_states(), 0, 0, frozenset())
    states, _ = run.learn(states, 1, 1, frozenset({0}))
    try:
      after, info = run.forget(states, 2, 1, frozenset({0}))
    except loop.NonFiniteLossError:  # unclipped, lr 10 may diverge: it moved without bound
      moved[clip] = np.full(2, np.inf)
      continue
    flat = lambda tree, s: np.concatenate([np.ravel(leaf[s]) for leaf in jax.tree.leaves(tree)])
    moved[clip] = np.array([np.linalg.norm(flat(after.params, s) - flat(states.params, s)) for s in range(2)])
    bound[clip] = 10.0 * 0.05 * np.array(info["iterations"])
  assert np.all(moved[0.05] > 0) and np.all(moved[0.05] <= bound[0.05] * (1 + 1e-5))
  assert np.all(moved[0.0] > bound[0.05])


def test_clip_norm_is_validated():
  from rum_jax.continual import config as continual_config
  c = _config()
  c.continual.unlearn.neggem.clip_norm = -1.0
  with pytest.raises(ValueError, match=r"unlearn.neggem.clip_norm must be a number >= 0"):
    continual_config.validate(c)
