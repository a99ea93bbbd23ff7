"""Digits (scikit-learn's 8x8 handwritten digits, offline): the default config."""
from rum_jax.configs import default


def get_config():
  return default.get_config()
