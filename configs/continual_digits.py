"""Split digits: 5 tasks of 2 classes, an MLP, continual learning and unlearning on a CPU.

python continual.py --config=configs/continual_digits.py --config.algorithm=neggem \
    --config.sequence=A4 --workdir=runs/continual_digits_a4_neggem

The GEM-paper recipe (plain SGD, batch 10, margin 0.5) scaled to ~250 training examples per
task; a 3-seed A4 run takes under a minute on 2 CPU cores (about 25 s, compilation included).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.get_config()
  c.model.kwargs.hidden = (100, 100)
  c.continual = ml_collections.ConfigDict()
  k = c.continual
  # What to run.
  k.algorithm = ml_collections.FieldReference("neggem")  # neggem | negagem | rl_gem | rl_agem |
  #                                                         alt_neggem | neggrad_plus
  k.learn_algorithm = "auto"    # sgd | gem | agem | auto (agem for negagem/rl_agem, else gem)
  k.sequence = ml_collections.FieldReference("A4")  # A4 B4 C4 C4v2 D4 E4 F4 G4 H4 MIA, or
  #                                                    steps like "0,1,2,-2,3"
  k.classes_per_task = 2
  k.num_tasks = 0               # 0 = all classes: num_classes // classes_per_task
  # Learning (GEM, Lopez-Paz & Ranzato 2017).
  k.epochs = 1                  # per task
  k.batch_size = 10
  k.lr = 0.1
  k.margin = 0.5                # GEM memory strength (lower bound of the dual variables)
  k.eps = 1e-3                  # ridge of GEM's dual QP
  k.agem_ref_size = 256         # A-GEM reference batch
  # Buffers, filled from each task's examples once it is learned (docs/continual.md).
  k.memories = 40               # learn buffer (GEM memory) per task
  k.learn_buffer_kind = "least"   # most | least | random: how `split` of it is chosen
  k.learn_buffer_split = 0.2
  k.unlearn_memories = 40       # unlearn buffer per task
  k.unlearn_buffer_kind = "most"
  k.unlearn_buffer_split = 0.2
  k.scores = ""                 # memorization score file; "" = one-run proxy of the task's learning
  k.score_key = ""              # key in the file ("" = memorization) or proxy name ("" = confidence)
  # Unlearning.
  k.unlearn_lr = 0.01
  k.unlearn_batch_size = 10
  k.unlearn_margin = 0.5
  k.unlearn_max_epochs = 30     # cap: passes over the task's buffers
  k.stop_above_chance = 0.1     # stop when unlearn-buffer accuracy <= chance + this
  k.alpha = 0.5                 # neggrad_plus: weight of the retained tasks' gradient
  k.salun = 0.0                 # SalUn mask: fraction of weights kept (0 = off; 0.02..0.2)
  # Evaluation.
  k.mia = True                  # per-task loss-MIA AUC after every step
  k.clu_beta = 0.2
  # Short aliases of the two most used fields: --config.algorithm / --config.sequence set
  # config.continual.algorithm / .sequence (one shared value).
  c.algorithm = k.get_ref("algorithm")
  c.sequence = k.get_ref("sequence")
  return c
