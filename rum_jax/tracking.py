"""Experiment tracking: a run's scalars, its log file and its progress in the terminal.

Inside `track(workdir)` (every command function opens it around its pipeline; a Python user
calls the command functions, `rum_jax.commands`, and gets the same) each phase that trains
(`training.loop.fit`: original models, memorization chunks, the retrain reference, every
unlearning method's epochs, the learning of a continual step) and every step of a continual
sequence write

  <workdir>/scalars.jsonl           always: one JSON object a line, see below
  <workdir>/tensorboard/<phase>/    TensorBoard event files, one TensorBoard run per phase
                                    (tensorboardX: no TensorFlow needed; without it, one
                                    warning line says what to install and the JSON lines stay)
  <workdir>/log.txt                 the run's log lines, appended when the run resumes

A line of scalars.jsonl:

  {"phase": "retrain", "dir": "retrain/1a2b...", "axis": "epoch", "step": 3, "time": 1733.4,
   "scalars": {"loss": [seed 0, seed 1, ...], "accuracy": [...]}}

axis "epoch": per-seed means over the epoch's steps (the rows of history.csv) and the epoch's
wall time "seconds" (compilation included); axis "step": one optimizer step, each scalar the
mean over seeds weighted by the step's real examples; axis "sequence_step": a continual run
after each step of its task sequence. TensorBoard
shows the mean over seeds of each per-seed list, tagged "<axis>/<name>". `dir` is the folder
of the phase's checkpoints relative to the work directory (null without checkpoints); it also
names the phase's TensorBoard run. A resumed run appends again the epochs after its last
checkpoint: the last line of a (phase, dir, axis, step) is the one that counts
(`read_scalars`).

In the terminal: one line per phase (absl's INFO log) and, on a TTY, a progress bar with the
phase's ETA (tqdm, when installed); the per-epoch lines come with absl's `-v 1`. A Python
session shows absl's INFO lines only after flags are parsed, so `track` shows them for the
duration of the run when absl's verbosity is still its default (WARNING); set
`absl.logging.set_verbosity(absl.logging.ERROR)` first for a silent run.
"""
import contextlib
import json
import logging as std_logging
import os
import re
import sys
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
from absl import flags, logging

from rum_jax import io, manifest, optional

SCALARS_FILE = "scalars.jsonl"
TENSORBOARD_DIR = "tensorboard"
LOG_FILE = "log.txt"
# What tracking writes into a work directory: bookkeeping, not results.
FILES = (SCALARS_FILE, TENSORBOARD_DIR, LOG_FILE)

_warned = set()


def _optional(module: str, feature: str) -> Any:
  """`module` imported, or None after one warning (per process) naming the package to install."""
  try:
    return optional.require(module, feature)
  except ImportError as err:
    if module not in _warned:
      _warned.add(module)
      logging.warning("%s; going on without it", err)
    return None


def _mean(value: Any) -> float:
  """A scalar for TensorBoard: the mean over seeds of a per-seed list (NaN seeds ignored)."""
  values = np.asarray(value, np.float64).reshape(-1)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if len(finite) else float("nan")


class Phase:
  """The scalars of one phase: JSON lines into the tracker's file, events into its own run."""

  def __init__(self, tracker: Optional["Tracker"], name: str, directory: Optional[str]):
    self.tracker, self.name, self.directory = tracker, name, directory
    self._writer = None
    if tracker is not None and tracker.tensorboard is not None:
      run = directory or re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"
      self._writer = tracker.tensorboard.SummaryWriter(os.path.join(tracker.workdir, TENSORBOARD_DIR, run))

  def scalars(self, axis: str, step: int, values: Mapping[str, Any]) -> None:
    """Writes one point of every scalar in `values` (floats, or per-seed lists) at `step` of `axis`."""
    if self.tracker is None:
      return
    now = time.time()
    self.tracker.write({"phase": self.name, "dir": self.directory, "axis": axis, "step": int(step),
                        "time": now, "scalars": dict(values)})
    if self._writer is not None:
      for key, value in values.items():
        self._writer.add_scalar(f"{axis}/{key}", _mean(value), int(step), walltime=now)
    if axis != "step":  # on disk once per epoch (steps: once per call of `steps`)
      self.tracker.flush()

  def steps(self, first: int, per_step: Mapping[str, np.ndarray], weights: np.ndarray) -> None:
    """Optimizer steps first, first + 1, ...: per_step[name] is [seeds, steps], weights the real
    examples of every seed's step; each scalar is the weighted mean over seeds. Steps without
    real examples (padding) are left out."""
    if self.tracker is None:
      return
    total = weights.sum(0)
    means = {k: (np.asarray(v, np.float64) * weights).sum(0) / np.maximum(total, 1e-12)
             for k, v in per_step.items()}
    for i in np.flatnonzero(total > 0):
      self.scalars("step", first + int(i), {k: float(v[i]) for k, v in means.items()})
    self.tracker.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    if self.tracker is not None:
      self.tracker.flush()


