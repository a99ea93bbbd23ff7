"""Forget-set selection: random, by memorization level, and by entanglement.

Zhao et al. 2024, "What makes unlearning hard and what to do about it", NeurIPS
(arXiv:2406.01257), Sec. 4: unlearning difficulty depends on how memorized the forget
examples are and on how entangled they are with the retain set in the original model's
feature space. All positions here are positions into the TRAIN split (0..num_train-1); scores
must be aligned to them first (`load_scores(...)[dataset.train.index]`).

Ties in every ranking are broken by position (the lower position ranks first), so a
selection never depends on sort stability or platform.
"""
import warnings
from typing import List, Optional

import numpy as np

LEVELS = ("low", "mid", "high", "mix")
DEFAULT_LEVEL = "mix"  # configs/default.py's; the only level kinds that pick no level accept
# The 'mid' level of memorization scores (in [-1, 1]): halfway between typical and fully memorized.
MEMORIZATION_CENTER = 0.5

_HOW_TO_SCORE = ("compute memorization scores with `python train.py "
                 "--config=configs/<x>_memorization.py` (or load a published file with "
                 "rum_jax.memorization.load_scores)")


def _check_scores(scores, num_train: int) -> np.ndarray:
  scores = np.asarray(scores, dtype=np.float64)
  if scores.shape != (num_train,):
    raise ValueError(f"scores must have one value per train example, shape ({num_train},); "
                     f"got {scores.shape} (align published scores with scores[train.index])")
  bad = ~np.isfinite(scores)
  if bad.any():
    raise ValueError(f"scores have {int(bad.sum())} NaN/inf values (first positions "
                     f"{np.flatnonzero(bad)[:5].tolist()}); examples without an estimate "
                     f"cannot be ranked")
  return scores


def _ranked(keys: np.ndarray, exclude: np.ndarray) -> np.ndarray:
  """Positions by ascending key, ties by position, skipping `exclude` (bool [N])."""
  positions = np.arange(len(keys))
  order = np.lexsort((positions, keys))  # Last key is primary.
  return order[~exclude[order]]


def _take(keys: np.ndarray, shown: np.ndarray, shown_name: str, count: int, taken: np.ndarray,
          what: str) -> np.ndarray:
  """The `count` untaken positions of lowest key; warns when the cut falls inside a tie
  (naming the tied value of `shown`, the scores or the distances the keys come from)."""
  ranked = _ranked(keys, taken)
  chosen = ranked[:count]
  tied_out = int(np.sum(keys[ranked[count:]] == keys[chosen[-1]]))
  if tied_out:
    tied_in = int(np.sum(keys[chosen] == keys[chosen[-1]]))
    warnings.warn(f"{what}: the last {tied_in} chosen examples tie with {tied_out} left out "
                  f"({shown_name} {shown[chosen[-1]]:.4g}); the tie is broken by position, lowest first. "
                  "Scores from more models (or a proxy) separate them.", stacklevel=3)
  taken[chosen] = True
  return chosen


def _check_size(n: int, num_train: int) -> None:
  if num_train <= 0:
    raise ValueError(f"num_train must be positive; got {num_train}")
  if not 0 < n <= num_train:
    raise ValueError(f"forget-set size n must be in [1, {num_train}] (the number of train "
                     f"examples); got {n}")


def _excluded(exclude, num_train: int) -> np.ndarray:
  """bool [num_train], True at the positions of `exclude` (None: none)."""
  mask = np.zeros(num_train, dtype=bool)
  if exclude is not None:
    mask[np.asarray(exclude, np.int64)] = True
  return mask


def select_random(n: int, *, num_train: int, seed: int = 0, exclude=None) -> np.ndarray:
  """Sorted positions of n train examples drawn uniformly without replacement (numpy, `seed`),
  never one of `exclude`."""
  available = np.flatnonzero(~_excluded(exclude, num_train))
  _check_size(n, len(available))
  rng = np.random.default_rng(seed)
  if exclude is None:
    return np.sort(rng.choice(num_train, size=n, replace=False)).astype(np.int64)
  return np.sort(rng.choice(available, size=n, replace=False)).astype(np.int64)


