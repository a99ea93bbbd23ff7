"""`RunFolder`: one work directory, or one run inside one, and everything it holds.

A pipeline never builds a path or opens a file: it asks its run folder.

  folder = RunFolder(workdir)
  folder.write("metrics", record)                    # metrics.json, atomically, in the manifest
  folder.write("predictions", arrays, split="test")  # predictions/test.npz
  folder.read("forget_set", verify=True)             # refused if replaced since rum-jax wrote it
  folder.method("salun")                             # methods/salun, a run folder of its own
  folder.checkpoints()                               # the folder orbax keeps checkpoints in

What made a folder and whether a run may build on it (`prepare`, `claim`) are in
`runfolder.made_by`; the manifest (what rum-jax wrote: `rum_jax.manifest`) decides what
`discard` (--overwrite) may delete, and `open` refuses a folder that holds anything else.
"""
import copy
import json
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from rum_jax import io, manifest
from rum_jax.runfolder import layout


class WorkdirError(ValueError):
  """A work directory holds something this run must not build on; the message says what to do."""


class ForeignFolderError(WorkdirError):
  """A folder holds files rum-jax did not write: it is not rum-jax's to use or clean."""


class ReplacedFileError(WorkdirError):
  """A result file differs from the one rum-jax wrote (its digest in the manifest)."""


