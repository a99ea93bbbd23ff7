"""The metrics of continual learning and unlearning, over a run's accuracy matrices.

Their input is `SequenceOutputs`: every seed's per-task accuracies after every step of a task
sequence (row 0: the initial model) and the sequence's `Timeline`. The formulas are
`evaluation.continual`'s (ACC, BWT and FWT of Lopez-Paz & Ranzato 2017; CL-ToW and CLU of
the thesis "Machine Unlearning in Continual Learning", docs/continual.md). CL-ToW and CLU
come two ways, as metrics of their own:

- per seed ("final_cl_tow"): the metric of each seed's matrices (a value per seed, so a mean
  with a 95% interval);
- pooled ("final_cl_tow_of_mean_matrices"): the matrices averaged over seeds first, then the
  metric, as the thesis' ToW/tow.py does with its *_AVERAGED.csv files: one value per run.
  CL-ToW is a product of absolute differences, so the two differ.

"Kept" tasks are those retained at the end of the sequence, "forgotten" those whose latest
step forgot them (`SequenceOutputs.tasks` can name other sets: a baseline that learned only
the kept tasks is scored on the tasks the compared runs forget). Forget requests (one per seed
and forget step) are described by `SequenceOutputs.requests` (see there).
"""
import dataclasses
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import numpy as np

from rum_jax.evaluation import continual as cl
from rum_jax.evaluation.metrics.interface import Metric, _Values, register

MATRICES = frozenset({"matrices"})


@dataclasses.dataclass
class SequenceOutputs(_Values):
  """What a continual run measured after every step, for every seed.

  Attributes:
    matrices: 'train_accuracy', 'test_accuracy' (and 'mia_auc' for the MIA metrics):
      [S, steps + 1, T], row 0 the initial model, NaN where a task was not scored.
    timeline: the task sequence (`evaluation.continual.Timeline`).
    chance: accuracy of a guess among a task's classes (CLU's floor).
    options: 'clu_beta' (CLU's weight of positive backward transfer, 0.2 by default).
    requests: per seed and forget request (forget step) [S, R]: 'updates' (batches that
      updated the model), 'stopped' (the stop rule ended it, not the pass cap: with held-out
      stop sets, the forgotten task reached the stated target), 'optimizer_updates' and
      'clipped_updates' (of them, those a clipped SGD step clipped); None when not recorded.
    tasks: (kept, forgotten) tasks the final-accuracy metrics read; None: the timeline's last
      retained and forgotten sets.
  """
  matrices: Mapping[str, np.ndarray]
  timeline: cl.Timeline
  chance: float
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  requests: Optional[Mapping[str, np.ndarray]] = None
  tasks: Optional[Tuple[Sequence[int], Sequence[int]]] = None

  def __post_init__(self):
    super().__post_init__()
    self.num_seeds = len(self.matrices["test_accuracy"])

  @property
  def kept(self) -> list:
    return list(self.tasks[0] if self.tasks is not None else self.timeline.retained[-1])

  @property
  def forgotten(self) -> list:
    return list(self.tasks[1] if self.tasks is not None else self.timeline.forgotten[-1])

  def matrix(self, key: str, metric: str) -> np.ndarray:
    if key not in self.matrices:
      raise ValueError(f"metric {metric!r} needs the {key} matrices, which this run did not record")
    return np.asarray(self.matrices[key], np.float64)

  def request(self, key: str, metric: str) -> np.ndarray:
    if self.requests is None or key not in self.requests:
      raise ValueError(f"metric {metric!r} needs the forget requests' {key!r}, which this run did not record")
    return np.asarray(self.requests[key])

  def cached(self, key: str, make: Callable[[], Any]) -> Any:
    """An intermediate several metrics share (per-step CL-ToW, CLU), made once."""
    store = self.__dict__.setdefault("_shared", {})
    if key not in store:
      store[key] = make()
    return store[key]

  def averaged(self) -> "SequenceOutputs":
    """The same run with its matrices averaged over seeds: one 'seed' (the pooled metrics)."""
    def mean(key, values):
      if key != "mia_auc":
        return np.mean(np.asarray(values, np.float64), axis=0, keepdims=True)
      with warnings.catch_warnings():  # the MIA scores only some tasks: NaN where no seed has one
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(values, np.float64), axis=0, keepdims=True)
    return self.cached("averaged", lambda: SequenceOutputs(
        {k: mean(k, v) for k, v in self.matrices.items()}, self.timeline, self.chance, self.options, None,
        self.tasks))


