"""Trains models: python train.py --config=configs/digits.py --workdir=runs/digits

config.mode selects ordinary training (`train`), the Feldman-Zhang memorization estimate
(`memorization`, e.g. configs/digits_memorization.py) or the one-run proxies (`proxies`).
"""
from absl import app, flags
from ml_collections import config_flags

from rum_jax import commands, runtime

_CONFIG = config_flags.DEFINE_config_file("config", "configs/digits.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/digits", "Where checkpoints and results go.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard a run in --workdir made with another config.")


def main(argv):
  del argv
  runtime.main(lambda: commands.train(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value))


if __name__ == "__main__":
  app.run(main)
