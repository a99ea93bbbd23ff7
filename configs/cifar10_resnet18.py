"""CIFAR-10, ResNet-18 as in RUM (Zhao et al. 2024: original training, forget sets, methods). Meant for GPUs.

Training: SGD 0.9, wd 5e-4, lr 0.1 cosine, batch 256, 30 epochs, 45k/5k/10k split.
Unlearning: RUM's typical settings (batch 256, constant lr); forget set: 3,000 examples,
`mix` of memorization (RUM's published file `estimates_results_woShuffle.npz` works as
--config.forget.scores=...).
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.data.name = "cifar10"
  c.data.data_dir = "data/cifar10"
  c.model.name = "resnet18"
  c.model.kwargs = {"nf": 64}
  c.train.epochs = 30
  c.train.batch_size = 256
  c.train.lr = 0.1
  c.train.eval_batch_size = 1000
  # Memorization: RUM's CIFAR-10 estimate used ResNet-18s, 30 epochs, batch 512, lr 0.01
  # with step decay, no augmentation; 400 models.
  c.memorization.num_models = 400
  c.memorization.chunk_size = 8

  c.forget.kind = "memorization"
  c.forget.level = "mix"
  c.forget.size = 3000

  sgd = dict(batch_size=256, momentum=0.9, weight_decay=5e-4)
  u = c.unlearn
  u.finetune = ml_collections.ConfigDict(dict(epochs=10, lr=0.01, **sgd))
  u.l1_sparse = ml_collections.ConfigDict(dict(epochs=10, lr=0.01, alpha=5e-4, **sgd))
  u.neggrad = ml_collections.ConfigDict(dict(epochs=5, lr=1e-4, **sgd))
  u.neggrad_plus = ml_collections.ConfigDict(dict(epochs=5, lr=0.01, alpha=0.99, **sgd))
  u.scrub = ml_collections.ConfigDict(dict(
      epochs=5, lr=5e-3, msteps=4, temperature=4.0, gamma=0.99, beta=0.001, **sgd))
  u.wfisher = ml_collections.ConfigDict(dict(alpha=10.0, damping=1.0, num_samples=1000, chunk_size=16))
  u.random_label = ml_collections.ConfigDict(dict(epochs=10, lr=0.1, **sgd))
  u.salun = ml_collections.ConfigDict(dict(epochs=10, lr=0.1, mask_ratio=0.5, **sgd))
  return c
