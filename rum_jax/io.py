"""Result files written atomically (temp file + rename), so a crash never leaves half a file."""
import contextlib
import csv
import io
import json
import os
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np


def is_writer() -> bool:
  """Only process 0 of a multi-host run writes result files (all hosts hold the same results).

  A multi-host run joins its cluster in the command line's main (`rum_jax.runtime`), before
  this is first asked.
  """
  import jax
  return jax.process_index() == 0


def _atomic_write_bytes(path: str, data: bytes) -> None:
  if not is_writer():
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
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


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` (dicts/lists/arrays/numpy scalars) as indented JSON, atomically."""
  _atomic_write_bytes(path, json.dumps(_to_jsonable(obj), indent=2, sort_keys=True).encode())


def read_json(path: str) -> Any:
  """Parses a JSON file written by `write_json`."""
  with open(path) as f:
    return json.load(f)


def write_csv(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
  """Writes a list of flat dicts as CSV (union of keys, in first-seen order), atomically."""
  rows = [dict(_to_jsonable(r)) for r in rows]
  fields: list = []
  for r in rows:
    fields.extend(k for k in r if k not in fields)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=fields)
  writer.writeheader()
  writer.writerows(rows)
  _atomic_write_bytes(path, buf.getvalue().encode())


def write_npz(path: str, **arrays: Any) -> None:
  """Saves arrays with np.savez_compressed, atomically."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  _atomic_write_bytes(path, buf.getvalue())


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
