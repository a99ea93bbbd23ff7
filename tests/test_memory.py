"""Memory-aware chunks: as many models per program as the device's memory holds.

The choice is checked against the closed form of a linear memory model, then on a real
compiled program: its per-model bytes hold at least one model's training state (counted
from its parameters), a smaller memory gives a proportionally smaller chunk, and the
compiled program at the chosen size does fit the budget. Last, the memorization pipeline
with chunk_size 0 trains in the chosen chunks and keeps them when it resumes.
"""
import os

import jax
import numpy as np
import pytest

from rum_jax.configs import digits_memorization
from rum_jax import io
from rum_jax.pipelines import memorization as mem_pipeline
from rum_jax.training import memory
from rum_jax.training.setup import Setup

GIB = 2 ** 30


def test_models_that_fit_solves_the_linear_memory_model():
  fixed, per_model, free = 3 * GIB, GIB // 2, 20 * GIB
  fit = memory.models_that_fit(lambda k: fixed + k * per_model, num_devices=4, max_models=10_000,
                               free=free)
  budget = int((1 - memory.HEADROOM) * free)
  per_device = (budget - fixed) // per_model  # the largest k with F + k M <= budget
  assert (fit.per_model_bytes, fit.fixed_bytes, fit.budget_bytes) == (per_model, fixed, budget)
  assert fit.per_device == per_device == 26 and fit.models == 4 * 26
  # Never more than the models asked for (rounded up to whole devices).
  assert memory.models_that_fit(lambda k: fixed + k * per_model, 4, 10, free=free).models == 12
  with pytest.raises(MemoryError, match=r"one model per device needs 3\.50 GiB .* lower train.batch_size"):
    memory.models_that_fit(lambda k: fixed + k * per_model, 4, 10, free=4 * GIB)


def test_free_bytes_of_a_cpu_device_is_a_share_of_the_host_memory():
  free, source = memory.free_bytes(jax.devices()[0])
  assert 0 < free <= memory.host_available_bytes()
  assert source.startswith("host") and str(len(jax.devices("cpu"))) in source


@pytest.fixture(scope="module")
def digits_setup():
  config = digits_memorization.get_config()
  config.model.kwargs.hidden = (32,)
  return config, Setup.create(config, num_models=1)


def test_the_chunk_follows_the_measured_bytes_of_the_compiled_program(digits_setup):
  config, setup = digits_setup
  n_dev = len(jax.devices())
  examples = int(round(config.memorization.ratio * len(setup.dataset.train)))
  measured = {}

  def bytes_for(k):
    if k not in measured:
      measured[k] = setup.with_models(k * n_dev).training_bytes(config.train, examples)
    return measured[k]

  free = 64 * GIB
  fit = memory.models_that_fit(bytes_for, n_dev, 10 ** 6, free=free, sizes=(2, 3))
  # Each extra model holds at least its own parameters and momentum (float32), counted here
  # independently from the layer widths 64-32-10.
  params = (64 * 32 + 32) + (32 * 10 + 10)
  assert fit.per_model_bytes >= 2 * 4 * params
  # A memory that holds F + 3.5 M (after headroom) gives 3 models per device, F + 1.2 M one.
  for per_device in (3, 1):
    small = int((fit.fixed_bytes + (per_device + 0.5 if per_device > 1 else 1.2) * fit.per_model_bytes)
                / (1 - memory.HEADROOM))
    chosen = memory.models_that_fit(bytes_for, n_dev, 10 ** 6, free=small, sizes=(2, 3))
    assert chosen.per_device == per_device and chosen.models == per_device * n_dev
    # The program compiled at the chosen size really fits what was left for it.
    assert bytes_for(per_device) <= chosen.budget_bytes


def test_memorization_with_chunk_size_0_trains_in_the_chosen_chunks_and_resumes_with_them(
    tmp_path, monkeypatch, digits_setup):
  config = digits_memorization.get_config()
  config.model.kwargs.hidden = (32,)
  config.train.epochs = 1
  config.memorization.num_models = 2 * len(jax.devices())
  config.memorization.chunk_size = 0
  n_dev = len(jax.devices())
  _, setup = digits_setup
  examples = int(round(config.memorization.ratio * len(setup.dataset.train)))
  b2, b3 = (setup.with_models(k * n_dev).training_bytes(config.train, examples) for k in (2, 3))
  one_per_device = int((b2 - (b3 - b2) + 0.5 * (b3 - b2)) / (1 - memory.HEADROOM))  # F + 1.5 M
  monkeypatch.setattr(memory, "free_bytes", lambda device: (one_per_device, "a small test memory"))
  workdir = str(tmp_path / "mem")
  summary = mem_pipeline.run_memorization(config, workdir)
  assert summary["chunk_size"] == n_dev and summary["num_models"] == 2 * n_dev
  chunks = sorted(os.listdir(os.path.join(workdir, "chunks")))
  assert [np.load(os.path.join(workdir, "chunks", c))["in_mask"].shape[0] for c in chunks] == [n_dev, n_dev]
  # Resumed on a "bigger" device: the estimate keeps its chunks of n_dev models.
  monkeypatch.setattr(memory, "free_bytes", lambda device: (64 * GIB, "a big test memory"))
  config.memorization.num_models = 3 * n_dev
  summary = mem_pipeline.run_memorization(config, workdir)
  assert summary["chunk_size"] == n_dev and summary["num_models"] == 3 * n_dev
  assert io.read_json(os.path.join(workdir, "memorization_summary.json"))["chunk_size"] == n_dev
