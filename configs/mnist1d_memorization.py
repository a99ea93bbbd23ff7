"""Memorization on MNIST-1D (many memorized examples): 256 subset models.

python train.py --config=configs/mnist1d_memorization.py --workdir=runs/mnist1d_mem
"""
from rum_jax.configs import mnist1d


def get_config():
  c = mnist1d.get_config()
  c.mode = "memorization"
  c.memorization.num_models = 256
  c.memorization.chunk_size = 64
  return c
