"""Checks a whole config before any work starts: each section by the package that owns it.

The command functions (`rum_jax.commands`) call `validate` once; every message names the
field, its valid choices or range, and what it got (`rum_jax.checks.ConfigError`).
"""
import ml_collections

from rum_jax import checks
from rum_jax.checks import ConfigError  # noqa: F401  (re-exported: the error users catch)
from rum_jax.continual import config as continual_config
from rum_jax.data import config as data_config
from rum_jax.memorization import config as memorization_config
from rum_jax.models import config as model_config
from rum_jax.pipelines import config as pipelines_config
from rum_jax.training import config as training_config
from rum_jax.unlearning import config as unlearning_config

# config.mode -> the command line that runs it.
MODES = {"train": "train.py", "memorization": "train.py", "proxies": "train.py", "study": "evaluate.py",
         "audit": "evaluate.py"}


def validate(config: ml_collections.ConfigDict) -> None:
  """Validates every section the config has (data, model, seeds and training always)."""
  checks.choice(config.get("mode", "train"), "mode", MODES)
  data_config.validate(config)
  model_config.validate(config)
  training_config.validate(config)
  memorization_config.validate(config)
  unlearning_config.validate(config)
  pipelines_config.validate(config)
  if "continual" in config:
    continual_config.validate(config)


def require_mode(config: ml_collections.ConfigDict, command: str, modes) -> str:
  """config.mode, which `command` must run; otherwise a ConfigError naming the command that does."""
  mode = config.get("mode", "train")
  checks.require(mode in modes, f"config.mode={mode!r} is run by {MODES.get(mode, 'no command')}, not {command} "
                 f"(which runs mode {', '.join(repr(m) for m in modes)}): python {MODES.get(mode, command)} "
                 f"--config=<this config> --workdir=<dir>")
  return mode
