"""Runs that produce memorization scores (Feldman & Zhang 2020; proxies), behind `train.py`.

`run_memorization`: Feldman & Zhang (2020) subsampling. K models, each trained on its own
random 70% subset, are trained `chunk_size` at a time as ONE compiled program (spread over
devices; vmapped, or looped within a device on CPUs: `config.vmap_size`; chunk_size 0: as
many as fit the device's memory, `training.memory`), and their
correctness on every train/test example is added to `MemorizationStats`. A killed run
resumes from the last finished chunk; raising `num_models` later adds models to the
existing estimate.

`run_proxies`: the cheap proxies of one ordinary training run (Zhao & Triantafillou 2024):
learning events recorded inside the jitted step, plus held-out retraining.

Both write the run folder's score file (`runfolder.layout` "scores": keys `memorization` and
friends, per train-split example, with the ORIGINAL `index`) that `unlearn.py` reads.
"""
import math
import os
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, tracking
from rum_jax.memorization import files as score_files
from rum_jax.memorization import proxies as proxies_lib
from rum_jax.memorization.estimator import MemorizationStats, sample_subset_masks
from rum_jax.runfolder import ConfigCheck, RunFolder, check_config, layout
from rum_jax.training import engine, loop, memory, optim, plans
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import SPLITS, Setup, accuracies, train_on
from rum_jax.unlearning import UNLEARNING_METHODS
from rum_jax.unlearning.forget_kinds import FORGET_KINDS
from rum_jax.unlearning.interface import ScoreSource

def _chunk_seed(base: int, chunk: int) -> int:
  """Model keys of chunk j: fold_in(PRNGKey(base * 1_000_003 + j), s); distinct across chunks."""
  return base * 1_000_003 + chunk


def _write_scores(folder: RunFolder, setup: Setup, scores: Dict[str, np.ndarray], **extra: Any) -> None:
  tr = setup.dataset.train
  folder.write("scores", {"index": tr.index, "labels": tr.y, **scores, **extra})


def _finished_chunk(folder: RunFolder, j: int, masks: np.ndarray) -> Optional[Dict[str, np.ndarray]]:
  """The correctness arrays of chunk j if already trained with exactly these subsets, or None."""
  if not folder.readable("chunk", index=j):
    return None
  data = folder.read("chunk", index=j)
  if not np.array_equal(data["in_mask"], masks):
    return None
  return {"train": data["correct_train"], "test": data["correct_test"]}


def models_per_program(config: ml_collections.ConfigDict, workdir: Any, setup: Setup, done: int) -> int:
  """memorization.chunk_size, or for 0 the most models per program that fit the device.

  0: the training epoch's compiled program is measured at two sizes and the chunk is the
  largest that fits with headroom (`training.memory.models_that_fit`), evened out over the
  chunks the estimate needs (2,000 models at most 64 per program: 32 chunks of 63, not
  2,048 models). An estimate already under way keeps the chunk size of its chunks, whatever
  the device it resumes on.
  """
  m = config.memorization
  if m.chunk_size:
    return m.chunk_size
  folder = RunFolder.of(workdir)
  if done and folder.exists("chunk", index=0):
    size = len(folder.read("chunk", index=0)["in_mask"])
    logging.info("memorization.chunk_size=0: resuming with the run's chunks of %d models", size)
    return size
  n_dev = len(jax.devices())  # what a runner of many seeds spreads them over
  examples = int(round(m.ratio * len(setup.dataset.train)))
  fit = memory.models_that_fit(
      lambda k: setup.with_models(k * n_dev).training_bytes(config.train, examples),
      n_dev, m.num_models, sizes=(2, 3))
  n_chunks = math.ceil(m.num_models / fit.models)
  size = math.ceil(m.num_models / n_chunks / n_dev) * n_dev
  logging.info("memorization.chunk_size=0: %d models per program (%d chunks); %s", size, n_chunks,
               fit.describe())
  return size


def train_chunk(setup: Setup, masks: np.ndarray, train_cfg: ml_collections.ConfigDict, seed: int,
                name: str = "chunk") -> Dict[str, np.ndarray]:
  """One chunk of the estimator: trains a model per row of `masks` [models, n] (its subset
  of the train split) as one program over `setup`'s devices, and returns each model's
  correctness on every split, {split: bool [models, examples]}."""
  states, _ = train_on(setup, [np.flatnonzero(row) for row in masks], train_cfg, seed, None, name=name)
  logits, _ = accuracies(setup, states, train_cfg.eval_batch_size)
  return {s: logits[s].argmax(-1) == setup.dataset.split(s).y[None] for s in SPLITS}


