"""Model registry: `MODELS.get(name)(num_classes=..., **kwargs)` returns a Flax linen module.

Every model is called as `model.apply(variables, x, train=..., features=False)`; with
`features=True` it returns the penultimate representation (used by the entanglement score of
Zhao et al. 2024, Sec. 4). BatchNorm statistics live in the `batch_stats` collection, so they are
part of the explicit functional training state. A model that initialises from training
data (airbench's whitening layer) says so through `data_init_size`, and
`data_dependent_init` applies it (the identity for the others).

Every module of this package is imported here, and a model module registers its models when
imported, so a new model is one new file here (docs/extending.md).
"""
from rum_jax.models.registry import MODELS, create_model, data_dependent_init, data_init_size
from rum_jax.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["MODELS", "create_model", "data_dependent_init", "data_init_size"]
