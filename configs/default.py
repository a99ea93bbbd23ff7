"""Default config: the embedded `digits` data set, an MLP, 3 seeds trained at once.

Every other config imports this one and overrides a few fields.
"""
import ml_collections

from rum_jax.evaluation.metrics import DEFAULT_METRICS
from rum_jax.unlearning import interface as unlearning


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.mode = "train"           # train.py: train | memorization | proxies
  c.seed = 0                 # base seed; seed s of a run uses fold_in(PRNGKey(seed), s)
  c.num_seeds = 3            # models trained at once (one program, spread over devices)
  c.vmap_size = 0            # seeds vmapped together per device, the rest looped in the same
  #                            program; 0 = 1 on CPUs (faster there), all on GPUs/TPUs

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"     # digits | mnist1d | cifar10 | cifar100 | npz | tfds
  c.data.data_dir = ""       # CIFAR: folder with the python archive or a TFDS data_dir
  c.data.split_seed = 0      # seeds the train/validation split
  c.data.augment = False     # random crop (pad 4, black) + horizontal flip (images only) when
  #                            training from scratch on the train split: the original models,
  #                            memorization subsets, proxies, continual learning. RUM's CIFAR
  #                            configs: on. Unlearning has its own: c.unlearn.augment
  c.data.options = ml_collections.ConfigDict()  # loader options, e.g. CIFAR's source
  #                            ('auto' | 'archive' | 'tfds') and val_per_class; npz: path
  #                            (your own .npz file); tfds: name (any TFDS image data set)

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"       # mlp | cnn | resnet18 | reduced_resnet18
  c.model.kwargs = ml_collections.ConfigDict({"hidden": (256, 256)})
  c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (activations and matmuls in
  #                            bfloat16; parameters, optimizer state, BatchNorm statistics and
  #                            logits stay float32)

  c.train = ml_collections.ConfigDict()
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.lr = 0.1
  c.train.schedule = "cosine"  # constant | cosine (per step) | step | triangle (airbench's
  #                              warmup-decay) | epoch_cosine (per epoch, as RUM's CIFAR runs)
  c.train.momentum = 0.9
  c.train.nesterov = False     # Nesterov momentum, in torch.optim.SGD's form (airbench uses it)
  c.train.weight_decay = 5e-4
  c.train.label_smoothing = 0.0  # cross-entropy target (1 - a) onehot + a / K; 0 = plain CE
  c.train.eval_batch_size = 1024

  # mode=memorization: Feldman & Zhang 2020 subsampling, trained with c.train.
  c.memorization = ml_collections.ConfigDict()
  c.memorization.num_models = 256   # K; raise it later to add models to an estimate
  c.memorization.chunk_size = 64    # models trained at once as one program; 0 = as many as
  #                                   fit the device's memory (measured from the compiled program)
  c.memorization.ratio = 0.7        # |S_k| / N
  c.memorization.seed = 0           # seeds the subsets and the models' initialisation
  c.memorization.influence = False  # also estimate the test x train influence matrix

  # mode=proxies: one training run's learning events + held-out retraining.
  c.proxies = ml_collections.ConfigDict()
  c.proxies.heldout_lr = 0.01
  c.proxies.heldout_max_epochs = 50
  c.proxies.patience = 4            # early stop: epochs without held-out improvement

  # Forget set (Zhao et al. 2024, Sec. 4). Positions are into the train split.
  c.forget = ml_collections.ConfigDict()
  c.forget.kind = "random"     # random | memorization | proxy | entanglement
  c.forget.level = "mix"       # memorization / proxy: low | mid | high | mix (n/3 of each)
  c.forget.size = 150          # examples (RUM: 3,000 of 45k CIFAR; here 12% of digits' 1,257)
  c.forget.scores = ""         # score file; "" = <workdir>/memorization/memorization.npz
  c.forget.score_key = ""      # array inside the score file (e.g. a proxy name); "" = detect
  c.forget.seed = 0            # seeds a random forget set
  c.forget.group = 0           # entanglement: ES group (0 = closest to the feature mean)
  c.forget.split = "report"    # report | validation: the disjoint set of the same kind and level
  #                              that method settings are tuned on
  c.forget.draw = "band"       # memorization / proxy: band = each seed draws its reported and its
  #                              validation set at random from the 2n examples at the level's place
  #                              in the ranking (matched, per seed); ranking = the n most extreme for
  #                              every seed, validation the next n (rum_jax/unlearning/forget_kinds.py)

  # Unlearning (the methods of RUM's study, README): SGD momentum 0.9, weight decay 5e-4, constant lr. RUM's
  # typical epochs; batch 64 and learning rates tuned on digits (a `mix` forget set of 150,
  # 3 seeds) so that each method moves the forget accuracy toward the retrained model's.
  # `retrain` trains from scratch with c.train; every other method has its settings here.
  c.unlearn = ml_collections.ConfigDict()
  c.unlearn.method = "finetune"  # retrain | finetune | l1_sparse | neggrad | neggrad_plus |
  #                                scrub | wfisher | random_label | salun
  c.unlearn.original_workdir = ""  # a finished train.py workdir; "" = <workdir>/original
  c.unlearn.compute_scores = True  # compute a missing default score file (<workdir>/memorization) first
  c.unlearn.augment = False  # crop + flip in every method and the retrain reference (RUM: off,
  #                            --no_aug, also where the original models trained with it)
  sgd = dict(batch_size=64, momentum=0.9, weight_decay=5e-4)
  c.unlearn.finetune = ml_collections.ConfigDict(dict(epochs=10, lr=0.01, **sgd))
  c.unlearn.l1_sparse = ml_collections.ConfigDict(dict(epochs=10, lr=0.1, alpha=5e-4, **sgd))
  c.unlearn.neggrad = ml_collections.ConfigDict(dict(epochs=5, lr=0.05, **sgd))
  # forget_passes: passes over the forget set per epoch, the retain stream cycled beside it (0 = one
  # retain pass with the forget stream cycled, as RUM's code: a dose per forget example that grows as
  # the forget set shrinks, e.g. in RUM's steps)
  c.unlearn.neggrad_plus = ml_collections.ConfigDict(dict(epochs=5, lr=0.03, alpha=0.9, forget_passes=0, **sgd))
  c.unlearn.scrub = ml_collections.ConfigDict(dict(
      epochs=5, lr=0.02, msteps=4, temperature=4.0, gamma=0.99, beta=0.001, **sgd))
  # wfisher: theta += alpha F^-1 v, F = damping I + mean g g^T over num_samples retain examples.
  c.unlearn.wfisher = ml_collections.ConfigDict(dict(
      alpha=150.0, damping=1.0, num_samples=1000, chunk_size=256))
  c.unlearn.random_label = ml_collections.ConfigDict(dict(epochs=10, lr=0.05, **sgd))
  c.unlearn.salun = ml_collections.ConfigDict(dict(epochs=10, lr=0.05, mask_ratio=0.5, **sgd))
  # RUM (Zhao et al. 2024, Sec. 5; unlearn.method=rum): refine the forget set by score into low/mid/high
  # thirds and unlearn them in that order, each step with its own method ("none" = skip) and
  # `overrides` of that method's settings above; results in methods/<name>/. The plan below was
  # searched on digits' VALIDATION mix sets of 150 (16 seeds, configs/study_digits.py,
  # results/digits/study.md): random labels at lr 0.05 on low, nothing on mid, random labels at
  # lr 0.02 on high. The paper's example plan (low nothing, mid FT at lr 0.1, high SalUn 5 epochs
  # at lr 0.1) is config.study.paper_plan of the study configs.
  c.unlearn.rum = ml_collections.ConfigDict()
  c.unlearn.rum.name = "rum"          # folder methods/<name>; several plans can share a workdir
  c.unlearn.rum.scores = ""           # refinement scores; "" = the forget set's score file
  c.unlearn.rum.score_key = ""        # "" = config.forget.score_key ("" = memorization)
  c.unlearn.rum.refine = "score"      # score: thirds by score; shuffle: random thirds (RUM's Shuffle control)
  c.unlearn.rum.low = ml_collections.ConfigDict(dict(method="random_label", overrides={"lr": 0.05}))
  c.unlearn.rum.mid = ml_collections.ConfigDict(dict(method="none", overrides={}))
  c.unlearn.rum.high = ml_collections.ConfigDict(dict(method="random_label", overrides={"lr": 0.02}))
  # Sweeps (unlearn.py and the study): comma-separated values of any setting of a method, e.g.
  # --config.sweep.salun.lr=0.01,0.03,0.1 (every combination of the swept settings is a grid
  # point). Each point is tuned on the VALIDATION forget set (same kind and level, disjoint from
  # the reported one); the best by `select_by` (mean over seeds) then runs on the reported set.
  # lr and the methods' numeric settings vary per model inside one program; epochs and batch
  # sizes make one program per value.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.select_by = "tow"    # any metric of rum_jax.evaluation.metrics.METRICS with a direction
  c.sweep.mia = True           # also ToW-MIA of every grid point (an SVC attack per model and seed)
  for name in (m for m in unlearning.step_methods() if m in c.unlearn):  # every method with settings here
    c.sweep[name] = ml_collections.ConfigDict({key: "" for key in c.unlearn[name]})
  # Evaluation (evaluate.py, and unlearn.py after every run): the metrics computed, recorded and
  # tabulated, by name from rum_jax.evaluation.metrics.METRICS (docs/extending.md adds one).
  c.evaluation = ml_collections.ConfigDict()
  c.evaluation.metrics = DEFAULT_METRICS
  return c
