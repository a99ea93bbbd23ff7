"""alt_neggem_rl (ours): ALT-NegGEM plus NegGEM's random-label step, both projected as ALT-NegGEM's;
its thesis settings are ALT-NegGEM's."""
from rum_jax.continual.methods import alt_neggem
from rum_jax.continual.methods.interface import (ContinualMethod, chain, gem_with_forget, negative, random_labels,
                                                 register)

METHOD = register(ContinualMethod(
    "alt_neggem_rl", chain((negative, gem_with_forget), (random_labels, gem_with_forget)), "gem",
    "gem_with_forget", "ours: ALT-NegGEM plus NegGEM's random-label step", thesis=alt_neggem.METHOD.thesis))