def select_by_score(n: int, scores, level: str, center: Optional[float] = None, exclude=None) -> np.ndarray:
  """Sorted positions of a forget set of n train examples chosen by score level.

  Zhao et al. 2024 (memorization study and RUM):
    'high': the n highest scores;  'low': the n lowest;
    'mid': the n closest to `center` (`MEMORIZATION_CENTER` for memorization, which lies in
      [-1, 1]; the median of the scores, the default, for proxies, whose scale is arbitrary);
    'mix': disjoint thirds: high, then low from the rest, then mid from the rest. With
      n = 3q + r, high gets q + (r >= 1), mid q + (r >= 2), low q.

  Args:
    n: forget-set size, 1..num_train (3..num_train for 'mix').
    scores: float [num_train] memorization or oriented proxy (high = more memorized).
    level: 'low', 'mid', 'high' or 'mix'.
    center: the 'mid' center (None: the median of the scores).
    exclude: positions never chosen (e.g. the reported forget set, when drawing the
      disjoint validation set of the same level: the next examples of that level's ranking).

  Returns:
    int64 [n] positions, ascending.
  """
  if level not in LEVELS:
    raise ValueError(f"a forget set by score needs level in {', '.join(LEVELS)}; got {level!r}")
  if scores is None:
    raise ValueError(f"level {level!r} ranks examples by score but no scores were given: "
                     f"{_HOW_TO_SCORE}")
  num_train = len(np.asarray(scores))
  taken = _excluded(exclude, num_train)
  _check_size(n, num_train - int(taken.sum()))
  scores = _check_scores(scores, num_train)
  if center is None:
    center = float(np.median(scores))
  distance = np.abs(scores - center)
  # level -> (ranking keys, the values a tie warning names, their name)
  ranking = {"high": (-scores, scores, "score"), "low": (scores, scores, "score"),
             "mid": (distance, distance, f"distance to {center:g}")}
  if level != "mix":
    chosen = _take(*ranking[level], n, taken, f"{level} forget set")
  else:
    if n < 3:
      raise ValueError(f"a 'mix' forget set takes n/3 from each level, so n >= 3; got {n}")
    q, r = divmod(n, 3)
    counts = {"high": q + (r >= 1), "low": q, "mid": q + (r >= 2)}  # taken in this order
    parts = []
    for lv, count in counts.items():  # a loop, not a comprehension: warnings name the caller's line
      parts.append(_take(*ranking[lv], count, taken, f"mix, {lv} third"))
    chosen = np.concatenate(parts)
  return np.sort(chosen).astype(np.int64)


def refine(forget_positions, scores, n_groups: int = 3) -> List[np.ndarray]:
  """Splits a forget set into n_groups homogeneous subsets by score, lowest first.

  The refinement step of RUM (Zhao et al. 2024, the Refined-Unlearning Meta-algorithm):
  rank the forget examples by score (ties by position) and cut the ranking into n_groups
  parts of equal size (np.array_split: the first F mod n_groups parts get one extra
  example). With 3 groups the parts are the low, mid and high subsets unlearned in that
  order.

  Args:
    forget_positions: int [F] distinct positions into the train split.
    scores: float [num_train] memorization or proxy score of every train example.
    n_groups: number of subsets, 1..F.

  Returns:
    n_groups ascending int64 position arrays, from the lowest-scored subset to the highest.
  """
  forget = np.asarray(forget_positions, dtype=np.int64)
  scores = np.asarray(scores, dtype=np.float64)
  if forget.ndim != 1 or len(np.unique(forget)) != len(forget):
    raise ValueError("forget_positions must be a 1-D array of distinct positions")
  if len(forget) and (forget.min() < 0 or forget.max() >= len(scores)):
    raise ValueError(f"forget positions must lie in [0, {len(scores)}) (positions into the "
                     f"train split that `scores` covers)")
  scores = _check_scores(scores, len(scores))
  if not 1 <= n_groups <= len(forget):
    raise ValueError(f"n_groups must be in [1, {len(forget)}] (the forget-set size); "
                     f"got {n_groups}")
  order = np.lexsort((forget, scores[forget]))
  return [np.sort(forget[part]) for part in np.array_split(order, n_groups)]


