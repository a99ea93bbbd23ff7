"""finetune: cross-entropy on the retain set (Warnecke et al. 2023, "Machine Unlearning of
Features and Labels", NDSS)."""
import functools

from rum_jax.training import engine
from rum_jax.unlearning.interface import Phase
from rum_jax.unlearning.methods.common import register_training

_finetune_loss = functools.partial(engine.supervised_loss, stream="retain")

register_training("finetune", about="cross-entropy on the retain set (Warnecke et al. 2023)", swept=("lr",),
                  phases=lambda s, ctx: [Phase("finetune", ("retain",), _finetune_loss)])
