"""Grids of method settings: what `--config.sweep.<method>.<setting>=a,b,c` asks for.

A sweep section lists, per setting of a method, comma-separated values ("" = not swept); the
grid is every combination, in the order the values are given (the first setting varies
slowest). Settings the method can vary between the models of one program (`Method.swept`)
become per-model values; a grid over the others (epochs, batch sizes) is one program per value.
"""
import itertools
import os
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io
from rum_jax.runfolder import RunFolder
from rum_jax.training import loop
from rum_jax.unlearning.interface import UNLEARNING_METHODS, unlearn


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


class ProgramResult(NamedTuple):
  """One program of `unlearn_points` / `unlearn_groups`: the points (groups) that finished and those that diverged."""
  members: List[int]       # indices of the finished points (groups)
  seed_ids: List[int]      # model m of `states` is point members[m // S] on seed seed_ids[m]
  states: Any              # [len(members) * S] unlearned states; None when every point diverged
  diverged: Dict[int, str]  # index of a diverged point -> the error


def unlearn_groups(setup: Any, starts: Sequence[Any], method_name: str, settings: ml_collections.ConfigDict,
                   forget: Sequence[np.ndarray], retain: Sequence[np.ndarray], *, base_seed: int,
                   run_dir: Optional[str], name: str,
                   per_model: Optional[Sequence[Dict[str, Any]]] = None) -> ProgramResult:
  """G groups of S models as ONE program of one method: model (group g, seed s) starts from
  seed s's state in starts[g] (each a pytree with a leading axis of S) with seed s's
  forget/retain sets and batch order, so the groups are compared on the same seeds (paired).

  per_model[g] gives group g's values of the method's per-model settings (`Method.swept`;
  None: every group uses `settings`). A group with a diverged model is a result (in
  `diverged`); the others run again as a program of their own. run_dir: checkpoints (and
  SalUn's saliency cache) of the program; None: none, every call computes.
  """
  method = UNLEARNING_METHODS.get(method_name)
  num_seeds = len(forget)
  members = list(range(len(starts)))
  diverged: Dict[int, str] = {}
  states: Optional[Any] = None
  while members:
    seed_ids = [s for _ in members for s in range(num_seeds)]
    values = {k: [per_model[g][k] for g in members for _ in range(num_seeds)]
              for k in method.swept if per_model and k in per_model[members[0]]}
    logging.info("%s: %d groups x %d seeds in one program", name, len(members), num_seeds)
    start = jax.tree.map(lambda *group: np.concatenate([np.asarray(x)[:num_seeds] for x in group]),
                         *[starts[g] for g in members])
    try:
      states, _ = unlearn(setup.with_models(len(seed_ids)), start, method_name, settings,
                          [forget[s] for s in seed_ids], [retain[s] for s in seed_ids], base_seed=base_seed,
                          run_dir=run_dir, saliency_path=RunFolder(run_dir).file("saliency") if run_dir else None,
                          name=name, seed_ids=seed_ids, per_model=values)
      break
    except loop.NonFiniteLossError as err:
      # The checkpoints held every group of the program: the others start over without it.
      failed = sorted({members[m // num_seeds] for m in err.seeds}) if err.seeds else list(members)
      diverged.update({g: str(err) for g in failed})
      members = [g for g in members if g not in failed]
      if run_dir:
        io.remove(run_dir)
  return ProgramResult(members, [s for _ in members for s in range(num_seeds)], states if members else None,
                       diverged)


def unlearn_points(setup: Any, start: Any, method_name: str, base: ml_collections.ConfigDict,
                   points: Sequence[Dict[str, Any]], forget: Sequence[np.ndarray], retain: Sequence[np.ndarray],
                   *, base_seed: int, root: Optional[str], name: str) -> Iterator[ProgramResult]:
  """Every grid point on every seed, in as few programs as the grid allows (`split_by_program`).

  Points that differ only in per-model settings (`Method.swept`) share one program of
  len(points) x S models, each from seed s's state in `start` (`unlearn_groups`); a point with
  a diverged model is a result (reported in `diverged`, never chosen). Checkpoints go to
  root/<the program's static settings> (root None: no checkpoints).
  """
  method = UNLEARNING_METHODS.get(method_name)
  for static, members in split_by_program(points, method.swept):
    settings = ml_collections.ConfigDict(base.to_dict())
    settings.update(static)
    run_dir = os.path.join(root, label(static).replace(", ", "_") or "all") if root else None
    out = unlearn_groups(setup, [start] * len(members), method_name, settings, forget, retain, base_seed=base_seed,
                         run_dir=run_dir, name=name, per_model=[points[i] for i in members])
    yield ProgramResult([members[g] for g in out.members], out.seed_ids, out.states,
                        {members[g]: e for g, e in out.diverged.items()})
