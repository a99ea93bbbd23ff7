"""Tests of the continual task sequences: named ones, custom ones, validation, mirrors."""
import numpy as np
import pytest

from rum_jax.continual import sequences
from rum_jax.continual.sequences import SEQUENCES, Step


def L(*tasks):
  return [Step("learn", k) for k in tasks]


def F(*tasks):
  return [Step("forget", k) for k in tasks]


ALL_20 = tuple(range(20))

# The thesis' sequences (docs/continual.md), word for word, at T = 20.
EXPECTED_20 = {
    # "A4 learn 0..19 then forget 19..1"
    "A4": L(*ALL_20) + F(19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1),
    # "B4 learn 0, then for k = 1..19: learn k, forget k, relearn k"
    "B4": L(0) + [s for k in ALL_20[1:] for s in L(k) + F(k) + L(k)],
    # "C4 learn 0..14, forget 14..10, learn 15..19"
    "C4": (L(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14) + F(14, 13, 12, 11, 10)
           + L(15, 16, 17, 18, 19)),
    # "C4v2 learn 0..9, forget 9..5, learn 10..19"
    "C4v2": (L(0, 1, 2, 3, 4, 5, 6, 7, 8, 9) + F(9, 8, 7, 6, 5)
             + L(10, 11, 12, 13, 14, 15, 16, 17, 18, 19)),
    # "D4 learn 0..19, forget 18..1 except 14, 9, 4"
    "D4": L(*ALL_20) + F(18, 17, 16, 15, 13, 12, 11, 10, 8, 7, 6, 5, 3, 2, 1),
    # "F4 C4v2 then relearn 5..9"
    "F4": (L(0, 1, 2, 3, 4, 5, 6, 7, 8, 9) + F(9, 8, 7, 6, 5)
           + L(10, 11, 12, 13, 14, 15, 16, 17, 18, 19) + L(5, 6, 7, 8, 9)),
    # "G4 learn 0..9, forget 9..5, learn 10..14, relearn 5..9, learn 15..19"
    "G4": (L(0, 1, 2, 3, 4, 5, 6, 7, 8, 9) + F(9, 8, 7, 6, 5) + L(10, 11, 12, 13, 14)
           + L(5, 6, 7, 8, 9) + L(15, 16, 17, 18, 19)),
    # "H4 learn 0..19, forget 0, 4, 9, 14"
    "H4": L(*ALL_20) + F(0, 4, 9, 14),
    # "MIA learn 0..10, forget 10..1"
    "MIA": L(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) + F(10, 9, 8, 7, 6, 5, 4, 3, 2, 1),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_20))
def test_named_sequences_at_20_tasks_are_spec_lists(name):
  assert sequences.make_sequence(name, 20) == EXPECTED_20[name]


def _thesis_steps(operations):
  """The thesis' task_sequence lists (negGemGradA4.py): k >= 0 learns task k, -k forgets it."""
  return [Step("learn", k) if k >= 0 else Step("forget", -k) for k in operations]


def test_b4_is_the_thesis_list_written_out():
  # negGemGradA4.py's B4, copied as it stands: 58 steps, task 0 is never forgotten.
  thesis_b4 = [0, 1, -1, 1, 2, -2, 2, 3, -3, 3, 4, -4, 4, 5, -5, 5, 6, -6, 6, 7, -7, 7, 8, -8, 8,
               9, -9, 9, 10, -10, 10, 11, -11, 11, 12, -12, 12, 13, -13, 13, 14, -14, 14, 15,
               -15, 15, 16, -16, 16, 17, -17, 17, 18, -18, 18, 19, -19, 19]
  steps = sequences.make_sequence("B4", 20)
  assert len(steps) == 58 and steps == _thesis_steps(thesis_b4)
  assert Step("forget", 0) not in steps


def test_h4_forgets_task_0_where_the_thesis_list_relearns_it():
  # The thesis' H4 ends with -0, -4, -9, -14; as an integer -0 == 0 learns task 0 again.
  thesis_h4 = list(range(20)) + [-0, -4, -9, -14]
  assert _thesis_steps(thesis_h4)[20] == Step("learn", 0)
  assert sequences.make_sequence("H4", 20)[20:] == F(0, 4, 9, 14)


def test_e4_learns_all_then_forgets_one_seeded_task():
  drawn = set()
  for seed in range(200):
    steps = sequences.make_sequence("E4", 20, seed=seed)
    assert steps[:20] == L(*ALL_20)
    assert len(steps) == 21 and steps[20].is_forget
    assert steps == sequences.make_sequence("E4", 20, seed=seed)  # reproducible.
    drawn.add(steps[20].task)
  # Uniform over all 20 tasks, including task 0 (which the thesis' signed ints lost as -0).
  assert drawn == set(ALL_20)


def test_registry_holds_every_named_sequence():
  assert set(SEQUENCES.names()) == set(EXPECTED_20) | {"E4"}


@pytest.mark.parametrize("num_tasks", [4, 5, 8, 10, 13])
@pytest.mark.parametrize("name", sorted(set(EXPECTED_20) | {"E4"}))
def test_named_sequences_scale_and_validate(name, num_tasks):
  steps = sequences.make_sequence(name, num_tasks, seed=3)  # validates.
  assert max(s.task for s in steps) == num_tasks - 1 or name == "MIA"
  assert any(s.is_forget for s in steps)


