"""The NeurIPS 2023 unlearning challenge score (Triantafillou et al. 2024), from confidences.

Pure NumPy functions of logit-scaled confidences (`confidence.logit_scaled_confidence`) that
the caller computed with an unlearned and a retrained bank of N models each:

* `challenge_epsilons`: per forget example, an empirical privacy epsilon separating its
  confidences under the N unlearned models from those under the N retrained ones (the max over
  a single-threshold and a double-threshold family of decision rules);
* `epsilon_points`, `forget_score`: epsilons bucketed into points and averaged into F;
* `challenge_score`: F scaled by the retain and test accuracy ratios.

References:
  Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the first
  NeurIPS unlearning competition", arXiv:2406.09073; reference code
  google-deepmind/unlearning_evaluation, metric.py.
"""
from typing import Optional, Tuple

import numpy as np

DELTA = 1e-5  # the challenge's delta of (epsilon, delta)-unlearning
EPSILON_CAP = 50.0  # epsilons are clipped to [0, EPSILON_CAP]
THRESHOLDS_PER_UNIT = 100  # threshold density of both decision-rule families
BUFFER = 2.0  # how far the double-threshold family reaches past the peakier distribution
PEAKY_RATIO = 0.01  # smaller range / larger range below this: the example gets the cap
LEFTS_PER_RIGHT = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))  # 400 left ends per right end
MAX_MODELS = 4096  # the table of epsilon per (FP, FN) count pair has (N + 1)^2 entries
SHARED = -2 ** 62  # _count_codes: a table cell that holds data
MAX_ABS_CONFIDENCE = 1e4  # 100 thresholds per unit: a spread of 2e4 is 2e6 thresholds per example


def _check_banks(unlearned, retrained) -> Tuple[np.ndarray, np.ndarray]:
  """float64 [N, E] confidence banks of equal shape, N in [2, MAX_MODELS], finite, or a ValueError."""
  unlearned = np.asarray(unlearned, dtype=np.float64)
  retrained = np.asarray(retrained, dtype=np.float64)
  if unlearned.ndim != 2 or unlearned.shape != retrained.shape:
    raise ValueError("unlearned and retrained confidences must both have shape [num_models, "
                     f"num_examples]; got {unlearned.shape} and {retrained.shape}")
  n, e = unlearned.shape
  if not 2 <= n <= MAX_MODELS:
    raise ValueError(f"need between 2 and {MAX_MODELS} models per bank (one example's epsilon "
                     f"compares two distributions of model confidences); got {n}")
  if e == 0:
    raise ValueError("no examples: pass confidences of at least one forget example")
  for name, bank in (("unlearned", unlearned), ("retrained", retrained)):
    if not np.all(np.isfinite(bank)):
      raise ValueError(f"{name} confidences contain NaN or inf (at example(s) "
                       f"{np.flatnonzero(~np.all(np.isfinite(bank), axis=0))[:5].tolist()}); "
                       "compute them with logit_scaled_confidence, which is finite for finite logits")
    if np.abs(bank).max() > MAX_ABS_CONFIDENCE:
      raise ValueError(f"{name} confidences reach {np.abs(bank).max():.3g}, beyond "
                       f"+-{MAX_ABS_CONFIDENCE:g}: the threshold grids have {THRESHOLDS_PER_UNIT} "
                       "points per unit of spread; logit-scaled confidences of trained models lie "
                       "within about +-100")
  return unlearned, retrained


