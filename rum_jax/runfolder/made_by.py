"""What made a run folder, and whether a run may build on it.

A folder's config.json says which config made it (a copy is kept in its manifest, so a
damaged or deleted config.json is written again from it). A run of another config is refused
(`check_config`), listing the differences, unless --overwrite, which discards what the
manifest lists of the folders the run redoes; a config holds its folder only once it
produced a result there (`results`): a run that failed before its first result never refuses
the corrected command. Every check reads only: a refused run changes nothing.

A folder made for one result of a record (a retrain reference: what made it, with the
digests of its inputs) is `claim`ed by it: made_by.json holds the record's digest, and a
folder of another record is discarded and made again.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, manifest
from rum_jax.runfolder import layout
from rum_jax.runfolder.folder import RunFolder, WorkdirError

Result = Union[str, Callable[[], bool]]


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


def digest(*arrays: Any) -> str:
  """sha256 (16 hex digits) of arrays' contents (int64 for integer arrays): names a forget set
  in the files that depend on it, so a run never pairs results of two different sets."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.asarray(a)
    h.update(np.ascontiguousarray(a, np.int64 if a.dtype.kind in "biu" else None).tobytes())
  return h.hexdigest()[:16]


# sha256 (16 hex digits) of a file's bytes: what a run read, wherever the file now is (the
# manifest's digest of a file, one function for both).
file_digest = manifest.file_sha


def record_digest(record: Dict[str, Any]) -> str:
  """sha256 (16 hex digits) of a JSON-able record (key order aside)."""
  return hashlib.sha256(json.dumps(io.as_json(record), sort_keys=True).encode()).hexdigest()[:16]


def config_of(folder: RunFolder) -> Optional[Dict[str, Any]]:
  """The config that made `folder`: its config.json, else (damaged or deleted) the copy its
  manifest keeps; None when it records none."""
  copy = folder.manifest_value("config")
  try:
    return folder.read("config")
  except FileNotFoundError:
    return copy
  except io.DamagedFileError as err:
    if copy is None:
      raise
    logging.warning("%s; using the copy of it that %s keeps (it is written again)", err, manifest.NAME)
    return copy


def write_config(folder: RunFolder, config: Dict[str, Any]) -> None:
  """config.json, and its copy in the manifest."""
  folder.write("config", config)
  folder.set_manifest_value("config", config)


def _rel(name: str) -> str:
  """A key as a path: a file key of a fixed name (config, metrics, scores: memorization.npz),
  else a folder key (checkpoints, and predictions / weights: folders of per-split or per-chunk
  files), else the path as given."""
  if name in layout.FILES and "{" not in layout.FILES[name].pattern:
    return layout.name(name)
  if name in layout.FOLDERS:
    return layout.folder(name)
  return name


def _present(folder: RunFolder, result: Result) -> bool:
  if callable(result):
    return bool(result())
  path = os.path.join(folder.path, _rel(result))
  return os.path.isfile(path) or (os.path.isdir(path) and bool(os.listdir(path)))


@dataclasses.dataclass
class ConfigCheck:
  """What `check_config` found; `apply()` writes the config (and discards what it must)."""
  folder: RunFolder
  config: Dict[str, Any]
  diff: List[str]
  discard: List[str]
  write: bool
  applied: bool = False

  def apply(self) -> None:
    if self.applied:
      return
    self.applied = True
    self.folder.open()
    self.discard = [d for d in self.discard if os.path.exists(os.path.join(self.folder.path, d))]
    if self.discard:
      logging.warning("%s: discarding %s (made with another config: %s)", self.folder, ", ".join(self.discard),
                      "; ".join(self.diff[:6]) or "none recorded")
      self.folder.discard(*self.discard)
    if self.write:
      write_config(self.folder, self.config)


