"""MNIST-1D (Greydanus & Kobak): an MLP fits train to 100% but reaches only ~60% test,
so many examples are memorized: the CPU data set for memorization and RUM studies."""
from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "mnist1d"
  c.model.kwargs.hidden = (100, 100)
  c.train.epochs = 60
  c.train.batch_size = 128
  c.train.lr = 0.1
  return c
