"""CIFAR-10, ResNet-18 as in RUM (Zhao et al. 2024: original training, forget sets, methods). Meant for GPUs.

python unlearn.py --config=configs/cifar10_resnet18.py --config.forget.scores=<estimates_results_woShuffle.npz> \
    --config.unlearn.method=salun --workdir=runs/cifar10

Checked field by field against RUM's code (kairanzhao/RUM: arg_parser.py defaults,
main_train.py, main_forget.py / main_random.py through unlearn/impl.py, dataset.py, utils.py,
main_rum.py and the README's commands):

- data: 45k train / 5k validation (10% of each class, seeded) / 10k test, inputs normalised
  with mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616): as RUM (dataset.py
  cifar10_dataloaders, utils.py). The validation draw is this library's (split_seed), not
  numpy's RandomState(seed) of RUM, so the 5k examples differ; original indices are kept.
- model: CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2], widths
  64..512, BatchNorm momentum 0.1 in torch's convention, eps 1e-5): RUM's models/ResNet.py
  resnet18 with imagenet=False.
- original training: SGD momentum 0.9, weight decay 5e-4, lr 0.1, batch 256, 30 epochs,
  CosineAnnealingLR(T_max=30) stepped once per epoch (train.schedule = epoch_cosine), plain
  cross-entropy, WITH random crop (pad 4, black) + horizontal flip (data.augment): RUM's
  main_train.py with arg_parser's defaults (no --no_aug).
- retrain reference: the original's recipe on the retain set (RUM: main_forget.py --unlearn
  retrain --unlearn_epochs 30 --unlearn_lr 0.1, CIFAR-10's CosineAnnealingLR(T_max=epochs)).
- unlearning: every method, retraining included, WITHOUT augmentation (unlearn.augment
  False: main_rum.py passes --no_aug to each step, and main_forget.py's retain / forget
  loaders then apply no transform); SGD momentum 0.9, weight decay 5e-4, batch 256, a
  constant learning rate (RUM's MultiStepLR milestones 91, 136 lie beyond every method's
  epochs). Per method (the README's commands): finetune 10 epochs lr 0.01; l1_sparse 10
  epochs lr 0.01 with alpha decaying linearly to 0 (RUM: --alpha per run; 5e-4 here);
  neggrad 5 epochs lr 1e-4; neggrad_plus 5 epochs lr 0.01 (RUM: --alpha per run; 0.99, the
  value of its proxy pipeline main_rum_proxy.py); scrub 5 epochs lr 5e-3, msteps 4, T 4
  (beta, gamma: per run in RUM; 0.001, 0.99 here); random_label and salun 10 epochs lr 0.1,
  SalUn's mask keeping the top half of the weights by |gradient| (RUM's generate_mask.py
  keeps the smallest by mistake; this is the SalUn paper's rule); wfisher one shot (RUM:
  --alpha per run; 10 here).
- forget set: 3,000 examples, a `mix` of a third each of low, mid and high memorization
  (RUM: --mem mix --num_indexes_to_replace 3000), with RUM's published CIFAR-10 scores
  (estimates_results_woShuffle.npz) as --config.forget.scores.
- memorization (mode=memorization, for scores of your own): 400 subset models of 70% (RUM's
  file: 400). This trains the models of this config (the CIFAR ResNet-18 recipe above, 45k
  split). RUM's published file was made differently (surgical_plugins/cifar_infl_mem_torch.py):
  torchvision's ImageNet ResNet-18 (7x7 stem, max-pool) on all 50k, lr 0.01 x 0.1 after
  epochs 15, 20 and 25, batch 512, 30 epochs, no augmentation. Use the published file for
  RUM's exact scores; configs/cifar10_memorization_fast.py computes 2,000 models' worth fast.
- not from RUM: eval_batch_size (any value gives the same predictions) and num_seeds 3.
"""
import ml_collections

from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "cifar10"
  c.data.data_dir = "data/cifar10"
  c.data.augment = True        # original training: RandomCrop(32, 4) + RandomHorizontalFlip
  c.model.name = "resnet18"
  c.model.kwargs = {"nf": 64}
  c.train.epochs = 30
  c.train.batch_size = 256
  c.train.lr = 0.1
  c.train.schedule = "epoch_cosine"
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_batch_size = 1000
  c.memorization.num_models = 400
  c.memorization.chunk_size = 0   # as many ResNet-18s per program as fit the device

  c.forget.kind = "memorization"
  c.forget.level = "mix"
  c.forget.size = 3000

  u = c.unlearn
  u.augment = False            # RUM's --no_aug, retraining included
  sgd = dict(batch_size=256, momentum=0.9, weight_decay=5e-4)
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