class RunFolder:
  """A folder rum-jax writes results into: its paths, formats, manifest and digests."""

  def __init__(self, path: str):
    self.path = str(path)

  def __fspath__(self) -> str:
    return self.path

  def __str__(self) -> str:
    return self.path

  def __repr__(self) -> str:
    return f"RunFolder({self.path!r})"

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, RunFolder) and os.path.abspath(self.path) == os.path.abspath(other.path)

  def __hash__(self) -> int:
    return hash(os.path.abspath(self.path))

  @classmethod
  def of(cls, where: Any) -> "RunFolder":
    """`where` as a RunFolder (a path, or already one)."""
    return where if isinstance(where, RunFolder) else cls(where)

  # -------------------------------------------------------------------------------------
  # Layout.

  def file(self, key: str, **fields: Any) -> str:
    """The path of file `key` of `layout.FILES` (for messages, and for a library function
    that keeps a cache file itself)."""
    return os.path.join(self.path, layout.name(key, **fields))

  def folder(self, key: str, *more: str) -> str:
    """The path of folder `key` of `layout.FOLDERS` (and `more` below it)."""
    return os.path.join(self.path, layout.folder(key, *more))

  def sub(self, key: str, *more: str) -> "RunFolder":
    """The folder `key`/`more` below this one, as a RunFolder."""
    return RunFolder(self.folder(key, *more))

  def child(self, *names: str) -> "RunFolder":
    """The folder `names` below this one (a bank named after its method), as a RunFolder."""
    return RunFolder(os.path.join(self.path, *names))

  def checkpoints(self, *more: str) -> str:
    """The folder of this run's checkpoints (orbax's), or a checkpoint folder below it."""
    return self.folder("checkpoints", *more)

  def original(self) -> "RunFolder":
    return self.sub("original")

  def scores(self) -> "RunFolder":
    return self.sub("scores")

  def method(self, name: str) -> "RunFolder":
    return self.sub("methods", name)

  def retrain(self, key: str) -> "RunFolder":
    return self.sub("retrain", key)

  def validation(self) -> "RunFolder":
    return self.sub("validation")

  def sweep(self, method: str) -> "RunFolder":
    return self.sub("sweeps", method)

  def name(self) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(self.path)))

  def relative(self, path: Any) -> str:
    """`path` relative to this folder (so a copied or moved tree keeps pointing at its own
    files); recorded in place of absolute paths."""
    return os.path.relpath(os.path.abspath(os.fspath(path)), os.path.abspath(self.path))

  def resolve(self, path: str) -> str:
    """A recorded path (relative to this folder, or absolute in older records) from here."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.path, path))

  # -------------------------------------------------------------------------------------
  # State.

  def exists(self, key: str, **fields: Any) -> bool:
    return os.path.exists(self.file(key, **fields))

  def isdir(self) -> bool:
    return os.path.isdir(self.path)

  def readable(self, key: str, **fields: Any) -> bool:
    """Whether a result file is there and parses (npz: every array loads; json: valid JSON)."""
    try:
      self.read(key, **fields)
      return True
    except Exception:  # pylint: disable=broad-except  (missing, truncated, not a zip: all unreadable)
      return False

  def finished(self, also: Sequence[str] = ()) -> bool:
    """Whether the run is done: its metrics (the last file every run writes) are there and
    readable, and so is every file of `also` (keys; predictions: every split). A run that is
    not done is redone, from its checkpoints where they are."""
    keys = ["metrics"] + list(also)
    for key in keys:
      splits = layout.SPLITS if "{split}" in layout.FILES[key].pattern else [None]
      if not all(self.readable(key, **({"split": s} if s else {})) for s in splits):
        return False
    return True

  def runs(self, key: str = "methods") -> List[str]:
    """Names of the folders below folder `key` (sorted)."""
    root = self.folder(key)
    return sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))) if os.path.isdir(root) else []

  def finished_runs(self) -> List[str]:
    """Names of the finished method runs (methods/<name>), sorted."""
    return [n for n in self.runs() if self.method(n).finished()]

  # -------------------------------------------------------------------------------------
  # Writing and reading.

  def write(self, key: str, value: Any, **fields: Any) -> str:
    """Writes `value` as file `key` in its format (json: a record; csv: rows; npz: a dict of
    arrays; text: a string; png: a matplotlib figure), atomically and recorded in the
    manifest; returns the path."""
    entry = layout.FILES[key]
    path = self.file(key, **fields)
    if entry.format == "json":
      io.write_json(path, value)
    elif entry.format == "csv":
      io.write_csv(path, value, fields=entry.fields or None)
    elif entry.format == "npz":
      io.write_npz(path, **value)
    elif entry.format == "text":
      io.write_text(path, value)
    elif entry.format == "png":
      io.save_figure(value, path, dpi=entry.dpi)
    else:
      raise ValueError(f"no writer for format {entry.format!r}")
    return path

  def read(self, key: str, verify: bool = False, **fields: Any) -> Any:
    """File `key` parsed (json: the record; csv: a DataFrame; npz: a dict of arrays; text:
    the string). `verify`: refused (ReplacedFileError) unless its bytes are those rum-jax
    wrote."""
    if verify:
      self.verify(key, **fields)
    path = self.file(key, **fields)
    fmt = layout.FILES[key].format
    if fmt == "json":
      return _read_json(path)
    if fmt == "npz":
      return io.read_npz(path)
    if fmt == "csv":
      return pd.read_csv(path, keep_default_na=False)
    with open(path) as f:
      return f.read()

  def remove(self, key: str, **fields: Any) -> None:
    io.remove(self.file(key, **fields))

  def _entry(self, path: str) -> Optional[Dict[str, Any]]:
    root = manifest.find(os.path.dirname(os.path.abspath(path)))
    if root is None:
      return None
    return manifest.load(root)["files"].get(manifest.relative(root, path))

  def verify(self, key: str, **fields: Any) -> None:
    """Raises ReplacedFileError unless file `key` is the one rum-jax wrote (by its digest)."""
    path = self.file(key, **fields)
    entry = self._entry(path)
    if entry is None or not entry.get("sha"):
      raise ReplacedFileError(f"{path} was not written by rum-jax (its run folder's manifest does not list it): "
                              f"{self._fix(path)}")
    if manifest.file_sha(path) not in (entry["sha"], entry.get("previous")):
      raise ReplacedFileError(f"{path} is not the file rum-jax wrote (its digest differs from the one recorded "
                              f"when it was written): it was replaced or edited since. {self._fix(path)}")

  def _fix(self, path: str) -> str:
    return (f"Restore it from a copy, or delete it and run the same command again (unlearn.py recomputes "
            f"what it finds missing; delete {os.path.dirname(path)} if it has no command of its own)")

  def content_digest(self, key: str, **fields: Any) -> str:
    """The digest of what file `key` holds, as recorded when it was written (npz: its arrays,
    equal for two writes of equal arrays); the file is verified first."""
    self.verify(key, **fields)
    return self._entry(self.file(key, **fields))["content"]

  def predictions_digest(self) -> str:
    """The digest of this run's saved predictions (every split): what the model it holds is."""
    return manifest.sha(" ".join(f"{s}:{self.content_digest('predictions', split=s)}"
                                 for s in layout.SPLITS).encode())

  # -------------------------------------------------------------------------------------
  # The manifest: what rum-jax wrote, what --overwrite may delete.

  def foreign(self) -> List[str]:
    """Paths (relative, at most 3) in this folder that rum-jax did not write."""
    return manifest.foreign(self.path) if self.isdir() else []

  def check_own(self, what: str = "--workdir") -> None:
    """Raises ForeignFolderError if this folder holds files rum-jax did not write."""
    found = self.foreign()
    if found:
      older = (" (a work directory of a rum-jax made before manifests is one: run it again in a new --workdir)"
               if not self.is_run_folder() and self.exists("config") else "")
      raise ForeignFolderError(
          f"{what}={self.path} holds files rum-jax did not write ({', '.join(found)}"
          f"{', ...' if len(found) == 3 else ''}), so it is not rum-jax's to use or clean: choose an empty or new "
          f"--workdir (or move those files out){older}")

  def open(self, what: str = "--workdir") -> "RunFolder":
    """Makes this folder a run folder (creating it and its manifest) after refusing one that
    holds files rum-jax did not write. Nothing is created when it is refused."""
    self.check_own(what)
    if io.is_writer():
      os.makedirs(self.path, exist_ok=True)
      manifest.create(os.path.abspath(self.path))
    return self

  def is_run_folder(self) -> bool:
    return manifest.has(self.path)

  def discard(self, *rels: str) -> None:
    """Deletes what the manifests list under `rels` (paths relative to this folder; none: the
    whole folder), nested run folders by their own manifests. Anything else stays."""
    if not io.is_writer() or not self.isdir():
      return
    root = os.path.abspath(self.path)
    for rel in rels or ("",):
      target = os.path.normpath(os.path.join(root, rel))
      if os.path.isdir(target) and target != root and manifest.has(target):
        _discard_run(target)
      elif os.path.exists(target):
        _discard_under(root, target)

  # Records of the manifest other than files: the config that made the folder.

  def manifest_value(self, key: str) -> Any:
    return manifest.load(os.path.abspath(self.path)).get(key) if self.is_run_folder() else None

  def set_manifest_value(self, key: str, value: Any) -> None:
    if io.is_writer():
      root = os.path.abspath(self.path)
      data = manifest.load(root)
      value = io.as_json(value)
      if data.get(key) != value:
        data[key] = value
        manifest.save(root, data)


