"""A command's hold on its work directory: made (or refused) before anything is written,
locked with every folder below it while the command runs, and left as it was when the run is
refused or fails before its first result."""
import contextlib
import os
import shutil
from typing import Dict, Iterable, Iterator, Optional, Sequence, Set

from rum_jax import io, manifest
from rum_jax.runfolder import layout, locks
from rum_jax.runfolder.folder import RunFolder, WorkdirError


def _not_writable(workdir: str, folder: str, hint: str = "") -> PermissionError:
  return PermissionError(f"--workdir={workdir} cannot be written: you may not write in {folder} (permission "
                         f"denied); {hint or 'choose a folder you can write to (e.g. --workdir=runs/<name>)'}, or "
                         f"make it writable (chmod u+w {folder})")


def writable(workdir: str) -> bool:
  """Whether this user may write in `workdir` (or create it)."""
  parent = workdir
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent.rstrip(os.sep))
  return os.access(parent or os.getcwd(), os.W_OK)


def make(workdir: str, hint: str = "") -> None:
  """Creates the work directory (and its parents); a WorkdirError or PermissionError that says
  what to do when it is a file or cannot be written (`hint`: the first fix offered)."""
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
    raise _not_writable(workdir, parent or os.getcwd(), hint) from None
  if io.is_writer() and not os.access(workdir, os.W_OK):
    raise _not_writable(workdir, workdir, hint)


def contents(workdir: str) -> Set[str]:
  """Every file and folder under `workdir` (empty when it does not exist)."""
  out = set()
  for folder, dirs, files in os.walk(workdir):
    out |= {os.path.join(folder, n) for n in dirs + files}
  return out


def _sizes(workdir: str, names: Iterable[str]) -> Dict[str, Optional[int]]:
  out = {}
  for name in names:
    path = os.path.join(workdir, name)
    out[path] = os.path.getsize(path) if os.path.isfile(path) else None
  return out


def _manifests(workdir: str) -> Dict[str, bytes]:
  """The bytes of every manifest under `workdir`."""
  out = {}
  for folder, _, files in os.walk(workdir):
    if manifest.NAME in files:
      with open(os.path.join(folder, manifest.NAME), "rb") as f:
        out[folder] = f.read()
  return out


# Files whose only presence in a folder says nothing was computed there yet.
_UNUSED = (layout.name("config"), layout.name("made_by")) + manifest.OWN


def _undo(workdir: str, before: Set[str], sizes: Dict[str, Optional[int]], manifests: Dict[str, bytes]) -> None:
  """What a refused run wrote, undone: every path it created removed, the lines it appended to
  the log and the scalars cut off, the manifests as they were (the work directory's lock,
  still held, stays)."""
  for path in sorted(contents(workdir) - before, key=len, reverse=True):
    if path == os.path.join(workdir, manifest.LOCK):
      continue
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)
  for path, size in sizes.items():
    if size is not None and os.path.isfile(path) and os.path.getsize(path) > size:
      with open(path, "r+b") as f:
        f.truncate(size)
  for folder, data in manifests.items():
    if os.path.isdir(folder):
      with open(os.path.join(folder, manifest.NAME), "wb") as f:
        f.write(data)


def _roll_back(workdir: str, before: Set[str], bookkeeping: Sequence[str]) -> None:
  """What a run that failed before its first result leaves behind, removed: folders it created
  that hold only a config (and the bookkeeping of the work directory, when that is all that is
  new there), so no config refuses the corrected command. Nothing that was there before is
  touched."""
  for folder, _, _ in os.walk(workdir, topdown=False):  # children first: a parent may empty after them
    new = [n for n in os.listdir(folder) if os.path.join(folder, n) not in before]
    extra = [n for n in new if folder == workdir and n in tuple(bookkeeping)]
    if new and set(new) - set(extra) <= set(_UNUSED) and (extra or set(new) - {manifest.LOCK}):
      for name in new:
        if name == manifest.LOCK and folder == workdir:
          continue  # still held
        path = os.path.join(folder, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
      if manifest.has(folder):
        manifest.drop(folder, [n for n in new if n not in manifest.OWN])
    if folder != workdir and folder not in before and set(os.listdir(folder)) <= {manifest.LOCK}:
      shutil.rmtree(folder)


@contextlib.contextmanager
def session(workdir: str, bookkeeping: Sequence[str] = (), hint: str = "") -> Iterator[RunFolder]:
  """The run folder of a command: refused before anything is created when it holds files
  rum-jax did not write; created; held (with every folder below it, `locks.hold`) while the
  block runs. A refused run (WorkdirError: every refusal is one) changes nothing; a run that
  fails before its first result leaves no config that would refuse the corrected command, and
  a new work directory that holds nothing is removed."""
  workdir = os.path.abspath(workdir)
  folder = RunFolder(workdir)
  folder.check_own()
  existed = os.path.isdir(workdir)
  make(workdir, hint)
  try:
    with locks.hold(workdir):
      before, sizes, manifests = contents(workdir), _sizes(workdir, bookkeeping), _manifests(workdir)
      try:
        folder.open()
        yield folder
      except (WorkdirError, locks.WorkdirBusyError):
        if io.is_writer():
          _undo(workdir, before, sizes, manifests)
        raise
      except Exception:
        if io.is_writer():
          _roll_back(workdir, before, bookkeeping)
        raise
  except Exception:
    if io.is_writer() and not existed and os.path.isdir(workdir) and \
        set(os.listdir(workdir)) <= set(manifest.OWN):
      shutil.rmtree(workdir)
    raise