class _Arena:
  """Flat work arrays reused from chunk to chunk of examples.

  A fresh multi-megabyte NumPy array is paid for in page faults when first written; on the
  2-core benchmark machine that cost more than the arithmetic done in it (about 1 ms per MB),
  so the double-threshold family's [chunk, 401, 400] arrays are allocated once per call.
  """

  def __init__(self):
    self._arrays = {}

  def get(self, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
    size = int(np.prod(shape))
    array = self._arrays.get(name)
    if array is None or array.size < size:
      array = self._arrays[name] = np.empty(size, dtype)
    return array[:size].reshape(shape)


def _linspace(start: np.ndarray, stop: np.ndarray, num: np.ndarray, size: int,
              out: Optional[np.ndarray] = None) -> np.ndarray:
  """np.linspace(start, stop, num) of every entry of the arrays start, stop, num, bit for bit,
  along a new last axis of `size` >= max(num) columns; columns at or past num repeat start.

  Repeating the first threshold leaves a max over thresholds unchanged; for num = 0 (the
  single-threshold family of an example whose confidences are all equal) the lone start is
  the minimum, where everything is predicted positive: FNR = 0 < FPR = 1, dropped.

  np.linspace computes k * step + start with step = (stop - start) / (num - 1) and then sets
  the last point to stop; the same operations in the same order give the same floats, which
  the epsilons need: a threshold that moves by one ulp across a confidence changes a count.
  """
  k = np.arange(size, dtype=np.float64)
  step = (stop - start) / np.maximum(num - 1, 1)
  grid = np.multiply(k, step[..., None], out=out)
  grid += start[..., None]
  np.put_along_axis(grid, np.maximum(num - 1, 0)[..., None],
                    np.where(num > 1, stop, start)[..., None], axis=-1)
  if np.any(num < size):
    np.copyto(grid, start[..., None], where=k >= num[..., None])
  return grid


def _row_searchsorted(rows: np.ndarray, row_of: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
  """np.searchsorted(rows[row_of[i]], values[i], side) for every i, in one call.

  Complex numbers sort by real part, then imaginary part, so (row, value) pairs stored as
  row + 1j * value make the sorted rows one sorted 1-D array; the comparisons stay exact.
  """
  b, n = rows.shape
  keys = np.empty(rows.shape, np.complex128)
  keys.real = np.arange(b)[:, None]
  keys.imag = rows
  queries = np.empty(values.shape, np.complex128)
  queries.real = row_of
  queries.imag = values
  return np.searchsorted(keys.ravel(), queries, side) - row_of * n


def _count_codes(first: np.ndarray, second: np.ndarray, queries: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray, side: str, cells: int, arena: Optional[_Arena] = None) -> np.ndarray:
  """(N + 1) x #second - #first for every query q of queries[b], where #x counts the values of
  row b of x ([B, N], rows sorted) below q (side 'left') or at most q (side 'right'); exact,
  as np.searchsorted row by row. Queries [B, ...] lie within [lo[b], hi[b]].

  The two counts travel as one integer because the epsilon table is indexed by
  (N + 1) x false positives + false negatives, an affine function of this code.

  Counts are read from a per-row table over `cells` equal cells of [lo, hi]: the cell of x is
  phi(x) = trunc(x * scale + shift), row b's cells numbered from b * (cells + 2); phi is
  monotone and computed the same way for data (clipped to the row's cells) and queries, so
  when no data value shares a query's cell, the data below the query are exactly those of
  lower cells. Queries in a cell that holds data (about 2N / cells of them) are counted by a
  binary search. A table read instead of a binary search per query: the double-threshold
  family has 160,400 queries per example. Work arrays of the queries' size come from `arena`
  when given (the returned codes too: valid until its next use).
  """
  b, n = first.shape
  shape = (b, queries.size // b)
  arena = arena or _Arena()
  scale = ((cells - 1) / np.where(hi > lo, hi - lo, 1.0))[:, None]
  total = cells + 2  # the first and the last cell of a row hold data below lo and above hi
  row_start = np.arange(b)[:, None] * total
  # lo falls in cell row_start + 1 (up to rounding, which keeps queries in their row's cells:
  # cells past the ends hold only data clipped there, so those queries are searched).
  shift = row_start + 1 - lo[:, None] * scale

  data = np.concatenate([first, second], axis=1)
  data_cell = np.clip(data * scale + shift, row_start, row_start + total - 1).astype(np.intp).ravel()
  weight = np.tile(np.repeat([-1.0, n + 1.0], n), b)
  hist = np.bincount(data_cell, weight, minlength=b * total).reshape(b, total)
  table = np.zeros((b, total), np.int64)  # the code of the data in lower cells of the row
  np.cumsum(hist[:, :-1], axis=1, dtype=np.int64, out=table[:, 1:])
  # Cells that hold data read as SHARED, below any code (codes are >= -N): one table read
  # and one comparison find the queries to search.
  table = table.ravel()
  table[data_cell] = SHARED

  q = queries.reshape(shape)
  work = np.multiply(q, scale, out=arena.get("work", shape, np.float64))
  work += shift
  q_cell = arena.get("cell", shape, np.intp)
  np.copyto(q_cell, work, casting="unsafe")  # truncation, as astype
  codes = np.take(table, q_cell, out=arena.get("codes", shape, np.int64), mode="clip")
  exact = np.flatnonzero(np.less(codes, -n, out=arena.get("flag", shape, bool)))
  if exact.size:
    row_of = exact // shape[1]
    values = q.ravel()[exact]
    codes.ravel()[exact] = ((n + 1) * _row_searchsorted(second, row_of, values, side)
                            - _row_searchsorted(first, row_of, values, side))
  return codes.reshape(queries.shape)


def _leading_at_most(grids: np.ndarray, values: np.ndarray) -> np.ndarray:
  """#{j : grids[..., j] <= values[...]} for rows of `grids` that are np.linspace grids
  (ascending); exact: an estimate from the grid's step, then corrected against the grid's
  own values (rounding moves it by at most a point)."""
  size = grids.shape[-1]
  start, stop = grids[..., 0], grids[..., -1]
  with np.errstate(invalid="ignore", divide="ignore"):
    guess = np.floor((values - start) / ((stop - start) / (size - 1))) + 1
  count = np.clip(np.nan_to_num(guess), 0, size).astype(np.intp)
  while True:
    at = np.take_along_axis(grids, np.minimum(count, size - 1)[..., None], -1)[..., 0]
    up = (count < size) & (at <= values)
    below = np.take_along_axis(grids, np.maximum(count - 1, 0)[..., None], -1)[..., 0]
    down = (count > 0) & (below > values)
    if not (up.any() or down.any()):
      return count
    count += up.astype(np.intp) - down


def _epsilon_table(n: int) -> np.ndarray:
  """Epsilon of a threshold from its counts, flattened: table[fp * (N + 1) + fn] for
  fp = N * FPR and fn = N * FNR in 0..N (the challenge's rules, see challenge_epsilons):
  +inf for fp = fn = 0, -inf (dropped) where exactly one is 0 or the formula is NaN for both
  orders (fp = fn = N), else max(log(1 - d - FPR) - log FNR, log(1 - d - FNR) - log FPR)
  clipped at >= 0 (an order whose 1 - d - rate < 0 gives NaN and does not count)."""
  rate = np.arange(n + 1) / n
  fpr, fnr = rate[:, None], rate[None, :]
  with np.errstate(divide="ignore", invalid="ignore"):
    eps = np.fmax(np.log(1 - DELTA - fpr) - np.log(fnr), np.log(1 - DELTA - fnr) - np.log(fpr))
  eps = np.where(np.isnan(eps), -np.inf, np.maximum(eps, 0.0))
  one_zero = (fpr == 0) != (fnr == 0)
  eps = np.where(one_zero, -np.inf, eps)
  eps[0, 0] = np.inf
  return eps.ravel()


def _chunk_epsilons(pos: np.ndarray, neg: np.ndarray, table: np.ndarray, cells: int,
                    arena: _Arena) -> np.ndarray:
  """challenge_epsilons of a chunk of examples: pos, neg [B, N] sorted along models."""
  b, n = pos.shape
  pos_diff = pos[:, -1] - pos[:, 0]
  neg_diff = neg[:, -1] - neg[:, 0]
  largest = np.where(pos_diff > neg_diff, pos_diff, neg_diff)
  smallest = np.where(pos_diff > neg_diff, neg_diff, pos_diff)
  with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 (both constant) is NaN: not capped
    peaky = smallest / largest < PEAKY_RATIO

  # Single threshold: predict positive at >= t, t on a grid over the pooled range;
  # (N + 1) x FP + FN with FP = N - #neg below t, FN = #pos below t.
  lo = np.minimum(pos[:, 0], neg[:, 0])
  hi = np.maximum(pos[:, -1], neg[:, -1])
  num = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.intp)
  size = max(int(num.max()), 1)
  thresholds = _linspace(lo, hi, num, size)
  codes = _count_codes(pos, neg, thresholds, lo, hi, "left", cells=4 * size)
  best = np.take(table, n * (n + 1) - codes).max(axis=1)

  # Double threshold: inside [left, right] = the peakier distribution (ties: neg), whose
  # range is the interval's width; right ends from its min + width - 2 to its max + 2,
  # left ends within +-2 of right - width.
  swap = pos_diff >= neg_diff
  peak = np.where(swap[:, None], neg, pos)
  wide = np.where(swap[:, None], pos, neg)
  width = smallest[:, None]
  r_lo = peak[:, 0] + smallest - BUFFER
  r_hi = peak[:, -1] + BUFFER
  num_r = np.ceil((r_hi - r_lo) * THRESHOLDS_PER_UNIT).astype(np.intp)
  size_r = int(num_r.max())
  rights = _linspace(r_lo, r_hi, num_r, size_r)  # [B, R]
  shape = (b, size_r, LEFTS_PER_RIGHT)
  lefts = _linspace(rights - width - BUFFER, rights - width + BUFFER,
                    np.full(rights.shape, LEFTS_PER_RIGHT), LEFTS_PER_RIGHT,
                    out=arena.get("lefts", shape, np.float64))
  # In [l, r] = at most r minus below l, so (N + 1) x FP + FN with FP = #wide in [l, r] and
  # FN = N - #peak in [l, r] is N + the code of the right end - the code of the left end.
  at_right = _count_codes(peak, wide, rights, r_lo, r_hi, "right", cells=4 * size_r) + n
  # Left ends grow with the right end: the first and the last valid ones bound them all.
  l_lo = lefts[:, 0, 0]
  l_hi = lefts[np.arange(b), num_r - 1, -1]
  codes = _count_codes(peak, wide, lefts, l_lo, l_hi, "left", cells, arena)
  np.subtract(at_right[..., None], codes, out=codes)
  # Left ends past the right end (an empty interval: FP = 0, FN = N) are dropped, and they
  # are the tail of each row: the max runs over the first `kept` left ends of each row.
  kept = _leading_at_most(lefts, rights)
  values = arena.get("values", (codes.size + 1,), np.float64)
  values[-1] = -np.inf  # reduceat's last segment may start at codes.size
  np.take(table, codes.ravel(), out=values[:-1], mode="clip")  # codes past kept may be out of range
  start = np.arange(kept.size) * LEFTS_PER_RIGHT
  double = np.maximum.reduceat(values, np.stack([start, start + kept.ravel()], 1).ravel())[::2]
  double[kept.ravel() == 0] = -np.inf  # reduceat gives the first value for an empty segment
  best = np.maximum(best, double.reshape(b, size_r).max(axis=1))

  # No threshold kept (both the same constant): nothing tells them apart.
  eps = np.where(best == -np.inf, 0.0, np.minimum(best, EPSILON_CAP))
  return np.where(peaky, EPSILON_CAP, eps)


def challenge_epsilons(unlearned, retrained, chunk_size: int = 8, cells: int = 2 ** 16) -> np.ndarray:
  """Per-example epsilon of the NeurIPS 2023 unlearning challenge, vectorised.

  For forget example i, u and r are its confidences under the N unlearned and the N
  retrained models; the positive class is the one with the larger median (retrained on a
  tie goes negative). A decision rule at threshold t has rates FPR, FNR (fractions of the N
  models) and the epsilon

    eps(t) = max(log(1 - d - FPR) - log FNR, log(1 - d - FNR) - log FPR),  d = 1e-5,

  clipped at >= 0 (an order where 1 - d - rate < 0 does not count); thresholds with exactly
  one of FPR, FNR equal to 0 are dropped (too few models to tell), FPR = FNR = 0 (perfect
  separation) gives eps = inf. The example's epsilon is the max over two families:
  * single threshold: predict positive at c >= t, t = np.linspace(min, max, ceil(100 x
    range)) over the pooled confidences of both classes;
  * double threshold: predict 'the peakier distribution' (smaller range w; the negative
    class on a tie) for l <= c <= r, right ends r = np.linspace(min + w - 2, max + 2,
    ceil(100 x (max + 2 - min - w + 2))) of the peakier one, and for each r 400 left ends
    l = np.linspace(r - w - 2, r - w + 2, 400);
  then clipped to [0, 50]. When the smaller range / larger range < 0.01 (one distribution
  far peakier than the other) the example gets the cap 50 directly. When no threshold is
  kept (both distributions the same constant) the epsilon is 0: nothing tells them apart.

  The published code loops over examples and evaluates every threshold against every model
  (`bench/epsilon_reference.py` ports it; equal epsilons to 1e-6, tests/test_audit_metrics.py).
  Here a chunk of examples is done at once: sorted confidences turn each rate into a count,
  read for all 160,400 thresholds of an example at once (`_count_codes`), and the epsilon of
  a threshold is one lookup in a table indexed by its (false positive, false negative) counts.

  Args:
    unlearned: [N, E] confidences (e.g. `logit_scaled_confidence`) of E forget examples
      under N unlearned models; 2 <= N <= MAX_MODELS.
    retrained: [N, E] the same under N models retrained without the forget set.
    chunk_size: examples per vectorised step; its work arrays take about 7 MB per example.
    cells: cells per example of the count tables of the left ends (more: fewer binary
      searches, bigger tables).

  Returns:
    [E] float64 epsilons in [0, 50].

  References: Triantafillou et al. 2024, "Are we making progress in unlearning? Findings
  from the first NeurIPS unlearning competition", arXiv:2406.09073
  (google-deepmind/unlearning_evaluation, metric.py, `_get_epsilons`).
  """
  unlearned, retrained = _check_banks(unlearned, retrained)
  if chunk_size < 1 or cells < 1:
    raise ValueError(f"chunk_size and cells must be >= 1; got {chunk_size} and {cells}")
  n, e = unlearned.shape
  retrained_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
  pos = np.sort(np.where(retrained_positive, retrained, unlearned).T, axis=1)
  neg = np.sort(np.where(retrained_positive, unlearned, retrained).T, axis=1)
  table = _epsilon_table(n)
  arena = _Arena()
  return np.concatenate([
      _chunk_epsilons(pos[i:i + chunk_size], neg[i:i + chunk_size], table, cells, arena)
      for i in range(0, e, chunk_size)])


def epsilon_points(epsilons, num_models: int) -> np.ndarray:
  """Points of each epsilon in the challenge's buckets (higher is better forgetting):

    points(eps) = 2^-k  with k = floor(eps / 0.5)  if k < 2 M,  else 0,  M = ceil(ln(N - 1)),

  i.e. buckets of width 0.5 from 0 up to M worth 1, 1/2, 1/4, ...; an epsilon beyond the
  last bucket scores 0. M is the largest epsilon N models per side can certify (ln(N - 1)
  rounded up), so with N = 2 there is no bucket and every epsilon scores 0.

  Args:
    epsilons: array of epsilons in [0, 50] (`challenge_epsilons`).
    num_models: N, the models per side the epsilons came from (>= 2).

  Returns:
    float64 points, the shape of epsilons.

  References: Triantafillou et al. 2024, arXiv:2406.09073 (google-deepmind/
  unlearning_evaluation, metric.py, `compute_forget_score_from_confs`).
  """
  eps = np.asarray(epsilons, dtype=np.float64)
  bad = ~((eps >= 0) & (eps <= EPSILON_CAP))  # NaN included
  if bad.any():
    raise ValueError(f"epsilons must lie in [0, {EPSILON_CAP:g}] (challenge_epsilons' range); got "
                     f"{eps[bad][:5].tolist()}")
  if int(num_models) != num_models or num_models < 2:
    raise ValueError(f"num_models must be an integer >= 2; got {num_models}")
  buckets = 2 * int(np.ceil(np.log(num_models - 1)))
  k = np.floor(2 * eps)
  return np.where(k < buckets, 0.5 ** k, 0.0)


def forget_score(unlearned, retrained, chunk_size: int = 8) -> float:
  """The challenge's forgetting score F = mean over forget examples of
  epsilon_points(challenge_epsilons(unlearned, retrained), N), in [0, 1].

  Args:
    unlearned, retrained: [N, E] confidences, as `challenge_epsilons`.
    chunk_size: as `challenge_epsilons`.

  References: Triantafillou et al. 2024, arXiv:2406.09073.
  """
  eps = challenge_epsilons(unlearned, retrained, chunk_size=chunk_size)
  return float(np.mean(epsilon_points(eps, np.shape(unlearned)[0])))


def challenge_score(forget: float, retain_acc_unlearned, retain_acc_retrained,
                    test_acc_unlearned, test_acc_retrained) -> float:
  """The challenge's final score, forgetting quality discounted by lost utility:

    S = F x (mean RA_u / mean RA_r) x (mean TA_u / mean TA_r),

  with RA, TA the retain and test accuracies of the unlearned (u) and retrained (r) models,
  averaged over each bank.

  Args:
    forget: F of `forget_score`, in [0, 1].
    retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned, test_acc_retrained:
      accuracies in [0, 1], one per model (or already averaged).

  References: Triantafillou et al. 2024, arXiv:2406.09073.
  """
  if not 0.0 <= forget <= 1.0:
    raise ValueError(f"forget must be a forgetting score in [0, 1]; got {forget}")
  means = {}
  for name, acc in (("retain_acc_unlearned", retain_acc_unlearned),
                    ("retain_acc_retrained", retain_acc_retrained),
                    ("test_acc_unlearned", test_acc_unlearned),
                    ("test_acc_retrained", test_acc_retrained)):
    acc = np.asarray(acc, dtype=np.float64)
    if acc.size == 0 or not np.all((acc >= 0) & (acc <= 1)):
      raise ValueError(f"{name} must be accuracies in [0, 1] (at least one); got {acc.ravel()[:5]}")
    means[name] = acc.mean()
  for name in ("retain_acc_retrained", "test_acc_retrained"):
    if means[name] == 0:
      raise ValueError(f"{name} is 0: the ratio to the retrained models' accuracy is undefined")
  return float(forget * means["retain_acc_unlearned"] / means["retain_acc_retrained"]
               * means["test_acc_unlearned"] / means["test_acc_retrained"])
