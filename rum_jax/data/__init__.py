"""Data sets with train/val/test splits that keep every example's original index.

`load_dataset(name, data_dir=..., split_seed=...)` is the entry point; `DATASETS` lists
the names. Importing the loader modules below registers them.
"""
from rum_jax.data import cifar
from rum_jax.data import digits
from rum_jax.data import mnist1d
from rum_jax.data import npz
from rum_jax.data import tfds_images
from rum_jax.data.augment import random_crop_flip
from rum_jax.data.base import Dataset, Split
from rum_jax.data.catalog import DATASETS, load_dataset
from rum_jax.data.splits import hold_out, stratified_split

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "hold_out",
    "load_dataset",
    "random_crop_flip",
    "stratified_split",
]
