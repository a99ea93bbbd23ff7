"""negagem: the thesis' NegAGEM, a negative step, A-GEM-projected."""
from rum_jax.continual.methods.interface import ContinualMethod, agem, chain, negative, register

METHOD = register(ContinualMethod(
    "negagem", chain((negative, agem)), "agem", "agem", "negative step, A-GEM-projected (NegAGEM)",
    thesis=dict(lr=0.003, batch_size=1, stop_above_chance=0.1, salun=0.05)))
