"""Process set-up for the command lines: CPU devices and multi-host clusters.

These change the process, so only the command lines' `main` calls them (`initialize`), before
any JAX computation; importing rum_jax changes nothing. A library user who wants the same
set-up calls `rum_jax.runtime.initialize()` right after starting Python.
"""
import logging as std_logging
import os
import sys
import warnings
from typing import Any, Callable

import jax
from absl import logging

from rum_jax import provenance

_COORDINATOR_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def use_cpu_cores() -> None:
  """One XLA CPU device per core, unless the user chose a device count.

  On a CPU, XLA runs one small program on one core at a time; one device per core lets the
  seed axis (shard_map over devices) keep every core busy: 1.8x faster memorization on 2
  cores (bench/RESULTS.md). Results do not depend on the device count
  (tests/test_training.py). GPUs and TPUs are unaffected.
  """
  chosen = ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or "JAX_NUM_CPU_DEVICES" in os.environ or jax.config.jax_num_cpu_devices != -1)
  if chosen:
    return
  try:
    jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
  except RuntimeError:  # JAX already started (e.g. called twice in one process): keep its devices
    logging.warning("JAX had already started; the CPU device count stays as it is")


def initialize_distributed() -> None:
  """Calls jax.distributed.initialize() when the environment describes a multi-host job.

  Set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every
  host (or run under SLURM / Open MPI, which JAX detects itself when RUM_JAX_DISTRIBUTED=1).
  Every process then builds the same host arrays and takes its part of the seeds.
  """
  if jax.distributed.is_initialized():
    return
  if any(v in os.environ for v in _COORDINATOR_VARS):
    jax.distributed.initialize(
        coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ["COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
  elif os.environ.get("RUM_JAX_DISTRIBUTED") == "1":
    jax.distributed.initialize()  # cluster auto-detection (SLURM, Open MPI, ...)


def use_compilation_cache() -> None:
  """XLA's compiled programs kept on disk (~/.cache/rum_jax/xla, or $XDG_CACHE_HOME), so a
  rerun, a resumed run or a study's next forget set skips compilations done before; unless the
  user set a cache (JAX_COMPILATION_CACHE_DIR) or opted out (RUM_JAX_NO_COMPILATION_CACHE=1)."""
  if os.environ.get("RUM_JAX_NO_COMPILATION_CACHE") == "1" or "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  jax.config.update("jax_compilation_cache_dir", os.path.join(root, "rum_jax", "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def show_progress(verbosity: str = "info") -> None:
  """Prints rum-jax's progress (epochs, losses, ETAs, what each run does) to stderr, as the
  command lines do; a notebook shows it under the cell. Outside `app.run` absl logs only
  warnings, so a Python user calls this once (`verbosity="warning"` silences it again)."""
  logging.use_absl_handler()
  logging.set_verbosity(verbosity)


def initialize() -> None:
  """What every command line does first: CPU devices, the compilation cache, then the cluster."""
  use_cpu_cores()
  use_compilation_cache()
  initialize_distributed()


# Errors that are the user's to fix (a config, a work directory, a file, the disk): the command
# line prints their message, which names the problem and the fix, as one line; `-v 1` (absl's
# verbosity) shows the traceback instead. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, ImportError, RuntimeError)


# Loggers of other libraries: JAX logs at INFO what it tries (e.g. "Unable to initialize backend
# 'tpu'" on every machine without one), and at DEBUG its compilation cache and dispatch;
# matplotlib its font search, asyncio and PIL their internals. A command line shows their warnings only.
_CHATTY_LIBRARIES = ("jax", "matplotlib", "asyncio", "PIL")


def quiet_libraries() -> None:
  """Other libraries' loggers show warnings and errors only (absl's `-v 1` asks for rum-jax's
  per-epoch lines and tracebacks, not theirs)."""
  for name in _CHATTY_LIBRARIES:
    library = std_logging.getLogger(name)
    if library.getEffectiveLevel() < std_logging.WARNING:
      library.setLevel(std_logging.WARNING)


class _PlainFormatter(std_logging.Formatter):
  """A progress line as it is ('[retrain] 30 epochs in 0m06s: ...'); a warning or an error
  prefixed by its level, one line each, without absl's date, thread and source location."""

  def format(self, record: std_logging.LogRecord) -> str:
    message = record.getMessage()
    if record.levelno >= std_logging.WARNING:
      return f"{std_logging.getLevelName(record.levelno).lower()}: {message}"
    return message


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
  """warnings.showwarning: a warning as one log line (not its Python source line)."""
  del category, filename, lineno, file, line
  logging.warning("%s", message)


def plain_output() -> None:
  """What a command line prints: its progress lines plainly and each warning as one line
  (`warning: <message>`); with `-v 1` absl's full lines (time, source) and Python's warnings."""
  if logging.level_debug():
    return
  logging.get_absl_handler().setFormatter(_PlainFormatter())
  warnings.showwarning = _warning_line


def main(command: Callable[[], Any]) -> Any:
  """What a command line's `main` does: `initialize()`, then `command()`, errors as one line."""
  provenance.record_command(sys.argv)
  quiet_libraries()
  plain_output()
  initialize()
  try:
    return command()
  except USER_ERRORS as err:
    if logging.level_debug() or not _is_users(err):
      raise
    message = " ".join(str(err).split())  # one line, whatever the message's layout
    sys.stderr.write(f"error: {message} [-v 1 shows the traceback]\n")
    sys.exit(1)


def _is_users(err: BaseException) -> bool:
  """A RuntimeError is the user's only when rum-jax raised it (a busy or damaged work directory),
  not when JAX or XLA did (those are RuntimeError subclasses and keep their tracebacks)."""
  if not isinstance(err, RuntimeError):
    return True
  return type(err).__module__.startswith("rum_jax") or type(err) is RuntimeError
