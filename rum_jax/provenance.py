"""What produced a result: the command line as typed and the machine it ran on.

The command lines record themselves (`record_command`, from `runtime.main`); results that
name their command (a study's report) read it back, or a reconstruction when a library
call made them.
"""
import os
import platform
import shlex
from typing import List, Optional

VERSION = "0.1.0"  # rum_jax.__version__; recorded in every result record
_COMMAND: Optional[List[str]] = None


def record_command(argv: List[str]) -> None:
  """Remembers the command line of this process (argv as the shell passed it)."""
  global _COMMAND
  _COMMAND = list(argv)


def command(fallback: str) -> str:
  """'python <argv...>' as typed, or `fallback` when no command line was recorded."""
  if _COMMAND is None:
    return fallback
  return " ".join(["python"] + [shlex.quote(a) for a in _COMMAND])


def machine() -> str:
  """E.g. '2 CPU cores (AMD EPYC 7B13), jax 0.10.2 cpu': cores, processor, JAX and its device."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  device = jax.devices()[0]
  kind = device.platform if device.platform == "cpu" else f"{len(jax.devices())} x {device.device_kind}"
  return f"{os.cpu_count()} CPU cores ({cpu}), jax {jax.__version__} {kind}"
