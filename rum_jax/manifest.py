"""What rum-jax wrote in a run folder: its manifest, `<folder>/.manifest.json`.

A run folder (a work directory, or a run inside one: methods/<name>, retrain/<key>, original,
memorization, a bank) holds a manifest from the moment rum-jax opens it
(`rum_jax.runfolder.RunFolder`). The one atomic writer (`rum_jax.io`) records every file it
writes in the manifest of the nearest run folder above it, with two sha256 digests: of the
file's bytes (what is checked when a result is read back: a file replaced or edited since is
refused) and of its contents (for npz files the arrays, whose zip headers change each time
they are written: two writes of the same predictions have one content digest). Folders other
programs write into (orbax checkpoints, TensorBoard runs) are recorded as whole trees.

So the manifest says, of every path in a run folder, whether rum-jax wrote it: `--overwrite`
deletes only that, and a folder holding anything else is not rum-jax's to clean.

The entry of a file is recorded BEFORE the file is renamed into place, keeping the digest of
the version it replaces as `previous`, and settled after: a run killed in between leaves a
file that either digest accepts, never an unlisted file.
"""
import hashlib
import json
import os
import tempfile
from typing import Any, Dict, Iterable, List, Optional

NAME = ".manifest.json"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"  # the atomic writer's temporary files
# What lies in a run folder besides what its manifest lists: bookkeeping of the folder itself.
OWN = (NAME, LOCK)


class DamagedManifestError(ValueError):
  """A manifest that cannot be parsed; the message says how to rebuild the folder."""


def sha(data: bytes) -> str:
  """sha256 (16 hex digits) of bytes."""
  return hashlib.sha256(data).hexdigest()[:16]


