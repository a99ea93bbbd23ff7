"""rl_agem: the thesis' RL-AGEM, a random-label step, A-GEM-projected."""
from rum_jax.continual.methods.interface import ContinualMethod, agem, chain, random_labels, register

METHOD = register(ContinualMethod(
    "rl_agem", chain((random_labels, agem)), "agem", "agem", "random-label step, A-GEM-projected (RL-AGEM)",
    thesis=dict(lr=0.003, batch_size=1, stop_above_chance=0.1, salun=0.02)))