def _discard_run(folder: str) -> None:
  """Deletes everything a run folder's manifest lists (and nested run folders), then the
  manifest, the lock and the folder when nothing else is left."""
  _discard_under(folder, folder)
  left = set(os.listdir(folder))
  if left <= set(manifest.OWN):
    for name in left:
      os.remove(os.path.join(folder, name))
    os.rmdir(folder)


def _discard_under(root: str, target: str) -> None:
  """Deletes the entries of `root`'s manifest at or below `target`, and the run folders below it."""
  for directory, dirs, _ in os.walk(target):
    for d in list(dirs):
      if manifest.has(os.path.join(directory, d)):
        _discard_run(os.path.join(directory, d))
        dirs.remove(d)
  data = manifest.load(root)
  rel = manifest.relative(root, target)
  under = lambda k: rel == "." or k == rel or k.startswith(rel + "/")  # noqa: E731
  for k in [k for k in data["files"] if under(k)]:
    path = os.path.join(root, k)
    if os.path.isfile(path) or os.path.islink(path):
      os.remove(path)
  for t in [t for t in data["trees"] if under(t)]:
    shutil.rmtree(os.path.join(root, t), ignore_errors=True)
  manifest.drop(root, [k for k in data["files"] if under(k)] + [t for t in data["trees"] if under(t)])
  for directory, _, _ in sorted(os.walk(target), key=lambda w: -len(w[0])):  # deepest first
    if directory != root and os.path.isdir(directory) and not os.listdir(directory):
      os.rmdir(directory)


# Records read in this process, by path, inode, size and modification time: each is parsed once.
_JSON: Dict[str, Any] = {}


def _read_json(path: str) -> Any:
  stat = os.stat(path)
  key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
  cached = _JSON.get(os.path.abspath(path))
  if cached is None or cached[0] != key:
    cached = (key, io.read_json(path))
    _JSON[os.path.abspath(path)] = cached
  return copy.deepcopy(cached[1])


def json_key(record: Any) -> str:
  """A record as canonical JSON (key order aside), to compare or digest it."""
  return json.dumps(io.as_json(record), sort_keys=True)
