"""Metrics of continual learning (ACC, BWT, FWT) and continual unlearning (CL-ToW, CLU).

All functions take per-step accuracy matrices: `acc[i, k]` is the accuracy (a fraction in
[0, 1]) on task k measured after step i of a task sequence, with one row per step and one
column per task of the benchmark, and the sequence's `Timeline` (what each step learned,
kept and forgot, as plain data: `rum_jax.continual.sequences.timeline` makes it). "Initial"
accuracies are those of the model before the first step (random initialisation).

- ACC, BWT, FWT: Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual
  Learning", NeurIPS, Sec. 2, on the learning steps only; BWT and FWT both as the paper
  defines them and as GEM's released code computes them (`TRANSFER_AVERAGES`).
- CL-ToW and CLU: the continual-unlearning metrics of the DROP-TABLE-CS407 thesis
  ("Machine Unlearning in Continual Learning"; docs/continual.md). CL-ToW carries the
  Tug-of-War score of Zhao et al. 2024 (arXiv:2406.01257) over to a sequence, comparing each
  forget step with the mirrored learning step instead of a retrained model.
"""
import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timeline:
  """What the metrics need to know of a task sequence of n steps.

  learns: [n] whether step i learns (else it forgets) and which task it is about, `tasks`.
  retained / forgotten: [n] sorted tasks currently learned / whose latest step forgot them,
    after step i (tasks not yet seen are in neither).
  last_learned: [n] {task: the latest step at or before i that learned it}.
  mirrors: {forget step i: mirrored step b}, the step just before the forgotten task was last
    learned (b = -1: the initial model); CL-ToW compares step i with step b.
  """
  learns: Tuple[bool, ...]
  tasks: Tuple[int, ...]
  retained: Tuple[Tuple[int, ...], ...]
  forgotten: Tuple[Tuple[int, ...], ...]
  last_learned: Tuple[Mapping[int, int], ...]
  mirrors: Mapping[int, int]

  def __len__(self) -> int:
    return len(self.learns)

  @property
  def forget_steps(self) -> List[int]:
    return [i for i, learn in enumerate(self.learns) if not learn]

  @property
  def first_learned(self) -> Dict[int, int]:
    """{task: the first step that learned it}, in learning order."""
    first: Dict[int, int] = {}
    for i, (learn, task) in enumerate(zip(self.learns, self.tasks)):
      if learn and task not in first:
        first[task] = i
    return first


def _accuracies(name: str, acc, num_steps: Optional[int] = None,
                num_tasks: Optional[int] = None) -> np.ndarray:
  """`acc` as a float array, checked to be [num_steps, num_tasks] (or [num_tasks]) in [0, 1]."""
  acc = np.asarray(acc, dtype=np.float64)
  expected_ndim = 1 if num_steps is None else 2
  if acc.ndim != expected_ndim:
    raise ValueError(f"{name} must have {expected_ndim} dimension(s); got shape {acc.shape}")
  if num_steps is not None and acc.shape[0] != num_steps:
    raise ValueError(f"{name} needs one row per step ({num_steps}); got {acc.shape[0]} rows")
  if num_tasks is not None and acc.shape[-1] != num_tasks:
    raise ValueError(f"{name} needs {num_tasks} task columns; got {acc.shape[-1]}")
  if not np.all(np.isfinite(acc) & (acc >= 0) & (acc <= 1)):
    raise ValueError(f"{name} must hold accuracies in [0, 1] (fractions, not percent)")
  return acc


def _check_tasks(name: str, acc: np.ndarray, timeline: Timeline) -> None:
  if len(timeline) == 0:
    raise ValueError("metrics need a task sequence with at least one step; got an empty one")
  highest = max(timeline.tasks)
  if acc.shape[1] <= highest:
    raise ValueError(f"{name} has {acc.shape[1]} task columns but the sequence uses task "
                     f"{highest}")


def _mean_or_zero(values: np.ndarray) -> float:
  """Mean of `values`, or 0 for an empty set (a factor 1 - 0 = 1: nothing to penalise)."""
  return float(np.mean(values)) if values.size else 0.0


def learning_matrix(acc, timeline: Timeline) -> Tuple[np.ndarray, List[int]]:
  """The learning-only matrix R of Lopez-Paz & Ranzato (2017, Sec. 2).

  R[i, j] = accuracy on the j-th task learned, after the step that first learned the i-th
  task; relearning steps and forget steps are left out, and tasks are put in the order they
  were first learned.

  Args:
    acc: [num_steps, num_tasks] accuracies after every step of the sequence.
    timeline: the sequence's timeline.

  Returns:
    (R, order): R is [n, n] for the n tasks the sequence learns; order[j] is the task of
    column (and learning step) j.
  """
  acc = _accuracies("acc", acc, len(timeline))
  _check_tasks("acc", acc, timeline)
  first = timeline.first_learned
  order = list(first)
  return acc[np.ix_([first[task] for task in order], order)], order


def _square(R) -> np.ndarray:
  R = np.asarray(R, dtype=np.float64)
  if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
    raise ValueError(f"R must be a square [T, T] learning matrix; got shape {R.shape}")
  return R


