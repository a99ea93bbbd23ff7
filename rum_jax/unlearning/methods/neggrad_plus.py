"""neggrad_plus: descent on the retain set and ascent on the forget set, weighted (NegGrad+, a
baseline of Kurmanji et al. 2023)."""
import ml_collections

from rum_jax.unlearning.interface import Check, Phase
from rum_jax.unlearning.methods.common import register_training, setting, stream_ce


def neggrad_plus_loss(forward, params, state, batch, rng):
  """alpha CE(retain batch) - (1 - alpha) CE(forget batch) (NegGrad+, a baseline of Kurmanji et al.
  2023); alpha: aux["hp"]["alpha"]."""
  del rng
  alpha = setting(state, "alpha")
  _, batch_stats, ce_r, acc = stream_ce(forward, params, state.batch_stats, batch["retain"])
  _, batch_stats, ce_f, acc_f = stream_ce(forward, params, batch_stats, batch["forget"])
  loss = alpha * ce_r - (1.0 - alpha) * ce_f
  return loss, (batch_stats, {"loss": loss, "retain_ce": ce_r, "forget_ce": ce_f,
                              "accuracy": acc, "forget_accuracy": acc_f})


class _OptionalCheck(Check):
  """A setting older configs may lack (its absence means its default, 0)."""

  def __call__(self, settings: ml_collections.ConfigDict, prefix: str) -> None:
    if self.key in settings:
      super().__call__(settings, prefix)


# forget_passes: passes over the forget set per epoch (0 = one retain pass, the forget stream
# cycled to its length, as RUM's code); runners.forget_dose_steps says why it matters.
register_training("neggrad_plus", about="a CE(retain) - (1 - a) CE(forget) (Kurmanji et al. 2023)",
                  checks=(Check("alpha", 0.0, 1.0), _OptionalCheck("forget_passes", integer=True)),
                  swept=("lr", "alpha"),
                  phases=lambda s, ctx: [Phase("neggrad_plus", ("retain", "forget"), neggrad_plus_loss)])