def check_memorization(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False) -> ConfigCheck:
  """Whether `folder` may hold the estimate of `config` (reads only). Its chunks hold it:
  num_models may grow between runs, which adds models instead of starting over."""
  return check_config(folder, config, overwrite, clear=("chunks", "stats"),
                      sections=("data", "model", "train", "memorization"), ignore=("memorization.num_models",),
                      results=("chunks", "stats", "scores"))


def run_memorization(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False) -> Dict[str, Any]:
  """Trains config.memorization.num_models subset models and writes the score file."""
  m = config.memorization
  folder = RunFolder.of(workdir)
  check_memorization(config, folder, overwrite).apply()
  setup = Setup.create(config, num_models=1)
  ds = setup.dataset
  n, t = len(ds.train), len(ds.test)
  stats_path = folder.file("stats")
  stats = (MemorizationStats.load(stats_path) if os.path.exists(stats_path)
           else MemorizationStats.empty(n, t if m.influence else None))
  chunk_size = models_per_program(config, folder, setup, stats.num_models)
  # Exactly num_models models: whole chunks, the last one cut short (never rounded up).
  sizes = [min(chunk_size, m.num_models - start) for start in range(0, m.num_models, chunk_size)]
  ends = np.cumsum(sizes).tolist()
  if stats.num_models and stats.num_models not in ends:
    # Fewer models than estimated so far, or a last chunk an earlier num_models cut short: the
    # estimate restarts from the chunk files, reusing each one trained with these subsets
    # (so lowering num_models gives the estimate of exactly the first models).
    logging.warning("memorization.num_models=%d: the %d models of %s are not whole chunks of this run; "
                    "the estimate is rebuilt from the chunk files that match", m.num_models,
                    stats.num_models, stats_path)
    stats = MemorizationStats.empty(n, t if m.influence else None)
  first = ends.index(stats.num_models) + 1 if stats.num_models else 0
  if first:
    logging.info("resuming: %d models already estimated in %s", stats.num_models, stats_path)
  t0 = time.time()
  n_chunks = len(sizes)
  bar = tracking.progress_bar("memorization", m.num_models, stats.num_models, unit="model")
  for j in range(first, n_chunks):
    masks = sample_subset_masks(m.seed, sizes[j], n, m.ratio, first_model=j * chunk_size)
    correct = _finished_chunk(folder, j, masks)
    if correct is None:
      # No per-epoch checkpoints inside a chunk: saving chunk_size models every epoch costs
      # more than retraining one chunk; the resume unit is the finished chunk.
      correct = train_chunk(setup.with_models(sizes[j]), masks, config.train, _chunk_seed(m.seed, j),
                            name=f"chunk {j + 1}/{n_chunks}")
      folder.write("chunk", {"in_mask": masks, "correct_train": correct["train"], "correct_test": correct["test"]},
                   index=j)
    stats.add(masks, correct["train"], correct["test"] if m.influence else None)
    stats.save(stats_path)  # the chunk counts only once this atomic write is done
    bar.update(sizes[j])
    done = stats.num_models - ends[first - 1] if first else stats.num_models
    elapsed = time.time() - t0
    logging.info("memorization: %d/%d models (%.2f models/s), elapsed %.0fs, eta %.0fs",
                 stats.num_models, m.num_models, done / elapsed,
                 elapsed, elapsed / done * (m.num_models - stats.num_models))
  bar.close()
  est = stats.estimate(with_influence=bool(m.influence))
  extra = {}
  if n * stats.num_models <= 50_000_000:  # keep per-model arrays when they are small
    chunk_files = [folder.read("chunk", index=j) for j in range(n_chunks)]
    extra = {k: np.concatenate([c[k] for c in chunk_files])
             for k in ("in_mask", "correct_train", "correct_test")}
  _write_scores(folder, setup, est, num_models=stats.num_models, **extra)
  se = est["memorization_se"]
  summary = {"num_models": stats.num_models, "num_train": n, "chunk_size": sizes[0],
             "mean_memorization": float(np.nanmean(est["memorization"])),
             "mean_standard_error": float(np.nanmean(se)),
             "max_standard_error": float(np.nanmax(se)),
             "undefined": int(np.isnan(est["memorization"]).sum()),
             "fraction_above_0.5": float(np.nanmean(est["memorization"] > 0.5))}
  folder.write("memorization_summary", summary)
  folder.write("memorization_histogram", _histogram({"memorization": est["memorization"]},
                                                    f"{ds.name}: memorization, {stats.num_models} models"))
  logging.info("memorization written to %s: %s", folder.file("scores"), summary)
  return summary


