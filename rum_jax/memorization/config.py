"""config.memorization and config.proxies, validated by the memorization package that owns them."""
import ml_collections

from rum_jax import checks
from rum_jax.memorization.proxies import PROXIES

# Scores a study or a continual run can name: the one-run proxies and held-out retraining.
SCORE_NAMES = PROXIES + ("heldout_retraining",)


def validate_memorization(m: ml_collections.ConfigDict) -> None:
  """The Feldman-Zhang estimator's fields (Feldman & Zhang 2020, Sec. 2)."""
  checks.positive_int(m.num_models, "memorization.num_models")
  checks.require(checks.is_int(m.chunk_size) and m.chunk_size >= 0,
                 f"config.memorization.chunk_size must be a non-negative integer (0 = as many models "
                 f"per program as fit the device), got {m.chunk_size!r}")
  checks.number(m.ratio, "memorization.ratio", 0.0, 1.0, low_open=True)
  checks.require(m.ratio < 1.0, f"config.memorization.ratio must be in (0, 1): every model must hold "
                 f"some examples out; got {m.ratio!r}")
  checks.non_negative_int(m.seed, "memorization.seed")
  checks.boolean(m.influence, "memorization.influence")


def validate_proxies(p: ml_collections.ConfigDict) -> None:
  """Held-out retraining's fields."""
  checks.number(p.heldout_lr, "proxies.heldout_lr", 0.0, float("inf"), low_open=True)
  checks.positive_int(p.heldout_max_epochs, "proxies.heldout_max_epochs")
  checks.positive_int(p.patience, "proxies.patience")


def validate(config: ml_collections.ConfigDict) -> None:
  """Whichever of config.memorization and config.proxies the config has."""
  if "memorization" in config:
    validate_memorization(config.memorization)
  if "proxies" in config:
    validate_proxies(config.proxies)
