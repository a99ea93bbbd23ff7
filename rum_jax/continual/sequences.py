"""Task sequences for continual learning and unlearning: which task to learn or forget when.

A sequence is a list of `Step`s: `Step("learn", k)` (written "+k") trains on task k,
`Step("forget", k)` (written "-k") unlearns it. A step is a (kind, task) pair rather than a
signed integer because -0 does not exist: the thesis code wrote "forget task 0" as 0 and so
could never forget it (its E4 drew task 0 one time in 20 and then learned it again).

Named sequences (the thesis' experiments, docs/continual.md) are defined for any number of
tasks T >= 4 with q = T // 4 ("a quarter"), h = T // 2 ("a half") and s = max(2, T // 4);
at T = 20 (q = 5, h = 10, s = 5) they are exactly the thesis' lists:

  A4    learn 0..T-1, forget T-1..1 (task 0 stays).
        T=20: learn 0..19, forget 19..1.
  B4    learn 0, then for each k = 1..T-1: learn k, forget k, learn k again (3T - 2 steps;
        task 0 is never forgotten).
        T=20: 0, 1, -1, 1, 2, -2, 2, ..., 19, -19, 19 (58 steps).
  C4    learn 0..T-q-1, forget its last q tasks backwards (T-q-1..T-2q), learn T-q..T-1.
        T=20: learn 0..14, forget 14..10, learn 15..19.
  C4v2  learn 0..h-1, forget its last q tasks backwards (h-1..h-q), learn h..T-1.
        T=20: learn 0..9, forget 9..5, learn 10..19.
  D4    learn 0..T-1, then forget T-2..1 backwards except the anchor tasks T-1, T-1-s,
        T-1-2s, ... (every s-th task counted down from the last one).
        T=20: learn 0..19, forget 18..1 except 14, 9, 4.
  E4    learn 0..T-1, forget one task drawn uniformly from 0..T-1 with `seed`.
  F4    C4v2, then relearn the forgotten tasks h-q..h-1.
        T=20: C4v2 then relearn 5..9.
  G4    learn 0..h-1, forget h-1..h-q, learn h..h+q-1, relearn h-q..h-1, learn h+q..T-1.
        T=20: learn 0..9, forget 9..5, learn 10..14, relearn 5..9, learn 15..19.
  H4    learn 0..T-1, forget task 0 and then the anchor tasks of D4 below T-1, ascending.
        T=20: learn 0..19, forget 0, 4, 9, 14. (The thesis wrote this list as signed
        integers, where -0 == 0 learns task 0 again instead of forgetting it; forgetting it
        is what H4 is meant to test, so that is what it does here.)
  MIA   learn 0..h, forget h..1.
        T=20: learn 0..10, forget 10..1.

Custom sequences are strings of comma-separated steps: "+k" or "k" learns task k, "-k"
forgets it, e.g. "0,1,2,-2,3" or "+0,+1,-0,+0" (the explicit "-0" forgets task 0).

Rules (`validate`): tasks are in 0..T-1; only a currently learned task can be forgotten (so
no task is forgotten twice in a row); a learned task cannot be learned again before it is
forgotten (its "accuracy right after learning", used by CLU, would be ambiguous); a forgotten
task may be learned again.
"""
import dataclasses
import re
from typing import Callable, Dict, List, Sequence, Set, Tuple

import numpy as np

from rum_jax.evaluation.continual import Timeline
from rum_jax.registry import Registry

LEARN = "learn"
FORGET = "forget"


@dataclasses.dataclass(frozen=True)
class Step:
  """One step of a task sequence: learn or forget one task."""
  kind: str
  task: int

  def __post_init__(self):
    if self.kind not in (LEARN, FORGET):
      raise ValueError(f"step kind must be {LEARN!r} or {FORGET!r}; got {self.kind!r}")
    if isinstance(self.task, bool) or not isinstance(self.task, (int, np.integer)):
      raise ValueError(f"step task must be an integer; got {self.task!r}")
    if self.task < 0:
      raise ValueError(f"step task must be >= 0 (the sign is the kind); got {self.task}")
    object.__setattr__(self, "task", int(self.task))  # A plain int, also from numpy.

  @property
  def is_learn(self) -> bool:
    return self.kind == LEARN

  @property
  def is_forget(self) -> bool:
    return self.kind == FORGET

  def __str__(self) -> str:
    return f"{'+' if self.is_learn else '-'}{self.task}"


TaskSequence = List[Step]
SequenceFactory = Callable[[int, int], TaskSequence]

SEQUENCES: Registry[SequenceFactory] = Registry("task sequence")


def _learn(tasks) -> TaskSequence:
  return [Step(LEARN, int(k)) for k in tasks]


def _forget(tasks) -> TaskSequence:
  return [Step(FORGET, int(k)) for k in tasks]


def _check_num_tasks(name: str, num_tasks: int) -> None:
  if (isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer))
      or num_tasks < 4):
    raise ValueError(
        f"sequence {name} needs an integer number of tasks >= 4 (so that each of its phases "
        f"is non-empty); got {num_tasks!r}")


