"""Training the original models (train.py): `train_and_evaluate(config, workdir)`.

Writes into its run folder (names in `runfolder.layout`): the resolved config, orbax
checkpoints (all seeds stacked, for resume), the history per epoch and seed (loss,
accuracy), the final accuracy per seed and split (the metrics record: per-seed values, mean
and 95% CI, and its tidy rows), the predictions of every split (logits [seeds, N, C], labels,
ORIGINAL indices) and the training curves.
"""
from typing import Any, Optional, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import results
from rum_jax.runfolder import RunFolder, check_config
from rum_jax.training.config import TRAINING_SECTIONS
from rum_jax.training.setup import SPLITS, Setup, accuracies, prediction_arrays, train_on


def check(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False):
  """Whether `folder` may hold a training run of `config` (reads only; `.apply()` writes the config)."""
  return check_config(folder, config, overwrite, clear=("checkpoints",), sections=TRAINING_SECTIONS,
                      results=("metrics",))


def write_predictions(folder: RunFolder, dataset: Any, logits: Any) -> None:
  """The predictions of every split (`prediction_arrays`) into `folder`."""
  for split, arrays in prediction_arrays(dataset, logits).items():
    folder.write("predictions", arrays, split=split)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False,
                       setup: Optional[Setup] = None) -> dict:
  """Trains `config.num_seeds` models at once on the full train split and evaluates them.

  workdir: the run folder (a RunFolder, or its path)."""
  folder = RunFolder.of(workdir)
  check(config, folder, overwrite).apply()
  setup = setup or Setup.create(config)
  ds = setup.dataset
  logging.info("data %s: %d train / %d val / %d test, %d classes; model %s; %d seeds on %d device(s)",
               ds.name, len(ds.train), len(ds.val), len(ds.test), ds.num_classes,
               config.model.name, config.num_seeds, setup.runner.num_devices)
  all_train = [np.arange(len(ds.train))] * config.num_seeds
  states, history = train_on(setup, all_train, config.train, config.seed, folder.checkpoints())
  logits, acc = accuracies(setup, states, config.train.eval_batch_size)
  write_predictions(folder, ds, logits)
  acc_columns = {f"{split}_accuracy": acc[split] for split in SPLITS}
  record = {"per_seed": {k: v.tolist() for k, v in acc_columns.items()},
            "summary": results.summarize_columns(acc_columns)}
  folder.write("metrics", record)
  # The record: one row per seed x metric (means and intervals are in the metrics record).
  folder.write("metrics_record", results.record_rows(record["per_seed"], **results.run_columns(config, "original")))
  folder.write("history", results.history_rows(history))
  folder.write("curves", results.history_figure(history, f"{ds.name} / {config.model.name}"))
  logging.info("final accuracy (mean over %d seeds): %s", config.num_seeds,
               "  ".join(f"{k} {v['mean']:.4f}" for k, v in record["summary"].items()))
  return record


def load_or_train(config: ml_collections.ConfigDict, workdir: Any, setup: Setup) -> Tuple[Setup, Any]:
  """(setup, host states) of a finished train_and_evaluate run in `workdir` (trains it if absent)."""
  folder = RunFolder.of(workdir)
  if not folder.finished():
    logging.info("no finished original model in %s: training it now", folder)
    train_and_evaluate(config, folder, setup=setup)
  ds = setup.dataset
  all_train = [np.arange(len(ds.train))] * config.num_seeds
  states, _ = train_on(setup, all_train, config.train, config.seed, folder.checkpoints())
  return setup, states
