"""Split CIFAR-100 with our settings: 20 tasks of 5 classes, reduced ResNet-18 (nf=20), plain
SGD lr 0.1, batch 10, 256 memories per task. Meant for GPUs.

python continual.py --config=configs/continual_cifar100.py --config.data.data_dir=/path/to/cifar \
    --config.algorithm=neggem --config.sequence=A4 --workdir=runs/cl_a4

The train split is RUM's 45k (2,250 examples per task). The thesis' own setting (the full
50k, its per-method settings) is configs/continual_cifar100_thesis.py.
"""
import ml_collections

from rum_jax.configs import continual_digits
from rum_jax.continual.methods import CONTINUAL_METHODS


def get_config():
  c = continual_digits.get_config()
  c.data.name = "cifar100"
  c.data.data_dir = "data/cifar100"
  c.model.name = "reduced_resnet18"
  c.model.kwargs = ml_collections.ConfigDict({"nf": 20})
  c.train.eval_batch_size = 500
  k = c.continual
  k.classes_per_task = 5
  k.epochs = 1
  continual_digits.set_memories(c, memories=256, agem_memories=256)
  for name in CONTINUAL_METHODS.names():
    k.unlearn[name].batch_size = 8
  k.unlearn_max_epochs = 48
  return c