# ---------------------------------------------------------------------------------------
# Per-step curves, per seed (also what the pipeline writes as its curves record).


def cl_tow_curve(outputs: SequenceOutputs) -> np.ndarray:
  """[S, steps]: CL-ToW after every forget step (NaN after learning steps)."""
  def make():
    train, test = outputs.matrix("train_accuracy", "cl_tow"), outputs.matrix("test_accuracy", "cl_tow")
    return np.stack([cl.cl_tow(tr[1:], te[1:], outputs.timeline, tr[0], te[0]) for tr, te in zip(train, test)])
  return outputs.cached("cl_tow", make)


def clu_curve(outputs: SequenceOutputs) -> np.ndarray:
  """[S, steps]: CLU_mix after every step (on train accuracies, as the thesis)."""
  beta = outputs.options.get("clu_beta", 0.2)
  return outputs.cached("clu", lambda: np.stack([
      cl.clu(tr[1:], outputs.timeline, outputs.chance, beta)
      for tr in outputs.matrix("train_accuracy", "clu_mix")]))


def _transfer(outputs: SequenceOutputs, key: str) -> np.ndarray:
  def make():
    if len(outputs.timeline.first_learned) < 2:
      return None
    return [cl.transfer_metrics(te[1:], outputs.timeline, te[0]) for te in outputs.matrix("test_accuracy", key)]
  per_seed = outputs.cached("transfer", make)
  return np.full(outputs.num_seeds, np.nan) if per_seed is None else np.array([m[key] for m in per_seed])


def _at_forget_steps(curve: np.ndarray, timeline: cl.Timeline, how: str) -> np.ndarray:
  rows = timeline.forget_steps
  if not rows:
    return np.full(len(curve), np.nan)
  return curve[:, rows[-1]] if how == "final" else curve[:, rows].mean(axis=1)


def _mean_over(values: np.ndarray, tasks: list) -> np.ndarray:
  """Mean over `tasks` of [S, T] values, per seed; NaN where there is none."""
  if not tasks:
    return np.full(len(values), np.nan)
  with warnings.catch_warnings():  # a seed without any scored task: NaN, as documented
    warnings.simplefilter("ignore", RuntimeWarning)
    return np.nanmean(values[:, tasks], axis=1)


def _pooled(name: str) -> Callable[[SequenceOutputs], np.ndarray]:
  return lambda outputs: outputs.averaged().value(name)


# ---------------------------------------------------------------------------------------
# The metrics.


def _final_test(outputs: SequenceOutputs, tasks: list) -> np.ndarray:
  return _mean_over(outputs.matrix("test_accuracy", "accuracy")[:, -1], tasks)


def retained_after_learning(outputs: SequenceOutputs) -> np.ndarray:
  """Kept tasks' test accuracy right after their latest learning step."""
  test = outputs.matrix("test_accuracy", "retained_test_accuracy_after_learning")[:, 1:]
  learned_at = outputs.timeline.last_learned[-1]
  kept = [k for k in outputs.kept if k in learned_at]
  if not kept:
    return np.full(outputs.num_seeds, np.nan)
  return np.mean([test[:, learned_at[k], k] for k in kept], axis=0)


def retained_before_forgetting(outputs: SequenceOutputs) -> np.ndarray:
  """Kept tasks' test accuracy after the step before the first forget step (A4: task 0 once
  every task is learned, the thesis' "task 0 at step 19")."""
  rows = outputs.timeline.forget_steps
  if not rows or rows[0] == 0:
    return np.full(outputs.num_seeds, np.nan)
  return _mean_over(outputs.matrix("test_accuracy", "retained_test_accuracy_before_forgetting")[:, rows[0]],
                    outputs.kept)


