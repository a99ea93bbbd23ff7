"""neggrad_plus: the thesis' neggrad, a mean_R g_r + (1 - a) g_f applied at every forget batch
(NegGrad+, Kurmanji et al. 2023).

The thesis' settings are its a = 0.5 run (NEGGRAD_FINAL); its a = 0.95 run (neggrad095) used
batch 2 and SalUn 0.02.
"""
from rum_jax.continual.methods.interface import ContinualMethod, Option, chain, negative, neggrad_plus, register

METHOD = register(ContinualMethod(
    "neggrad_plus", chain((negative, neggrad_plus)), "gem", "",
    "a mean_R g_r + (1 - a) g_f, always applied (the thesis' neggrad; Kurmanji et al. 2023)",
    options=(Option("alpha", 0.5, 0.0, 1.0, "weight a of the retained tasks' mean gradient"),),
    thesis=dict(lr=0.01, batch_size=8, stop_above_chance=0.075, salun=0.5, alpha=0.5)))
