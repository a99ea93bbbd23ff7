"""Forget-set kinds, the registry behind config.forget.kind: random, memorization, proxy, entanglement.

Each entry builds the forget positions of every seed from config.forget and what the kind
needs (`ForgetRequest`): scores aligned to the train split for the score kinds, the original
models' penultimate features for entanglement. The selection itself is the pure functions of
`forget_sets` and, for `config.forget.draw = "band"`, `level_bands` / `matched_sets` below.

The score kinds draw in one of two ways (config.forget.draw):
  band     (matched sets, per seed) the level's BAND is the 2n examples at its place in the
           ranking (high: the 2n highest; low: the 2n lowest; mid: the 2n closest to the
           centre; the three bands disjoint, taken in that order). Every seed splits each band
           at random into two halves of n: its reported set and its validation set, which
           therefore have the same score distribution, never overlap, and differ from seed to
           seed. A mix set's thirds are the first n/3 of that seed's halves of each band.
  ranking  (one set for all seeds) the n most extreme examples of the level, and as the
           validation set the next n of the same ranking: the validation set is less extreme
           than the reported one (on digits, where few examples are memorized, every
           validation set had memorization about 0).
"""
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import ml_collections
import numpy as np

from rum_jax.registry import Registry
from rum_jax.unlearning import forget_sets


SPLITS = ("report", "validation")
DRAWS = ("band", "ranking")
BAND_ORDER = ("high", "low", "mid")  # the bands are taken in this order, each from what is left


@dataclasses.dataclass(frozen=True)
class ForgetRequest:
  """What a kind builds from: config.forget, the seeds, the train split's size and, if needed,
  scores [N] (high = more memorized) or a function giving the original models' features [S, N, D].

  With config.forget.split = "validation" a kind builds the VALIDATION forget set: chosen by the
  same rule, of the same size, disjoint from the reported set ("report", the default), on which
  method settings are tuned so that no reported number is tuned on the set it reports
  (module docstring: how, by config.forget.draw).
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


def _counts(n: int) -> Dict[str, int]:
  """The size of each third of a mix set of n: n = 3q + r, high q + (r >= 1), mid q + (r >= 2), low q."""
  q, r = divmod(n, 3)
  return {"high": q + (r >= 1), "low": q, "mid": q + (r >= 2)}


def level_bands(scores: np.ndarray, n: int, center: Optional[float]) -> Dict[str, np.ndarray]:
  """The band of each level: 2n train positions, disjoint, taken high, low, mid (module docstring).

  Args:
    scores: float [N] (high = more memorized).
    n: the forget-set size; 6n <= N.
    center: the mid band's centre (None: the median of the scores).

  Returns:
    level -> int64 [2n] positions in ranking order (most extreme first; mid: closest first).
  """
  num_train = len(scores)
  if 6 * n > num_train:
    raise ValueError(f"matched forget sets of {n} need three disjoint bands of 2 x {n} train examples "
                     f"(6 x {n} = {6 * n}) but the train split has {num_train}: lower config.forget.size "
                     f"to at most {num_train // 6}, or set config.forget.draw='ranking'")
  taken = np.zeros(num_train, bool)
  bands = {}
  for level in BAND_ORDER:
    bands[level] = forget_sets.select_by_score(2 * n, scores, level, center, exclude=np.flatnonzero(taken))
    # select_by_score sorts positions; keep them in ranking order for a readable band
    key = {"high": -scores, "low": scores,
           "mid": np.abs(scores - (np.median(scores) if center is None else center))}[level]
    bands[level] = bands[level][np.lexsort((bands[level], key[bands[level]]))]
    taken[bands[level]] = True
  return bands


def _halves(band: np.ndarray, seed: int, seed_index: int, level: str) -> Tuple[np.ndarray, np.ndarray]:
  """Seed `seed_index`'s random split of a band into (reported, validation), each in draw order."""
  rng = np.random.default_rng([seed, seed_index, BAND_ORDER.index(level)])
  order = rng.permutation(band)
  half = len(band) // 2
  return order[:half], order[half:]


def matched_sets(scores: np.ndarray, n: int, level: str, center: Optional[float], seed: int,
                 num_seeds: int) -> List[Tuple[np.ndarray, np.ndarray]]:
  """Per seed, (reported, validation) forget sets of n drawn from the level's band (module docstring).

  A mix set takes its thirds (`_counts`) from the first examples of that seed's halves of the
  three bands, so its high third is part of the seed's high set, and so on.
  """
  bands = level_bands(scores, n, center)
  out = []
  for s in range(num_seeds):
    halves = {lv: _halves(band, seed, s, lv) for lv, band in bands.items()}
    if level == "mix":
      counts = _counts(n)
      pair = tuple(np.sort(np.concatenate([halves[lv][i][:counts[lv]] for lv in BAND_ORDER])) for i in (0, 1))
    else:
      pair = tuple(np.sort(h) for h in halves[level])
    out.append((pair[0].astype(np.int64), pair[1].astype(np.int64)))
  return out


def _by_score(center: Optional[float]):
  def build(req: ForgetRequest):
    f, scores = req.settings, req.scores
    if f.get("draw", "ranking") == "band":
      if scores is None:
        forget_sets.select_by_score(f.size, scores, f.level, center)  # raises: how to get scores
      pairs = matched_sets(np.asarray(scores, np.float64), f.size, f.level, center, f.seed, req.num_seeds)
      forget = [p[SPLITS.index(req.split)] for p in pairs]
    else:
      one = forget_sets.select_by_score(f.size, scores, f.level, center)
      if req.split == "validation":  # the next examples of the same level's ranking
        one = forget_sets.select_by_score(f.size, scores, f.level, center, exclude=one)
      forget = [one] * req.num_seeds
    chosen = np.concatenate(forget)
    return forget, {
        "level": f.level, "draw": f.get("draw", "ranking"), "forget_score_mean": float(scores[chosen].mean()),
        "forget_score_per_seed": [float(scores[p].mean()) for p in forget],
        "forget_score_range": [float(scores[chosen].min()), float(scores[chosen].max())],
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
