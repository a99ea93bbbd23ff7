"""Name -> object registries, so users select data sets, models, methods, etc. by name.

Adding a component is adding one decorated function in one file; unknown names fail with
the list of valid ones. A package of plug-ins (data sets, models, unlearning and continual
methods, metrics) calls `import_modules` in its `__init__.py`, so a new file there registers
its entries without an edit anywhere else.
"""
import importlib
import pkgutil
from typing import Callable, Dict, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """A mapping from user-facing names to factories, with helpful errors."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator: `@REGISTRY.register("name")` adds the decorated object."""
    def deco(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      return obj
    return deco

  def get(self, name: str) -> T:
    """Returns the entry called `name`, or raises a ValueError listing the valid names."""
    try:
      return self._entries[name]
    except KeyError:
      raise ValueError(
          f"unknown {self.kind} {name!r}; valid choices: {', '.join(sorted(self._entries))}"
      ) from None

  def names(self) -> list:
    """The registered names, sorted."""
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())


def import_modules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> None:
  """Imports every module of `package` found on `path` (its `__path__`) but those in `skip`.

  pkgutil lists the modules in the order of their file names; the registries' names are sorted,
  so that order never shows. Importing a module twice is a no-op, so a later call picks up only
  modules added since (a folder appended to `__path__`).
  """
  skip = set(skip)
  for module in pkgutil.iter_modules(list(path)):
    if module.name not in skip:
      importlib.import_module(f"{package}.{module.name}")
