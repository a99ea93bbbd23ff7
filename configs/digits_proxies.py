"""Memorization proxies of digits from one training run (3 seeds averaged)."""
from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.mode = "proxies"
  return c
