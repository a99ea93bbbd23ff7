"""RUM and every unlearning method on the 45,000-example MNIST-1D, at the paper's proportion:

python unlearn.py --config=configs/rum_mnist1d_45k.py --workdir=runs/mnist1d_45k
python unlearn.py --config=configs/rum_mnist1d_45k.py --config.unlearn.method=salun --workdir=runs/mnist1d_45k

A `mix` forget set of 3,000 of the 45,000 training examples (1,000 of low, mid and high
memorization: RUM's 3,000 of CIFAR-10's 45,000), 4 seeds, the memorization of
configs/mnist1d_45k_memorization.py (1,024 models, computed into <workdir>/memorization first
if absent). The unlearning settings and RUM's plan are configs/rum_mnist1d.py's (tuned on the
4,000-example MNIST-1D, not on this one), except two that depend on the forget set's size:
NegGrad+'s passes over the forget set per epoch, 14, the retain set's size over the forget set's
(42,000 / 3,000), as configs/study_mnist1d.py sizes its 10 for 3,300 / 300; and NegGrad's
learning rate, 0.0003 instead of 0.01: gradient ascent takes a step per batch of the forget set,
ten times as many on 3,000 as on 300; at 0.01 it made non-finite weights in every seed by the
second epoch, at 0.001 in 2 of 4 seeds in the fifth. SCRUB's max passes over the forget set
(msteps) ascend in the same way, and at 0.02 it diverged in the first epoch: 0.002. bench/mnist1d_45k.py runs every
method into one work directory and records the times.
"""
from rum_jax.configs import mnist1d_45k, mnist1d_45k_memorization, rum_mnist1d


def get_config():
  c = rum_mnist1d.get_config()
  data = mnist1d_45k.get_config()
  c.data.options = data.data.options
  c.train = data.train
  c.memorization = mnist1d_45k_memorization.get_config().memorization
  c.num_seeds = 4
  c.forget.size = 3000
  c.unlearn.neggrad_plus.forget_passes = 14
  c.unlearn.neggrad.lr = 0.0003
  c.unlearn.scrub.lr = 0.002
  return c
