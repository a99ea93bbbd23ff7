"""The RUM paper's study on CIFAR-10 with ResNet-18, for a GPU machine:

python evaluate.py --config=configs/study_cifar10.py --workdir=runs/study_cifar10 \
    --config.study.scores=data/estimates_results_woShuffle.npz

The same study as configs/study_mnist1d.py (rum_jax/pipelines/study/) with RUM's CIFAR-10
settings: every field of configs/cifar10_resnet18.py, checked there against RUM's code
(original models trained with crop + flip, every method and the retrain reference without,
forget sets of 3,000, RUM's per-method epochs and learning rates). The study's own fields
follow the paper's (Zhao et al. 2024, Sec. 4-6; RUM's README): the eight methods of its
study (Retrain is the reference), forget sets of low, mid, high and mixed memorization, the
confidence proxy of the follow-up (Zhao & Triantafillou 2024), RUM with its plan searched on
the validation mix, the Shuffle control and the paper's own plan (configs/default.py's).
With config.study.scores empty, Feldman-Zhang memorization is computed first (400 ResNet-18s,
as many per program as fit the GPU); RUM's published estimate (estimates_results_woShuffle.npz,
see the RUM README) avoids that and gives RUM's exact forget sets. Not run on this
project's CPU machine.
"""

from rum_jax.configs import cifar10_resnet18, study_mnist1d


def get_config():
  c = cifar10_resnet18.get_config()
  c.mode = "study"
  c.study = study_mnist1d.study_section()
  c.study.scores = ""  # e.g. RUM's estimates_results_woShuffle.npz
  c.forget.draw = "band"  # each seed's reported and validation sets from one band (6 x 3,000 of 45,000)
  study_mnist1d.set_grids(c, {})  # RUM's settings as they are: config.study.budget = 1 + one per method
  c.study.results_dir = "results/cifar10"
  return c
