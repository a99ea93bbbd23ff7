"""The RUM paper's study on digits (the embedded data set; few memorized examples):

python evaluate.py --config=configs/study_digits.py --workdir=runs/study_digits

The same study as configs/study_mnist1d.py (rum_jax/pipelines/study.py), 16 seeds, with each
method tuned on the validation forget sets over grids around the default settings
(configs/default.py). Only ~2% of digits' train examples have memorization > 0.5, so its
`high` and `mid` forget sets are far less memorized than MNIST-1D's: the contrast between the
levels is weaker.
"""
import ml_collections

from configs import forgetting_digits, digits


def get_config():
  c = digits.get_config()
  c.mode = "study"
  c.num_seeds = 16
  c.forget.size = 150  # of 1,257 train examples; mix = 50 per level
  grids = {"finetune": {"lr": "0.01,0.03,0.1"}, "l1_sparse": {"lr": "0.03,0.1,0.3"},
           "neggrad": {"lr": "0.02,0.05,0.1"}, "neggrad_plus": {"lr": "0.01,0.03", "alpha": "0.9,0.95"},
           "scrub": {"lr": "0.01,0.02,0.05"}, "wfisher": {"alpha": "50,150,450"},
           "random_label": {"lr": "0.02,0.05,0.1"}, "salun": {"lr": "0.02,0.05,0.1"}}
  for method, grid in grids.items():
    c.sweep[method] = ml_collections.ConfigDict({key: grid.get(key, "") for key in c.unlearn[method]})
  c.sweep.mia = False
  c.study = ml_collections.ConfigDict()
  c.study.methods = ("finetune", "l1_sparse", "neggrad", "neggrad_plus", "scrub", "wfisher",
                     "random_label", "salun")
  c.study.levels = ("low", "mid", "high", "mix")
  c.study.scores = ""            # memorization file; "" = compute (config.memorization)
  c.study.proxy = "confidence"
  c.study.rum_f = True
  c.study.rum_plan = "auto"
  c.study.shuffle = True
  c.study.mia_features = ("confidence",)
  c.study.loss_mia = False
  # The challenge's forgetting score and U-LiRA on chosen sets (docs/forgetting.md), off by
  # default: e.g. --config.study.forgetting_levels="('low','high','mix')". Banks of
  # 128 models per method and set and 64 shadow models (the challenge uses 512: F from
  # different bank sizes does not compare).
  c.study.forgetting_levels = ()
  c.study.forgetting_methods = ()  # () = every study method
  c.forgetting = forgetting_digits.get_config().forgetting
  c.forgetting.update(methods=c.study.methods, num_models=128, shadow_models=64)
  c.study.results_dir = "results/digits"
  return c
