"""Locks of run folders: a run holds its folder, and with it every folder below it.

A run takes an advisory lock (fcntl.flock) on `<folder>/.lock`: exclusive to write the folder,
shared to read it (an unlearning run reading the original models of another work directory).
Holding a folder covers everything below it, so a run must also find no other process
holding a folder above it (`train.py --workdir=W/memorization` while `unlearn.py --workdir=W`
computes scores there) or below it (the other way round). Each run takes its own lock first
and looks at the others' after, so of two runs that start at once at least one is refused.

Locks this process holds are counted once (flock treats two descriptors of one file as two
holders): a pipeline may open a folder below one its command holds.
"""
import contextlib
import fcntl
import os
from typing import Dict, Iterator, List, Tuple

from rum_jax import io, manifest

# Folders this process holds: path -> (file descriptor, shared).
_HELD: Dict[str, Tuple[int, bool]] = {}


class WorkdirBusyError(RuntimeError):
  """Another run holds the folder, or a folder above or below it."""


def _busy(folder: str, holder: str) -> WorkdirBusyError:
  where = "" if holder == folder else (f" (it holds {holder}, which contains it)" if folder.startswith(holder + os.sep)
                                       else f" (it holds {holder}, inside it)")
  return WorkdirBusyError(f"another run is using {folder}{where}; wait for it to finish or choose another --workdir")


def _try(path: str, shared: bool) -> bool:
  """Whether the lock file `path` could be taken now by this process (taken and released)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return True
  try:
    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True
  except BlockingIOError:
    return False
  finally:
    os.close(fd)


def _covered(folder: str) -> bool:
  """Whether this process holds `folder` or a folder above it exclusively."""
  return any(not shared and (folder == held or folder.startswith(held + os.sep))
             for held, (_, shared) in _HELD.items())


def _others(folder: str, shared: bool) -> List[str]:
  """Folders above or below `folder` that another process holds in a conflicting way."""
  out = []
  parent = os.path.dirname(folder)
  while parent != os.path.dirname(parent):
    lock = os.path.join(parent, manifest.LOCK)
    if parent not in _HELD and os.path.exists(lock) and not _try(lock, shared):
      out.append(parent)
    parent = os.path.dirname(parent)
  for directory, dirs, files in os.walk(folder):
    if directory != folder and manifest.LOCK in files and directory not in _HELD and \
        not _try(os.path.join(directory, manifest.LOCK), shared):
      out.append(directory)
    dirs[:] = [d for d in dirs if d != "checkpoints"]  # orbax's folders hold no run folder
  return out


@contextlib.contextmanager
def hold(folder: str, shared: bool = False) -> Iterator[None]:
  """Holds `folder` (an existing folder) while the block runs; WorkdirBusyError when another run
  holds it or a folder above or below it. In a multi-host run only process 0 locks."""
  folder = os.path.abspath(folder)
  if not io.is_writer() or _covered(folder) or (shared and folder in _HELD):
    yield
    return
  if folder in _HELD:  # held here to read, asked to write: never needed, and it could deadlock
    raise _busy(folder, folder)
  path = os.path.join(folder, manifest.LOCK)
  others = _others(folder, shared) + ([folder] if not _try(path, shared) else [])
  if others:  # looked at first too, so a refused run creates no lock file
    raise _busy(folder, others[0])
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if not shared or not os.path.exists(path) else \
        os.open(path, os.O_RDONLY)
  except PermissionError:
    if not shared:
      raise
    yield  # a folder this user may not write: nobody here can change it while it is read
    return
  try:
    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise _busy(folder, folder) from None
  _HELD[folder] = (fd, shared)
  try:
    others = _others(folder, shared)
    if others:
      raise _busy(folder, others[0])
    yield
  finally:
    del _HELD[folder]
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
