"""l1_sparse: the retain set's cross-entropy plus a decaying L1 penalty (Jia et al. 2023)."""
import functools

import jax
import jax.numpy as jnp

from rum_jax.training import engine
from rum_jax.unlearning.interface import Check, Phase
from rum_jax.unlearning.methods.common import register_training, setting, stream_ce


@functools.lru_cache(maxsize=None)  # one function per (epochs, steps): compiled programs are shared
def l1_sparse_loss(epochs: int, steps_per_epoch: int) -> engine.LossFn:
  """CE(retain) + a_t ||theta||_1 with a_t = alpha (1 - e / E), e = the current epoch (0-based).

  Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS,
  arXiv:2304.04934), the l1-sparse unlearning objective and its linearly decaying schedule; the
  L1 norm is over all parameters, as the original `l1_regularization`. alpha: aux["hp"]["alpha"].
  """
  def loss_fn(forward, params, state, batch, rng):
    del rng
    _, batch_stats, ce, acc = stream_ce(forward, params, state.batch_stats, batch["retain"])
    coefficient = setting(state, "alpha") * (1.0 - (state.step // steps_per_epoch) / epochs)
    l1 = sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))
    loss = ce + coefficient * l1
    return loss, (batch_stats, {"loss": loss, "retain_ce": ce, "accuracy": acc,
                                "l1_coefficient": coefficient})
  return loss_fn


register_training("l1_sparse", about="CE(retain) + a_t |theta|_1, a_t decaying linearly to 0 (Jia et al. 2023)",
                  checks=(Check("alpha"),), swept=("lr", "alpha"), phases=lambda s, ctx: [
                      Phase("l1_sparse", ("retain",), l1_sparse_loss(s.epochs, ctx.steps_per_epoch("retain")))])