class Tracker:
  """The tracking files of one work directory (only process 0 of a multi-host run writes)."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    os.makedirs(self.workdir, exist_ok=True)
    # Written as the run goes (appended, or by TensorBoard): recorded without digests.
    for name in (SCALARS_FILE, LOG_FILE):
      manifest.record_file(os.path.join(self.workdir, name))
    manifest.record_tree(os.path.join(self.workdir, TENSORBOARD_DIR))
    self._file = open(os.path.join(self.workdir, SCALARS_FILE), "a")
    self.tensorboard = _optional("tensorboardX", "writing TensorBoard event files")
    self._phases: Dict[Tuple[str, Optional[str]], Phase] = {}
    self._opened: Dict[Tuple[str, Optional[str]], int] = {}

  def phase(self, name: str, directory: Optional[str] = None) -> Phase:
    """The phase `name` whose checkpoints are in `directory` (a folder inside the work directory
    names its TensorBoard run; elsewhere or None: the name does)."""
    rel = None
    if directory:
      rel = os.path.relpath(os.path.abspath(directory), self.workdir)
      rel = None if rel == "." or rel.startswith("..") else rel
    key = (name, rel)
    if key not in self._phases:
      # A phase without a folder may recur in one run (a bank's chunk for every forget set of a
      # study): each time it gets its own name, so no two share their records or events.
      self._opened[key] = self._opened.get(key, 0) + 1
      shown = name if rel or self._opened[key] == 1 else f"{name} ({self._opened[key]})"
      self._phases[key] = Phase(self, shown, rel)
    return self._phases[key]

  def end_phase(self, phase: Phase) -> None:
    phase.close()
    self._phases = {k: p for k, p in self._phases.items() if p is not phase}

  def write(self, record: Mapping[str, Any]) -> None:
    self._file.write(json.dumps(io.as_json(record)) + "\n")

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    for phase in list(self._phases.values()):
      phase.close()
    self._phases.clear()
    self._file.close()


_current: List[Tracker] = []


def current() -> Optional[Tracker]:
  """The tracker of the run in progress (None outside `track`, or on processes other than 0)."""
  return _current[-1] if _current else None


def phase(name: str, directory: Optional[str] = None) -> Phase:
  """A phase of the current run; without one, a phase that writes nothing."""
  tracker = current()
  return tracker.phase(name, directory) if tracker is not None else Phase(None, name, directory)


def end_phase(p: Phase) -> None:
  """Closes a phase (its TensorBoard file is complete); `phase` with its name opens a new one."""
  if p.tracker is not None:
    p.tracker.end_phase(p)


def scalars(phase_name: str, axis: str, step: int, values: Mapping[str, Any]) -> None:
  """One point of a phase's scalars in the current run (nothing outside `track`)."""
  phase(phase_name).scalars(axis, step, values)


@contextlib.contextmanager
def track(workdir: str) -> Iterator[Optional[Tracker]]:
  """Tracks the run in `workdir` (module docstring); inside a tracked run, it stays that run's."""
  if current() is not None:
    yield current()
    return
  show_info = not flags.FLAGS.is_parsed() and logging.get_verbosity() == logging.WARNING
  if show_info:
    logging.set_verbosity(logging.INFO)
  tracker, handler = None, None
  if io.is_writer():
    tracker = Tracker(workdir)
    handler = std_logging.FileHandler(os.path.join(tracker.workdir, LOG_FILE), mode="a")
    handler.setFormatter(logging.PythonFormatter())
    std_logging.getLogger().addHandler(handler)
    _current.append(tracker)
  try:
    yield tracker
  finally:
    if tracker is not None:
      _current.remove(tracker)
      tracker.close()
      std_logging.getLogger().removeHandler(handler)
      handler.close()
    if show_info:
      logging.set_verbosity(logging.WARNING)


class _NoBar:
  """What `progress_bar` gives where no bar is drawn: the same calls, doing nothing."""

  def update(self, n: int = 1) -> None:
    del n

  def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
    del s, refresh

  def close(self) -> None:
    pass

  def __enter__(self) -> "_NoBar":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def progress_bar(name: str, total: int, initial: int = 0, unit: str = "epoch") -> Any:
  """A tqdm bar with the ETA of `total` units on a TTY; elsewhere (or without tqdm) one that
  draws nothing. A bar opened inside another's is drawn below it and erased when done."""
  if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
    return _NoBar()
  tqdm = _optional("tqdm", "a progress bar")
  if tqdm is None:
    return _NoBar()
  return tqdm.tqdm(total=total, initial=initial, desc=name, unit=unit, leave=False, dynamic_ncols=True)


def read_scalars(workdir: str) -> List[Dict[str, Any]]:
  """The records of <workdir>/scalars.jsonl, the last one of each (phase, dir, axis, step), in
  the order first written; a line cut short by a killed run is skipped."""
  records: Dict[tuple, Dict[str, Any]] = {}
  with open(os.path.join(workdir, SCALARS_FILE)) as f:
    for line in f:
      try:
        r = json.loads(line)
      except json.JSONDecodeError:
        continue
      records[(r["phase"], r["dir"], r["axis"], r["step"])] = r
  return sorted(records.values(), key=lambda r: r["time"])
