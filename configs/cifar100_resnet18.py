"""CIFAR-100, ResNet-18, RUM's CIFAR recipe (configs/cifar10_resnet18.py). Meant for GPUs.

Checked against RUM's code (kairanzhao/RUM) like configs/cifar10_resnet18.py, whose fields
this config keeps, with these CIFAR-100 specifics:
- data: 45k / 5k / 10k with 50 validation images per class, normalised with mean
  (0.5071, 0.4866, 0.4409) and std (0.2673, 0.2564, 0.2762): RUM's cifar100_dataloaders and
  utils.py. Original training with crop + flip, unlearning without (as for CIFAR-10).
- model: RUM's main_train.py names a ResNet-50 for CIFAR-100 in a comment ("for training
  original model: cifar100-resnet50"), and RUM's README uses the Feldman-Zhang CIFAR-100
  memorization scores, which come from ResNet-50s. This library has no ResNet-50: this
  config trains the CIFAR ResNet-18 with the same recipe (a difference from the paper).
- schedule: original training is cosine per epoch (main_train.py's CosineAnnealingLR). RUM's
  CIFAR-100 retraining uses MultiStepLR(milestones 91, 136, gamma 0.2) instead, which over
  30 epochs is a constant lr 0.1; the retrain reference here trains with the original's
  recipe, the intended "train from scratch without the forget set".
- forget set: 3,000, `mix`; scores: Feldman-Zhang's cifar100_infl_matrix.npz (`tr_mem`,
  read as it is) as --config.forget.scores.
"""
from rum_jax.configs import cifar10_resnet18


def get_config():
  c = cifar10_resnet18.get_config()
  c.data.name = "cifar100"
  c.data.data_dir = "data/cifar100"
  return c
