"""Split digits: 5 tasks of 2 classes, an MLP, continual learning and unlearning on a CPU.

python continual.py --config=configs/continual_digits.py --config.algorithm=neggem \
    --config.sequence=A4 --workdir=runs/continual_digits_a4_neggem

Two variants (`--config=configs/continual_digits.py:<variant>`):
- "" (default): our settings, the GEM-paper recipe (plain SGD, batch 10, margin 0.5) scaled
  to ~250 training examples per task; a 3-seed A4 run takes well under a minute on 2 cores.
- "thesis": the thesis' final A4 runs (`thesis_on_a_cpu`): buffers scaled to the task size,
  an MLP with BatchNorm:
      python continual.py --config=configs/continual_digits.py:thesis --config.algorithm=negagem

`thesis(c, memories, agem_memories)` is what configs/continual_cifar100_thesis.py applies, and
`thesis_on_a_cpu` (the same, adapted to an MLP) what the digits and MNIST-1D presets apply.
"""
import ml_collections

from rum_jax.configs import default
from rum_jax.continual import config as continual_config
from rum_jax.continual.methods import CONTINUAL_METHODS, LEARN_ALGORITHMS
from rum_jax.evaluation.metrics.continual import DEFAULT_CONTINUAL_METRICS

VARIANTS = ("", "thesis")


def check_variant(arg: str, path: str) -> None:
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of {path}; valid choices: '' (ours, the default) "
                     f"or 'thesis' (--config={path}:thesis)")


def set_memories(c: ml_collections.ConfigDict, memories: int, agem_memories: int) -> None:
  """Learn and unlearn buffer sizes per task: `agem_memories` for A-GEM, `memories` otherwise."""
  for name in LEARN_ALGORITHMS.names():
    size = agem_memories if name == "agem" else memories
    c.continual.learn[name].memories = size
    c.continual.learn[name].unlearn_memories = size


def thesis(c: ml_collections.ConfigDict, memories: int, agem_memories: int) -> None:
  """The thesis' final A4 settings (docs/continual.md, "The thesis preset"), in place.

  memories / agem_memories: buffer sizes per task for GEM and A-GEM runs (the thesis: 256
  and 65 of 2,500 examples per task; smaller data sets scale them to their task size).
  """
  k = c.continual
  k.sequence = "A4"
  k.epochs = 3                        # its early stop (train accuracy > 0.8) never fires
  k.batch_size = 10
  k.margin = 0.5
  k.memory_batch_stats = True
  k.learn.sgd.lr = 0.1
  k.learn.gem.lr = 0.1
  k.learn.agem.lr = 0.03
  set_memories(c, memories, agem_memories)
  k.learn_buffer_kind = "least"
  k.learn_buffer_split = 0.2
  k.unlearn_buffer_kind = "most"
  k.unlearn_buffer_split = 0.99
  k.unlearn_margin = 0.5
  k.unlearn_max_epochs = 48
  k.forget_batches = "paired"
  k.stop_mode = "train"
  k.salun_batch = "first_batch"
  k.lr_after_forget = "unlearn"       # its one optimizer keeps the unlearning lr
  k.mia_protocol = "thesis"
  for name in CONTINUAL_METHODS.names():  # each method's settings in the thesis' final A4 runs
    k.unlearn[name].update(loss_scale=1.0, **(CONTINUAL_METHODS.get(name).thesis or {}))
  # ALT-NegGEM computes its mask inside the branch of a violating batch (negGem/net.py).
  k.unlearn.alt_neggem.salun_batch = "first_violating"