def forgotten_before_forgetting(outputs: SequenceOutputs) -> np.ndarray:
  """Forgotten tasks' test accuracy just before the first forget step."""
  rows = outputs.timeline.forget_steps
  if not rows or rows[0] == 0:
    return np.full(outputs.num_seeds, np.nan)
  return _mean_over(outputs.matrix("test_accuracy", "forgotten_test_accuracy_before_forgetting")[:, rows[0]],
                    outputs.forgotten)


def _request_share(key: str, what: str):
  def share(outputs: SequenceOutputs) -> np.ndarray:
    values = outputs.request(key, what).astype(np.float64)
    return values.mean(axis=1) if values.shape[1] else np.full(outputs.num_seeds, np.nan)
  return share


def zero_update_share(outputs: SequenceOutputs) -> np.ndarray:
  """Fraction of a seed's forget requests that made no update at all (the stop rule held
  before the first batch)."""
  updates = outputs.request("updates", "forget_requests_without_update")
  return (updates == 0).mean(axis=1) if updates.shape[1] else np.full(outputs.num_seeds, np.nan)


def clipped_share(outputs: SequenceOutputs) -> np.ndarray:
  """Fraction of a seed's forget updates whose gradient was clipped (clip_norm)."""
  clipped = outputs.request("clipped_updates", "forget_updates_clipped").sum(axis=1)
  total = outputs.request("optimizer_updates", "forget_updates_clipped").sum(axis=1)
  return np.where(total > 0, clipped / np.maximum(total, 1), np.nan)


def _mia(tasks_of: Callable[[SequenceOutputs], list]):
  def final(outputs: SequenceOutputs) -> np.ndarray:
    return _mean_over(outputs.matrix("mia_auc", "mia")[:, -1], tasks_of(outputs))
  return final


