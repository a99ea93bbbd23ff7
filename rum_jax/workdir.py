"""Work directories: their layout, the resolved config, a lock, refusal to mix configs.

Layout of an unlearning work directory (the other commands use parts of it):
  config.json              the resolved config of the run
  original/                the original models (train.py's layout)
  memorization/            the default score file memorization/memorization.npz
  forget_set.npz / .json   the forget set
  retrain/<key>/           the retrain-from-scratch reference of one forget set; made_by.json
                           says what made it (`claim_folder`), checked by every run that uses it
  methods/<name>/          one finished or resumable unlearning run per method (or RUM plan)
"""
import fcntl
import hashlib
import json
import os
import shutil
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io

CONFIG_FILE = "config.json"
MADE_BY_FILE = "made_by.json"
METRICS_FILE = "metrics.json"
SCORES_FILE = "memorization.npz"


def original_dir(workdir: str) -> str:
  """Where an unlearning run keeps its original models (unless config.unlearn.original_workdir)."""
  return os.path.join(workdir, "original")


def default_scores_path(workdir: str) -> str:
  """The score file an unlearning run reads (and may compute) when config gives none."""
  return os.path.join(workdir, "memorization", SCORES_FILE)


def methods_dir(workdir: str) -> str:
  """The folder of every method's run."""
  return os.path.join(workdir, "methods")


def method_dir(workdir: str, name: str) -> str:
  """The run of one method (or RUM plan) in an unlearning work directory."""
  return os.path.join(methods_dir(workdir), name)


def retrain_dir(workdir: str, key: str) -> str:
  """The retrain reference of one (training config, forget set), keyed by their digest."""
  return os.path.join(workdir, "retrain", key)


def kind_of(workdir: str) -> str:
  """What made a work directory, from its config.json: 'unlearning', 'method' (one run of an
  unlearning work directory), 'study', 'continual', 'scores' (memorization or proxies),
  'training', or 'none' (no readable config.json)."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    config = io.read_json(path)
  except (OSError, io.DamagedFileError):
    return "none"
  mode = config.get("mode", "train")
  if set(config) == {"method", "settings"}:
    return "method"
  if mode == "study":
    return "study"
  if "continual" in config:
    return "continual"
  if mode in ("memorization", "proxies"):
    return "scores"
  if os.path.isdir(methods_dir(workdir)) or os.path.exists(os.path.join(workdir, "forget_set.npz")):
    return "unlearning"
  return "training"


def is_finished(run_dir: str, also: Sequence[str] = ()) -> bool:
  """Whether a run is done: its metrics (the last file every run writes) are there and readable,
  and so is every file of `also` (paths relative to run_dir). A run that is not done is redone,
  from its checkpoints where they are."""
  try:
    io.read_json(os.path.join(run_dir, METRICS_FILE))
  except (OSError, io.DamagedFileError):
    return False
  return all(readable(os.path.join(run_dir, f)) for f in also)


def readable(path: str) -> bool:
  """Whether a result file is there and parses (npz: every array loads; json: valid JSON)."""
  if path.endswith(".npz"):
    try:
      with np.load(path) as data:
        for key in data.files:
          data[key]
      return True
    except Exception:  # pylint: disable=broad-except  (missing, truncated, not a zip: all unreadable)
      return False
  if path.endswith(".json"):
    try:
      io.read_json(path)
      return True
    except (OSError, io.DamagedFileError):
      return False
  return os.path.exists(path)


def digest(*arrays: Any) -> str:
  """sha256 (16 hex digits) of arrays' contents (int64 for integer arrays): names a forget set
  in the files that depend on it, so a run never pairs results of two different sets."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.asarray(a)
    h.update(np.ascontiguousarray(a, np.int64 if a.dtype.kind in "biu" else None).tobytes())
  return h.hexdigest()[:16]