def thesis_on_a_cpu(c: ml_collections.ConfigDict, memories: int, agem_memories: int) -> None:
  """`thesis` for the small CPU data sets (docs/continual.md, "Scaling to the small data sets").

  The thesis' network normalises after every convolution, and without normalisation gradient
  ascent on a ReLU MLP diverges (3 of its 7 A4 runs on digits made non-finite weights): the
  MLP gets BatchNorm after each hidden layer. BatchNorm of ONE example has no variance in an
  MLP (torch refuses it; the thesis' conv net normalised over pixel positions), so the A-GEM
  variants' forget batch of 1 becomes 2.
  """
  thesis(c, memories, agem_memories)
  c.model.kwargs.batch_norm = True
  for name in ("negagem", "rl_agem", "negagem_rl"):
    c.continual.unlearn[name].batch_size = 2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  check_variant(arg, "configs/continual_digits.py")
  c = default.get_config()
  c.model.kwargs.hidden = (100, 100)
  c.continual = ml_collections.ConfigDict()
  k = c.continual
  # What to run.
  k.algorithm = ml_collections.FieldReference("neggem")  # a continual method (rum-jax-list)
  k.learn_algorithm = "auto"    # sgd | gem | agem | auto (agem for negagem/rl_agem/negagem_rl, else gem)
  k.sequence = ml_collections.FieldReference("A4")  # A4 B4 C4 C4v2 D4 E4 F4 G4 H4 MIA, or
  #                                                    steps like "0,1,2,-2,3"
  k.tasks = "split"             # split | permuted | rotated (rum_jax/continual/task_sets.py)
  k.classes_per_task = 2        # split tasks (permuted and rotated tasks have every class)
  k.num_tasks = 0               # 0 = all classes: num_classes // classes_per_task (split only)
  k.samples_per_task = 0        # permuted / rotated: training examples per task (0 = all)
  # Learning (GEM, Lopez-Paz & Ranzato 2017).
  k.epochs = 1                  # per task
  k.batch_size = 10
  k.margin = 0.5                # GEM memory strength (lower bound of the dual variables)
  k.eps = 1e-3                  # ridge of GEM's dual QP
  k.agem_ref_size = 256         # A-GEM reference batch
  k.memory_batch_stats = True   # memory-gradient passes also move BatchNorm running statistics,
  #                               as GEM's code does (False: only the batches move them)
  # Per learning algorithm: its learning rate and the buffers filled per task once it is
  # learned (learn buffer = GEM memory; unlearn buffer), in examples.
  k.learn = continual_config.learn_sections(lr=0.1, memories=40, unlearn_memories=40)
  # Buffers (docs/continual.md): `split` of each chosen by memorization, the rest at random.
  k.learn_buffer_kind = "least"   # most | least | random: how `split` of it is chosen
  k.learn_buffer_split = 0.2
  k.unlearn_buffer_kind = "most"
  k.unlearn_buffer_split = 0.2
  k.scores = ""                 # memorization score file; "" = one-run proxy of the task's learning
  k.score_key = ""              # key in the file ("" = memorization) or proxy name ("" = confidence)
  # Unlearning: shared settings.
  k.unlearn_margin = 0.5
  k.unlearn_max_epochs = 30     # cap: passes over the task's buffers
  k.forget_batches = "paired"   # paired: a batch of each buffer, CE means summed (the thesis) |
  #                               union: one batch of the union of both buffers
  k.stop_mode = "eval"          # eval | train: mode of the stop rule's accuracy pass (the
  #                               thesis: train, which moves BatchNorm statistics)
  k.stop_set = "unlearn_buffer" # what the stop rule measures: unlearn_buffer (the thesis) |
  #                               held_out (the task's validation examples, never trained on:
  #                               matched forgetting, the same target for every method)
  k.salun_batch = "buffers"     # SalUn mask from: buffers (both, whole) | first_batch (the thesis) |
  #                               first_violating (the thesis' ALT-NegGEM); a method's section may
  #                               set its own salun_batch
  k.lr_after_forget = "learn"   # learning after a forget step uses: learn (the learning lr) |
  #                               unlearn (the unlearning lr: the thesis' optimizer is never reset)
  # Per continual method: lr, batch size, stop when the unlearn buffer's accuracy <= chance +
  # stop_above_chance, SalUn mask fraction kept (0 = off), scale s of the forget loss, and the
  # method's own options (NegGrad+'s weight alpha of the retained tasks). Optional per method:
  # salun_batch (its own SalUn batch) and clip_norm (largest global norm of a forget step's
  # gradient; 0 = off).
  k.unlearn = continual_config.method_sections(lr=0.01, batch_size=10, stop_above_chance=0.1, salun=0.0,
                                               loss_scale=1.0)
  # Evaluation: the metrics recorded (rum_jax/evaluation/metrics/continual.py), and the MIA.
  k.metrics = DEFAULT_CONTINUAL_METRICS
  k.mia = True                  # per-task loss-MIA AUC after every step
  k.mia_protocol = "rank_cv"    # rank_cv (ours: every task, rank of the loss, 5-fold AUC) |
  #                               thesis (tasks 1..8, raw clipped loss, one 50/50 split)
  k.clu_beta = 0.2
  # Short aliases of the two most used fields: --config.algorithm / --config.sequence set
  # config.continual.algorithm / .sequence (one shared value).
  c.algorithm = k.get_ref("algorithm")
  c.sequence = k.get_ref("sequence")
  if arg == "thesis":
    # ~251 training examples per task, a tenth of CIFAR-100's 2,500: the thesis' 256 and 65
    # memories scaled by that ratio.
    thesis_on_a_cpu(c, memories=26, agem_memories=7)
  return c