_CL = dict(needs=MATRICES, unit="")
for _metric in (
    Metric("acc", lambda o: _transfer(o, "acc"), display="ACC after learning", **_CL,
           description="ACC: mean test accuracy over the learned tasks after the last first learning (GEM)"),
    Metric("bwt_paper", lambda o: _transfer(o, "bwt_paper"), display="BWT of learning", **_CL,
           description="backward transfer of the learning steps, divided by T - 1 (GEM paper)"),
    Metric("bwt_gem_code", lambda o: _transfer(o, "bwt_gem_code"), display="BWT (GEM's code)", **_CL,
           description="backward transfer of the learning steps, divided by T (GEM's released code)"),
    Metric("fwt_paper", lambda o: _transfer(o, "fwt_paper"), display="FWT of learning", **_CL,
           description="forward transfer of the learning steps, divided by T - 1 (GEM paper)"),
    Metric("fwt_gem_code", lambda o: _transfer(o, "fwt_gem_code"), display="FWT (GEM's code)", **_CL,
           description="forward transfer of the learning steps, divided by T (GEM's released code)"),
    Metric("final_cl_tow", lambda o: _at_forget_steps(cl_tow_curve(o), o.timeline, "final"),
           display="final CL-ToW (per-seed mean)", **_CL,
           description="CL-ToW after the last forget step, per seed (1: as if never learned)"),
    Metric("mean_cl_tow", lambda o: _at_forget_steps(cl_tow_curve(o), o.timeline, "mean"),
           display="mean CL-ToW (per-seed mean)", **_CL, description="CL-ToW averaged over the forget steps, per seed"),
    Metric("final_clu_mix", lambda o: clu_curve(o)[:, -1], display="final CLU_mix", **_CL,
           description="CLU_mix after the last step, per seed (retention x residual, bonus for gains)"),
    Metric("final_cl_tow_of_mean_matrices", _pooled("final_cl_tow"), pooled=True,
           display="final CL-ToW (averaged matrices)", **_CL,
           description="CL-ToW after the last forget step of the seed-averaged matrices (the thesis' tow.py)"),
    Metric("mean_cl_tow_of_mean_matrices", _pooled("mean_cl_tow"), pooled=True,
           display="mean CL-ToW (averaged matrices)", **_CL,
           description="CL-ToW averaged over the forget steps, of the seed-averaged matrices"),
    Metric("final_clu_mix_of_mean_matrices", _pooled("final_clu_mix"), pooled=True,
           display="final CLU_mix (averaged matrices)", **_CL,
           description="CLU_mix after the last step of the seed-averaged matrices (the thesis' CUL.py)"),
    Metric("final_retained_test_accuracy", lambda o: _final_test(o, o.kept), display="kept, final", **_CL,
           description="test accuracy of the kept tasks (never forgotten) at the end"),
    Metric("retained_test_accuracy_after_learning", retained_after_learning, display="kept, after learning",
           **_CL, description="test accuracy of the kept tasks right after each was learned"),
    Metric("retained_test_accuracy_before_forgetting", retained_before_forgetting,
           display="kept, before forgetting", **_CL,
           description="test accuracy of the kept tasks just before the first forget step"),
    Metric("final_forgotten_test_accuracy", lambda o: _final_test(o, o.forgotten), display="forgotten, final",
           higher_is_better=None, **_CL, description="test accuracy of the forgotten tasks at the end"),
    Metric("forgotten_test_accuracy_before_forgetting", forgotten_before_forgetting,
           display="forgotten, before forgetting", higher_is_better=None, **_CL,
           description="test accuracy of the tasks to be forgotten just before the first forget step"),
    Metric("final_forgotten_held_out_accuracy",
           lambda o: _mean_over(o.matrix("val_accuracy", "final_forgotten_held_out_accuracy")[:, -1], o.forgotten),
           display="forgotten, final (held out)", higher_is_better=None, **_CL,
           description="accuracy of the forgotten tasks at the end on their held-out (validation) examples"),
    Metric("final_retained_held_out_accuracy",
           lambda o: _mean_over(o.matrix("val_accuracy", "final_retained_held_out_accuracy")[:, -1], o.kept),
           display="kept, final (held out)", **_CL,
           description="accuracy of the kept tasks at the end on their held-out (validation) examples"),
    Metric("final_forgotten_train_accuracy",
           lambda o: _mean_over(o.matrix("train_accuracy", "final_forgotten_train_accuracy")[:, -1], o.forgotten),
           display="forgotten, final (train)", higher_is_better=None, **_CL,
           description="train accuracy of the forgotten tasks at the end"),
    Metric("final_forgotten_mia_auc", _mia(lambda o: o.forgotten), display="MIA AUC, forgotten",
           higher_is_better=None, **_CL,
           description="loss-MIA AUC of the forgotten tasks at the end (0.5: members look like non-members)"),
    Metric("final_retained_mia_auc", _mia(lambda o: o.kept), display="MIA AUC, kept", higher_is_better=None,
           **_CL, description="loss-MIA AUC of the kept tasks at the end"),
    Metric("forget_requests_stopped", _request_share("stopped", "forget_requests_stopped"),
           display="requests ended by the stop rule", higher_is_better=None, **_CL,
           description="fraction of forget requests the stop rule ended (not the pass cap), zero-update ones included"),
    Metric("forget_requests_without_update", zero_update_share, display="requests without an update",
           higher_is_better=None, **_CL,
           description="fraction of forget requests whose stop rule held before any update"),
    Metric("forget_updates_clipped", clipped_share, display="forget updates clipped", higher_is_better=None, **_CL,
           description="fraction of forget updates whose gradient norm a clipped SGD step cut to clip_norm"),
):
  register(_metric)

# What a continual run records unless config.continual.metrics says otherwise.
DEFAULT_CONTINUAL_METRICS = (
    "acc", "bwt_paper", "bwt_gem_code", "fwt_paper", "fwt_gem_code", "final_cl_tow", "mean_cl_tow",
    "final_clu_mix", "final_cl_tow_of_mean_matrices", "mean_cl_tow_of_mean_matrices",
    "final_clu_mix_of_mean_matrices", "final_retained_test_accuracy", "retained_test_accuracy_after_learning",
    "retained_test_accuracy_before_forgetting", "final_forgotten_test_accuracy", "final_forgotten_train_accuracy",
    "forgotten_test_accuracy_before_forgetting", "final_forgotten_mia_auc", "final_retained_mia_auc",
    "final_forgotten_held_out_accuracy", "final_retained_held_out_accuracy",
    "forget_requests_stopped", "forget_requests_without_update", "forget_updates_clipped")