def average_accuracy(R) -> float:
  """ACC = (1/T) sum_j R[T-1, j] (Lopez-Paz & Ranzato 2017, Sec. 2)."""
  R = _square(R)
  return float(np.mean(R[-1]))


# How BWT and FWT are averaged. The paper (Lopez-Paz & Ranzato 2017, Sec. 2, eq. 2-3)
# divides the T - 1 differences by T - 1; GEM's released code (metrics/metrics.py of
# facebookresearch/GradientEpisodicMemory) builds T-vectors with a zero entry (the last task
# for BWT, the first for FWT) and takes their mean, i.e. divides by T. Both are reported.
TRANSFER_AVERAGES = ("paper", "gem_code")


def _transfer_mean(differences: np.ndarray, num_tasks: int, average: str) -> float:
  if average not in TRANSFER_AVERAGES:
    raise ValueError(f"unknown transfer average {average!r}; valid choices: "
                     f"{', '.join(TRANSFER_AVERAGES)}")
  return float(np.sum(differences) / (num_tasks - 1 if average == "paper" else num_tasks))


def backward_transfer(R, average: str = "paper") -> float:
  """BWT = (1/(T-1)) sum_{j<T-1} (R[T-1, j] - R[j, j]) (Lopez-Paz & Ranzato 2017, Sec. 2).

  Negative values measure forgetting of earlier tasks. Needs T >= 2. average="gem_code"
  divides the same sum by T, as GEM's released code does (`TRANSFER_AVERAGES`).
  """
  R = _square(R)
  if R.shape[0] < 2:
    raise ValueError("backward transfer needs at least 2 learned tasks")
  return _transfer_mean(R[-1, :-1] - np.diag(R)[:-1], R.shape[0], average)


def forward_transfer(R, initial, average: str = "paper") -> float:
  """FWT = (1/(T-1)) sum_{j>0} (R[j-1, j] - b_j) (Lopez-Paz & Ranzato 2017, Sec. 2).

  b_j is the accuracy on task j of the model at random initialisation; R[j-1, j] is the
  accuracy on task j just before learning it. Needs T >= 2. average="gem_code" divides the
  same sum by T, as GEM's released code does (`TRANSFER_AVERAGES`).

  Args:
    R: [T, T] learning matrix.
    initial: [T] initial accuracies b_j, in R's column order.
    average: "paper" (divide by T - 1) or "gem_code" (divide by T).
  """
  R = _square(R)
  if R.shape[0] < 2:
    raise ValueError("forward transfer needs at least 2 learned tasks")
  initial = _accuracies("initial", initial, num_tasks=R.shape[0])
  return _transfer_mean(np.diag(R, k=1) - initial[1:], R.shape[0], average)


def transfer_metrics(acc, timeline: Timeline, initial_acc) -> Dict[str, float]:
  """ACC, BWT and FWT of a run, on its learning steps (`learning_matrix`).

  Args:
    acc: [num_steps, num_tasks] (test) accuracies after every step.
    timeline: the sequence's timeline.
    initial_acc: [num_tasks] accuracies of the randomly initialised model.

  Returns:
    {"acc": ACC, "bwt_paper", "bwt_gem_code", "fwt_paper", "fwt_gem_code"}: BWT and FWT
    averaged both ways (`TRANSFER_AVERAGES`).
  """
  R, order = learning_matrix(acc, timeline)
  initial = _accuracies("initial_acc", initial_acc, num_tasks=np.shape(acc)[1])[order]
  out = {"acc": average_accuracy(R)}
  for average in TRANSFER_AVERAGES:
    out[f"bwt_{average}"] = backward_transfer(R, average)
    out[f"fwt_{average}"] = forward_transfer(R, initial, average)
  return out


