"""How each kind of method runs on all seeds at once: `Method.run` implementations.

- `train_run`: a training method's phases (losses and gradient transforms) as compiled
  epochs of the one engine (`training.loop.fit`), resumable from checkpoints.
- `one_shot_run`: one weight edit (`Method.apply`), checkpointed once.
- `retrain_run`: fresh models trained on the retain set (the retrain reference).
"""
import dataclasses
import functools
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rum_jax.training import loop, optim, plans
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.setup import program_key, train_on
from rum_jax.training.state import TrainState
from rum_jax.unlearning.interface import UNLEARNING_METHODS, History, MethodContext, Phase, context

# Folded into each seed's key so unlearning draws differ from the original training's.
_RNG_STREAM = 0x0C1EA2


def augments(config) -> bool:
  """config.unlearn.augment: crop + flip in every unlearning method and the retrain reference.

  Off by default, as in RUM (Zhao et al. 2024), whose unlearning runs, retraining included,
  pass --no_aug although the original CIFAR models train with augmentation
  (config.data.augment).
  """
  return bool("unlearn" in config and config.unlearn.get("augment", False))


def sgd_with_lr(momentum: float, weight_decay: float) -> optax.GradientTransformation:
  """torch's SGD (`optim.make_optimizer`) with the learning rate in the optimizer state
  (`optax.inject_hyperparams`), so every model of one program can have its own."""
  return optax.inject_hyperparams(lambda learning_rate: optim.make_optimizer(learning_rate, momentum, weight_decay))(
      learning_rate=0.0)


def _fresh_states(ctx: MethodContext, states: TrainState, tx, aux: Dict[str, Any]) -> TrainState:
  """The models of `states` with a new optimizer state (each model's learning rate in it),
  step 0, new keys (each model's seed's) and the method's aux."""
  runner = ctx.setup.runner
  seed_keys = runner.seed_keys(ctx.base_seed, ctx.seed_ids)
  keys = jax.vmap(lambda k: jax.random.fold_in(k, _RNG_STREAM))(jnp.asarray(seed_keys))
  opt_state = jax.device_get(jax.jit(jax.vmap(tx.init))(states.params))
  opt_state.hyperparams["learning_rate"] = ctx.value("lr")
  return jax.device_get(TrainState(
      step=np.zeros(runner.padded_models, np.int32), params=states.params, batch_stats=states.batch_stats,
      opt_state=opt_state, rng=keys, aux=aux))


def _phases_epoch_fn(runner, forward, tx, phases: List[Phase], augment) -> Callable:
  """One epoch = every active phase in order, each a compiled epoch of the engine.

  The LAST phase is the primary one: its per-step metrics (and its first stream's weights,
  which `_plan` puts first) make the epoch means; an earlier phase's metrics are reduced to
  their epoch mean, prefixed with the phase name and repeated over the primary's steps.
  """
  fns = [runner.compiled(loop.make_epoch_fn, forward, tx, p.loss_fn, p.grad_transform, augment) for p in phases]
  if len(phases) == 1:
    return fns[0]

  def epoch_fn(states, plan, data):
    extra = {}
    for phase, fn in zip(phases, fns):
      sub = {s: plan[s] for s in phase.streams if s in plan}
      if not sub:
        continue
      states, metrics = fn(states, sub, data)
      if phase is phases[-1]:
        primary = metrics
      else:
        w = sub[phase.streams[0]]["weight"].sum(-1)  # [S, steps]
        extra.update({f"{phase.name}_{k}": (v * w).sum(1) / jnp.maximum(w.sum(1), 1e-12)
                      for k, v in metrics.items() if v.ndim == 2})
    shape = next(iter(primary.values())).shape
    return states, {**primary, **{k: jnp.broadcast_to(v[:, None], shape) for k, v in extra.items()}}
  return epoch_fn


def forget_dose_steps(ctx: MethodContext, phase: Phase) -> Optional[int]:
  """Steps of an epoch that make `settings.forget_passes` passes over the forget set, for a phase
  that cycles the forget stream beside another (NegGrad+); None: one pass over its first stream.

  With one retain pass per epoch (forget_passes = 0, RUM's `zip(r_loader, cycle(f_loader))`)
  each forget example is ascended |R| / |F| times per epoch, so the same settings applied to a
  third of a forget set ascend each of its examples three times as often. With forget_passes
  = p > 0 every forget example is seen p times per epoch whatever the set's size (the retain
  stream cycled beside it), so settings tuned on a set carry over to its parts (RUM's steps).
  """
  passes = ctx.settings.get("forget_passes", 0) if ctx.settings is not None else 0
  if not passes or "forget" not in phase.streams[1:]:
    return None
  return math.ceil(passes * max(len(f) for f in ctx.forget) / ctx.settings.batch_size)


def _plan(ctx: MethodContext, phases: List[Phase], epoch: int) -> Dict[str, Dict[str, np.ndarray]]:
  """Host plan of one epoch: a pass over each active phase's first stream, the others cycled
  (or `forget_dose_steps`, every stream cycled)."""
  plan = {}
  for phase in [phases[-1]] + phases[:-1]:  # the primary phase's first stream weights the means
    if phase.active_epochs is not None and epoch >= phase.active_epochs:
      continue
    dosed = forget_dose_steps(ctx, phase)
    steps = dosed or ctx.steps_per_epoch(phase.streams[0])
    for i, stream in enumerate(phase.streams):
      rngs = [plans.epoch_rng(ctx.base_seed, ctx.seed_of(m), epoch, stream) for m in range(len(ctx.forget))]
      plan[stream] = plans.stream_plan(ctx.positions(stream), ctx.settings.batch_size, rngs,
                                       steps=steps, cycle=i > 0 or dosed is not None)
  return plan