def test_named_sequences_at_5_tasks():
  # The scaling rule by hand at T = 5 (q = 1, h = 2, s = 2), e.g. Split digits.
  expected = {
      "A4": L(0, 1, 2, 3, 4) + F(4, 3, 2, 1),
      "B4": L(0) + L(1) + F(1) + L(1) + L(2) + F(2) + L(2) + L(3) + F(3) + L(3) + L(4) + F(4) + L(4),
      "C4": L(0, 1, 2, 3) + F(3) + L(4),
      "C4v2": L(0, 1) + F(1) + L(2, 3, 4),
      "D4": L(0, 1, 2, 3, 4) + F(3, 1),
      "F4": L(0, 1) + F(1) + L(2, 3, 4) + L(1),
      "G4": L(0, 1) + F(1) + L(2) + L(1) + L(3, 4),
      "H4": L(0, 1, 2, 3, 4) + F(0, 2),
      "MIA": L(0, 1, 2) + F(2, 1),
  }
  for name, steps in expected.items():
    assert sequences.make_sequence(name, 5) == steps, name


@pytest.mark.parametrize("num_tasks", [0, 3, 2.5, True])
def test_named_sequences_refuse_too_few_tasks(num_tasks):
  with pytest.raises(ValueError, match=">= 4"):
    SEQUENCES.get("A4")(num_tasks, 0)


def test_parse_custom_sequences():
  assert sequences.parse_sequence("0,1,2,-2,3") == L(0, 1, 2) + F(2) + L(3)
  # Explicit signs, spaces, and forgetting task 0 with "-0".
  assert sequences.parse_sequence(" +0, +1 ,-0,+0") == L(0, 1) + F(0) + L(0)
  steps = L(0, 1, 2) + F(2, 0)
  assert sequences.format_sequence(steps) == "+0,+1,+2,-2,-0"
  assert sequences.parse_sequence(sequences.format_sequence(steps)) == steps


@pytest.mark.parametrize("text, token", [("0,1,,2", "''"), ("0,x", "'x'"), ("0,+-1", "'\\+-1'"),
                                         ("0,1.5", "'1.5'")])
def test_parse_refuses_bad_tokens(text, token):
  with pytest.raises(ValueError, match=f"step [0-9]+ \\({token}\\)"):
    sequences.parse_sequence(text)


def test_make_sequence_custom_and_unknown_names():
  assert sequences.make_sequence("0,1,-1,2", 3) == L(0, 1) + F(1) + L(2)
  with pytest.raises(ValueError, match="unknown task sequence 'Z9'.*A4, B4"):
    sequences.make_sequence("Z9", 20)
  with pytest.raises(ValueError, match="out of range"):
    sequences.make_sequence("0,1,5", 3)


def test_validate_accepts_relearning_after_forgetting():
  sequences.validate(L(0, 1) + F(0) + L(0) + F(0, 1) + L(1), num_tasks=2)


@pytest.mark.parametrize("steps, message", [
    (L(0, 20), r"step 1 \(\+20\): task 20 is out of range; valid tasks are 0..19"),
    (L(0) + F(1), r"step 1 \(-1\): task 1 cannot be forgotten, it was never learned"),
    (L(0, 1) + F(1, 1), r"step 3 \(-1\): task 1 was already forgotten at step 2"),
    (L(0, 1) + F(1) + L(1) + F(1, 1), r"step 5 \(-1\): task 1 was already forgotten at step 4"),
    (L(0, 1, 0), r"step 2 \(\+0\): task 0 is already learned"),
    ([], "at least one step"),
    ([(0, "learn")], r"step 0 must be a Step"),
])
def test_validate_refuses_bad_sequences_naming_the_step(steps, message):
  with pytest.raises(ValueError, match=message):
    sequences.validate(steps, num_tasks=20)


def test_step_refuses_bad_fields():
  with pytest.raises(ValueError, match="'learn' or 'forget'"):
    Step("unlearn", 1)
  with pytest.raises(ValueError, match=">= 0"):
    Step("forget", -1)
  with pytest.raises(ValueError, match="integer"):
    Step("learn", 1.0)
  assert Step("learn", np.int64(3)) == Step("learn", 3)
  assert type(Step("learn", np.int64(3)).task) is int


def test_mirrored_steps_a4_matches_thesis_formula():
  # The thesis' ToW/tow.py compares row i with row 38 - i (= 2T - 2 - i) on A4 at T = 20.
  steps = sequences.make_sequence("A4", 20)
  mirrors = sequences.mirrored_steps(steps)
  assert sorted(mirrors) == list(range(20, 39))
  for i, b in mirrors.items():
    assert b == 38 - i


def test_mirrored_steps_use_the_latest_learning():
  # +0 +1 -1 +1 -1 -0: the second "-1" mirrors the step before the relearning (index 3 - 1);
  # forgetting task 0, learned at step 0, mirrors the initial model (-1).
  steps = L(0, 1) + F(1) + L(1) + F(1, 0)
  assert sequences.mirrored_steps(steps) == {2: 0, 4: 2, 5: -1}
  # B4: -k sits at 3k - 1 and mirrors 3k - 3, the state after relearning task k - 1 (after
  # learning task 0 for k = 1).
  b4 = sequences.make_sequence("B4", 20)
  assert sequences.mirrored_steps(b4) == {3 * k - 1: 3 * k - 3 for k in range(1, 20)}


def test_task_sets_and_last_learned_steps():
  steps = L(0, 1) + F(1) + L(2) + L(1)
  assert sequences.task_sets(steps) == [
      ({0}, set()), ({0, 1}, set()), ({0}, {1}), ({0, 2}, {1}), ({0, 1, 2}, set())]
  assert sequences.last_learned_steps(steps) == [
      {0: 0}, {0: 0, 1: 1}, {0: 0, 1: 1}, {0: 0, 1: 1, 2: 3}, {0: 0, 1: 4, 2: 3}]
