"""Feldman-Zhang memorization of every CIFAR-10 train example from 2,000 airbench models.

python train.py --config=configs/cifar10_memorization_fast.py --workdir=runs/cifar10_mem_fast

Meant for GPUs. Each model trains on a random 70% of the 45k train split with airbench94's
net and recipe (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv:2404.00498; rum_jax/models/airbench.py), which makes 2,000 models affordable where
2,000 ResNet-18s are not. The first layer is initialised by whitening the patches of
training images; the training code must hand those to `data_dependent_init`.

The recipe in this library's terms: batch 1024, 10 epochs (airbench: 9.9), Nesterov
momentum 0.85, the triangle schedule (0.2 lr -> lr at 23% of the steps -> 0.07 lr) with
peak lr 1.5, weight decay 1.33e-3, label smoothing 0.2, crop + flip augmentation.
airbench sums the loss over the batch and passes torch lr = 11.5 / k, weight_decay =
0.0153 * 1024 / 11.5 with k = 1024 (1 + 1/(1 - 0.85)); on the batch MEAN loss the same
updates are lr = 11.5 * 1024 / k = 1.5 and weight decay = 0.0153 / 11.5 = 1.33e-3 (so
lr x wd = 2.0e-3 per step, as airbench's). BatchNorm biases learn 64x faster, inside the
model (its `bias_lr_scale`).

NOT MEASURED: the CIFAR-10 accuracy of this config has not been measured yet (it was
written without a GPU and without CIFAR). airbench reports 94.0% test accuracy with its
full recipe, parts of which are not reproduced here: Lookahead/EMA of the weights, the
whitening bias frozen after 3 epochs, alternating flips with 2-pixel reflect translation
instead of random flips with 4-pixel crops, and test-time augmentation. Before trusting the
scores, train a few models with --config.mode=train and read their accuracy in
metrics.json.

Checked against RUM (Zhao et al. 2024) where the two meet: the data are RUM's (45k / 5k /
10k, RUM's normalisation), each model trains on a random 70% of the 45k train split as in
RUM's estimate (surgical_plugins/cifar_infl_mem_torch.py: subset_ratio 0.7), and scores keep
CIFAR-10's original indices, so they line up with RUM's published file and its forget sets.
Unlike RUM's estimate (400 torchvision ResNet-18s, 30 epochs, no augmentation) the models
are airbench nets with airbench's augmentation; the point is 2,000 models in GPU hours.

chunk_size 0: as many models per program as the GPU holds, measured from the compiled
training program (rum_jax/training/memory.py; logged, and kept when a run resumes).
"""
from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.mode = "memorization"
  c.data.name = "cifar10"
  c.data.data_dir = "data/cifar10"
  c.data.augment = True
  c.model.name = "airbench"
  c.model.kwargs = {"widths": (64, 256, 256)}
  c.train.epochs = 10
  c.train.batch_size = 1024
  c.train.lr = 1.5
  c.train.schedule = "triangle"
  c.train.momentum = 0.85
  c.train.nesterov = True
  c.train.weight_decay = 0.0153 / 11.5
  c.train.label_smoothing = 0.2
  c.train.eval_batch_size = 1000
  c.memorization.num_models = 2000
  c.memorization.chunk_size = 0    # as many as fit the device (memory analysis of the program)
  return c
