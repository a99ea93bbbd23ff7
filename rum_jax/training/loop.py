"""`fit`: epochs of the engine over all seeds at once, with checkpoints, resume and progress.

Progress and scalars go through `rum_jax.tracking`: one line per call of `fit` (a phase), a
bar with its ETA on a TTY, the per-epoch lines at absl's `-v 1`, and every epoch's and step's
scalars into the tracked run's files.

`predict`: logits of every seed on a split, in eval mode.
"""
import functools
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import numpy as np
import optax
from absl import logging

from rum_jax import tracking
from rum_jax.training import engine
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.state import Forward, TrainState

PlanFn = Callable[[int], Dict[str, Dict[str, np.ndarray]]]


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss or weights; the last good checkpoint is kept.

  seeds: the positions of the diverged models in the program (empty when unknown)."""

  def __init__(self, message: str, seeds: Sequence[int] = ()):
    super().__init__(message)
    self.seeds = [int(s) for s in seeds]


def check_finite_weights(params: Any, num_seeds: int, what: str, advice: str) -> None:
  """Raises NonFiniteLossError naming the seeds (of the first num_seeds) with NaN/inf weights."""
  leaves = jax.tree.leaves(params)
  bad = [s for s in range(num_seeds) if not all(np.all(np.isfinite(np.asarray(l[s]))) for l in leaves)]
  if bad:
    raise NonFiniteLossError(f"{what} made non-finite weights for seeds {bad}; {advice}", seeds=bad)


def _format_seconds(s: float) -> str:
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def make_epoch_fn(runner: ModelRunner, forward: Forward, tx: optax.GradientTransformation,
                  loss_fn: engine.LossFn = engine.supervised_loss,
                  grad_transform: Optional[engine.GradTransform] = None,
                  augment: Optional[engine.Augment] = None) -> Callable:
  """(states, plan, data) -> (states, per-step metrics), one compiled program for all seeds.

  A factory for `runner.compiled(make_epoch_fn, forward, tx, loss_fn, ...)`, which builds
  it once per runner and arguments.
  """
  step = functools.partial(engine.train_step, forward=forward, tx=tx, loss_fn=loss_fn,
                           grad_transform=grad_transform, augment=augment)

  def one_seed(state: TrainState, plan, data):
    return engine.run_plan(state, data, plan, step)
  return runner.map(one_seed, n_seeded=2, donate=True)


def fit(states: Any, *, runner: ModelRunner, epoch_fn: Callable, data: Dict[str, Any],
        plan_fn: PlanFn, epochs: int, checkpointer: Optional[Checkpointer] = None,
        name: str = "train", on_epoch: Optional[Callable[[int, Dict[str, np.ndarray]], None]] = None,
        key: Optional[Dict[str, Any]] = None, on_resume: Optional[Callable[[int], None]] = None) -> tuple:
  """Runs `epochs` epochs; resumes from `checkpointer` if it holds a checkpoint of this program.

  states: host pytree of per-seed states (leading axis num_seeds or padded_models), the initial state.
  data: device-replicated per-example arrays (runner.replicate).
  plan_fn(epoch): host plan, stream -> {"idx", "weight"} with leading seed axis.
  on_epoch(epoch, metrics): called with host per-step metrics [seeds, steps, ...] (e.g. to
    accumulate per-example learning events); it is not called again for epochs restored from
    a checkpoint, so its own state is restored by `on_resume(epochs_done)`, called once
    before the first epoch runs (0 when nothing was restored).
  key: what decides the program besides its initial states, first plan and epochs (the
    recipe or method settings, the data, ...): with those, the key the checkpoints are
    claimed with (`Checkpointer.claim`), so another program's checkpoints are never resumed.
  Returns (host states without padding seeds, history) where history[metric] is a list over
  epochs of per-seed weighted means.
  """
  history: Dict[str, list] = {}
  start = 0
  if checkpointer is not None:
    checkpointer.claim({**(key or {}), "epochs": epochs, "num_seeds": runner.num_models,
                        "initial_states": tree_digest(runner.unpad(states)),
                        "first_plan": tree_digest(runner.unpad(plan_fn(0)))})
    restored = checkpointer.restore(runner.unpad(states))
    if restored is not None:
      start, states, record = restored
      history = record["history"]
      # A finished phase read back (e.g. the original models of an unlearning run) is no news.
      logging.vlog(0 if start < epochs else 1, "[%s] resumed from epoch %d/%d (%s)", name, start, epochs,
                   checkpointer.directory)
  if on_resume is not None:
    on_resume(start)
  if start >= epochs:
    return runner.unpad(states), history

  phase = tracking.phase(name, os.path.dirname(checkpointer.directory) if checkpointer else None)
  bar = tracking.progress_bar(name, epochs, start)
  device_states = runner.shard(states)
  t0 = time.time()
  try:
    for epoch in range(start, epochs):
      t_epoch = time.time()
      plan = plan_fn(epoch)
      device_states, metrics = epoch_fn(device_states, runner.shard(plan), data)
      metrics = runner.to_host(metrics)
      weights = next(iter(plan.values()))["weight"][: runner.num_models].sum(-1)  # [S, steps]
      per_step = {k: v for k, v in metrics.items() if v.ndim == 2}
      summary = {k: (v * weights).sum(1) / np.maximum(weights.sum(1), 1e-12) for k, v in per_step.items()}
      if "loss" in summary and not np.all(np.isfinite(summary["loss"])):
        bad = np.flatnonzero(~np.isfinite(summary["loss"])).tolist()
        where = (f"the last good checkpoint (epoch {checkpointer.latest_step()}) is kept in "
                 f"{checkpointer.directory}" if checkpointer and checkpointer.latest_step() is not None
                 else "no checkpoint was written")
        raise NonFiniteLossError(
            f"[{name}] non-finite loss at epoch {epoch + 1} for seeds {bad}; {where}. "
            "Lower the learning rate or check the inputs.", seeds=bad)
      for k, v in summary.items():
        history.setdefault(k, []).append(v.tolist())
      if on_epoch is not None:
        on_epoch(epoch, metrics)
      done = epoch + 1
      if checkpointer is not None or done == epochs:  # no copy to the host on other epochs
        host_states = runner.to_host(device_states)
      if checkpointer is not None:
        checkpointer.save(done, host_states, {"history": history, "epoch": done})
      # seconds: the epoch's wall time, compilation included (what bench/gpu.py reads back).
      phase.scalars("epoch", done, {**{k: v.tolist() for k, v in summary.items()}, "seconds": time.time() - t_epoch})
      phase.steps(epoch * weights.shape[1] + 1, per_step, weights)
      shown = "  ".join(f"{k} {np.mean(v):.4f}" for k, v in summary.items())
      bar.set_postfix_str(shown, refresh=False)
      bar.update()
      elapsed = time.time() - t0
      logging.vlog(1, "[%s] epoch %d/%d  %s  elapsed %s  eta %s", name, done, epochs, shown,
                   _format_seconds(elapsed), _format_seconds(elapsed / (done - start) * (epochs - done)))
  finally:
    bar.close()
    tracking.end_phase(phase)
  logging.info("[%s] %s in %s: %s", name, f"epochs {start + 1}-{epochs}" if start else f"{epochs} epochs",
               _format_seconds(time.time() - t0), shown)
  return host_states, history


def predict_program(runner: ModelRunner, forward: Forward, features: bool) -> Callable:
  """(states, x batch) -> eval-mode logits (or penultimate features) of every seed."""
  def one_seed(state: TrainState, xb):
    if features:
      return forward.features(state.params, state.batch_stats, xb)
    return forward(state.params, state.batch_stats, xb, train=False)[0]
  return runner.map(one_seed, n_seeded=1)


def predict(runner: ModelRunner, forward: Forward, states: Any, x: np.ndarray,
            batch_size: int = 1024, features: bool = False) -> np.ndarray:
  """Eval-mode logits (or penultimate features) of every seed: [num_seeds, N, C]."""
  fn = runner.compiled(predict_program, forward, features)
  device_states = runner.shard(states)
  n = len(x)
  batch_size = min(batch_size, n)
  outs = []
  for start in range(0, n, batch_size):
    xb = x[start:start + batch_size]
    real = len(xb)
    if real < batch_size:  # pad to one shape: one compilation for the whole split
      xb = np.concatenate([xb, np.zeros((batch_size - real,) + xb.shape[1:], xb.dtype)])
    outs.append(runner.to_host(fn(device_states, runner.replicate(xb)))[:, :real])
  return np.concatenate(outs, axis=1)
