"""Orbax checkpoints of stacked per-seed states plus a JSON record of the run so far.

Orbax writes each step to a temporary directory and renames it when complete, so a killed
run never leaves a half-written checkpoint that looks finished; such temporary folders are
removed (and named in the log) when the run starts again. When the newest checkpoint cannot
be read (truncated or corrupted files), `restore` sets it aside as `unreadable-<step>-<time>`,
says so in one warning line and falls back to the previous one; set-aside folders are removed
once a newer checkpoint has been saved.

Checkpoints belong to one program: before a run restores or saves, it `claim`s the folder with
a key of everything that decides its states (settings, epochs, digests of the initial states
and of the first epoch's plan, ...), recorded in program.json. A folder holding another
program's checkpoints (a sweep whose grid changed, a method run with other settings, a folder
from an older version that recorded no key) is emptied, with a warning naming what changed,
and the run starts over: a checkpoint is never resumed by a program it does not belong to.
States are saved without the padding seeds (`ModelRunner.unpad`), so a run resumes on any
number of devices.
"""
import contextlib
import hashlib
import logging as pylogging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from rum_jax import io, manifest
from rum_jax.runfolder import differences

KEY_FILE = "program.json"


def tree_digest(tree: Any) -> str:
  """sha256 (16 hex digits) of a host pytree: its structure and every leaf's dtype, shape and
  bytes (e.g. the initial states of a program, which stand for the models it starts from)."""
  h = hashlib.sha256(str(jax.tree.structure(tree)).encode())
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Orbax logs several INFO lines per save; keep the run's progress log readable.

  The Python level of absl's logger is saved and restored as it was (absl's own verbosity
  maps onto it coarsely: restoring that would reset a level a caller set, e.g. pytest's).
  """
  logger = pylogging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, pylogging.WARNING))
  try:
    yield
  finally:
    logger.setLevel(level)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list]:
  """Sends the process's stderr (file descriptor 2, also what C++ threads write) to a file.

  Yields a list that holds the captured text when the block ends. A failed restore makes
  tensorstore's worker threads print a traceback each ("Event loop is closed") after orbax
  gave up; the caller replaces them by one warning line.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  captured: list = []
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield captured
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      captured.append(tmp.read().decode(errors="replace"))


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of (state pytree, JSON record) in `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    if io.is_writer():
      manifest.record_tree(self.directory)  # orbax's folder, as a whole, in its run folder's manifest
    if os.path.isdir(self.directory):
      for name in sorted(os.listdir(self.directory)):
        if ".orbax-checkpoint-tmp" in name:  # a save that was killed before it finished
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
          logging.warning("removed %s: an unfinished checkpoint of a run that was stopped while saving",
                          os.path.join(self.directory, name))
        elif name.startswith("unreadable-"):
          logging.warning("%s holds a damaged checkpoint set aside by an earlier run; it is removed once a "
                          "newer checkpoint is saved", os.path.join(self.directory, name))
    self._max_to_keep = max_to_keep
    self._claimed = False
    self._open()

  def _open(self) -> None:
    with _quiet():
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, enable_async_checkpointing=False))

  def claim(self, key: Dict[str, Any]) -> None:
    """Makes this folder's checkpoints those of the program `key` (JSON-able: everything that
    decides the saved states). Checkpoints of another program are deleted first (module
    docstring); `save` and `restore` need a claim."""
    key = io.as_json(key)
    path = os.path.join(self.directory, KEY_FILE)
    try:
      old = io.read_json(path)
    except (OSError, io.DamagedFileError):
      old = None
    held = [n for n in os.listdir(self.directory) if n.isdigit()] if os.path.isdir(self.directory) else []
    stale = old != key and bool(held)
    if stale:
      what = ("; ".join(differences(old, key)[:6]) if isinstance(old, dict)
              else "they record no program: made by an older version")
      logging.warning("%s holds checkpoints of another program (%s): deleting them and starting this run over",
                      self.directory, what)
      self.close()
      if io.is_writer():  # in a multi-host run, process 0 owns the folder
        for name in held:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    if old != key:
      io.write_json(path, key)
    if jax.process_count() > 1:  # no process restores before the folder is the program's
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"claim {self.directory}")
    if stale:
      self._open()
    elif jax.process_count() > 1:
      with _quiet():
        self._manager.reload()  # process 0 may have emptied the folder meanwhile
    self._claimed = True

  def _check_claimed(self) -> None:
    if not self._claimed:
      raise RuntimeError(f"checkpoints in {self.directory} used before `claim`: nothing says which program "
                         "they belong to")

  def latest_step(self) -> Optional[int]:
    """The newest saved step (epochs done), or None."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: dict) -> None:
    """Saves host (numpy) `state` and JSON-able `record` as checkpoint `step`."""
    self._check_claimed()
    try:
      with _quiet():
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)
        self._manager.wait_until_finished()
    except OSError as err:
      full = io.disk_full(os.path.join(self.directory, str(step)), err)
      if full is not None:
        raise full from None
      raise
    for name in os.listdir(self.directory):
      if name.startswith("unreadable-") and int(name.split("-")[1]) <= step:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)  # superseded by `step`

  def restore(self, target: Any) -> Optional[Tuple[int, Any, dict]]:
    """Newest readable checkpoint as (step, state, record), or None when there is none.

    `target` is a host pytree of the same structure (e.g. a freshly initialised state).
    """
    self._check_claimed()
    for step in sorted(self._manager.all_steps(), reverse=True):
      error = None
      with _stderr_captured() as noise:
        try:
          with _quiet():
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()))
        except Exception as e:  # pylint: disable=broad-except
          error = e
          time.sleep(0.5)  # let the storage threads finish printing into the capture
      if error is None:
        sys.stderr.write(noise[0])  # nothing went wrong: whatever was printed is the user's
        return step, restored["state"], restored["record"]
      # A damaged checkpoint must not cost the run: set it aside (kept for inspection,
      # out of the way of the step that will be saved again) and try the previous one.
      aside = os.path.join(self.directory, f"unreadable-{step}-{int(time.time())}")
      os.rename(os.path.join(self.directory, str(step)), aside)
      with _quiet():
        self._manager.reload()
      reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
      logging.warning("checkpoint %d is damaged (%s): set aside as %s; resuming from the one before", step,
                      reason, aside)
    if any(d.startswith("unreadable-") for d in os.listdir(self.directory)):
      raise RuntimeError(f"no readable checkpoint in {self.directory}: every saved step is damaged (set aside "
                         "as unreadable-*); delete the folder to start this run over")
    return None

  def close(self) -> None:
    """Releases orbax's background resources."""
    with _quiet():
      self._manager.close()
