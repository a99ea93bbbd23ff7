"""negagem_rl (ours): NegAGEM plus NegGEM's random-label step, both A-GEM-projected; its thesis
settings are NegAGEM's."""
from rum_jax.continual.methods import negagem
from rum_jax.continual.methods.interface import ContinualMethod, agem, chain, negative, random_labels, register

METHOD = register(ContinualMethod(
    "negagem_rl", chain((negative, agem), (random_labels, agem)), "agem", "agem",
    "ours: NegAGEM plus NegGEM's random-label step", thesis=negagem.METHOD.thesis))
