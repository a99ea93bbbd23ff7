"""The config sections the training package owns: seeds, the runner and `config.train`."""
import ml_collections

from rum_jax import checks
from rum_jax.training.optim import SCHEDULES
# More models than this in one program is a typo (num_seeds=1e8 would hang): memorization and
# model banks train many models in chunks of their own.
MAX_SEEDS = 4096
# The config sections that decide a trained model: a work directory's original models, the
# retrain reference and the score runs compare exactly these.
TRAINING_SECTIONS = ("seed", "num_seeds", "data", "model", "train")


def training_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Only the sections that decide a trained model (`TRAINING_SECTIONS`), as a new ConfigDict."""
  return ml_collections.ConfigDict({k: config[k].to_dict() if isinstance(config[k], ml_collections.ConfigDict)
                                    else config[k] for k in TRAINING_SECTIONS})


def validate_recipe(t: ml_collections.ConfigDict, prefix: str = "train") -> None:
  """An SGD recipe (epochs, batch_size, lr, momentum, weight_decay, schedule) at config.<prefix>."""
  checks.positive_int(t.epochs, f"{prefix}.epochs")
  checks.positive_int(t.batch_size, f"{prefix}.batch_size")
  checks.number(t.lr, f"{prefix}.lr", 0.0, float("inf"), low_open=True)
  checks.number(t.momentum, f"{prefix}.momentum", 0.0, 0.999)
  checks.number(t.weight_decay, f"{prefix}.weight_decay", 0.0, 1.0)
  if "schedule" in t:
    checks.choice(t.schedule, f"{prefix}.schedule", SCHEDULES)
  if "nesterov" in t:
    checks.boolean(t.nesterov, f"{prefix}.nesterov")
    checks.require(not t.nesterov or t.momentum > 0,
                   f"config.{prefix}.nesterov=True needs momentum > 0, got momentum {t.momentum!r}")
  if "label_smoothing" in t:
    checks.number(t.label_smoothing, f"{prefix}.label_smoothing", 0.0, 1.0)


def validate(config: ml_collections.ConfigDict) -> None:
  """config.seed, num_seeds, vmap_size and the training recipe config.train."""
  checks.positive_int(config.num_seeds, "num_seeds")
  checks.require(config.num_seeds <= MAX_SEEDS, f"config.num_seeds={config.num_seeds} is more than {MAX_SEEDS} "
                 "models in one program; for more seeds run several work directories (memorization trains "
                 "its models in chunks: config.memorization.num_models)")
  vmap_size = config.get("vmap_size", 0)
  checks.require(checks.is_int(vmap_size) and vmap_size >= 0,
                 f"config.vmap_size must be a non-negative integer (0 = automatic), got {vmap_size!r}")
  checks.non_negative_int(config.seed, "seed")
  validate_recipe(config.train)
  checks.positive_int(config.train.eval_batch_size, "train.eval_batch_size")
