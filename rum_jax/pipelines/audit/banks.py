"""Banks of models for the audit (forgetting-quality measures): seed streams, what decides a bank, the
resumable chunked `Bank`, and running any method on every model of a chunk at once."""
import hashlib
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax.pipelines import unlearning
from rum_jax.runfolder import RunFolder, check_config
from rum_jax.training.config import training_config
from rum_jax.training.setup import Setup
from rum_jax.training.state import TrainState
from rum_jax.unlearning import unlearn
from rum_jax.unlearning.runners import augments

# What every bank records of each model (one implementation: the metric registry's).
ACCURACIES = ("forget_accuracy", "retain_accuracy", "test_accuracy")
SHADOW_RATIO = 0.5  # each shadow model trains on a random half (LiRA's in/out split)
# Seed streams: the banks of one seed draw independent models.
RETRAINED, UNLEARNED, SHADOW, SHADOW_UNLEARNED, SHADOW_FORGET = range(1, 6)


def bank_seed(seed: int, stream: int, chunk: int) -> int:
  """The base seed of chunk `chunk` of a bank: distinct across streams and chunks."""
  return (seed * 8 + stream) * 1_000_003 + chunk


def digest(*arrays: np.ndarray) -> str:
  """A short hash of arrays (a forget set, an original model's weights) for a bank's config."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(str((a.dtype, a.shape)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def training_spec(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """What decides a trained model, without the seed count (banks have their own)."""
  spec = training_config(config).to_dict()
  spec.pop("num_seeds")
  return spec


def augment_spec(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """config.unlearn.augment, which decides the retrained and unlearned models of every bank;
  recorded only when on, so the banks made before it was recorded (all without) still match."""
  return {"unlearn_augment": True} if augments(config) else {}


class Bank:
  """A bank of models in chunks of `chunk_size`, each chunk one compiled program.

  The bank's run folder records what decides the models (`spec`, as its config); a folder
  holding chunks of another spec is refused unless `overwrite` (then its chunks are deleted).
  A chunk counts as done once its file is written (atomically), so a killed run recomputes
  only the chunk it was in. The number of models is not part of the spec: more chunks can be
  added.
  """

  def __init__(self, directory: Any, spec: Dict[str, Any], num_models: int, chunk_size: int, name: str,
               overwrite: bool = False):
    self.folder = RunFolder.of(directory)
    check_config(self.folder, ml_collections.ConfigDict(spec), overwrite, clear=("chunks", "weights"),
                 results=("chunks",)).apply()
    self.name, self.chunk_size = name, chunk_size
    self.num_chunks = math.ceil(num_models / chunk_size)
    self.num_models = self.num_chunks * chunk_size
    if self.num_models != num_models:
      logging.info("[%s] rounding %d models up to %d (whole chunks of %d)", name, num_models,
                   self.num_models, chunk_size)
    self._seconds, self._computed = 0.0, 0

  def done(self, j: int, kind: str = "chunk") -> bool:
    """Whether chunk j is written (kind "weights": its models' weights, shadow banks)."""
    return self.folder.exists(kind, index=j)

  def missing(self) -> List[int]:
    return [j for j in range(self.num_chunks) if not self.done(j)]

  def save(self, j: int, seconds: float, **arrays: np.ndarray) -> None:
    """Writes chunk j, computed in `seconds` (it counts from now on), and logs models done,
    models/s and the ETA of this bank's remaining chunks."""
    self.folder.write("chunk", {"seconds": seconds, **arrays}, index=j)
    self._computed += 1
    self._seconds += seconds
    left = len(self.missing())
    logging.info("[%s] %d/%d models (%.2f models/s), this run %.0fs, eta %.0fs", self.name,
                 (self.num_chunks - left) * self.chunk_size, self.num_models,
                 self._computed * self.chunk_size / max(self._seconds, 1e-9), self._seconds,
                 self._seconds / self._computed * left)

  def arrays(self) -> Dict[str, np.ndarray]:
    """Every chunk's arrays concatenated over models, and `seconds`: the bank's total compute time."""
    chunks = [self.folder.read("chunk", index=j) for j in range(self.num_chunks)]
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0] if k != "seconds"}
    out["seconds"] = float(sum(c["seconds"] for c in chunks))
    return out

  def fill(self, compute: Callable[[int], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Computes every missing chunk (`compute(j)` -> its arrays), then returns `arrays()`."""
    for j in self.missing():
      t0 = time.time()
      arrays = compute(j)
      self.save(j, time.time() - t0, **arrays)
    return self.arrays()


def replicate(states: TrainState, count: int) -> TrainState:
  """`count` copies of a one-model state (leading axis 1)."""
  return jax.tree.map(lambda a: np.repeat(np.asarray(a)[:1], count, axis=0), states)


def split_outputs(setup: Setup, states: TrainState, forget: Sequence[np.ndarray],
                  retain: Optional[Sequence[np.ndarray]] = None) -> Dict[str, np.ndarray]:
  """Per model: accuracies on its forget set, its retain set (default: the rest of the train
  split) and the test split (the `METRICS` entries), and the train and test logits [S, N, C]."""
  outputs = unlearning.model_outputs(setup, states, list(forget), retain=retain)
  out = outputs.values(ACCURACIES)
  out.update(train_logits=outputs.logits["train"], test_logits=outputs.logits["test"])
  return out


def run_method(setup: Setup, states: Optional[TrainState], method: str, settings, forget, retain,
                base_seed: int, label: str) -> TrainState:
  """Any registered method on every model of the runner at once (no checkpoints: the chunk is
  the unit of resumption)."""
  return unlearn(setup, states, method, settings, forget, retain, base_seed=base_seed, name=label)[0]
