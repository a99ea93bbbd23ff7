"""Evaluates unlearning runs (accuracies, SVC and loss MIA, ToW, ToW-MIA) or runs a study:

python evaluate.py --workdir=runs/digits_unlearn             # every finished run in it
python evaluate.py --workdir=runs/digits_unlearn/methods/salun  # one run
python evaluate.py --config=configs/study_mnist1d.py --workdir=runs/study_mnist1d  # the RUM study
"""
from absl import app, flags
from ml_collections import config_flags

from rum_jax import commands, runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "A study config (config.mode='study'); "
                                          "leave unset to evaluate the runs in --workdir.")
_WORKDIR = flags.DEFINE_string("workdir", None, "An unlearning work directory, one of its runs "
                               "(methods/<name>), or the study's work directory.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Study: discard results made with another config.")


def main(argv):
  del argv
  runtime.main(lambda: commands.evaluate(_WORKDIR.value, _CONFIG.value, overwrite=_OVERWRITE.value))


if __name__ == "__main__":
  app.run(main)
