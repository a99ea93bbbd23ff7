"""MNIST-1D at CIFAR's size: 45,000 train / 5,000 val / 10,000 test signals (RUM's split of CIFAR-10).

python train.py --config=configs/mnist1d_45k.py --workdir=runs/mnist1d_45k

The mnist1d package's generator with 60,000 signals (data.options: 50,000 train, of which 10%
are held out for validation, and 10,000 test; generating them takes about half a minute); the
MLP of configs/mnist1d.py. With twelve times the data each epoch has twelve times the steps,
so 20 epochs (4,900 steps) train longer than configs/mnist1d.py's 60 (1,700 steps) and keep a
1,024-model memorization estimate within 20 minutes on 2 CPU cores (bench/mnist1d_45k.py).
"""
from rum_jax.configs import mnist1d


def get_config():
  c = mnist1d.get_config()
  c.data.options.num_train = 50_000
  c.data.options.num_test = 10_000
  c.train.epochs = 20
  return c