def check_config(folder: RunFolder, config: Union[ml_collections.ConfigDict, Dict[str, Any]], overwrite: bool = False,
                 clear: Sequence[str] = (layout.FOLDERS["checkpoints"],), ignore: Iterable[str] = (),
                 sections: Optional[Iterable[str]] = None, results: Sequence[Result] = ("metrics",),
                 what: str = "--workdir") -> ConfigCheck:
  """Whether a run of `config` may use `folder`; reads only (a refused run changes nothing).

  Refused (WorkdirError, naming the fix): a folder holding files rum-jax did not write; a
  folder whose config differs (only the top-level `sections`, keys of `ignore` aside) and
  that holds a result of it (any of `results`: file or folder keys, paths, or callables),
  unless `overwrite`; a folder holding results but no config at all, unless `overwrite`.
  With another config and `overwrite` (or no result of the old one), `apply()` discards the
  run's `clear` entries (keys or paths) before writing the new config.
  """
  folder.check_own(what)
  new = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  clear = [_rel(c) for c in clear]
  old = config_of(folder) if folder.isdir() else None
  held = any(_present(folder, r) for r in results) if folder.isdir() else False
  if old is not None:
    diff = differences(old, new, sections, ignore)
    if diff and held and not overwrite:
      raise WorkdirError(f"{folder} holds a run with a different config ({'; '.join(diff[:8])}). Use another "
                         "--workdir, or pass --overwrite to discard that run.")
    return ConfigCheck(folder, new, diff, clear if diff else [],
                       io.as_json(old) != io.as_json(new) or not folder.readable("config"))
  found = [r for r in list(clear) + list(results) if not callable(r) and _present(folder, r)] if folder.isdir() else []
  if (found or held) and not overwrite:
    shown = ", ".join(sorted({_rel(f) for f in found})) or "finished runs"
    raise WorkdirError(f"{folder} holds results ({shown}) but no {layout.name('config')}, so nothing says which config "
                       "made them. Use another --workdir, or pass --overwrite to discard them.")
  return ConfigCheck(folder, new, [], sorted({_rel(f) for f in found}), True)


def prepare(folder: RunFolder, config: Union[ml_collections.ConfigDict, Dict[str, Any]], overwrite: bool = False,
            **kwargs: Any) -> None:
  """`check_config(...).apply()`: writes config.json, or refuses the folder."""
  check_config(folder, config, overwrite, **kwargs).apply()


def made_by(folder: RunFolder) -> Optional[str]:
  """The digest of what made `folder` (its made_by.json), or None when it records none."""
  try:
    return folder.read("made_by").get("digest")
  except (OSError, io.DamagedFileError, AttributeError):
    return None


def claim(folder: RunFolder, record: Dict[str, Any], what: str) -> str:
  """Makes `folder` the folder of the result `record` describes (everything that decides it:
  settings, digests of its inputs) and returns the record's digest.

  A folder that holds files made by something else (another record, or none recorded) is
  discarded first (what its manifest lists), with a warning naming the differences: its
  files are recomputed, never used."""
  record_hash = record_digest(record)
  if made_by(folder) == record_hash:
    return record_hash
  folder.check_own(what)
  if folder.isdir() and set(os.listdir(folder.path)) - set(manifest.OWN):
    try:
      old = folder.read("made_by")
      what_changed = "; ".join(differences(old, {"digest": record_hash, **io.as_json(record)})[:6])
    except (OSError, io.DamagedFileError):
      what_changed = f"it has no readable {layout.name('made_by')}"
    logging.warning("%s holds a %s made by something else (%s): discarding it and computing it again",
                    folder, what, what_changed)
    folder.discard()
  folder.open(what)
  folder.write("made_by", {"digest": record_hash, **record})
  return record_hash


def kind_of(folder: RunFolder) -> str:
  """What made a work directory, from its config: 'unlearning', 'method' (one run of an
  unlearning work directory), 'study', 'continual', 'scores' (memorization or proxies),
  'training', or 'none' (no readable config)."""
  try:
    config = config_of(folder)
  except (OSError, io.DamagedFileError):
    config = None
  if not isinstance(config, dict):
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
  if os.path.isdir(folder.folder("methods")) or folder.exists("forget_set"):
    return "unlearning"
  return "training"
