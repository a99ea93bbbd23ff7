"""RUM on MNIST-1D, the whole pipeline in one command:

python unlearn.py --config=configs/rum_mnist1d.py --workdir=runs/rum_mnist1d

trains the original MLPs, computes Feldman-Zhang memorization (256 subset models, a few
minutes) if absent, picks a `mix` forget set of 300 (100 low, mid and high memorization),
runs RUM and evaluates it against retraining (<workdir>/evaluation.md, evaluation.png).
The unlearning settings are the study's (configs/study_mnist1d.py) and so is the plan, searched
end to end on the VALIDATION mix sets (results/mnist1d/study.md: random labels at lr 0.1 on low
and mid, at lr 0.03 on high), so this runs the study's RUM row with 3 seeds instead of 16.
"""
import ml_collections

from rum_jax.configs import study_mnist1d


def get_config():
  c = study_mnist1d.get_config()
  del c.study
  c.mode = "train"
  c.num_seeds = 3
  c.forget.kind = "memorization"
  c.forget.level = "mix"
  c.unlearn.method = "rum"
  c.unlearn.rum.low.method = "random_label"
  c.unlearn.rum.low.overrides = {"lr": 0.1}
  c.unlearn.rum.mid.method = "random_label"
  c.unlearn.rum.mid.overrides = {"lr": 0.1}
  c.unlearn.rum.high.method = "random_label"
  c.unlearn.rum.high.overrides = {"lr": 0.03}
  for section in c.sweep.values():  # the study's grids stay out: unlearn.py runs RUM's plan as it is
    if isinstance(section, ml_collections.ConfigDict):
      for key in section:
        section[key] = ""
  return c
