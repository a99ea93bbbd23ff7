"""Result files written atomically (temp file + rename), so a crash never leaves half a file.

Files get the usual permissions (0666 less the umask, as `open` gives), so colleagues on a
shared file system can read them; a full disk is reported first, with the file's path. Every
file written here is recorded, with the digests of its bytes and contents, in the manifest of
the run folder it lies in (`rum_jax.manifest`), before it is renamed into place.
"""
import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

from rum_jax import manifest


class DiskFullError(OSError):
  """No space left on the device while writing a result; the previous file is intact."""


class DamagedFileError(ValueError):
  """A result or config file cannot be parsed (truncated, edited by hand, or another format)."""


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def disk_full(path: str, err: OSError) -> Optional[DiskFullError]:
  """A DiskFullError naming `path` if `err` is ENOSPC, else None."""
  if err.errno != errno.ENOSPC:
    return None
  return DiskFullError(errno.ENOSPC, f"no space left on the device while writing {path}; free some space "
                       f"(results written before are intact) and run the same command again to resume")


def is_writer() -> bool:
  """Only process 0 of a multi-host run writes result files (all hosts hold the same results).

  A multi-host run joins its cluster in the command line's main (`rum_jax.runtime`), before
  this is first asked.
  """
  import jax
  return jax.process_index() == 0


def _atomic_write_bytes(path: str, data: bytes, content: Optional[str] = None) -> None:
  """Writes `data` to `path` atomically; `content`: the digest of what the bytes hold (npz:
  the arrays), recorded in the run folder's manifest beside the bytes' own."""
  if not is_writer():
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=manifest.TMP_PREFIX + os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
    folder = manifest.begin(path, manifest.sha(data), content)
    os.replace(tmp, path)
    manifest.settle(folder, path)
  except BaseException as err:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    full = disk_full(path, err) if isinstance(err, OSError) else None
    if full is not None:
      raise full from None
    raise


def _to_jsonable(obj: Any) -> Any:
  if isinstance(obj, Mapping):
    return {str(k): _to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray) or hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
    return _to_jsonable(np.asarray(obj).tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float) and not np.isfinite(obj):
    return None  # strict JSON has no NaN/inf: an undefined metric is null
  return obj


def as_json(obj: Any) -> Any:
  """`obj` as `read_json` would give it back after `write_json` (to compare with a saved record)."""
  return json.loads(json.dumps(_to_jsonable(obj)))


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` (dicts/lists/arrays/numpy scalars) as indented JSON, atomically."""
  _atomic_write_bytes(path, json.dumps(_to_jsonable(obj), indent=2, sort_keys=True).encode())


def read_json(path: str) -> Any:
  """Parses a JSON file written by `write_json`; a damaged one raises DamagedFileError naming it."""
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as err:
    raise DamagedFileError(f"{path} is damaged (not valid JSON: {err}); delete it (the run that wrote "
                           f"it will write it again) or restore it from a copy") from None


def write_csv(path: str, rows: Iterable[Mapping[str, Any]], fields: Optional[Iterable[str]] = None) -> None:
  """Writes a list of flat dicts as CSV, atomically: columns `fields` first (a fixed order),
  then any other keys in first-seen order."""
  rows = [dict(_to_jsonable(r)) for r in rows]
  fields = [f for f in (fields or ()) if any(f in r for r in rows)]
  for r in rows:
    fields.extend(k for k in r if k not in fields)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=fields)
  writer.writeheader()
  writer.writerows(rows)
  _atomic_write_bytes(path, buf.getvalue().encode())


def arrays_digest(arrays: Mapping[str, Any]) -> str:
  """sha256 (16 hex digits) of named arrays' contents (names, dtypes, shapes, bytes): the same
  for two writes of the same arrays, whatever the zip headers of their files."""
  h = hashlib.sha256()
  for key in sorted(arrays):
    a = np.ascontiguousarray(np.asarray(arrays[key]))
    h.update(f"{key}:{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def write_npz(path: str, **arrays: Any) -> None:
  """Saves arrays with np.savez_compressed, atomically."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  _atomic_write_bytes(path, buf.getvalue(), arrays_digest(arrays))


def read_npz(path: str) -> Dict[str, np.ndarray]:
  """Every array of an npz file, loaded."""
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def remove(path: str) -> None:
  """Deletes a file or folder rum-jax wrote, and its entries in its run folder's manifest."""
  if not is_writer() or not os.path.lexists(path):
    return
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  else:
    os.remove(path)
  folder = manifest.find(os.path.dirname(os.path.abspath(path)))
  if folder is not None and os.path.abspath(path) != folder:
    manifest.drop(folder, [manifest.relative(folder, path)])


def write_text(path: str, text: str) -> None:
  """Writes text (markdown tables, reports) atomically."""
  _atomic_write_bytes(path, text.encode())


def pyplot() -> Any:
  """matplotlib.pyplot on the non-interactive Agg backend (figures are only written to files)."""
  from rum_jax.optional import require
  matplotlib = require("matplotlib", "writing figures (PNG)")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig: Any, path: str, dpi: int = 100) -> None:
  """Saves a matplotlib figure as PNG atomically (process 0 only) and closes it."""
  plt = pyplot()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  _atomic_write_bytes(path, buf.getvalue())
