"""Compares every value of the CSV and JSON files of two work directories (e.g. one made by the
previous version of rum-jax and one by this one, with the same command).

python bench/compare_workdirs.py BEFORE AFTER [--rtol 0] [--atol 0] [--ignore seconds,time]

Files are paired by their path relative to each work directory. Numbers must be equal within
the tolerances (default: exactly); strings equal once a path under either work directory is
written relative to it (a version that records absolute paths and one that records relative
ones agree); keys and columns that only one side has are listed apart (added or removed
fields, not changed values); values of keys named in --ignore (wall-clock times) are skipped.
Exit status 0 when no value differs.
"""
import argparse
import csv
import json
import math
import os
import re
import sys
from typing import Any, Dict, List, Tuple

TIMES = ("seconds", "time", "total", "elapsed", "minutes")


def _files(root: str) -> Dict[str, str]:
  out = {}
  for directory, _, names in os.walk(root):
    for name in names:
      if name.endswith((".json", ".csv")) and not name.startswith("."):
        path = os.path.join(directory, name)
        out[os.path.relpath(path, root)] = path
  return out


def _normal(value: str, root: str) -> str:
  """A string with absolute paths under `root` made relative to it."""
  root = os.path.abspath(root)
  value = value.replace(root + os.sep, "").replace(root, ".")
  return re.sub(r"\s+", " ", value)


def _number(x: Any):
  if isinstance(x, bool) or x is None:
    return None
  if isinstance(x, (int, float)):
    return float(x)
  if isinstance(x, str):
    try:
      return float(x)
    except ValueError:
      return None
  return None


class Comparison:
  def __init__(self, before: str, after: str, rtol: float, atol: float, ignore: Tuple[str, ...]):
    self.before, self.after, self.rtol, self.atol, self.ignore = before, after, rtol, atol, ignore
    self.changed: List[str] = []
    self.only: List[str] = []
    self.values = 0
    self.max_abs = 0.0

  def value(self, where: str, a: Any, b: Any) -> None:
    key = where.rsplit(".", 1)[-1].split("[")[0]
    if key in self.ignore:
      return
    self.values += 1
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
      if math.isnan(x) and math.isnan(y):
        return
      diff = abs(x - y)
      self.max_abs = max(self.max_abs, diff if math.isfinite(diff) else math.inf)
      if not diff <= self.atol + self.rtol * abs(x):
        self.changed.append(f"{where}: {a!r} -> {b!r}")
      return
    if isinstance(a, str) and isinstance(b, str):
      try:  # a JSON string (a record's settings): compared value by value
        ja, jb = json.loads(a), json.loads(b)
        if isinstance(ja, (dict, list)):
          self.tree(where, ja, jb)
          return
      except ValueError:
        pass
      if _normal(a, self.before) != _normal(b, self.after):
        self.changed.append(f"{where}: {a!r} -> {b!r}")
      return
    if a != b:
      self.changed.append(f"{where}: {a!r} -> {b!r}")

  def tree(self, where: str, a: Any, b: Any) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
      for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
          self.only.append(f"{where}.{k}: only {'after' if k in b else 'before'}")
        elif k not in self.ignore:
          self.tree(f"{where}.{k}", a[k], b[k])
    elif isinstance(a, list) and isinstance(b, list):
      if len(a) != len(b):
        self.changed.append(f"{where}: {len(a)} items -> {len(b)}")
      for i, (x, y) in enumerate(zip(a, b)):
        self.tree(f"{where}[{i}]", x, y)
    else:
      self.value(where, a, b)

  def csv_file(self, name: str, a: str, b: str) -> None:
    with open(a, newline="") as fa, open(b, newline="") as fb:
      ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    if len(ra) != len(rb):
      self.changed.append(f"{name}: {len(ra)} rows -> {len(rb)}")
    columns_a, columns_b = set(ra[0]) if ra else set(), set(rb[0]) if rb else set()
    self.only += [f"{name}: column {c} only {'after' if c in columns_b else 'before'}" for c in columns_a ^ columns_b]
    for i, (x, y) in enumerate(zip(ra, rb)):
      for c in sorted(columns_a & columns_b):
        self.value(f"{name}[{i}].{c}", x[c], y[c])


def compare(before: str, after: str, rtol: float = 0.0, atol: float = 0.0,
            ignore: Tuple[str, ...] = TIMES) -> Comparison:
  out = Comparison(before, after, rtol, atol, ignore)
  fa, fb = _files(before), _files(after)
  out.only += [f"{f}: file only {'after' if f in fb else 'before'}" for f in sorted(set(fa) ^ set(fb))]
  for name in sorted(set(fa) & set(fb)):
    if name.endswith(".json"):
      with open(fa[name]) as x, open(fb[name]) as y:
        out.tree(name, json.load(x), json.load(y))
    else:
      out.csv_file(name, fa[name], fb[name])
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("before")
  parser.add_argument("after")
  parser.add_argument("--rtol", type=float, default=0.0)
  parser.add_argument("--atol", type=float, default=0.0)
  parser.add_argument("--ignore", default=",".join(TIMES), help="keys whose values are not compared")
  args = parser.parse_args(argv)
  result = compare(args.before, args.after, args.rtol, args.atol, tuple(k for k in args.ignore.split(",") if k))
  print(f"{len(_files(args.before))} / {len(_files(args.after))} CSV and JSON files; {result.values} values "
        f"compared; {len(result.changed)} differ (largest numeric difference {result.max_abs:.3g})")
  for line in result.only:
    print("  only one side:", line)
  for line in result.changed[:200]:
    print("  DIFFERS:", line)
  return 1 if result.changed else 0


if __name__ == "__main__":
  sys.exit(main())
