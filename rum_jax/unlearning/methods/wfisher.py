"""wfisher: one WoodFisher step theta += alpha F^-1 (grad forget - grad retain) (Izzo et al. 2021;
the inverse-Fisher-vector product is rum_jax/unlearning/woodfisher.py)."""
import functools

import numpy as np

from rum_jax.training import plans
from rum_jax.training.state import TrainState
from rum_jax.unlearning import runners, woodfisher
from rum_jax.unlearning.interface import Check, Method, MethodContext, register


def _wfisher_program(runner, forward):
  """(states, forget/retain/sample chunk plans, alpha, damping per model, data) -> updated states."""
  return runner.map(lambda state, f, r, smp, alpha, damping, data: woodfisher.wfisher_update(
      state, f, r, smp, data, forward=forward, alpha=alpha, damping=damping), n_seeded=6)


def _wfisher_apply(ctx: MethodContext, states: TrainState) -> TrainState:
  s = ctx.settings
  runner = ctx.setup.runner
  samples = []
  for i, r in enumerate(ctx.retain):  # the n retain examples whose gradients form the Fisher
    rng = plans.epoch_rng(ctx.base_seed, ctx.seed_of(i), 0, "fisher")
    samples.append(np.sort(rng.choice(r, size=min(s.num_samples, len(r)), replace=False)))
  chunk = functools.partial(ctx.chunk_plan, chunk_size=s.chunk_size)
  update = runner.compiled(_wfisher_program, ctx.setup.forward)
  out = update(runner.shard(states), runner.shard(chunk(ctx.forget, what="forget")),
               runner.shard(chunk(ctx.retain, what="retain")), runner.shard(chunk(samples, what="samples")),
               runner.shard(ctx.value("alpha")), runner.shard(ctx.value("damping")), ctx.setup.train_data())
  return runner.to_host(out, keep_padding=True)


register(Method(
    "wfisher", runners.one_shot_method("wfisher"), sgd_recipe=False,
    about="one-shot WoodFisher step theta += a F^-1 (grad forget - grad retain) (Izzo et al. 2021)",
    checks=(Check("alpha", low_open=True), Check("damping", low_open=True),
            Check("num_samples", 1, integer=True), Check("chunk_size", 1, integer=True)),
    swept=("alpha", "damping"), apply=_wfisher_apply))
