"""The data set registry and the one function the rest of rum-jax calls to get data.

Each entry of `DATASETS` is a loader `(data_dir, split_seed, **options) -> Dataset`;
adding a data set is adding one decorated loader in one module of this package.
"""
import inspect
from typing import Any, Callable, Optional

from rum_jax.data.base import Dataset
from rum_jax.registry import Registry

Loader = Callable[..., Dataset]

DATASETS: Registry[Loader] = Registry("data set")


def check_options(name: str, options: Any) -> None:
  """Refuses options (config.data.options) that data set `name`'s loader does not take."""
  parameters = inspect.signature(DATASETS.get(name)).parameters
  accepted = [p for p in parameters if p not in ("data_dir", "split_seed")]
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    return
  unknown = sorted(k for k in options if k not in accepted)
  if unknown:
    raise ValueError(f"config.data.options has {', '.join(unknown)}, which data set {name!r} does not take; "
                     f"it takes: {', '.join(accepted) or 'no options'} (--config.data.options.<option>=<value>)")


def load_dataset(
    name: str,
    /,
    *,
    data_dir: Optional[str] = None,
    split_seed: int = 0,
    **options: Any,
) -> Dataset:
  """Loads the data set `name` with train/val/test splits and original indices.

  Args:
    name: a registered name (`DATASETS.names()`), e.g. "digits", "mnist1d", "cifar10";
      positional-only, so that a loader can take an option called `name` (tfds, npz).
    data_dir: folder holding downloaded data (CIFAR); ignored by embedded data sets.
    split_seed: seed of the validation split (the test split never depends on it).
    **options: loader-specific options, e.g. `source` and `val_per_class` for CIFAR.

  Returns:
    The Dataset, inputs normalised.

  Raises:
    ValueError: unknown name, or an option the loader does not accept.
  """
  check_options(name, options)
  loader = DATASETS.get(name)
  return loader(data_dir, split_seed, **options)