@dataclasses.dataclass
class Program:
  """A training method ready to run: initial states, one compiled epoch, the plans."""
  states: TrainState
  epoch_fn: Callable
  plan_fn: Callable[[int], Dict[str, Dict[str, np.ndarray]]]
  epochs: int


def build_program(setup: Any, states: TrainState, method_name: str, settings, forget, retain, *,
                  base_seed: int = 0, saliency_path: Optional[str] = None, seed_ids=None,
                  per_model=None) -> Program:
  """The pieces `train_run` hands to `loop.fit`, for a training method (also used by bench/)."""
  ctx = context(setup, method_name, settings, forget, retain, base_seed=base_seed, saliency_path=saliency_path,
                seed_ids=seed_ids, per_model=per_model)
  return _build_program(UNLEARNING_METHODS.get(method_name), ctx, states)


def _build_program(method, ctx: MethodContext, states: TrainState) -> Program:
  if method.phases is None:
    raise ValueError(f"{method.name!r} is not a training method (it has no phases)")
  runner, settings = ctx.setup.runner, ctx.settings
  states = runner.pad(states)
  phases = method.phases(settings, ctx)
  aux = method.prepare(ctx, states) if method.prepare else {}
  aux["hp"] = {k: ctx.value(k) for k in method.swept if k != "lr"}  # what the losses read
  tx = runner.compiled(_sgd_program, settings.momentum, settings.weight_decay)
  return Program(_fresh_states(ctx, states, tx, aux),
                 _phases_epoch_fn(runner, ctx.setup.forward, tx, phases,
                                  ctx.setup.augment(augments(ctx.setup.config))),
                 functools.partial(_plan, ctx, phases), settings.epochs)


def _sgd_program(runner, momentum: float, weight_decay: float) -> optax.GradientTransformation:
  del runner  # one optimizer object per runner and settings: programs keyed by it are reused
  return sgd_with_lr(momentum, weight_decay)


def _program_key(method_name: str, ctx: MethodContext) -> Dict[str, Any]:
  """What decides a method's checkpoints besides its initial states and plans (`loop.fit`)."""
  n = ctx.setup.runner.num_models
  return program_key(ctx.setup, program="unlearn", method=method_name,
                     settings=None if ctx.settings is None else ctx.settings.to_dict(),
                     augment=augments(ctx.setup.config), base_seed=ctx.base_seed,
                     seed_ids=None if ctx.seed_ids is None else list(ctx.seed_ids[:n]),
                     per_model={k: np.asarray(v[:n]).tolist() for k, v in ctx.per_model.items()})


def train_run(method_name: str, ctx: MethodContext, states: TrainState) -> Tuple[TrainState, History]:
  """A training method's epochs on every seed, resumable from ctx.checkpoint_dir."""
  program = _build_program(UNLEARNING_METHODS.get(method_name), ctx, states)
  checkpointer = Checkpointer(ctx.checkpoint_dir) if ctx.checkpoint_dir else None
  try:
    out, history = loop.fit(program.states, runner=ctx.setup.runner, epoch_fn=program.epoch_fn,
                            data=ctx.setup.train_data(), plan_fn=program.plan_fn, epochs=program.epochs,
                            checkpointer=checkpointer, name=ctx.label, key=_program_key(method_name, ctx))
  finally:
    if checkpointer:
      checkpointer.close()
  return out.replace(aux={}), history


def one_shot_run(method_name: str, ctx: MethodContext, states: TrainState) -> Tuple[TrainState, History]:
  """A one-shot weight edit (`Method.apply`) of every seed, checkpointed once."""
  method = UNLEARNING_METHODS.get(method_name)
  runner = ctx.setup.runner
  states = runner.pad(states)
  checkpointer = Checkpointer(ctx.checkpoint_dir) if ctx.checkpoint_dir else None
  try:
    if checkpointer:
      checkpointer.claim({**_program_key(method_name, ctx), "initial_states": tree_digest(runner.unpad(states))})
    restored = checkpointer.restore(runner.unpad(states)) if checkpointer else None
    if restored is not None:
      return restored[1].replace(aux={}), {}
    out = runner.unpad(method.apply(ctx, states))
    loop.check_finite_weights(out.params, runner.num_models, f"[{ctx.label}] the update",
                              "the given models are unchanged. Lower alpha or raise damping.")
    if checkpointer:
      checkpointer.save(1, out, {"history": {}, "epoch": 1})
    return out.replace(aux={}), {}
  finally:
    if checkpointer:
      checkpointer.close()


def retrain_run(ctx: MethodContext, states: Optional[TrainState]) -> Tuple[TrainState, History]:
  """Fresh models trained on each seed's retain set (settings: a training recipe, default
  config.train), augmented as the unlearning methods are (`augments`)."""
  del states  # trained from scratch
  train_cfg = ctx.setup.config.train if ctx.settings is None else ctx.settings
  return train_on(ctx.setup, ctx.retain, train_cfg, ctx.base_seed, ctx.checkpoint_dir, name=ctx.label,
                  augment=augments(ctx.setup.config))


def training_method(name: str) -> Callable[[MethodContext, TrainState], Tuple[TrainState, History]]:
  """The `run` of the training method registered as `name`."""
  return functools.partial(train_run, name)


def one_shot_method(name: str) -> Callable[[MethodContext, TrainState], Tuple[TrainState, History]]:
  """The `run` of the one-shot method registered as `name`."""
  return functools.partial(one_shot_run, name)
