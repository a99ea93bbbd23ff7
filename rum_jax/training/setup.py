"""What every run needs from a config, and the recipes built on it.

`Setup.create(config)` loads config.data, builds config.model and a `ModelRunner` for the
seeds. On top of it: `train_on` (fresh models, seed s on its own train positions, resumable),
`accuracies` (logits and accuracy of every seed on every split) and `prediction_arrays`.
"""
import dataclasses
import functools
import json
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from rum_jax.data import load_dataset
from rum_jax.data.augment import random_crop_flip
from rum_jax.data.base import Dataset
from rum_jax.models import create_model, data_init_size
from rum_jax.training import engine, loop, memory, optim, plans
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.data_init import init_sample, init_state_from_data
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.state import Forward

SPLITS = ("train", "val", "test")


def make_tx(train_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of a training recipe, its schedule spanning epochs x steps_per_epoch."""
  total = train_cfg.epochs * steps_per_epoch
  schedule = optim.make_schedule(train_cfg.schedule, train_cfg.lr, total, steps_per_epoch=steps_per_epoch)
  return optim.make_optimizer(schedule, train_cfg.momentum, train_cfg.weight_decay,
                              nesterov=train_cfg.get("nesterov", False))


@functools.lru_cache(maxsize=None)
def crop_flip(pad_value: Optional[Tuple[float, ...]]) -> engine.Augment:
  """RUM's random crop (pad 4) + horizontal flip, padding with `pad_value` (None: 0).

  One function object per pad value, so compiled programs keyed by it are shared.
  """
  if pad_value is None:
    return random_crop_flip
  return functools.partial(random_crop_flip, fill=pad_value)


def _init_program(runner: ModelRunner, forward: Forward, tx: optax.GradientTransformation,
                  shape: Tuple[int, ...], dtype: str) -> Callable:
  """(keys [S, 2], data [S, n, ...] or None) -> freshly initialised states of every seed.

  Initialisers see shapes only, except a model's data-dependent init (airbench's whitening),
  which sees each seed's own sample of training inputs. Seeds are initialised one after
  another (lax.map), so a data-dependent init never holds the temporaries of every seed at
  once: a chunk sized to fit the training program (`training.memory`) fits its init too.
  """
  sample = np.zeros(shape, dtype)
  one = lambda kd: init_state_from_data(forward.model, tx, kd[0], sample, kd[1])  # noqa: E731
  return jax.jit(lambda keys, data: jax.lax.map(one, (keys, data)))


def _training_program(runner: ModelRunner, forward: Forward, recipe: str, steps_per_epoch: int,
                      loss_fn: Optional[Callable], augment: Optional[engine.Augment]
                      ) -> Tuple[optax.GradientTransformation, Callable]:
  """(tx, epoch_fn) of a training recipe (its config section as JSON)."""
  train_cfg = ml_collections.ConfigDict(json.loads(recipe))
  tx = make_tx(train_cfg, steps_per_epoch)
  if loss_fn is None and train_cfg.get("label_smoothing", 0.0):
    loss_fn = functools.partial(engine.supervised_loss, label_smoothing=train_cfg.label_smoothing)
  kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
  epoch_fn = loop.make_epoch_fn(runner, forward, tx, augment=augment, **kwargs)
  return tx, epoch_fn


@dataclasses.dataclass
class Setup:
  """What every command needs from a config: the data, the model and the seed runner."""
  config: ml_collections.ConfigDict
  dataset: Dataset
  model: nn.Module
  forward: Forward
  runner: ModelRunner
  _by_size: Dict[int, "Setup"] = dataclasses.field(default_factory=dict, repr=False, compare=False)

  def with_models(self, num_models: int) -> "Setup":
    """This data and model with a runner of `num_models` models (e.g. a grid of settings x
    seeds); one per size, so its compiled programs serve every grid of that size."""
    if num_models == self.runner.num_models:
      return self
    if num_models not in self._by_size:
      runner = ModelRunner(num_models, vmap_size=self.config.get("vmap_size", 0))
      self._by_size[num_models] = Setup(self.config, self.dataset, self.model, self.forward, runner)
    return self._by_size[num_models]

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, num_models: Optional[int] = None) -> "Setup":
    """Loads config.data, builds config.model and a runner of num_models model slots (default
    config.num_seeds: one per seed)."""
    dataset = load_dataset(config.data.name, data_dir=config.data.data_dir or None,
                           split_seed=config.data.split_seed, **config.data.get("options", {}))
    model = create_model(config.model.name, dataset.num_classes, config.model.get("dtype", "float32"),
                         **config.model.kwargs.to_dict())
    runner = ModelRunner(num_models or config.num_seeds, vmap_size=config.get("vmap_size", 0))
    return cls(config, dataset, model, Forward(model), runner)

  @functools.cached_property
  def train_digest(self) -> str:
    """Digest of the train split's contents (inputs, labels, original indices): what every
    program trains on, whatever file or loader it came from."""
    tr = self.dataset.train
    return tree_digest((tr.x, tr.y, tr.index))

  def augment(self, enabled: Optional[bool] = None) -> Optional[engine.Augment]:
    """The data's crop + flip (`crop_flip`) if `enabled`, else None.

    enabled None: config.data.augment, the setting of models trained from scratch on the
    train split (original models, memorization subsets, proxies). Unlearning methods and
    the retrain reference pass their own (config.unlearn.augment).
    """
    if enabled is None:
      enabled = bool(self.config.data.augment)
    return crop_flip(self.dataset.pad_value) if enabled else None

  def training_bytes(self, train_cfg: ml_collections.ConfigDict, examples_per_seed: int,
                     loss_fn=None, augment: Optional[bool] = None) -> Optional[int]:
    """Per-device bytes of one compiled epoch of `train_cfg` for this runner's seeds, each
    training on `examples_per_seed` examples (`memory.program_bytes`).

    Compiles the program from shapes alone (no data is copied to a device, nothing runs).
    """
    runner, x = self.runner, self.dataset.train.x
    steps = math.ceil(examples_per_seed / train_cfg.batch_size)
    tx, epoch_fn = self.compiled_training(train_cfg, steps, loss_fn, augment)
    init = runner.compiled(_init_program, self.forward, tx, (2,) + x.shape[1:], str(x.dtype))
    sample = init_sample(self.model, x)
    data_x = None if sample is None else jax.ShapeDtypeStruct((runner.padded_models,) + sample.shape, sample.dtype)
    keys = jax.ShapeDtypeStruct((runner.padded_models, 2), np.uint32)
    states = jax.eval_shape(init, keys, data_x)
    batch = (runner.padded_models, steps, train_cfg.batch_size)
    plan = {"train": {"idx": jax.ShapeDtypeStruct(batch, np.int32),
                      "weight": jax.ShapeDtypeStruct(batch, np.float32)}}
    n = len(self.dataset.train)
    data = {"x": x, "y": self.dataset.train.y, "pos": jax.ShapeDtypeStruct((n,), np.int32)}
    compiled = epoch_fn.lower(runner.abstract(states), runner.abstract(plan),
                              runner.abstract(data, seeded=False)).compile()
    return memory.program_bytes(compiled)

  def train_data(self) -> Dict[str, Any]:
    """The train split on device (replicated), with each row's position for per-example state."""
    tr = self.dataset.train
    return self.runner.replicate({"x": tr.x, "y": tr.y, "pos": np.arange(len(tr), dtype=np.int32)})

  def init_states(self, tx: optax.GradientTransformation, base_seed: int,
                  positions: Optional[Sequence[np.ndarray]] = None) -> Any:
    """Host states for every (padded) seed; seed s starts from fold_in(PRNGKey(base_seed), s).

    positions: the train positions each padded seed will train on, for a model whose init
    looks at training data (so a memorization model never sees its held-out examples);
    None: the whole train split.
    """
    x = self.dataset.train.x
    init = self.runner.compiled(_init_program, self.forward, tx, (2,) + x.shape[1:], str(x.dtype))
    data = None
    if data_init_size(self.model):
      per_seed = list(positions) if positions is not None else [None] * self.runner.padded_models
      data = np.stack([init_sample(self.model, x, p) for p in per_seed])
    return jax.device_get(init(self.runner.seed_keys(base_seed), data))

  def compiled_training(self, train_cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                        loss_fn=None, augment: Optional[bool] = None) -> tuple:
    """(tx, epoch_fn) for a training recipe, built once per runner and reused.

    Memorization trains many chunks and benchmarks repeat runs with the same recipe:
    rebuilding the optimizer would make a new jit and recompile every time.
    augment: crop + flip (None: config.data.augment; see `augment`).
    """
    recipe = json.dumps(train_cfg.to_dict(), sort_keys=True)
    return self.runner.compiled(_training_program, self.forward, recipe, steps_per_epoch, loss_fn,
                                self.augment(augment))


