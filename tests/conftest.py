"""Test session setup: simulate 4 devices on the CPU so sharding is exercised for real."""
import os
import subprocess
import sys
import tempfile
import time
import warnings

import pytest

# Must happen before JAX initialises its backend.
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
  os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.filterwarnings("ignore", message=".*jaxopt.*", category=DeprecationWarning)

# XLA compilations are most of the suite's time and the same programs recur (the kill -9 tests
# run one command three times, in subprocesses that inherit this environment): share them
# through JAX's persistent compilation cache, keyed by the program and the JAX version.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"rum_jax_tests_xla_cache_{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from rum_jax.runfolder import hold
with hold({path!r}):
  open({ready!r}, "w").close()
  time.sleep(120)
"""


@pytest.fixture
def held_elsewhere(tmp_path_factory):
  """hold(path): another process holds the run folder `path` (`runfolder.hold`) until the test ends."""
  procs = []

  def hold(path):
    ready = str(tmp_path_factory.mktemp("held") / "ready")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs.append(subprocess.Popen([sys.executable, "-c", _HOLDER.format(root=root, path=str(path), ready=ready)],
                                  env={**os.environ, "JAX_PLATFORMS": "cpu"}))
    for _ in range(1200):
      if os.path.exists(ready):
        return procs[-1]
      time.sleep(0.05)
    raise AssertionError("the holding process did not start")
  yield hold
  for proc in procs:
    proc.kill()
    proc.wait()


def _tree_digest(path) -> str:
  """sha256 of every path under `path` and every file's bytes: equal iff nothing changed there."""
  import hashlib
  h = hashlib.sha256()
  for directory, dirs, files in sorted(os.walk(str(path))):
    dirs.sort()
    for name in sorted(dirs) + sorted(files):
      full = os.path.join(directory, name)
      h.update(os.path.relpath(full, str(path)).encode())
      if os.path.isfile(full):
        with open(full, "rb") as f:
          h.update(f.read())
  return h.hexdigest()


@pytest.fixture
def tree_digest():
  """tree_digest(path): a digest of the whole tree under `path` (what a refused run must not change)."""
  return _tree_digest
