"""Continual learning and unlearning of a task sequence, several seeds at once:

python continual.py --config=configs/continual_digits.py --config.algorithm=neggem \
    --config.sequence=A4 --workdir=runs/continual_digits
"""
from absl import app, flags
from ml_collections import config_flags

from rum_jax import commands, runtime

_CONFIG = config_flags.DEFINE_config_file("config", "configs/continual_digits.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/continual_digits", "Where checkpoints and results go.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard a run in --workdir made with another config.")


def main(argv):
  del argv
  runtime.main(lambda: commands.continual(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value))


if __name__ == "__main__":
  app.run(main)
