"""Data sets with train/val/test splits that keep every example's original index.

`load_dataset(name, data_dir=..., split_seed=...)` is the entry point; `DATASETS` lists
the names. Every module of this package is imported here, and a loader module registers its
data set when imported, so a new data set is one new file here (docs/extending.md).
"""
from rum_jax.data.augment import random_crop_flip
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS, load_dataset
from rum_jax.data.splits import hold_out, stratified_split
from rum_jax.registry import import_modules

import_modules(__name__, __path__)

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "hold_out",
    "load_dataset",
    "random_crop_flip",
    "stratified_split",
]