def file_digest(path: str) -> str:
  """sha256 (16 hex digits) of a file's bytes: what a run read, wherever the file now is."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()[:16]


def record_digest(record: Dict[str, Any]) -> str:
  """sha256 (16 hex digits) of a JSON-able record (key order aside)."""
  return hashlib.sha256(json.dumps(io.as_json(record), sort_keys=True).encode()).hexdigest()[:16]


def made_by(directory: str) -> Optional[str]:
  """The digest of what made `directory` (its made_by.json), or None when it records none."""
  try:
    return io.read_json(os.path.join(directory, MADE_BY_FILE)).get("digest")
  except (OSError, io.DamagedFileError, AttributeError):
    return None


def claim_folder(directory: str, record: Dict[str, Any], what: str) -> str:
  """Makes `directory` the folder of the result `record` describes (everything that decides
  it: settings, digests of its inputs) and returns the record's digest.

  A folder that holds files made by something else (another record, or none recorded) is
  emptied first, with a warning naming the differences: its files are recomputed, never used.
  """
  digest = record_digest(record)
  path = os.path.join(directory, MADE_BY_FILE)
  if made_by(directory) == digest:
    return digest
  if os.path.isdir(directory) and os.listdir(directory):
    try:
      old = io.read_json(path)
      what_changed = "; ".join(differences(old, {"digest": digest, **io.as_json(record)})[:6])
    except (OSError, io.DamagedFileError):
      what_changed = f"it has no readable {MADE_BY_FILE}"
    logging.warning("%s holds a %s made by something else (%s): discarding it and computing it again",
                    directory, what, what_changed)
    shutil.rmtree(directory)
  io.write_json(path, {"digest": digest, **record})
  return digest


def relative(workdir: str, path: str) -> str:
  """`path` relative to `workdir` when it lies inside it (so a copied or moved work directory
  keeps pointing at its own files), else absolute."""
  path, workdir = os.path.abspath(path), os.path.abspath(workdir)
  return os.path.relpath(path, workdir) if os.path.commonpath([path, workdir]) == workdir else path


def resolve(workdir: str, path: str) -> str:
  """The inverse of `relative`: a recorded path as a path that exists from here."""
  return path if os.path.isabs(path) else os.path.join(workdir, path)


def finished_runs(workdir: str) -> List[str]:
  """Names of the finished method runs of an unlearning work directory, sorted."""
  root = methods_dir(workdir)
  names = os.listdir(root) if os.path.isdir(root) else []
  return sorted(n for n in names if is_finished(os.path.join(root, n)))


def flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
  """{"a": {"b": 1}} -> {"a.b": 1}; lists/tuples are compared as lists."""
  if isinstance(d, ml_collections.ConfigDict):
    d = d.to_dict()
  out: Dict[str, Any] = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = list(v) if isinstance(v, tuple) else v
  return out


def _not_writable(workdir: str, folder: str) -> PermissionError:
  return PermissionError(f"--workdir={workdir} cannot be written: you may not write in {folder} (permission "
                         f"denied); choose a folder you can write to (e.g. --workdir=runs/<name>), or make it "
                         f"writable (chmod u+w {folder})")


def make(workdir: str) -> None:
  """Creates the work directory (and its parents); a WorkdirError or PermissionError that says
  what to do when it is a file or cannot be written."""
  parent = workdir
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent.rstrip(os.sep))
  if parent and not os.path.isdir(parent):
    what = "is a file" if parent == workdir else f"is inside {parent}, which is a file"
    raise WorkdirError(f"--workdir={workdir} {what}, not a folder: choose another --workdir (a new "
                       "folder is created)")
  try:
    os.makedirs(workdir, exist_ok=True)
  except PermissionError:
    raise _not_writable(workdir, parent or os.getcwd()) from None
  if io.is_writer() and not os.access(workdir, os.W_OK):
    raise _not_writable(workdir, workdir)


class WorkdirBusyError(RuntimeError):
  """Another run holds the work directory's lock."""


class WorkdirLock:
  """An exclusive advisory lock on `<workdir>/.lock`, held while a command runs."""

  def __init__(self, workdir: str):
    make(workdir)
    self.path = os.path.join(workdir, ".lock")
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    if not io.is_writer():  # in a multi-host run only process 0 owns the work directory
      return self
    try:
      self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
      raise _not_writable(os.path.dirname(self.path), os.path.dirname(self.path)) from None
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(self._fd)
      self._fd = None
      raise WorkdirBusyError(f"another run is using {os.path.dirname(self.path)}; wait for it to "
                             "finish or choose another --workdir") from None
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is None:
      return
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)