def random_parts(forget_positions, n_parts: int, seed: int) -> List[np.ndarray]:
  """A forget set cut into n_parts random parts of equal size (np.array_split of a permutation
  seeded by `seed`; the first F mod n_parts parts get one extra example), each ascending."""
  forget = np.asarray(forget_positions, dtype=np.int64)
  if not 1 <= n_parts <= len(forget):
    raise ValueError(f"n_parts must be in [1, {len(forget)}] (the forget-set size); got {n_parts}")
  order = np.random.default_rng(seed).permutation(len(forget))
  return [np.sort(forget[part]) for part in np.array_split(order, n_parts)]


def entanglement_groups(features, group_size: int) -> np.ndarray:
  """Train positions sorted by feature distance to the global mean, cut into groups.

  RUM's ES groups (Zhao et al. 2024, Sec. 4 'entanglement'; 15 groups of 3,000 on CIFAR):
  with mu the mean of all penultimate-layer features, rank examples by ||phi_i - mu||_2
  (ascending, ties by position) and cut the ranking into N // group_size groups of
  group_size. The last N mod group_size examples (farthest from the mean) belong to no
  group.

  Args:
    features: float [N, D] features of the original model on the train split.
    group_size: n, 1..N.

  Returns:
    int64 [N // group_size, group_size]; row g is group g (0 = closest to the mean), in
    distance order.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2:
    raise ValueError(f"features must be [N, D]; got shape {features.shape}")
  if not 1 <= group_size <= len(features):
    raise ValueError(f"group_size must be in [1, {len(features)}]; got {group_size}")
  distance = np.linalg.norm(features - features.mean(axis=0), axis=1)
  order = np.lexsort((np.arange(len(features)), distance))
  num_groups = len(features) // group_size
  return order[:num_groups * group_size].reshape(num_groups, group_size).astype(np.int64)


def entanglement_score(phi_retain, phi_forget) -> float:
  """Entanglement Score ES(F, R) (Zhao et al. 2024, Sec. 4, the entanglement factor).

    ES = [mean_{i in R} ||phi_i - mu_R||^2 + mean_{j in F} ||phi_j - mu_F||^2]
         / [0.5 (||mu_R - mu||^2 + ||mu_F - mu||^2)],   mu = (mu_R + mu_F) / 2:

  within-set variance over between-set separation, so high ES = the forget set sits inside
  the retain set's feature cloud. If the two means coincide ES is +inf (nan if, in
  addition, both sets are single points).

  Args:
    phi_retain: float [R, D] features of the retain set.
    phi_forget: float [F, D] features of the forget set.
  """
  phi_retain = np.asarray(phi_retain, dtype=np.float64)
  phi_forget = np.asarray(phi_forget, dtype=np.float64)
  if (phi_retain.ndim != 2 or phi_forget.ndim != 2 or not len(phi_retain)
      or not len(phi_forget) or phi_retain.shape[1] != phi_forget.shape[1]):
    raise ValueError(f"need non-empty features [R, D] and [F, D]; got {phi_retain.shape} and "
                     f"{phi_forget.shape}")
  mu_r = phi_retain.mean(axis=0)
  mu_f = phi_forget.mean(axis=0)
  mu = (mu_r + mu_f) / 2
  within = (np.mean(np.sum((phi_retain - mu_r) ** 2, axis=1))
            + np.mean(np.sum((phi_forget - mu_f) ** 2, axis=1)))
  between = 0.5 * (np.sum((mu_r - mu) ** 2) + np.sum((mu_f - mu) ** 2))
  with np.errstate(divide="ignore", invalid="ignore"):
    return float(within / between)


def group_entanglement(features, groups) -> np.ndarray:
  """ES of each group as the forget set against all other train examples as the retain set.

  Args:
    features: float [N, D] train features.
    groups: int [G, n] positions (e.g. `entanglement_groups`).

  Returns:
    float64 [G], ES of group g (what RUM reports per ES group).
  """
  features = np.asarray(features, dtype=np.float64)
  result = []
  for group in np.asarray(groups):
    retain = np.ones(len(features), dtype=bool)
    retain[group] = False
    result.append(entanglement_score(features[retain], features[group]))
  return np.asarray(result)