def program_key(setup: Setup, **parts: Any) -> Dict[str, Any]:
  """What decides a program's checkpoints besides its initial states, first plan and epochs
  (`loop.fit`): the data (its settings, where it lies on disk aside, and the train split's
  contents), the model, and `parts`."""
  sections = {k: setup.config[k].to_dict() for k in ("data", "model") if k in setup.config}
  sections.get("data", {}).pop("data_dir", None)
  return {"dataset": setup.dataset.name, "train_split": setup.train_digest, **sections, **parts}


def train_on(setup: Setup, positions: Sequence[np.ndarray], train_cfg: ml_collections.ConfigDict,
             base_seed: int, checkpoint_dir: Optional[str], name: str = "train", on_epoch=None,
             loss_fn=None, augment: Optional[bool] = None, on_resume=None) -> tuple:
  """Trains fresh models, seed s on train-split `positions[s]`; resumes from checkpoint_dir
  when it holds checkpoints of this very program (`loop.fit`).

  augment: crop + flip (None: config.data.augment, the original training's setting).
  on_epoch / on_resume: as in `loop.fit`.
  Returns (host states of the num_seeds seeds, history).
  """
  runner = setup.runner
  positions = list(positions) + [positions[0]] * (runner.padded_models - len(positions))
  largest = max(len(p) for p in positions)
  if train_cfg.batch_size > largest:
    raise ValueError(f"[{name}] batch_size={train_cfg.batch_size} is larger than the {largest} examples a "
                     f"model trains on: every step would be one batch padded with {train_cfg.batch_size - largest} "
                     f"empty rows; use a batch size of at most {largest}")
  steps = math.ceil(largest / train_cfg.batch_size)
  tx, epoch_fn = setup.compiled_training(train_cfg, steps, loss_fn, augment)
  states = setup.init_states(tx, base_seed, positions)

  def plan_fn(epoch):
    rngs = [plans.epoch_rng(base_seed, s, epoch) for s in range(runner.padded_models)]
    return {"train": plans.stream_plan(positions, train_cfg.batch_size, rngs, steps=steps)}

  checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir else None
  try:
    key = program_key(setup, program="train", recipe=train_cfg.to_dict(), augment=setup.augment(augment) is not None,
                      loss=None if loss_fn is None else f"{loss_fn.__module__}.{loss_fn.__qualname__}")
    return loop.fit(states, runner=runner, epoch_fn=epoch_fn, data=setup.train_data(),
                    plan_fn=plan_fn, epochs=train_cfg.epochs, checkpointer=checkpointer,
                    name=name, on_epoch=on_epoch, key=key, on_resume=on_resume)
  finally:
    if checkpointer:
      checkpointer.close()


def accuracies(setup: Setup, states: Any, batch_size: int = 1024) -> tuple:
  """Per-split logits [S, N, C] and per-seed accuracies."""
  logits, acc = {}, {}
  for split in SPLITS:
    data = setup.dataset.split(split)
    logits[split] = loop.predict(setup.runner, setup.forward, states, data.x, batch_size)
    acc[split] = (logits[split].argmax(-1) == data.y[None]).mean(-1)
  return logits, acc


def prediction_arrays(dataset: Dataset, logits: Dict[str, np.ndarray]) -> Dict[str, Dict[str, np.ndarray]]:
  """What a run saves of its models' predictions, per split: logits [seeds, N, C] (float32),
  labels and ORIGINAL indices."""
  return {split: {"logits": lg.astype(np.float32), "labels": dataset.split(split).y,
                  "index": dataset.split(split).index} for split, lg in logits.items()}
