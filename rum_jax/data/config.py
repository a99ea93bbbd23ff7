"""config.data, validated by the data package that owns it."""
import ml_collections

from rum_jax import checks
from rum_jax.data.catalog import DATASETS, check_options


def validate(config: ml_collections.ConfigDict) -> None:
  """The data set name, its folder, the split seed and the original training's augmentation."""
  d = config.data
  checks.choice(d.name, "data.name", DATASETS.names())
  checks.string(d.data_dir, "data.data_dir", "a folder path ('' for none)")
  checks.non_negative_int(d.split_seed, "data.split_seed")
  checks.boolean(d.augment, "data.augment")
  try:
    check_options(d.name, d.get("options") or {})
  except ValueError as err:
    raise checks.ConfigError(str(err)) from None