def cl_tow(train_acc, test_acc, timeline: Timeline, initial_train_acc=None,
           initial_test_acc=None) -> np.ndarray:
  """Continual Tug-of-War after every forget step (NaN after learning steps).

  For a forget step i with mirrored learning step b (`Timeline.mirrors`: the step just before
  the forgotten task was last learned, i.e. the latest model that never saw it),

    CL-ToW_i = (1 - mean_{k in S} |A_i[k] - A_b[k]|)
             * (1 - mean_{k in R} |A_i[k] - A_b[k]|)
             * (1 - |mean_{k in R} At_i[k] - mean_{k in R} At_b[k]|),

  where S and R are the forgotten and retained tasks after step i (`Timeline`),
  A the per-task train accuracies and At the per-task test accuracies. The first factor asks
  the forgotten tasks to look as if never learned, the second the retained tasks to keep
  their train accuracy, the third the retained tasks' mean test accuracy to be unchanged. An
  empty R gives factors 1. b = -1 refers to the initial model. (The thesis' `ToW/tow.py`
  hard-codes A4, where b = 2T - 2 - i, and reports 1.0 at learning steps.)

  Args:
    train_acc: [num_steps, num_tasks] train accuracies after every step.
    test_acc: [num_steps, num_tasks] test accuracies after every step.
    timeline: the sequence's timeline.
    initial_train_acc: [num_tasks] train accuracies of the initial model; needed only if a
      forgotten task was learned at step 0 (its mirror is the initial model).
    initial_test_acc: [num_tasks] the same for test accuracies.

  Returns:
    [num_steps] CL-ToW in [0, 1] at forget steps, NaN at learning steps.
  """
  train = _accuracies("train_acc", train_acc, len(timeline))
  test = _accuracies("test_acc", test_acc, len(timeline), train.shape[1])
  _check_tasks("train_acc", train, timeline)
  mirrors = timeline.mirrors
  if -1 in mirrors.values():
    if initial_train_acc is None or initial_test_acc is None:
      raise ValueError("a forgotten task was learned at step 0, so its mirror is the initial "
                       "model: pass initial_train_acc and initial_test_acc")
    # Row 0 holds the initial model, row i + 1 the model after step i.
    train = np.vstack([_accuracies("initial_train_acc", initial_train_acc,
                                   num_tasks=train.shape[1]), train])
    test = np.vstack([_accuracies("initial_test_acc", initial_test_acc,
                                  num_tasks=train.shape[1]), test])
    offset = 1
  else:
    offset = 0
  out = np.full(len(timeline), np.nan)
  for i, b in mirrors.items():
    retained, forgotten = list(timeline.retained[i]), list(timeline.forgotten[i])
    now, then = i + offset, b + offset
    forget_gap = _mean_or_zero(np.abs(train[now, forgotten] - train[then, forgotten]))
    retain_gap = _mean_or_zero(np.abs(train[now, retained] - train[then, retained]))
    test_gap = abs(_mean_or_zero(test[now, retained]) - _mean_or_zero(test[then, retained]))
    out[i] = (1 - forget_gap) * (1 - retain_gap) * (1 - test_gap)
  return out


def clu_terms(acc, timeline: Timeline, chance) -> Dict[str, np.ndarray]:
  """The three terms of CLU after every step.

    L_ret = mean_{k in R} max(0, a_k - A[k])   (retention loss),
    B     = mean_{k in R} max(0, A[k] - a_k)   (bonus: retained tasks that improved),
    L_res = mean_{k in S} max(0, A[k] - chance_k)   (residual knowledge of forgotten tasks),

  with R, S the retained and forgotten tasks after the step (`Timeline`), A the
  accuracies after the step and a_k the accuracy on task k right after its latest learning
  step (for a relearned task, the relearning; the thesis' `CUL/allMetrics.py` kept the first
  learning). A term over an empty set is 0.

  Args:
    acc: [num_steps, num_tasks] accuracies after every step (the thesis used train
      accuracies).
    timeline: the sequence's timeline.
    chance: chance accuracy of a task (1 / classes per task), a scalar or [num_tasks].

  Returns:
    {"retention_loss": L_ret, "residual": L_res, "bonus": B}, each [num_steps].
  """
  acc = _accuracies("acc", acc, len(timeline))
  _check_tasks("acc", acc, timeline)
  chance = np.broadcast_to(np.asarray(chance, dtype=np.float64), acc.shape[1:])
  if not np.all((chance >= 0) & (chance <= 1)):
    raise ValueError(f"chance accuracies must be in [0, 1]; got {chance}")
  terms = {name: np.zeros(len(timeline)) for name in ("retention_loss", "residual", "bonus")}
  for i, learned_at in enumerate(timeline.last_learned):
    retained, forgotten = list(timeline.retained[i]), list(timeline.forgotten[i])
    after_learning = np.array([acc[learned_at[k], k] for k in retained])
    gain = acc[i, retained] - after_learning
    terms["retention_loss"][i] = _mean_or_zero(np.maximum(0.0, -gain))
    terms["bonus"][i] = _mean_or_zero(np.maximum(0.0, gain))
    terms["residual"][i] = _mean_or_zero(
        np.maximum(0.0, acc[i, forgotten] - chance[forgotten]))
  return terms


def clu(acc, timeline: Timeline, chance, beta: float = 0.2) -> np.ndarray:
  """Continual-learning-and-unlearning utility after every step.

    CLU = ((1 - L_ret)(1 - L_res) + beta B) / (1 + beta),

  with L_ret, L_res and B from `clu_terms` (thesis, `CUL/allMetrics.py`; docs/continual.md,
  10). CLU is in [0, 1]: 1 - L_ret rewards keeping the retained tasks, 1 - L_res forgetting
  down to chance, and the bonus B (weight beta) retained tasks that improved.

  Args:
    acc: [num_steps, num_tasks] accuracies after every step.
    timeline: the sequence's timeline.
    chance: chance accuracy of a task, a scalar or [num_tasks].
    beta: weight of the bonus term (0.2).

  Returns:
    [num_steps] CLU values.
  """
  if beta < 0:
    raise ValueError(f"CLU beta must be >= 0; got {beta}")
  terms = clu_terms(acc, timeline, chance)
  return ((1 - terms["retention_loss"]) * (1 - terms["residual"]) + beta * terms["bonus"]) / (
      1 + beta)
