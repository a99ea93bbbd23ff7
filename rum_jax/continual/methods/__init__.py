"""Continual methods, one file each, and the learning algorithms (interface.py: the registries
`CONTINUAL_METHODS` and `LEARN_ALGORITHMS`, what a method's factory returns, and the objectives
and projections of `continual/updates.py` a method is chained from).

Every module here is imported with the package, so a new continual method is one new file here
(docs/extending.md).
"""
from rum_jax.continual.methods.interface import (CONTINUAL_METHODS, LEARN_ALGORITHMS, ContinualMethod, ForgetSettings,
                                                 Forgetting, LearnAlgorithm, LearnSettings, Option, agem, chain, gem,
                                                 gem_with_forget, learn_update, negative, neggrad_plus, random_labels,
                                                 register, with_memories)
from rum_jax.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["CONTINUAL_METHODS", "LEARN_ALGORITHMS", "ContinualMethod", "ForgetSettings", "Forgetting", "LearnAlgorithm",
           "LearnSettings", "Option", "agem", "chain", "gem", "gem_with_forget", "learn_update", "negative",
           "neggrad_plus", "random_labels", "register", "with_memories"]
