"""Training the original models: `train_and_evaluate(config, workdir)` behind train.py.

Writes into the work directory:
  config.json                       the resolved config
  checkpoints/                      orbax checkpoints (all seeds stacked), for resume
  history.csv                       per epoch and seed: loss, accuracy
  metrics.json / metrics.csv        final accuracy per seed and split, mean and 95% CI
  predictions/{train,val,test}.npz  logits [seeds, N, C], labels, ORIGINAL indices
  curves.png                        loss and accuracy per epoch
"""
import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from rum_jax import io, workdir as workdir_lib
from rum_jax.data.base import Dataset
from rum_jax.models import create_model
from rum_jax.training import loop, optim, plans
from rum_jax.training.checkpoint import Checkpointer
from rum_jax.training.parallel import SeedRunner, maybe_initialize_distributed
from rum_jax.training.state import Forward, init_state

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Setup:
  """What every command needs from a config: the data, the model and the seed runner."""
  config: ml_collections.ConfigDict
  dataset: Dataset
  model: nn.Module
  forward: Forward
  runner: SeedRunner

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, num_seeds: Optional[int] = None) -> "Setup":
    """Loads config.data, builds config.model and a runner for num_seeds (default config.num_seeds)."""
    from rum_jax.data import load_dataset
    maybe_initialize_distributed()
    dataset = load_dataset(config.data.name, data_dir=config.data.data_dir or None,
                           split_seed=config.data.split_seed, **config.data.get("options", {}))
    model = create_model(config.model.name, dataset.num_classes, **config.model.kwargs.to_dict())
    runner = SeedRunner(num_seeds or config.num_seeds, vmap_size=config.get("vmap_size", 0))
    return cls(config, dataset, model, Forward(model), runner)

  def train_data(self) -> Dict[str, Any]:
    """The train split on device (replicated), with each row's position for per-example state."""
    tr = self.dataset.train
    return self.runner.replicate({"x": tr.x, "y": tr.y, "pos": np.arange(len(tr), dtype=np.int32)})

  def init_states(self, tx: optax.GradientTransformation, base_seed: int) -> Any:
    """Host states for every (padded) seed; seed s starts from fold_in(PRNGKey(base_seed), s)."""
    key = ("init", tx)
    if key not in self.runner.cache:
      sample = np.asarray(self.dataset.train.x[:2])
      self.runner.cache[key] = jax.jit(jax.vmap(lambda k: init_state(self.model, tx, k, sample)))
    return jax.device_get(self.runner.cache[key](self.runner.seed_keys(base_seed)))

  def compiled_training(self, train_cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                        loss_fn=None) -> tuple:
    """(tx, epoch_fn) for a training recipe, built once per runner and reused.

    Memorization trains many chunks and benchmarks repeat runs with the same recipe:
    rebuilding the optimizer would make a new jit and recompile every time.
    """
    key = ("train", json.dumps(train_cfg.to_dict(), sort_keys=True), steps_per_epoch, loss_fn,
           bool(self.config.data.augment))
    if key not in self.runner.cache:
      tx = make_tx(train_cfg, steps_per_epoch)
      kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
      fn = loop.make_epoch_fn(self.runner, self.forward, tx, augment=augment_fn(self.config), **kwargs)
      self.runner.cache[key] = (tx, fn)
    return self.runner.cache[key]


