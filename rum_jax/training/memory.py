"""How many models fit in one program: XLA's memory analysis against the device's memory.

A program that trains k models per device needs, per device, about B(k) = F + k M bytes: F
for what every model shares (the replicated data set, the program's code, fixed
workspace) and M per model (its parameters, optimizer state, activations and gradients).
`models_that_fit` measures B at two sizes from the COMPILED programs
(`jax.jit(...).lower(...).compile().memory_analysis()`: arguments + outputs + temporaries
- donated buffers + code), solves for F and M, and takes the largest k with
F + k M <= (1 - headroom) x the device's free memory (`free_bytes`). The headroom covers
what the analysis does not see: the evaluation program (which stores no activations for a
backward pass, so needs less than training at the usual eval batch sizes), host-to-device
copies of the next plan, allocator fragmentation, and a B(k) that grows slightly faster
than linearly.
"""
import dataclasses
import os
from typing import Any, Callable, Optional, Tuple

import jax

HEADROOM = 0.2  # fraction of the device's free memory left unused (module docstring)


@dataclasses.dataclass(frozen=True)
class MemoryFit:
  """The chosen number of models and what it came from (bytes are per device)."""
  models: int            # models per program, all devices together
  per_device: int        # models per device
  per_model_bytes: int   # M
  fixed_bytes: int       # F
  budget_bytes: int      # (1 - headroom) x free
  free_bytes: int
  source: str            # where `free_bytes` came from

  def describe(self) -> str:
    return (f"{self.models} models per program ({self.per_device} per device): each needs "
            f"{size(self.per_model_bytes)}, shared {size(self.fixed_bytes)}, of "
            f"{size(self.budget_bytes)} usable ({size(self.free_bytes)} free by "
            f"{self.source}, {HEADROOM:.0%} left as headroom)")


def size(num_bytes: float) -> str:
  """Bytes in the largest binary unit that keeps the number >= 1 (KiB .. GiB)."""
  for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
    if num_bytes >= scale:
      return f"{num_bytes / scale:.2f} {unit}"
  return f"{num_bytes / 2 ** 10:.1f} KiB"


def program_bytes(compiled: Any) -> Optional[int]:
  """Device bytes one run of a compiled program holds at its peak, from XLA's analysis.

  arguments + outputs + temporaries - aliased (donated) buffers + generated code, per device
  for a program partitioned over devices; None if the backend gives no analysis.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
             - stats.alias_size_in_bytes + stats.generated_code_size_in_bytes)


def host_available_bytes() -> int:
  """The host's available memory (MemAvailable of /proc/meminfo, else free physical pages)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_bytes(device: Any) -> Tuple[int, str]:
  """(free bytes for programs on `device`, where the number came from).

  Accelerators report their allocator's limit and use (`device.memory_stats()`); CPU
  devices report nothing and share the host's memory, so each gets the host's available
  memory divided by the number of local CPU devices.
  """
  stats = device.memory_stats()
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} memory_stats"
  sharing = sum(1 for d in jax.local_devices() if d.platform == device.platform)
  return host_available_bytes() // sharing, f"host MemAvailable / {sharing} {device.platform} devices"


def models_that_fit(bytes_for: Callable[[int], Optional[int]], num_devices: int, max_models: int,
                    free: Optional[int] = None, source: str = "given", device: Any = None,
                    sizes: Tuple[int, int] = (1, 2)) -> MemoryFit:
  """The most models per program whose compiled program fits the device (module docstring).

  Args:
    bytes_for: k -> `program_bytes` per device of the program with k models per device.
    num_devices: devices the models are split over (the result is a multiple of it).
    max_models: no more than this many models in all (e.g. the models still to train).
    free: free bytes per device; None: `free_bytes(device)`.
    source: says where `free` came from (for the log).
    device: the device of `free_bytes` (default this process's first device).
    sizes: the two per-device model counts k1 < k2 that are measured.

  Raises:
    MemoryError: not even one model per device fits, naming the bytes each needs.
    RuntimeError: the backend has no memory analysis (then set the chunk size yourself).
  """
  if free is None:
    free, source = free_bytes(device if device is not None else jax.local_devices()[0])
  k1, k2 = sizes
  b1, b2 = bytes_for(k1), bytes_for(k2)
  if b1 is None or b2 is None:
    raise RuntimeError("this JAX backend gives no memory analysis of compiled programs: set the "
                       "number of models per program explicitly (e.g. memorization.chunk_size)")
  per_model = max(1, (b2 - b1) // (k2 - k1))
  fixed = max(0, b1 - k1 * per_model)
  budget = int((1.0 - HEADROOM) * free)
  per_device = (budget - fixed) // per_model
  if per_device < 1:
    raise MemoryError(f"one model per device needs {size(fixed + per_model)} ({size(per_model)} per "
                      f"model, {size(fixed)} shared) but only {size(budget)} are usable: lower "
                      f"train.batch_size, or compute in bfloat16 (model.dtype)")
  per_device = min(per_device, -(-max_models // num_devices))
  return MemoryFit(per_device * num_devices, int(per_device), int(per_model), int(fixed), budget,
                   int(free), source)
