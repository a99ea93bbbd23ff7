"""Forget-set kinds, the registry behind config.forget.kind: random, memorization, proxy, entanglement.

Each entry builds the forget positions of every seed from config.forget and what the kind
needs (`ForgetRequest`): scores aligned to the train split for the score kinds, the original
models' penultimate features for entanglement. The selection itself is the pure functions of
`forget_sets`.
"""
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import ml_collections
import numpy as np

from rum_jax.registry import Registry
from rum_jax.unlearning import forget_sets


SPLITS = ("report", "validation")


@dataclasses.dataclass(frozen=True)
class ForgetRequest:
  """What a kind builds from: config.forget, the seeds, the train split's size and, if needed,
  scores [N] (high = more memorized) or a function giving the original models' features [S, N, D].

  With config.forget.split = "validation" a kind builds the VALIDATION forget set: chosen by the
  same rule, of the same size, disjoint from the reported set ("report", the default), on which
  method settings are tuned so that no reported number is tuned on the set it reports
  (`validation_of`).
  """
  settings: ml_collections.ConfigDict
  num_seeds: int
  num_train: int
  scores: Optional[np.ndarray] = None
  features: Optional[Callable[[], np.ndarray]] = None

  @property
  def split(self) -> str:
    return self.settings.get("split", "report")


@dataclasses.dataclass(frozen=True)
class ForgetKind:
  """A way to choose the forget set.

  score_file: which kind of score file it ranks by ("memorization" or "proxies"; None: none).
  uses_level / uses_group: config.forget.level / .group matter (validated, recorded).
  build: request -> (one position array per seed, a report of how they were chosen).
  """
  name: str
  build: Callable[[ForgetRequest], Tuple[List[np.ndarray], Dict[str, Any]]]
  score_file: Optional[str] = None
  uses_level: bool = False
  uses_group: bool = False


FORGET_KINDS: Registry[ForgetKind] = Registry("forget-set kind")


def _random(req: ForgetRequest):
  f = req.settings
  forget = forget_sets.select_random(f.size, num_train=req.num_train, seed=f.seed)
  if req.split == "validation":  # another draw among the examples the reported set left
    forget = forget_sets.select_random(f.size, num_train=req.num_train, seed=f.seed + 1, exclude=forget)
  return [forget] * req.num_seeds, {"seed": f.seed}


def _by_score(center: Optional[float]):
  def build(req: ForgetRequest):
    f, scores = req.settings, req.scores
    forget = forget_sets.select_by_score(f.size, scores, f.level, center)
    if req.split == "validation":  # the next examples of the same level's ranking
      forget = forget_sets.select_by_score(f.size, scores, f.level, center, exclude=forget)
    return [forget] * req.num_seeds, {
        "level": f.level, "forget_score_mean": float(scores[forget].mean()),
        "forget_score_range": [float(scores[forget].min()), float(scores[forget].max())],
        "train_score_mean": float(scores.mean())}
  return build


def _entanglement(req: ForgetRequest):
  f = req.settings
  features = req.features()  # each seed's original model has its own feature space, hence its own groups
  forget, es = [], []
  for s in range(req.num_seeds):
    groups = forget_sets.entanglement_groups(features[s], f.size)
    if not 0 <= f.group < len(groups):
      raise ValueError(f"config.forget.group={f.group} is out of range: {req.num_train} train examples make "
                       f"{len(groups)} groups of {f.size}; valid groups: 0..{len(groups) - 1}")
    group = f.group
    if req.split == "validation":  # the neighbouring group: the nearest entanglement
      group = f.group + 1 if f.group + 1 < len(groups) else f.group - 1
    forget.append(np.sort(groups[group]))
    es.append(forget_sets.group_entanglement(features[s], groups))
  return forget, {"group": group, "entanglement_per_group": np.asarray(es).T.tolist(),
                  "entanglement": [float(e[group]) for e in es]}


for _kind in (
    ForgetKind("random", _random),
    ForgetKind("memorization", _by_score(forget_sets.MEMORIZATION_CENTER), score_file="memorization", uses_level=True),
    # proxies have no fixed scale: their 'mid' is around the median
    ForgetKind("proxy", _by_score(None), score_file="proxies", uses_level=True),
    ForgetKind("entanglement", _entanglement, uses_group=True),
):
  FORGET_KINDS.register(_kind.name)(_kind)