def _histogram(values: Dict[str, np.ndarray], title: str) -> Any:
  """One histogram per named score array, side by side (a matplotlib figure)."""
  plt = io.pyplot()
  fig, axes = plt.subplots(1, len(values), figsize=(4 * len(values), 3.2), squeeze=False)
  for ax, (name, v) in zip(axes[0], values.items()):
    ax.hist(v[np.isfinite(v)], bins=40)
    ax.set_xlabel(name)
    ax.set_ylabel("examples")
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def events_loss(forward, params, state, batch, rng):
  """Cross-entropy, plus each example's learning events (train mode, before the update)."""
  del rng
  b = batch["train"]
  logits, batch_stats = forward(params, state.batch_stats, b["x"], train=True)
  loss = engine.weighted_mean(engine.cross_entropy(logits, b["y"]), b["weight"])
  acc = engine.weighted_mean((jnp.argmax(logits, -1) == b["y"]).astype(jnp.float32), b["weight"])
  return loss, (batch_stats, {"loss": loss, "accuracy": acc, **proxies_lib.event_metrics(logits, b["y"], b)})


def heldout_finetune(setup: Setup, states: Any, config: ml_collections.ConfigDict) -> Any:
  """A copy of the models fine-tuned on held-out data (the validation split).

  Constant learning rate, until the held-out loss (eval mode) has not improved for
  `config.proxies.patience` epochs (or `heldout_max_epochs`); returns the best states.
  """
  p = config.proxies
  runner = setup.runner
  tx = optim.make_optimizer(p.heldout_lr, config.train.momentum, config.train.weight_decay)
  states = states.replace(opt_state=jax.device_get(jax.vmap(tx.init)(states.params)))
  val = setup.dataset.val
  data = runner.replicate({"x": val.x, "y": val.y, "pos": np.arange(len(val), dtype=np.int32)})
  epoch_fn = loop.make_epoch_fn(runner, setup.forward, tx)
  best, best_states, waited = np.full(runner.num_models, np.inf), states, 0
  for epoch in range(p.heldout_max_epochs):
    rngs = [plans.epoch_rng(config.seed, s, epoch, "heldout") for s in range(runner.padded_models)]
    plan = {"train": plans.stream_plan([np.arange(len(val))] * runner.padded_models,
                                       config.train.batch_size, rngs)}
    dev, _ = epoch_fn(runner.shard(states), runner.shard(plan), data)
    states = runner.to_host(dev, keep_padding=True)
    logits = loop.predict(runner, setup.forward, states, val.x)
    loss = -np.take_along_axis(jax.nn.log_softmax(logits), val.y[None, :, None], -1).mean((1, 2))
    improved = loss < best - 1e-4
    if improved.any():
      best = np.where(improved, loss, best)
      best_states = states
      waited = 0
    else:
      waited += 1
      if waited >= p.patience:
        break
  return best_states


def check_proxies(config: ml_collections.ConfigDict, folder: RunFolder, overwrite: bool = False) -> ConfigCheck:
  """Whether `folder` may hold the proxies of `config` (reads only)."""
  return check_config(folder, config, overwrite, clear=("checkpoints", "events"),
                      sections=TRAINING_SECTIONS + ("proxies",), results=("scores",))


