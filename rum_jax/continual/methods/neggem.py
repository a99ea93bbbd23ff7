"""neggem: the thesis' NegGEM, a negative step, then a random-label step, both GEM-projected."""
from rum_jax.continual.methods.interface import ContinualMethod, chain, gem, negative, random_labels, register

METHOD = register(ContinualMethod(
    "neggem", chain((negative, gem), (random_labels, gem)), "gem", "gem",
    "negative step, then random-label step, both GEM-projected (the thesis' NegGEM)",
    thesis=dict(lr=0.01, batch_size=2, stop_above_chance=0.075, salun=0.02)))
