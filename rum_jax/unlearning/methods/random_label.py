"""random_label: cross-entropy on the retain set and the forget set relabelled at random
(Graves et al. 2021, "Amnesiac Machine Learning", AAAI)."""
from rum_jax.unlearning.interface import Phase
from rum_jax.unlearning.methods.common import forget_mask, random_label_loss, register_training

register_training("random_label", about="CE on retain + forget relabelled at random (Graves et al. 2021)",
                  swept=("lr",), prepare=forget_mask, phases=lambda s, ctx: [
                      Phase("random_label", ("train",), random_label_loss(ctx.num_classes))])
