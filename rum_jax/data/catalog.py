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
  loader = DATASETS.get(name)
  signature = inspect.signature(loader)
  try:
    signature.bind(data_dir, split_seed, **options)
  except TypeError as err:
    accepted = [p for p in signature.parameters if p not in ("data_dir", "split_seed")]
    raise ValueError(
        f"bad options {sorted(options)} for data set {name!r} ({err}); "
        f"accepted options: {', '.join(accepted) or 'none'}") from None
  return loader(data_dir, split_seed, **options)
