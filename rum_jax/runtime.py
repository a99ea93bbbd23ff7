"""Process set-up for the command lines: CPU devices and multi-host clusters.

These change the process, so only the command lines' `main` calls them (`initialize`), before
any JAX computation; importing rum_jax changes nothing. A library user who wants the same
set-up calls `rum_jax.runtime.initialize()` right after starting Python.
"""
import os

import jax
from absl import logging

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


def initialize() -> None:
  """What every command line does first: CPU devices, then the cluster (if any)."""
  use_cpu_cores()
  initialize_distributed()
