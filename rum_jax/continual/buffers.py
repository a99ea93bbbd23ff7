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

Forgetting task k runs in passes over its buffers. `FORGET_BATCHES` says how a pass is cut
into batches (config.continual.forget_batches), each a function (learn, unlearn, batch_size,
rngs, capacity) -> plan with the streams the unlearning objectives read
(`updates.FORGET_STREAMS`):

- "paired" (the thesis' `unlearn`): batch j holds b examples of the unlearn buffer
  ("forget") and b of the learn buffer ("forget_learn"); the forget loss is the SUM of the
  two batch means. A pass has ceil(max(M_learn, M_unlearn) / b) batches, the smaller buffer
  cycled. The thesis walked both buffers in their stored order, the same in every pass;
  here each pass reshuffles them.
- "union": one batch of b examples drawn from the union of the two buffers ("forget"), the
  forget loss its mean; ceil((M_learn + M_unlearn) / b) batches per pass.

`SALIENCY_BATCHES` says which batch the SalUn mask is computed from (config.continual.
salun_batch): "first_batch", the first batch of the forgetting; "first_violating", the first
batch of the first pass whose forget gradient violates GEM's constraint of a retained task
(the thesis' ALT-NegGEM, whose `unlearn` computes the mask only inside its `if dotp < 0`
branch; here every batch is checked at the parameters the forgetting starts from, and with no
violating batch the first batch is taken); or "buffers", both buffers whole.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rum_jax.registry import Registry
from rum_jax.training import plans

Plan = Dict[str, Dict[str, np.ndarray]]

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


def fill_task_buffers(aux: Dict[str, Dict[str, np.ndarray]], task: int,
                      candidates: Sequence[np.ndarray], specs: Sequence[Tuple[str, int, str, float]],
                      scores: Optional[np.ndarray], rngs: Sequence[np.random.Generator],
                      x: np.ndarray, y: np.ndarray) -> Dict[str, Dict[str, np.ndarray]]:
  """Every seed's buffers of `task` chosen (`select_buffer`) and written into copies of aux.

  Args:
    aux: {buffer name: {"x", "y", "weight", "pos"} [padded seeds, T, M, ...]}.
    task: the task whose slots are filled.
    candidates: per real seed, the task's train positions; padded seeds copy seed 0.
    specs: (buffer name, size, kind, split) of each buffer.
    scores: [S, N] memorization scores of the train split (None when unused).
    rngs: one generator per real seed (padded seeds copy seed 0's choice).
    x, y: the train split.
  """
  out = {name: {k: np.array(v) for k, v in aux[name].items()} for name, *_ in specs}
  for s in range(len(next(iter(out.values()))["y"])):
    src = s if s < len(candidates) else 0
    for name, size, kind, split in specs:
      if s == src:
        chosen = select_buffer(candidates[src], size, kind, split,
                               None if scores is None else scores[src][candidates[src]], rngs[src])
        slot = memory_slot(chosen, size, x, y)
      else:  # a padded seed: seed 0's buffer
        slot = {k: v[0, task] for k, v in out[name].items()}
      for k, v in slot.items():
        out[name][k][s, task] = v
  return out


# ---------------------------------------------------------------------------------------
# Batches of a forgetting pass. learn / unlearn: per seed, the real train-split positions of
# the forgotten task's buffers; capacity: (M_learn, M_unlearn), which fixes the number of
# steps so every forget step runs the same compiled program.

ForgetBatches = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], int,
                          Sequence[np.random.Generator], Tuple[int, int]], Plan]
FORGET_BATCHES: Registry[ForgetBatches] = Registry("forget batching")


@FORGET_BATCHES.register("paired")
def paired_batches(learn: Sequence[np.ndarray], unlearn: Sequence[np.ndarray], batch_size: int,
                   rngs: Sequence[np.random.Generator], capacity: Tuple[int, int]) -> Plan:
  """Batch j = b examples of the unlearn buffer ("forget") + b of the learn buffer ("forget_learn")."""
  steps = math.ceil(max(capacity) / batch_size)
  return {"forget": plans.stream_plan(unlearn, batch_size, rngs, steps=steps, cycle=True),
          "forget_learn": plans.stream_plan(learn, batch_size, rngs, steps=steps, cycle=True)}


@FORGET_BATCHES.register("union")
def union_batches(learn: Sequence[np.ndarray], unlearn: Sequence[np.ndarray], batch_size: int,
                  rngs: Sequence[np.random.Generator], capacity: Tuple[int, int]) -> Plan:
  """Batch j = b examples of the union of both buffers ("forget"), each example once a pass."""
  steps = math.ceil(sum(capacity) / batch_size)
  union = [np.union1d(l, u) for l, u in zip(learn, unlearn)]
  return {"forget": plans.stream_plan(union, batch_size, rngs, steps=steps, cycle=True)}


# The batch of the SalUn mask, as a one-step plan: (first pass's plan, learn, unlearn,
# capacity, violations) -> plan; violations() computes bool [seeds, steps], whether each
# batch of the plan violates a GEM constraint (only the entries that need it call it).
SaliencyBatch = Callable[[Plan, Sequence[np.ndarray], Sequence[np.ndarray], Tuple[int, int],
                          Callable[[], np.ndarray]], Plan]
SALIENCY_BATCHES: Registry[SaliencyBatch] = Registry("saliency batch")


def batch_at(plan: Plan, steps: np.ndarray) -> Plan:
  """The one-step plan of batch steps[s] of every seed s."""
  seeds = np.arange(len(steps))
  return {name: {k: v[seeds, steps][:, None] for k, v in p.items()} for name, p in plan.items()}


@SALIENCY_BATCHES.register("first_batch")
def first_batch(plan: Plan, learn: Sequence[np.ndarray], unlearn: Sequence[np.ndarray],
                capacity: Tuple[int, int], violations: Callable[[], np.ndarray]) -> Plan:
  """The first batch of the forgetting (ours for every method)."""
  del learn, unlearn, capacity, violations
  return {name: {k: v[:, :1] for k, v in p.items()} for name, p in plan.items()}


@SALIENCY_BATCHES.register("first_violating")
def first_violating(plan: Plan, learn: Sequence[np.ndarray], unlearn: Sequence[np.ndarray],
                    capacity: Tuple[int, int], violations: Callable[[], np.ndarray]) -> Plan:
  """The first batch that violates a GEM constraint (the thesis' ALT-NegGEM), else the first."""
  del learn, unlearn, capacity
  flags = np.asarray(violations(), bool)
  return batch_at(plan, np.where(flags.any(axis=1), flags.argmax(axis=1), 0))


@SALIENCY_BATCHES.register("buffers")
def whole_buffers(plan: Plan, learn: Sequence[np.ndarray], unlearn: Sequence[np.ndarray],
                  capacity: Tuple[int, int], violations: Callable[[], np.ndarray]) -> Plan:
  """Both buffers whole, as the two paired streams (one batch each, padded to capacity)."""
  del plan, violations
  def whole(positions: List[np.ndarray], size: int):
    idx = np.zeros((len(positions), 1, size), np.int32)
    weight = np.zeros((len(positions), 1, size), np.float32)
    for s, pos in enumerate(positions):
      idx[s, 0, :len(pos)] = pos
      weight[s, 0, :len(pos)] = 1.0
    return {"idx": idx, "weight": weight}
  return {"forget": whole(list(unlearn), capacity[1]), "forget_learn": whole(list(learn), capacity[0])}
