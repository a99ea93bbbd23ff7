"""Training the original models (train.py): `train_and_evaluate(config, workdir)`.

Writes into the work directory:
  config.json                       the resolved config
  checkpoints/                      orbax checkpoints (all seeds stacked), for resume
  history.csv                       per epoch and seed: loss, accuracy
  metrics.json / metrics.csv        final accuracy per seed and split, mean and 95% CI
  predictions/{train,val,test}.npz  logits [seeds, N, C], labels, ORIGINAL indices
  curves.png                        loss and accuracy per epoch
"""
import os
from typing import Any, Optional, Tuple

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.training.config import TRAINING_SECTIONS
from rum_jax.training.setup import SPLITS, Setup, accuracies, save_predictions, train_on


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
                       setup: Optional[Setup] = None) -> dict:
  """Trains `config.num_seeds` models at once on the full train split and evaluates them."""
  workdir_lib.prepare(workdir, config, overwrite, clear=("checkpoints",), sections=TRAINING_SECTIONS,
                      outputs=("predictions",))
  setup = setup or Setup.create(config)
  ds = setup.dataset
  logging.info("data %s: %d train / %d val / %d test, %d classes; model %s; %d seeds on %d device(s)",
               ds.name, len(ds.train), len(ds.val), len(ds.test), ds.num_classes,
               config.model.name, config.num_seeds, setup.runner.num_devices)
  all_train = [np.arange(len(ds.train))] * config.num_seeds
  states, history = train_on(setup, all_train, config.train, config.seed, os.path.join(workdir, "checkpoints"))
  logits, acc = accuracies(setup, states, config.train.eval_batch_size)
  save_predictions(ds, logits, os.path.join(workdir, "predictions"))
  per_seed = results.columns_to_seeds({f"{split}_accuracy": acc[split] for split in SPLITS})
  record = {"per_seed": {f"{split}_accuracy": acc[split].tolist() for split in SPLITS},
            "summary": results.summarize(per_seed)}
  io.write_json(os.path.join(workdir, workdir_lib.METRICS_FILE), record)
  # The record: one row per seed x metric (means and intervals are in metrics.json).
  io.write_csv(os.path.join(workdir, "metrics.csv"),
               results.record_rows(record["per_seed"], **results.run_columns(config, "original")),
               fields=results.RECORD_COLUMNS)
  io.write_csv(os.path.join(workdir, "history.csv"), results.history_rows(history))
  results.plot_history(history, os.path.join(workdir, "curves.png"), f"{ds.name} / {config.model.name}")
  logging.info("final accuracy (mean over %d seeds): %s", config.num_seeds,
               "  ".join(f"{k} {v['mean']:.4f}" for k, v in record["summary"].items()))
  return record


def load_or_train(config: ml_collections.ConfigDict, workdir: str, setup: Setup) -> Tuple[Setup, Any]:
  """(setup, host states) of a finished train_and_evaluate run in `workdir` (trains it if absent)."""
  if not workdir_lib.is_finished(workdir):
    logging.info("no finished original model in %s: training it now", workdir)
    train_and_evaluate(config, workdir, setup=setup)
  ds = setup.dataset
  all_train = [np.arange(len(ds.train))] * config.num_seeds
  states, _ = train_on(setup, all_train, config.train, config.seed, os.path.join(workdir, "checkpoints"))
  return setup, states