def make_tx(train_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of a training recipe, its schedule spanning epochs x steps_per_epoch."""
  total = train_cfg.epochs * steps_per_epoch
  schedule = optim.make_schedule(train_cfg.schedule, train_cfg.lr, total)
  return optim.make_optimizer(schedule, train_cfg.momentum, train_cfg.weight_decay)


def augment_fn(config: ml_collections.ConfigDict):
  """crop(4)+flip when config.data.augment, else None."""
  if not config.data.augment:
    return None
  from rum_jax.data.augment import random_crop_flip
  return random_crop_flip


def train_on(setup: Setup, positions: Sequence[np.ndarray], train_cfg: ml_collections.ConfigDict,
             base_seed: int, checkpoint_dir: Optional[str], name: str = "train", on_epoch=None,
             loss_fn=None) -> tuple:
  """Trains fresh models, seed s on train-split `positions[s]`; resumes from checkpoint_dir.

  Returns (host states incl. padded seeds, history).
  """
  runner = setup.runner
  positions = list(positions) + [positions[0]] * (runner.padded_seeds - len(positions))
  steps = math.ceil(max(len(p) for p in positions) / train_cfg.batch_size)
  tx, epoch_fn = setup.compiled_training(train_cfg, steps, loss_fn)
  states = setup.init_states(tx, base_seed)

  def plan_fn(epoch):
    rngs = [plans.epoch_rng(base_seed, s, epoch) for s in range(runner.padded_seeds)]
    return {"train": plans.stream_plan(positions, train_cfg.batch_size, rngs, steps=steps)}

  checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir else None
  try:
    return loop.fit(states, runner=runner, epoch_fn=epoch_fn, data=setup.train_data(),
                    plan_fn=plan_fn, epochs=train_cfg.epochs, checkpointer=checkpointer,
                    name=name, on_epoch=on_epoch)
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


def summarize_seeds(per_seed: Dict[str, np.ndarray]) -> Dict[str, Dict[str, Any]]:
  """Mean and t-based 95% interval half-width over seeds of each metric."""
  from rum_jax.evaluation.stats import mean_ci
  out = {}
  for k, v in per_seed.items():
    mean, half = mean_ci(np.asarray(v, np.float64))
    out[k] = {"mean": mean, "ci95": half, "values": np.asarray(v).tolist()}
  return out


def save_predictions(setup: Setup, logits: Dict[str, np.ndarray], directory: str) -> None:
  """<directory>/<split>.npz: logits [seeds, N, C], labels and ORIGINAL indices."""
  for split, lg in logits.items():
    data = setup.dataset.split(split)
    io.write_npz(os.path.join(directory, f"{split}.npz"), logits=lg.astype(np.float32),
                 labels=data.y, index=data.index)


def plot_history(history: Dict[str, list], path: str, title: str) -> None:
  """Train loss and accuracy per epoch, one line per seed, as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = [k for k in ("loss", "accuracy") if k in history]
  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
  for ax, k in zip(axes[0], keys):
    values = np.asarray(history[k])  # [epochs, seeds]
    for s in range(values.shape[1]):
      ax.plot(np.arange(1, len(values) + 1), values[:, s], label=f"seed {s}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"train {k}")
    ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  io.save_figure(fig, path)


def history_rows(history: Dict[str, list]) -> list:
  """History as long-format CSV rows: epoch, seed, metric, value."""
  rows = []
  for k, epochs in history.items():
    for e, per_seed in enumerate(epochs):
      for s, v in enumerate(per_seed):
        rows.append({"epoch": e + 1, "seed": s, "metric": k, "value": v})
  return rows


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict:
  """Trains `config.num_seeds` models at once on the full train split and evaluates them."""
  from rum_jax.config_validation import validate
  validate(config)
  with workdir_lib.WorkdirLock(workdir):
    workdir_lib.prepare(workdir, config, overwrite, clear=("checkpoints",),
                        sections=workdir_lib.TRAINING_SECTIONS)
    setup = Setup.create(config)
    ds = setup.dataset
    logging.info("data %s: %d train / %d val / %d test, %d classes; model %s; %d seeds on %d device(s)",
                 ds.name, len(ds.train), len(ds.val), len(ds.test), ds.num_classes,
                 config.model.name, config.num_seeds, setup.runner.num_devices)
    all_train = [np.arange(len(ds.train))] * config.num_seeds
    states, history = train_on(setup, all_train, config.train, config.seed,
                               os.path.join(workdir, "checkpoints"))
    logits, acc = accuracies(setup, states, config.train.eval_batch_size)
    save_predictions(setup, logits, os.path.join(workdir, "predictions"))
    per_seed = {f"{split}_accuracy": acc[split] for split in SPLITS}
    results = {"per_seed": {k: v.tolist() for k, v in per_seed.items()},
               "summary": summarize_seeds(per_seed)}
    io.write_json(os.path.join(workdir, "metrics.json"), results)
    rows = [{"seed": s, **{k: v[s] for k, v in per_seed.items()}} for s in range(config.num_seeds)]
    rows += [{"seed": stat, **{k: v[stat] for k, v in results["summary"].items()}}
             for stat in ("mean", "ci95")]
    io.write_csv(os.path.join(workdir, "metrics.csv"), rows)
    io.write_csv(os.path.join(workdir, "history.csv"), history_rows(history))
    plot_history(history, os.path.join(workdir, "curves.png"), f"{ds.name} / {config.model.name}")
    logging.info("final accuracy (mean over %d seeds): %s", config.num_seeds,
                 "  ".join(f"{k} {v['mean']:.4f}" for k, v in results["summary"].items()))
    return results


def load_trained(config: ml_collections.ConfigDict, workdir: str, setup: Optional[Setup] = None) -> tuple:
  """(setup, host states) of a finished train_and_evaluate run in `workdir` (trains it if absent)."""
  setup = setup or Setup.create(config)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  done = os.path.exists(os.path.join(workdir, "metrics.json"))
  if not done:
    logging.info("no finished original model in %s: training it now", workdir)
    train_and_evaluate(config, workdir)
  ds = setup.dataset
  all_train = [np.arange(len(ds.train))] * config.num_seeds
  states, _ = train_on(setup, all_train, config.train, config.seed, ckpt_dir)
  return setup, states
