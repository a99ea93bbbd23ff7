"""An audit of forgetting quality on MNIST-1D (many memorized examples): challenge score, U-LiRA.

python evaluate.py --config=configs/audit_mnist1d.py --workdir=runs/audit_mnist1d

As configs/audit_digits.py with MNIST-1D's MLP and recipe, the unlearning settings the
study tuned on MNIST-1D (configs/study_mnist1d.py) and a random forget set of 300 of 3,600
train examples.
"""
from rum_jax.configs import audit_digits, study_mnist1d


def get_config():
  c = study_mnist1d.get_config()
  del c.study
  base = audit_digits.get_config()
  c.mode = base.mode
  c.forget.update(kind="random", size=300)  # of 3,600 train examples
  c.audit = base.audit
  return c
