"""neggrad: gradient ascent on the forget set (Golatkar et al. 2020; 'GA' in RUM)."""
from rum_jax.unlearning.interface import Phase
from rum_jax.unlearning.methods.common import register_training, stream_ce


def neggrad_loss(forward, params, state, batch, rng):
  """-CE(forget): gradient ascent on the forget set (Golatkar et al. 2020; 'GA' in RUM)."""
  del rng
  _, batch_stats, ce, acc = stream_ce(forward, params, state.batch_stats, batch["forget"])
  return -ce, (batch_stats, {"loss": -ce, "forget_ce": ce, "forget_accuracy": acc})


register_training("neggrad", about="gradient ascent on the forget set (Golatkar et al. 2020)", swept=("lr",),
                  phases=lambda s, ctx: [Phase("neggrad", ("forget",), neggrad_loss)])
