"""Work directories: their layout, the resolved config, a lock, refusal to mix configs.

Layout of an unlearning work directory (the other commands use parts of it):
  config.json              the resolved config of the run
  original/                the original models (train.py's layout)
  memorization/            the default score file memorization/memorization.npz
  forget_set.npz / .json   the forget set
  retrain/<key>/           the retrain-from-scratch reference of one forget set
  methods/<name>/          one finished or resumable unlearning run per method (or RUM plan)
"""
import fcntl
import os
import shutil
from typing import Any, Dict, Iterable, List, Optional

import ml_collections

from rum_jax import io

CONFIG_FILE = "config.json"
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


def is_finished(run_dir: str) -> bool:
  """Whether a run wrote its metrics (the last file every run writes)."""
  return os.path.exists(os.path.join(run_dir, METRICS_FILE))


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


class WorkdirLock:
  """An exclusive advisory lock on `<workdir>/.lock`, held while a command runs."""

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, ".lock")
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    if not io.is_writer():  # in a multi-host run only process 0 owns the work directory
      return self
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(self._fd)
      self._fd = None
      raise RuntimeError(f"another run is using {os.path.dirname(self.path)}; wait for it to "
                         "finish or choose another --workdir") from None
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is None:
      return
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)


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


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool = False,
            clear: Iterable[str] = ("checkpoints",), ignore: Iterable[str] = (),
            sections: Optional[Iterable[str]] = None) -> None:
  """Writes config.json; refuses to resume a work directory made with another config.

  With `overwrite`, the differing run's `clear` subfolders are deleted and it starts over.
  Only the top-level `sections` the run depends on are compared (None: all), so a field
  added to an unrelated section never blocks a resume; keys in `ignore` may differ too.
  """
  os.makedirs(workdir, exist_ok=True)
  if not os.access(workdir, os.W_OK):
    raise PermissionError(f"work directory {workdir} is not writable")
  path = os.path.join(workdir, CONFIG_FILE)
  new = config.to_dict()
  if os.path.exists(path):
    diff = differences(io.read_json(path), new, sections, ignore)
    if diff and not overwrite:
      shown = "; ".join(diff[:8])
      raise ValueError(f"{workdir} holds a run with a different config ({shown}). Use another "
                       "--workdir, or pass --overwrite to discard that run.")
    if diff:
      for sub in clear:
        shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
  io.write_json(path, config.to_dict())
