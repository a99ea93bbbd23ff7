"""Task layouts, logit masking, per-task evaluation and memorization-chosen buffers."""
import numpy as np
import pytest
from scipy import special

from rum_jax.continual import buffers, tasks


def test_layout_partitions_shuffled_classes_per_seed():
  layout = tasks.TaskLayout.shuffled(10, 2, 4, num_seeds=3, base_seed=7)
  assert layout.classes.shape == (3, 4, 2)
  for s in range(3):
    used = layout.classes[s].ravel()
    assert len(set(used.tolist())) == 8 and used.max() < 10  # distinct classes, 2 left out
  assert not np.array_equal(layout.classes[0], layout.classes[1])  # each seed its own order
  np.testing.assert_array_equal(layout.classes, tasks.TaskLayout.shuffled(10, 2, 4, 3, 7).classes)
  class_task, task_classes = layout.class_task(), layout.task_classes()
  for s in range(3):
    for c in range(10):
      owners = np.flatnonzero(task_classes[s, :, c])
      assert class_task[s, c] == (owners[0] if len(owners) else -1)
  with pytest.raises(ValueError, match="need 12 classes"):
    tasks.TaskLayout.shuffled(10, 3, 4, 1, 0)


def test_evaluate_tasks_matches_argmax_over_the_task_slice():
  rng = np.random.default_rng(0)
  layout = tasks.TaskLayout.shuffled(6, 2, 3, num_seeds=2, base_seed=1)
  labels = rng.integers(0, 6, size=40)
  logits = rng.normal(size=(2, 40, 6)) * 3
  out = tasks.evaluate_tasks(logits, labels, layout.class_task()[:, labels], layout.task_classes())
  for s in range(2):
    for t in range(3):
      cls = list(layout.classes[s, t])
      rows = [i for i in range(40) if labels[i] in cls]
      sliced = logits[s][rows][:, cls]  # the task's slice, columns in task order
      local = np.array([cls.index(labels[i]) for i in rows])
      p = special.softmax(sliced, axis=1)
      np.testing.assert_allclose(out["accuracy"][s, t], np.mean(sliced.argmax(1) == local))
      np.testing.assert_allclose(out["confidence"][s, t], p.max(1).mean())
      np.testing.assert_allclose(out["loss"][s, rows], -np.log(p[np.arange(len(rows)), local]))


def test_mask_logits_gives_the_task_slice_softmax():
  import jax.numpy as jnp
  layout = tasks.TaskLayout(np.array([[[1, 3], [0, 2]]], np.int32), 4)
  logits = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
  labels = np.array([3, 0])
  masked = tasks.mask_logits(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(layout.class_task()[0]),
                             jnp.asarray(layout.task_classes()[0]))
  p = np.asarray(special.softmax(np.asarray(masked, np.float64), axis=1))
  np.testing.assert_allclose(p[0], [0, special.expit(2 - 4), 0, special.expit(4 - 2)], atol=1e-7)
  np.testing.assert_allclose(p[1], [special.expit(1 - 3), 0, special.expit(3 - 1), 0], atol=1e-7)


@pytest.mark.parametrize("kind", ["most", "least"])
def test_buffer_takes_score_extremes_then_distinct_random_rest(kind):
  rng = np.random.default_rng(0)
  candidates = rng.permutation(np.arange(100, 140))
  scores = rng.permutation(40).astype(float)  # distinct
  chosen = buffers.select_buffer(candidates, 10, kind, 0.5, scores, np.random.default_rng(3))
  order = np.argsort(-scores if kind == "most" else scores)
  assert set(chosen[:5].tolist()) == set(candidates[order[:5]].tolist())
  assert len(set(chosen.tolist())) == 10 and set(chosen.tolist()) <= set(candidates.tolist())
  # The uniform part varies with the generator; the scored part does not.
  other = buffers.select_buffer(candidates, 10, kind, 0.5, scores, np.random.default_rng(4))
  assert set(other[:5].tolist()) == set(chosen[:5].tolist()) and set(other[5:]) != set(chosen[5:])


def test_buffer_sizes_ties_and_random_kind():
  candidates = np.arange(7)
  everything = buffers.select_buffer(candidates, 20, "most", 1.0, np.zeros(7), np.random.default_rng(0))
  assert sorted(everything.tolist()) == list(range(7))  # a small task fills what it can
  # Equal scores: the tie is broken at random, not by position.
  firsts = {int(buffers.select_buffer(candidates, 1, "most", 1.0, np.zeros(7), np.random.default_rng(s))[0])
            for s in range(30)}
  assert len(firsts) > 3
  counts = np.zeros(7)
  for s in range(700):
    counts[buffers.select_buffer(candidates, 2, "random", 0.5, None, np.random.default_rng(s))] += 1
  np.testing.assert_allclose(counts / 700, 2 / 7, atol=0.06)  # uniform inclusion probability


def test_buffer_bad_input():
  with pytest.raises(ValueError, match="valid choices: most, least, random"):
    buffers.select_buffer(np.arange(5), 2, "middle", 0.5, np.zeros(5), np.random.default_rng(0))
  with pytest.raises(ValueError, match=r"split must be in \[0, 1\]"):
    buffers.select_buffer(np.arange(5), 2, "most", 1.5, np.zeros(5), np.random.default_rng(0))
  with pytest.raises(ValueError, match="needs one score per candidate"):
    buffers.select_buffer(np.arange(5), 2, "most", 0.5, None, np.random.default_rng(0))


def test_memory_slot_pads_with_weightless_rows():
  x = np.arange(20, dtype=np.float32).reshape(10, 2)
  y = np.arange(10) % 3
  slot = buffers.memory_slot(np.array([7, 2]), 4, x, y)
  np.testing.assert_array_equal(slot["weight"], [1, 1, 0, 0])
  np.testing.assert_array_equal(slot["x"][:2], x[[7, 2]])
  np.testing.assert_array_equal(slot["y"][:2], y[[7, 2]])
  np.testing.assert_array_equal(slot["pos"][:2], [7, 2])
  with pytest.raises(ValueError, match="do not fit"):
    buffers.memory_slot(np.arange(5), 4, x, y)