def file_sha(path: str) -> str:
  """sha256 (16 hex digits) of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()[:16]


def path_of(folder: str) -> str:
  return os.path.join(folder, NAME)


def has(folder: str) -> bool:
  """Whether `folder` is a run folder (holds a manifest)."""
  return os.path.isfile(path_of(folder))


def find(directory: str) -> Optional[str]:
  """The nearest run folder at or above `directory` (absolute), or None."""
  directory = os.path.abspath(directory)
  while True:
    if has(directory):
      return directory
    parent = os.path.dirname(directory)
    if parent == directory:
      return None
    directory = parent


def empty() -> Dict[str, Any]:
  return {"format": 1, "files": {}, "trees": []}


def load(folder: str) -> Dict[str, Any]:
  """The manifest of `folder` (an empty one when it has none)."""
  path = path_of(folder)
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    return empty()
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise DamagedManifestError(
        f"{path} is damaged ({err}): rum-jax cannot tell which files of {folder} it wrote. Move the results you "
        f"want to keep out of {folder} and run again in an empty --workdir") from None
  if not isinstance(data, dict) or "files" not in data:
    raise DamagedManifestError(f"{path} is no manifest of rum-jax; move {folder} aside and use another --workdir")
  data.setdefault("trees", [])
  return data


def save(folder: str, data: Dict[str, Any]) -> None:
  """Writes the manifest atomically (a temporary file renamed into place)."""
  text = json.dumps(data, indent=1, sort_keys=True).encode()
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX + NAME)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(text)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path_of(folder))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def create(folder: str) -> None:
  """Makes `folder` a run folder (an empty manifest) unless it is one."""
  if not has(folder):
    save(folder, empty())


def relative(folder: str, path: str) -> str:
  return os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")


def in_tree(data: Dict[str, Any], rel: str) -> bool:
  """Whether `rel` lies in a tree the manifest records."""
  return any(rel == t or rel.startswith(t + "/") for t in data["trees"])


def begin(path: str, new_sha: str, content: Optional[str]) -> Optional[str]:
  """Records `path` (about to be written with these digests) in its run folder's manifest;
  returns the folder when the entry keeps a `previous` digest to `settle` once the file is in
  place (else None: nothing to settle, or no run folder above it)."""
  folder = find(os.path.dirname(os.path.abspath(path)))
  if folder is None:
    return None
  data = load(folder)
  rel = relative(folder, path)
  if in_tree(data, rel):
    return None
  entry = {"sha": new_sha, "content": content or new_sha}
  old = data["files"].get(rel)
  if old is not None and old.get("sha") != new_sha and os.path.exists(path):
    entry["previous"] = old["sha"]
  if old != entry:
    data["files"][rel] = entry
    save(folder, data)
  return folder if "previous" in entry else None


def settle(folder: Optional[str], path: str) -> None:
  """Drops the `previous` digest of an entry once its file is in place."""
  if folder is None:
    return
  data = load(folder)
  entry = data["files"].get(relative(folder, path))
  if entry is not None and "previous" in entry:
    del entry["previous"]
    save(folder, data)


def record_tree(directory: str) -> None:
  """Records a folder that another program fills (checkpoints, TensorBoard) as a whole."""
  folder = find(os.path.dirname(os.path.abspath(directory)))
  if folder is None:
    return
  data = load(folder)
  rel = relative(folder, directory)
  if not in_tree(data, rel):
    data["trees"] = sorted(set(data["trees"]) - {t for t in data["trees"] if t.startswith(rel + "/")} | {rel})
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith(rel + "/")}
    save(folder, data)


def record_file(path: str) -> None:
  """Records a file another program appends to (a log) without a digest: it changes as it grows."""
  folder = find(os.path.dirname(os.path.abspath(path)))
  if folder is None:
    return
  data = load(folder)
  rel = relative(folder, path)
  if not in_tree(data, rel) and rel not in data["files"]:
    data["files"][rel] = {"sha": None, "content": None}
    save(folder, data)


def drop(folder: str, rels: Iterable[str]) -> None:
  """Removes the entries of `rels` (files, or everything under a folder) from the manifest."""
  data = load(folder)
  rels = list(rels)
  under = lambda k: any(k == r or k.startswith(r + "/") for r in rels)  # noqa: E731
  files = {k: v for k, v in data["files"].items() if not under(k)}
  trees = [t for t in data["trees"] if not under(t)]
  if files != data["files"] or trees != data["trees"]:
    data["files"], data["trees"] = files, trees
    save(folder, data)


def listed(data: Dict[str, Any], rel: str) -> bool:
  """Whether the manifest lists `rel`, a file or tree, or a folder that holds listed paths."""
  if rel in data["files"] or in_tree(data, rel):
    return True
  prefix = rel + "/"
  return any(k.startswith(prefix) for k in data["files"]) or any(t.startswith(prefix) for t in data["trees"])


def foreign(folder: str, limit: int = 3) -> List[str]:
  """Up to `limit` paths under `folder` (relative) that rum-jax did not write: not in the
  manifest, not in a nested run folder (which answers for itself), not bookkeeping. A folder
  without a manifest is foreign unless everything in it is a run folder of rum-jax."""
  data = load(folder)
  out: List[str] = []
  for directory, dirs, files in os.walk(folder):
    rel_dir = relative(folder, directory)
    rel_dir = "" if rel_dir == "." else rel_dir + "/"
    for name in sorted(files):
      rel = rel_dir + name
      if (rel_dir == "" and name in OWN) or name.startswith(TMP_PREFIX) or listed(data, rel):
        continue
      out.append(rel)
    keep = []
    for name in sorted(dirs):
      rel = rel_dir + name
      if has(os.path.join(directory, name)) or in_tree(data, rel):
        continue  # a run folder of its own, or a tree another program fills
      if not listed(data, rel) and not _holds_run_folder(os.path.join(directory, name)):
        out.append(rel + "/")
        continue
      keep.append(name)
    dirs[:] = keep
    if len(out) >= limit:
      break
  return out[:limit]


def _holds_run_folder(directory: str) -> bool:
  """Whether `directory` holds a run folder at any depth (e.g. methods/ of a work directory,
  sets/ of a study), or nothing at all; its other contents are then looked at one by one."""
  names = os.listdir(directory)
  return not names or any(os.path.isdir(os.path.join(directory, n)) and
                          (has(os.path.join(directory, n)) or _holds_run_folder(os.path.join(directory, n)))
                          for n in names)
