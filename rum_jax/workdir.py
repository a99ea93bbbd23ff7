"""The work-directory functions of earlier versions, kept for the two pipelines that have not
adopted `rum_jax.runfolder` yet (pipelines/continual.py and pipelines/study/); each is one
call of a run folder. To be removed once they use RunFolder themselves."""
import os
from typing import Any, Iterable, Optional, Sequence

import ml_collections

from rum_jax import io
from rum_jax.runfolder import (RunFolder, WorkdirBusyError, WorkdirError, differences, digest, flatten, layout,
                               prepare as _prepare)

__all__ = ["CONFIG_FILE", "METRICS_FILE", "SCORES_FILE", "WorkdirBusyError", "WorkdirError", "differences", "digest",
           "flatten", "is_finished", "method_dir", "original_dir", "prepare", "readable", "resolve"]

CONFIG_FILE = layout.name("config")
METRICS_FILE = layout.name("metrics")
SCORES_FILE = layout.name("scores")


def original_dir(workdir: str) -> str:
  return RunFolder(workdir).original().path


def method_dir(workdir: str, name: str) -> str:
  return RunFolder(workdir).method(name).path


def resolve(workdir: str, path: str) -> str:
  return RunFolder(workdir).resolve(path)


def readable(path: str) -> bool:
  """Whether a result file is there and parses (npz: every array loads; json: valid JSON)."""
  try:
    if path.endswith(".npz"):
      io.read_npz(path)
    elif path.endswith(".json"):
      io.read_json(path)
    return os.path.exists(path)
  except Exception:  # pylint: disable=broad-except  (missing, truncated, not a zip: all unreadable)
    return False


def is_finished(run_dir: str, also: Sequence[str] = ()) -> bool:
  """Whether a run is done: its metrics are readable, and so is every file of `also` (paths
  relative to run_dir)."""
  return RunFolder(run_dir).finished() and all(readable(os.path.join(run_dir, f)) for f in also)


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool = False,
            clear: Iterable[str] = ("checkpoints",), ignore: Iterable[str] = (),
            sections: Optional[Iterable[str]] = None, outputs: Iterable[str] = ()) -> Any:
  """`runfolder.prepare` with the results a run of `outputs` (or its metrics) holds."""
  return _prepare(RunFolder(workdir), config, overwrite, clear=tuple(clear), ignore=ignore, sections=sections,
                  results=tuple(outputs) + ("metrics",))
