"""Memorization of the 45,000-example MNIST-1D (configs/mnist1d_45k.py): 1,024 subset models.

python train.py --config=configs/mnist1d_45k_memorization.py --workdir=runs/mnist1d_45k/memorization

Feldman & Zhang's estimate from 1,024 MLPs, each trained on its own 70% (31,500 examples) for
20 epochs, 64 per program (16 chunks; a killed run resumes from its last finished chunk).
About 10 minutes on 2 idle CPU cores (bench/RESULTS.md, "MNIST-1D at CIFAR's size").
"""
from rum_jax.configs import mnist1d_45k


def get_config():
  c = mnist1d_45k.get_config()
  c.mode = "memorization"
  c.memorization.num_models = 1024
  c.memorization.chunk_size = 64
  return c