def contents(workdir: str) -> Set[str]:
  """Every file and folder under `workdir` (empty when it does not exist)."""
  out = set()
  for folder, dirs, files in os.walk(workdir):
    out |= {os.path.join(folder, n) for n in dirs + files}
  return out


def discard_unused_configs(workdir: str, before: Set[str], bookkeeping: Iterable[str] = ()) -> None:
  """Deletes every config.json under `workdir` that is not in `before` (`contents` when a run
  started) and is the only new file of its folder besides the new `bookkeeping` files of the
  work directory itself (the run's log and scalars, deleted with it), and the new folders this
  leaves empty: what a run refused before its first result leaves behind, and what would refuse
  the corrected command as "a run with a different config". Nothing that was there before is
  touched."""
  if not io.is_writer() or not os.path.isdir(workdir):
    return
  for folder, _, _ in os.walk(workdir, topdown=False):  # children first: a parent may empty after them
    new = [n for n in os.listdir(folder) if os.path.join(folder, n) not in before and n != ".lock"]
    extra = [n for n in new if folder == workdir and n in tuple(bookkeeping)]
    if sorted(set(new) - set(extra)) == [CONFIG_FILE]:
      for name in extra:
        path = os.path.join(folder, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
      os.remove(os.path.join(folder, CONFIG_FILE))
    if folder != workdir and folder not in before and set(os.listdir(folder)) <= {".lock"}:
      shutil.rmtree(folder)


def differences(old: Dict[str, Any], new: Dict[str, Any], sections: Optional[Iterable[str]] = None,
                ignore: Iterable[str] = ()) -> List[str]:
  """'key: old -> new' for every flattened key that differs (only top-level `sections`, if given)."""
  old, new = flatten(old), flatten(new)
  ignore = set(ignore)
  sections = None if sections is None else set(sections)
  return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
          for k in sorted(set(old) | set(new))
          if k not in ignore and (sections is None or k.split(".")[0] in sections)
          and old.get(k, "<absent>") != new.get(k, "<absent>")]


class WorkdirError(ValueError):
  """A work directory holds something this run must not build on; the message says what to do."""


def _clear(workdir: str, names: Iterable[str]) -> None:
  for name in names:
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
      os.remove(path)


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool = False,
            clear: Iterable[str] = ("checkpoints",), ignore: Iterable[str] = (),
            sections: Optional[Iterable[str]] = None, outputs: Iterable[str] = ()) -> None:
  """Writes config.json; refuses to resume a work directory made with another config.

  With `overwrite`, the differing run's `clear` subfolders are deleted and it starts over.
  Only the top-level `sections` the run depends on are compared (None: all), so a field
  added to an unrelated section never blocks a resume; keys in `ignore` may differ too.
  A work directory that holds results (`clear`, `outputs` or metrics.json) but no config.json
  is refused as well: nothing says what made them.
  """
  make(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  new = config.to_dict()
  clear = list(clear)
  if os.path.exists(path):
    diff = differences(io.read_json(path), new, sections, ignore)
    if diff and not overwrite:
      shown = "; ".join(diff[:8])
      raise WorkdirError(f"{workdir} holds a run with a different config ({shown}). Use another "
                         "--workdir, or pass --overwrite to discard that run.")
    if diff:
      _clear(workdir, clear)
  else:
    found = [n for n in clear + list(outputs) + [METRICS_FILE] if os.path.exists(os.path.join(workdir, n))]
    if found and not overwrite:
      raise WorkdirError(f"{workdir} holds results ({', '.join(sorted(set(found)))}) but no {CONFIG_FILE}, so "
                         "nothing says which config made them. Use another --workdir, or pass --overwrite "
                         "to discard them.")
    _clear(workdir, found)
  io.write_json(path, config.to_dict())
