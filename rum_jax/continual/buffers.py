"""Per-task episodic buffers chosen by memorization (the thesis' buffers, docs/continual.md).

After task k is learned, two buffers are filled from its training examples (the thesis'
`update_memory_from_dataset`):

- the LEARN buffer, GEM's episodic memory: its gradient constrains every later update;
- the UNLEARN buffer: forgetting task k runs over it (with the learn buffer) and stops when
  the model's accuracy on it falls to the threshold.

Each buffer holds n = min(size, examples of the task) distinct examples: round(split * n)
picked by memorization score (`most` = highest scores, `least` = lowest, `random`) and the
other n - round(split * n) drawn uniformly from the examples not already picked. The thesis
drew the random part from all examples, so one example could occupy two slots; here every
example appears at most once in a buffer.
"""
from typing import Dict, Optional

import numpy as np

BUFFER_KINDS = ("most", "least", "random")


def select_buffer(candidates: np.ndarray, size: int, kind: str, split: float,
                  scores: Optional[np.ndarray], rng: np.random.Generator) -> np.ndarray:
  """Distinct positions for one buffer of one task.

  Args:
    candidates: [N] positions (in the train split) of the task's examples.
    size: buffer capacity.
    kind: `most`, `least` or `random`: how the scored part is chosen.
    split: fraction of the buffer chosen by score, in [0, 1]; the rest is uniform.
    scores: [N] memorization score of each candidate (high = more memorized); unused and
      may be None for `random` or split 0.
    rng: generator of the random choices (also breaks ties between equal scores).

  Returns:
    int64 [min(size, N)] positions: the scored part first, then the uniform part.
  """
  if kind not in BUFFER_KINDS:
    raise ValueError(f"unknown buffer kind {kind!r}; valid choices: {', '.join(BUFFER_KINDS)}")
  if not 0.0 <= split <= 1.0:
    raise ValueError(f"buffer split must be in [0, 1]; got {split}")
  if size < 0:
    raise ValueError(f"buffer size must be >= 0; got {size}")
  candidates = np.asarray(candidates, np.int64)
  n = min(size, len(candidates))
  scored = round(n * split)
  by_score = kind != "random" and scored > 0
  if by_score:
    if scores is None or np.shape(scores) != candidates.shape:
      raise ValueError(f"a {kind!r} buffer needs one score per candidate ({len(candidates)}); "
                       f"got {None if scores is None else np.shape(scores)}")
    scores = np.asarray(scores, np.float64)
    if not np.all(np.isfinite(scores)):
      raise ValueError("memorization scores of the task's examples must be finite")
    # A random permutation before a stable sort breaks ties at random.
    shuffled = rng.permutation(len(candidates))
    key = -scores[shuffled] if kind == "most" else scores[shuffled]
    first = candidates[shuffled[np.argsort(key, kind="stable")[:scored]]]
  else:
    first = rng.choice(candidates, size=scored, replace=False)
  rest = rng.choice(np.setdiff1d(candidates, first), size=n - scored, replace=False)
  return np.concatenate([first, rest]).astype(np.int64)


def memory_slot(positions: np.ndarray, size: int, x: np.ndarray,
                y: np.ndarray) -> Dict[str, np.ndarray]:
  """One task's buffer as fixed-shape arrays, padded to `size` with weight-0 rows.

  Args:
    positions: [n <= size] train-split positions of the buffer.
    size: capacity M.
    x, y: the train split's inputs and labels.

  Returns:
    {"x": [M, ...], "y": int32 [M], "weight": float32 [M] (1 for real rows), "pos": int32 [M]}.
  """
  positions = np.asarray(positions, np.int64)
  if len(positions) > size:
    raise ValueError(f"{len(positions)} positions do not fit a buffer of {size}")
  padded = np.zeros(size, np.int64)
  padded[:len(positions)] = positions
  weight = np.zeros(size, np.float32)
  weight[:len(positions)] = 1.0
  return {"x": x[padded], "y": y[padded].astype(np.int32), "weight": weight,
          "pos": padded.astype(np.int32)}