def run_proxies(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False) -> Dict[str, Any]:
  """One ordinary training run (num_seeds models) recording learning events; writes the proxies."""
  folder = RunFolder.of(workdir)
  check_proxies(config, folder, overwrite).apply()
  setup = Setup.create(config)
  n = len(setup.dataset.train)
  sums = proxies_lib.EventSums(config.num_seeds, n, folder.folder("events"))
  states, _ = train_on(setup, [np.arange(n)] * config.num_seeds, config.train, config.seed,
                       folder.checkpoints(), name="proxies", on_epoch=sums, loss_fn=events_loss,
                       on_resume=sums.restore)
  scores = sums.proxies()
  train_x = setup.dataset.train.x
  original = loop.predict(setup.runner, setup.forward, states, train_x)
  tuned = heldout_finetune(setup, states, config)
  finetuned = loop.predict(setup.runner, setup.forward, tuned, train_x)
  scores["heldout_retraining"] = np.asarray(proxies_lib.symmetric_kl(
      jnp.asarray(original), jnp.asarray(finetuned)))
  mean_scores = {k: v.mean(0) for k, v in scores.items()}
  _write_scores(folder, setup, mean_scores, **{f"{k}_per_seed": v for k, v in scores.items()})
  folder.write("proxies_summary",
               {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in mean_scores.items()})
  folder.write("proxies_histogram", _histogram(mean_scores, f"{setup.dataset.name}: memorization proxies "
                                                            "(high = more memorized)"))
  logging.info("proxies %s written to %s", sorted(mean_scores), folder.file("scores"))
  return mean_scores


# ---------------------------------------------------------------------------------------
# Score files an unlearning run reads (unlearn.py computes a missing default one first).


def missing_scores_message(path: str, data_name: str, proxies: bool) -> str:
  """What to do when a score file a run needs is absent: a command that writes exactly that file
  (train.py writes <workdir>/memorization.npz), or one that writes it elsewhere and the path to give."""
  published = ", ".join(score_files.FORMATS.get(f).filename for f in score_files.FORMATS.names())
  mode = "proxies" if proxies else "memorization"
  if os.path.basename(path) == layout.name("scores"):
    workdir, then = os.path.dirname(path) or ".", ""
  else:  # train.py cannot write that name: a folder of its own, then its file
    workdir = os.path.join("runs", f"{data_name}_{mode}")
    then = f" and pass --config.forget.scores={os.path.join(workdir, layout.name('scores'))}"
  return (f"no {'proxy' if proxies else 'memorization'} scores at {path}. Compute them with `python train.py "
          f"--config=configs/{data_name}_{mode}.py --workdir={workdir}`{then} (or let unlearn.py compute them in "
          f"<workdir>/memorization: --config.forget.scores='' --config.unlearn.compute_scores=True), or point "
          f"--config.forget.scores to a score "
          f"file: a rum-jax score file ({layout.name('scores')}) or a published one ({published})")


def default_scores_path(workdir: Any) -> str:
  """The score file an unlearning run reads (and may compute) when its config names none."""
  return RunFolder.of(workdir).scores().file("scores")


def forget_score_source(config: ml_collections.ConfigDict, workdir: Any) -> Optional[ScoreSource]:
  """The score file the forget set ranks by (None for kinds that use no scores)."""
  kind = FORGET_KINDS.get(config.forget.kind)
  if kind.score_file is None:
    return None
  return ScoreSource(config.forget.scores or default_scores_path(workdir), config.forget.score_key,
                     proxies=kind.score_file == "proxies")


def score_run_config(config: ml_collections.ConfigDict, mode: str) -> ml_collections.ConfigDict:
  """Only what decides the scores, so later unlearning settings never invalidate their folder."""
  section = "memorization" if mode == "memorization" else "proxies"
  return ml_collections.ConfigDict({**training_config(config).to_dict(), "mode": mode,
                                    section: config[section].to_dict()})


def ensure_scores(config: ml_collections.ConfigDict, workdir: Any) -> List[str]:
  """Makes sure every score file the run reads exists, before any training.

  The default file (`default_scores_path`) is computed there when absent and
  config.unlearn.compute_scores allows: Feldman-Zhang memorization (config.memorization), or
  the one-run proxies (config.proxies) when the first reader wants a proxy.

  Returns:
    The paths computed.

  Raises:
    FileNotFoundError: a score file is absent and may not be computed (the message says how).
  """
  sources = [forget_score_source(config, workdir)] + UNLEARNING_METHODS.get(config.unlearn.method).score_sources(config, workdir)
  default = default_scores_path(workdir)
  computed = []
  for source in [s for s in sources if s is not None]:
    if os.path.exists(source.path):
      continue
    if source.path != default or not config.unlearn.get("compute_scores", True):
      raise FileNotFoundError(missing_scores_message(source.path, config.data.name, source.proxies))
    mode = "proxies" if source.proxies else "memorization"
    logging.info("no scores at %s: computing %s there first (config.unlearn.compute_scores)", default, mode)
    run = run_proxies if source.proxies else run_memorization
    run(score_run_config(config, mode), RunFolder.of(workdir).scores())
    computed.append(default)
  return computed