def _anchors(num_tasks: int) -> List[int]:
  """D4's kept tasks besides 0: T-1, T-1-s, T-1-2s, ... >= 1, with s = max(2, T // 4)."""
  step = max(2, num_tasks // 4)
  return list(range(num_tasks - 1, 0, -step))


@SEQUENCES.register("A4")
def a4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn 0..T-1, then forget T-1..1 (the longest-kept task 0 stays)."""
  del seed  # Deterministic.
  _check_num_tasks("A4", num_tasks)
  return _learn(range(num_tasks)) + _forget(range(num_tasks - 1, 0, -1))


@SEQUENCES.register("B4")
def b4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn task 0, then for each task k >= 1 in turn: learn k, forget k, learn k again."""
  del seed  # Deterministic.
  _check_num_tasks("B4", num_tasks)
  return _learn([0]) + [Step(kind, k) for k in range(1, num_tasks) for kind in (LEARN, FORGET, LEARN)]


@SEQUENCES.register("C4")
def c4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn the first T - q tasks, forget the last q of them backwards, learn the rest."""
  del seed  # Deterministic.
  _check_num_tasks("C4", num_tasks)
  q = num_tasks // 4
  first = num_tasks - q
  return (_learn(range(first)) + _forget(range(first - 1, first - 1 - q, -1))
          + _learn(range(first, num_tasks)))


@SEQUENCES.register("C4v2")
def c4v2(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn the first half, forget its last q tasks backwards, learn the second half."""
  del seed  # Deterministic.
  _check_num_tasks("C4v2", num_tasks)
  q, h = num_tasks // 4, num_tasks // 2
  return _learn(range(h)) + _forget(range(h - 1, h - 1 - q, -1)) + _learn(range(h, num_tasks))


@SEQUENCES.register("D4")
def d4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn all, forget T-2..1 backwards except every s-th task counted down from T-1."""
  del seed  # Deterministic.
  _check_num_tasks("D4", num_tasks)
  kept = set(_anchors(num_tasks))
  return _learn(range(num_tasks)) + _forget(
      k for k in range(num_tasks - 2, 0, -1) if k not in kept)


@SEQUENCES.register("E4")
def e4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn all, then forget one task drawn uniformly from 0..T-1 by `seed`."""
  _check_num_tasks("E4", num_tasks)
  task = int(np.random.default_rng(seed).integers(num_tasks))
  return _learn(range(num_tasks)) + _forget([task])


@SEQUENCES.register("F4")
def f4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """C4v2, then relearn the tasks it forgot (h-q..h-1, ascending)."""
  _check_num_tasks("F4", num_tasks)
  q, h = num_tasks // 4, num_tasks // 2
  return c4v2(num_tasks, seed) + _learn(range(h - q, h))


@SEQUENCES.register("G4")
def g4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn 0..h-1, forget h-1..h-q, learn h..h+q-1, relearn h-q..h-1, learn h+q..T-1."""
  del seed  # Deterministic.
  _check_num_tasks("G4", num_tasks)
  q, h = num_tasks // 4, num_tasks // 2
  return (_learn(range(h)) + _forget(range(h - 1, h - 1 - q, -1)) + _learn(range(h, h + q))
          + _learn(range(h - q, h)) + _learn(range(h + q, num_tasks)))


@SEQUENCES.register("H4")
def h4(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn all, then forget task 0 and D4's anchor tasks below T-1, ascending."""
  del seed  # Deterministic.
  _check_num_tasks("H4", num_tasks)
  return _learn(range(num_tasks)) + _forget([0] + sorted(_anchors(num_tasks))[:-1])


@SEQUENCES.register("MIA")
def mia(num_tasks: int, seed: int = 0) -> TaskSequence:
  """Learn 0..h, then forget h..1 (the thesis' membership-inference experiment)."""
  del seed  # Deterministic.
  _check_num_tasks("MIA", num_tasks)
  h = num_tasks // 2
  return _learn(range(h + 1)) + _forget(range(h, 0, -1))


_STEP_PATTERN = re.compile(r"([+-]?)(\d+)")


def parse_sequence(text: str) -> TaskSequence:
  """Parses "0,1,2,-2,3" / "+0,+1,-0": "+k" or "k" learns task k, "-k" forgets it."""
  tokens = [token.strip() for token in text.split(",")]
  steps = []
  for position, token in enumerate(tokens):
    match = _STEP_PATTERN.fullmatch(token)
    if match is None:
      raise ValueError(
          f"cannot parse step {position} ({token!r}) of task sequence {text!r}: write each "
          f"step as '+k' or 'k' (learn task k) or '-k' (forget task k), separated by commas")
    steps.append(Step(FORGET if match.group(1) == "-" else LEARN, int(match.group(2))))
  return steps


def format_sequence(sequence: Sequence[Step]) -> str:
  """The inverse of `parse_sequence`, with explicit signs: "+0,+1,-1"."""
  return ",".join(str(step) for step in sequence)


def validate(sequence: Sequence[Step], num_tasks: int) -> None:
  """Raises ValueError naming the first step that breaks the module's rules.

  Tasks must lie in 0..num_tasks-1; a task can be forgotten only while it is learned (not
  before it is learned, not twice); a task cannot be learned again while still learned;
  learning again after forgetting is allowed.
  """
  if (isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer))
      or num_tasks < 1):
    raise ValueError(f"num_tasks must be a positive integer; got {num_tasks!r}")
  if len(sequence) == 0:
    raise ValueError("a task sequence needs at least one step; got an empty one")
  learned: Set[int] = set()
  forgotten_at: Dict[int, int] = {}
  for i, step in enumerate(sequence):
    if not isinstance(step, Step):
      raise ValueError(f"step {i} must be a Step (kind, task); got {step!r}")
    where = f"step {i} ({step})"
    if step.task >= num_tasks:
      raise ValueError(
          f"{where}: task {step.task} is out of range; valid tasks are 0..{num_tasks - 1}")
    if step.is_learn:
      if step.task in learned:
        raise ValueError(
            f"{where}: task {step.task} is already learned; forget it before learning it again")
      learned.add(step.task)
      forgotten_at.pop(step.task, None)
    else:
      if step.task in forgotten_at:
        raise ValueError(
            f"{where}: task {step.task} was already forgotten at step "
            f"{forgotten_at[step.task]}; it cannot be forgotten twice")
      if step.task not in learned:
        raise ValueError(f"{where}: task {step.task} cannot be forgotten, it was never learned")
      learned.remove(step.task)
      forgotten_at[step.task] = i


