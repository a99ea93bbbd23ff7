"""Grids of method settings: what `--config.sweep.<method>.<setting>=a,b,c` asks for.

A sweep section lists, per setting of a method, comma-separated values ("" = not swept); the
grid is every combination, in the order the values are given (the first setting varies
slowest). Settings the method can vary between the models of one program (`Method.swept`)
become per-model values; a grid over the others (epochs, batch sizes) is one program per value.
"""
import itertools
from typing import Any, Dict, List, Mapping, Sequence, Tuple


def parse_values(text: str, default: Any, name: str) -> List[Any]:
  """'0.01, 0.03,0.1' -> [0.01, 0.03, 0.1]; integers for a setting whose default is an int."""
  parts = [p.strip() for p in str(text).split(",")]
  if "" in parts:
    raise ValueError(f"config.{name}={text!r} has an empty value between commas; give comma-separated "
                     f"numbers, e.g. 0.01,0.03,0.1")
  values = []
  for part in parts:
    try:
      value = float(part)
    except ValueError:
      raise ValueError(f"config.{name}={text!r}: {part!r} is not a number; give comma-separated values, "
                       f"e.g. 0.01,0.03,0.1") from None
    if isinstance(default, int) and not isinstance(default, bool):
      if value != int(value):
        raise ValueError(f"config.{name}={text!r}: {part!r} is not an integer (the setting is one)")
      value = int(value)
    values.append(value)
  if len(set(values)) != len(values):
    raise ValueError(f"config.{name}={text!r} repeats a value")
  return values


def grid(settings: Mapping[str, Any], sweep: Mapping[str, str], prefix: str) -> List[Dict[str, Any]]:
  """Every combination of the swept values, as {setting: value} dicts ([] when nothing is swept).

  settings: the method's settings (their defaults give the value types); sweep: the method's
  sweep section; prefix: e.g. "sweep.salun", for messages.
  """
  axes = []
  for key, text in sweep.items():
    if str(text).strip():
      if key not in settings:
        raise ValueError(f"config.{prefix}.{key} is not a setting of the method; its settings: "
                         f"{', '.join(sorted(settings))}")
      axes.append((key, parse_values(text, settings[key], f"{prefix}.{key}")))
  if not axes:
    return []
  keys = [k for k, _ in axes]
  return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]


def split_by_program(points: Sequence[Dict[str, Any]], per_model: Sequence[str]
                     ) -> List[Tuple[Dict[str, Any], List[int]]]:
  """Groups grid points that can share a program: (the static settings of the group, the
  indices of its points), static = every setting not in `per_model`, in first-seen order."""
  groups: Dict[Tuple, Tuple[Dict[str, Any], List[int]]] = {}
  for i, point in enumerate(points):
    static = {k: v for k, v in point.items() if k not in per_model}
    key = tuple(sorted(static.items()))
    groups.setdefault(key, (static, []))[1].append(i)
  return list(groups.values())


def label(point: Mapping[str, Any]) -> str:
  """'lr=0.03, alpha=0.9': a grid point as a table row's name."""
  return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
