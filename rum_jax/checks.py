"""Field checks every config section's validator uses, and the error they raise.

Each package validates the config section it owns (`rum_jax.<package>.config`), before any
work starts, with these checks; every message names the field, what it must be and what it
got, so the fix is in the message.
"""
import math
from typing import Any, Iterable


class ConfigError(ValueError):
  """A config field has a wrong type, range or name."""


def is_int(value: Any) -> bool:
  """A Python/NumPy integer that is not a bool."""
  return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """An int or float that is not a bool."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(ok: bool, message: str) -> None:
  """Raises ConfigError(message) unless ok."""
  if not ok:
    raise ConfigError(message)


def positive_int(value: Any, name: str) -> None:
  """config.<name> is an integer >= 1."""
  require(is_int(value) and value > 0, f"config.{name} must be a positive integer, got {value!r}")


def non_negative_int(value: Any, name: str) -> None:
  """config.<name> is an integer >= 0."""
  require(is_int(value) and value >= 0, f"config.{name} must be a non-negative integer, got {value!r}")


def number(value: Any, name: str, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False) -> None:
  """config.<name> is a number in [low, high] ((low, high] with low_open)."""
  ok = is_number(value) and (low < value if low_open else low <= value) and value <= high
  bracket = "(" if low_open else "["
  require(ok, f"config.{name} must be a number in {bracket}{low}, {high}], got {value!r}")


def boolean(value: Any, name: str) -> None:
  """config.<name> is True or False."""
  require(isinstance(value, bool), f"config.{name} must be True or False, got {value!r}")


def string(value: Any, name: str, what: str = "a string") -> None:
  """config.<name> is a str."""
  require(isinstance(value, str), f"config.{name} must be {what}, got {value!r}")


def choice(value: Any, name: str, choices: Iterable[str]) -> None:
  """config.<name> is one of `choices`; the message lists them."""
  choices = list(choices)
  require(value in choices, f"config.{name} {value!r} is unknown; valid choices: {', '.join(map(str, choices))}")


def distinct_choices(values: Any, name: str, choices: Iterable[str], what: str) -> list:
  """config.<name> is a non-empty sequence of distinct members of `choices`; returns it as a list."""
  choices = list(choices)
  values = list(values) if isinstance(values, (list, tuple)) else [values]
  require(bool(values) and all(v in choices for v in values) and len(set(values)) == len(values),
          f"config.{name} must be distinct {what}, got {values!r}; valid choices: {', '.join(choices)}")
  return values
