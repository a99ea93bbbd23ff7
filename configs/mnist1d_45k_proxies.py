"""Memorization proxies of the 45,000-example MNIST-1D (configs/mnist1d_45k.py), one training run.

python train.py --config=configs/mnist1d_45k_proxies.py --workdir=runs/mnist1d_45k/proxies

The one-run proxies (3 seeds averaged) of the learning events of ordinary training, and
held-out retraining on the 5,000 validation signals.
"""
from rum_jax.configs import mnist1d_45k


def get_config():
  c = mnist1d_45k.get_config()
  c.mode = "proxies"
  return c
