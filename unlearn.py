"""Unlearns a forget set from the original models and compares with retraining:

python unlearn.py --config=configs/digits.py --config.unlearn.method=salun \
    --config.forget.kind=memorization --config.forget.level=high --config.forget.size=150 \
    --workdir=runs/digits_unlearn

Every method runs the same pipeline (scores if a forget set or method needs them and they are
absent, original, forget set, retrain reference, the method, evaluation); RUM is one of them:
python unlearn.py --config=configs/rum_digits.py --workdir=runs/rum_digits
"""
from absl import app, flags
from ml_collections import config_flags

from rum_jax import commands, runtime

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digits.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/digits_unlearn", "Where models and results go.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard results in --workdir made with another forget set or training config.")


def main(argv):
  del argv
  runtime.main(lambda: commands.unlearn(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value))


if __name__ == "__main__":
  app.run(main)
