"""Memorization of every digits train example from 256 models on random 70% subsets.

python train.py --config=configs/digits_memorization.py --workdir=runs/digits_mem
"""
from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.mode = "memorization"
  c.train.epochs = 20
  return c
