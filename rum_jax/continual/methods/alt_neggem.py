"""alt_neggem: the thesis' ALT-NegGEM, a negative step projected on GEM rows of every observed
task, the forgotten task's row its own forget gradient."""
from rum_jax.continual.methods.interface import ContinualMethod, chain, gem_with_forget, negative, register

METHOD = register(ContinualMethod(
    "alt_neggem", chain((negative, gem_with_forget)), "gem", "gem_with_forget",
    "negative step, GEM rows of every observed task, the forgotten one's its own gradient (ALT-NegGEM)",
    thesis=dict(lr=0.01, batch_size=2, stop_above_chance=0.15, salun=0.02)))
