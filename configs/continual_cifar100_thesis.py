"""The thesis' A4 setting on Split CIFAR-100, for a GPU: 20 tasks of 5 classes (2,500 training
images each: the full 50k train split, as GEM and the thesis use), reduced ResNet-18 (nf=20),
GEM learning (3 epochs, batch 10, lr 0.1, 256 memories per task) or A-GEM learning (lr 0.03,
65 memories), and each method's unlearning settings from the thesis' final A4 runs
(the `thesis` entries of rum_jax/continual/methods/; docs/continual.md). One command per method:

python continual.py --config=configs/continual_cifar100_thesis.py --config.algorithm=neggem \
    --config.data.data_dir=/path/to/cifar --workdir=runs/thesis_a4/neggem
  (likewise negagem, rl_gem, rl_agem, alt_neggem, neggrad_plus; NegGrad+'s a = 0.95 run adds
   --config.continual.unlearn.neggrad_plus.alpha=0.95
   --config.continual.unlearn.neggrad_plus.batch_size=2
   --config.continual.unlearn.neggrad_plus.salun=0.02)

Buffers are chosen by Feldman & Zhang's memorization when their file is given,
--config.continual.scores=/path/to/cifar100_infl_matrix.npz (`tr_mem`, aligned by original
index); without it, by the one-run confidence proxy of each task's own training.
"""
from rum_jax.configs import continual_cifar100, continual_digits


def get_config():
  c = continual_cifar100.get_config()
  c.data.options.val_per_class = 0  # the full 50k train split: 2,500 images per task
  continual_digits.thesis(c, memories=256, agem_memories=65)
  return c
