"""salun: random labels with the gradients masked to the most salient weights (Fan et al. 2024,
"SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR; the mask is
rum_jax/unlearning/saliency.py)."""
import functools
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from rum_jax.training.state import TrainState
from rum_jax.unlearning import saliency
from rum_jax.unlearning.interface import Check, MethodContext, Phase
from rum_jax.unlearning.methods.common import forget_mask, random_label_loss, register_training


def apply_saliency_mask(forward, grads, state, batch, rng):
  """g <- m_S * g (SalUn, Sec. 4: only salient weights learn), before the optimizer adds weight decay."""
  del forward, batch, rng
  return jax.tree.map(jnp.multiply, grads, state.aux["saliency_mask"])


def _saliency_program(runner, forward):
  return runner.map(functools.partial(saliency.saliency_magnitudes, forward=forward), n_seeded=2)


def forget_saliency(ctx: MethodContext, states: TrainState) -> np.ndarray:
  """|grad of the forget CE| per padded seed [S, P], read from ctx.saliency_path or computed (and
  saved there without the padding seeds, so the file serves any number of devices)."""
  runner = ctx.setup.runner
  n = runner.num_models
  params = runner.unpad(states.params)
  cached = saliency.load_saliency(ctx.saliency_path, ctx.forget[:n], params) if ctx.saliency_path else None
  if cached is not None:
    return runner.pad(cached)
  program = runner.compiled(_saliency_program, ctx.setup.forward)
  plan = ctx.chunk_plan(ctx.forget, ctx.settings.batch_size, "saliency")
  magnitudes = runner.to_host(program(runner.shard(states), runner.shard(plan), ctx.setup.train_data()))
  if ctx.saliency_path:
    saliency.save_saliency(ctx.saliency_path, magnitudes, ctx.forget[:n], params)
  return runner.pad(magnitudes)


def _salun_aux(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  mask = saliency.masks_like(forget_saliency(ctx, states), ctx.value("mask_ratio"), states.params)
  return {**forget_mask(ctx, states), "saliency_mask": mask}


register_training("salun", about="random labels, gradients masked to the most salient weights (Fan et al. 2024)",
                  checks=(Check("mask_ratio", 0.0, 1.0, low_open=True),), swept=("lr", "mask_ratio"),
                  prepare=_salun_aux, phases=lambda s, ctx: [
                      Phase("salun", ("train",), random_label_loss(ctx.num_classes),
                            grad_transform=apply_saliency_mask)])
