"""rl_gem: the thesis' RL-GEM, a random-label step, GEM-projected."""
from rum_jax.continual.methods.interface import ContinualMethod, chain, gem, random_labels, register

METHOD = register(ContinualMethod(
    "rl_gem", chain((random_labels, gem)), "gem", "gem", "random-label step, GEM-projected (RL-GEM)",
    thesis=dict(lr=0.01, batch_size=2, stop_above_chance=0.075, salun=0.05)))
