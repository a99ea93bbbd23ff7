"""Forgetting quality on MNIST-1D (many memorized examples): challenge score and U-LiRA per method.

python evaluate.py --config=configs/forgetting_mnist1d.py --workdir=runs/fq_mnist1d

As configs/forgetting_digits.py with MNIST-1D's MLP and recipe, the unlearning settings the
study tuned on MNIST-1D (configs/study_mnist1d.py) and a random forget set of 300 of 3,600
train examples.
"""
from rum_jax.configs import forgetting_digits, study_mnist1d


def get_config():
  c = study_mnist1d.get_config()
  del c.study
  base = forgetting_digits.get_config()
  c.mode = base.mode
  c.forget.update(kind="random", size=300)  # of 3,600 train examples
  c.forgetting = base.forgetting
  return c
