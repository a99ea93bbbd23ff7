"""Memorization proxies of MNIST-1D from one training run (3 seeds averaged)."""
from rum_jax.configs import mnist1d


def get_config():
  c = mnist1d.get_config()
  c.mode = "proxies"
  return c