def make_sequence(spec: str, num_tasks: int, seed: int = 0) -> TaskSequence:
  """The validated sequence for a registered name ("A4", ...) or a custom spec ("0,1,-1").

  Args:
    spec: a name in `SEQUENCES`, or comma-separated steps as read by `parse_sequence`.
    num_tasks: number of tasks T of the benchmark.
    seed: seed of the random choices (E4's forgotten task).
  """
  if spec in SEQUENCES:
    sequence = SEQUENCES.get(spec)(num_tasks, seed)
  elif re.fullmatch(r"[\s\d+,-]+", spec):
    sequence = parse_sequence(spec)
  else:
    raise ValueError(
        f"unknown task sequence {spec!r}; valid names: {', '.join(SEQUENCES.names())}, or "
        f"custom steps such as '0,1,2,-2,3' ('+k'/'k' learns task k, '-k' forgets it)")
  validate(sequence, num_tasks)
  return sequence


def task_sets(sequence: Sequence[Step]) -> List[Tuple[frozenset, frozenset]]:
  """The sets (retained R, forgotten S) after each step.

  R holds the currently learned tasks, S the tasks whose latest step was a forget step;
  tasks not yet seen are in neither.
  """
  latest: Dict[int, str] = {}
  sets = []
  for step in sequence:
    latest[step.task] = step.kind
    sets.append((frozenset(k for k, kind in latest.items() if kind == LEARN),
                 frozenset(k for k, kind in latest.items() if kind == FORGET)))
  return sets


def last_learned_steps(sequence: Sequence[Step]) -> List[Dict[int, int]]:
  """For each step i, {task: index of the latest learning step of that task at or before i}."""
  latest: Dict[int, int] = {}
  out = []
  for i, step in enumerate(sequence):
    if step.is_learn:
      latest[step.task] = i
    out.append(dict(latest))
  return out


def mirrored_steps(sequence: Sequence[Step]) -> Dict[int, int]:
  """{forget step i: mirrored learning step b} for CL-ToW.

  b is the step just before the forgotten task t was (last) learned: b = l - 1 with l the
  index of the latest step learning t before i, so the model after step b is the one the
  learning of t started from. b = -1 means the model before the first step (initialisation).
  When tasks are forgotten in the reverse order of learning (A4, C4, C4v2, MIA) the model
  after step b has learned exactly the tasks retained at step i and none of the forgotten
  ones: the state an ideal unlearner returns to (in A4, b = 2T - 2 - i, as in the thesis'
  `ToW/tow.py`). Otherwise the mirror is an approximation; e.g. H4's forgetting of task 0
  mirrors the initial model, which has learned none of the retained tasks either.
  """
  latest_learn: Dict[int, int] = {}
  mirrors = {}
  for i, step in enumerate(sequence):
    if step.is_learn:
      latest_learn[step.task] = i
    else:
      if step.task not in latest_learn:
        raise ValueError(f"step {i} ({step}) forgets task {step.task}, which was never learned")
      mirrors[i] = latest_learn[step.task] - 1
  return mirrors


def timeline(sequence: Sequence[Step]) -> Timeline:
  """The sequence as the plain data the CL metrics read (`evaluation.continual.Timeline`)."""
  sets = task_sets(sequence)
  return Timeline(learns=tuple(step.is_learn for step in sequence),
                  tasks=tuple(step.task for step in sequence),
                  retained=tuple(tuple(sorted(r)) for r, _ in sets),
                  forgotten=tuple(tuple(sorted(f)) for _, f in sets),
                  last_learned=tuple(last_learned_steps(sequence)), mirrors=mirrored_steps(sequence))
