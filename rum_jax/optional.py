"""Optional dependencies, imported only inside the features that need them.

`import rum_jax` and the embedded data sets (digits, the CIFAR archive, npz files) need
none of tensorflow-datasets, mnist1d, jaxopt or matplotlib; a feature that does need one
calls `require` when it runs, so a missing package is reported as what it stops, not as a
traceback from an import at the top of an unrelated module.
"""
import importlib
from types import ModuleType
from typing import Optional


def require(module: str, feature: str, package: Optional[str] = None) -> ModuleType:
  """Imports and returns `module`, or raises a one-line ImportError naming what is missing.

  Args:
    module: the module to import, e.g. "tensorflow_datasets" or "mnist1d.data".
    feature: what needs it, e.g. "reading CIFAR from TFDS (source='tfds')".
    package: the pip package that provides it (default: the top-level module name).

  Raises:
    ImportError: the module cannot be imported; the message names the package, the
      feature and the pip command.
  """
  try:
    return importlib.import_module(module)
  except ImportError as err:
    package = package or module.split(".")[0]
    raise ImportError(
        f"{feature} needs the package {package!r}, which cannot be imported ({err}); "
        f"install it with: pip install {package}") from err
