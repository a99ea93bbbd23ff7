"""RUM's plan, searched on whole sequences on the validation mix, with the single methods' budget.

Zhao et al. 2024 (arXiv:2406.01257, Sec. 5) set RUM's plan (which method unlearns each of the
low, mid and high thirds) by hand. Here it is searched on the VALIDATION mix sets, the sets the
single methods are tuned on, so that RUM and the best single method are chosen alike, by the
metric of the claim (config.study.claim_metrics), from the same number of evaluated
configurations (config.study.budget):

  * every candidate is scored by the metric of a COMPLETE sequence (low, mid, high) on the
    whole validation mix against its retrain reference. Scoring a partial sequence is
    myopic: the mix's forget accuracy pools the thirds, so a first step that damages the
    low third (which retraining still gets right) moves the pooled accuracy toward
    retraining's and scores well, though no later step can undo it;
  * `coordinate_descent`: from a complete start plan, one stage at a time (low, mid, high,
    low, ...), every candidate of that stage with the other two stages kept, and the best
    kept, until a pass over the three stages changes nothing; then again from the next start
    plan while budget is left. The plan is the best complete sequence scored. A stage's
    candidates are `none` and the k best single configurations on the validation mix by the
    claim's metric (`shortlist`: each method's best first), k = (budget - 1) // 6 (at least
    2), so that two passes fit the budget; the start plans are the single configurations on every stage,
    the best first;
  * the search stops at exactly `budget` distinct sequences (a round cut short in candidate
    order), the number of single configurations (`none` and every grid point) tuned on the
    same sets.

`ValidationMixScorer` runs the sequences: a round's candidates start from the models the
stages before it left (computed once), those of one method and static settings as one program
(`grid.unlearn_points`), and every later stage of the plan runs for all of the round's
candidates as ONE program (`grid.unlearn_groups`), model (candidate, seed s) with seed s's sets
and batch order. Every sequence is scored by every claim metric and kept in
<validation dir>/plan/sequences.json, so the searches of several metrics share sequences and a
rerun reads them back.
"""
import dataclasses
import hashlib
import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io
from rum_jax.runfolder import RunFolder, record_digest
from rum_jax.evaluation.metrics import ModelOutputs
from rum_jax.pipelines import unlearning
from rum_jax.unlearning import grid as grid_lib, rum

NONE = rum.NO_METHOD
STAGES = rum.LEVELS
PASSES = 2  # passes over the stages the shortlist is sized for


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One choice for a stage (or a single method): a method (or `none`) at one grid point."""
  method: str
  point: Tuple[Tuple[str, Any], ...] = ()

  @property
  def settings(self) -> Dict[str, Any]:
    return dict(self.point)

  @property
  def label(self) -> str:
    return self.method + (f" ({grid_lib.label(self.settings)})" if self.point else "")


Plan = Tuple[Candidate, ...]


def plan_label(plan: Sequence[Candidate]) -> str:
  return " -> ".join(c.label for c in plan)


def shortlist_size(budget: int, stages: int = len(STAGES)) -> int:
  """k candidates per stage besides `none` (at least 2): PASSES passes over the stages fit the budget."""
  return max(2, (budget - 1) // (PASSES * stages))


def shortlist(ranked: Sequence[Candidate], k: int) -> List[Candidate]:
  """The k best of `ranked` (best first, `none` left out): each method's best configuration
  first, in rank order, then the next best configurations, so a stage can change method."""
  ranked = [c for c in ranked if c.method != NONE]
  firsts = [c for i, c in enumerate(ranked) if c.method not in {d.method for d in ranked[:i]}]
  return (firsts + [c for c in ranked if c not in firsts])[:k]


# score_round(stage, plan, options) -> per option, the per-seed values [S] of the search's metric
# for `plan` with stage `stage` replaced by that option; None where it diverged.
RoundScorer = Callable[[int, Plan, List[Candidate]], List[Optional[np.ndarray]]]


def coordinate_descent(num_stages: int, options: Sequence[Candidate], starts: Sequence[Plan],
                       score_round: RoundScorer, budget: int, higher_is_better: bool = True) -> Dict[str, Any]:
  """Coordinate descent over the stages of complete plans, within `budget` sequences (module docstring).

  Args:
    num_stages: stages of a plan.
    options: every stage's candidates.
    starts: complete start plans, in the order they are tried.
    score_round: scores complete sequences (`RoundScorer`).
    budget: the most distinct sequences scored.
    higher_is_better: the metric's direction.

  Returns:
    {"plan": the best scored sequence, "mean": its mean, "evaluated": distinct sequences
    scored, "rounds": [{"start", "stage", "scored": {label: per-seed or None}, "chosen", "plan"}],
    "converged": per start tried, whether a pass changed nothing, "sequences": label -> per-seed
    or None}.
  """
  sign = 1.0 if higher_is_better else -1.0
  seen: Dict[Plan, Optional[np.ndarray]] = {}
  rounds: List[Dict[str, Any]] = []
  converged: List[bool] = []

  def mean(plan: Plan) -> float:
    values = seen.get(plan)
    return -np.inf if values is None else sign * float(np.mean(values))

  for i, start in enumerate(starts):
    if len(seen) >= budget:
      break
    plan = tuple(start)
    if plan not in seen:
      seen[plan] = score_round(0, plan, [plan[0]])[0]
    stage, unchanged = 0, 0
    while unchanged < num_stages and len(seen) < budget:
      variants = {c: plan[:stage] + (c,) + plan[stage + 1:] for c in options}
      new = [c for c in options if variants[c] not in seen][:budget - len(seen)]
      if new:
        for c, values in zip(new, score_round(stage, plan, new)):
          seen[variants[c]] = values
      scored = [c for c in options if variants[c] in seen]
      best = max(scored, key=lambda c: mean(variants[c]))  # the first of equals: option order
      if mean(variants[best]) > mean(plan):
        plan, unchanged = variants[best], 1  # the changed stage is the best given the others
      else:
        unchanged += 1
      rounds.append({"start": i, "stage": stage, "chosen": plan[stage].label, "plan": plan_label(plan),
                     "scored": {c.label: _as_list(seen[variants[c]]) for c in scored}})
      stage = (stage + 1) % num_stages
    converged.append(unchanged >= num_stages)
  finite = [p for p in seen if seen[p] is not None]
  if not finite:
    raise ValueError(f"every one of the {len(seen)} sequences RUM's plan search scored diverged")
  best = max(finite, key=mean)
  logging.info("RUM plan search: %s (mean %.4f) from %d sequences", plan_label(best), sign * mean(best), len(seen))
  return {"plan": best, "mean": sign * mean(best), "evaluated": len(seen), "rounds": rounds,
          "converged": converged, "sequences": {plan_label(p): _as_list(v) for p, v in seen.items()}}


def _as_list(values: Optional[np.ndarray]) -> Optional[List[float]]:
  return None if values is None else [float(v) for v in values]


class ValidationMixScorer:
  """Scores complete sequences of RUM's steps on a prepared validation mix (its forget sets
  refined by `scores`) by every metric of `metrics`; `for_metric(m)` is the `RoundScorer` of one."""

  def __init__(self, prep: unlearning.Prepared, scores: np.ndarray,
               settings_of: Callable[[str], ml_collections.ConfigDict], metrics: Sequence[str]):
    self.prep, self.settings_of, self.metrics = prep, settings_of, tuple(metrics)
    self.num_seeds = prep.config.num_seeds
    self.sets = rum.step_sets(prep.forget[:self.num_seeds], scores, len(prep.setup.dataset.train))
    self._states: Dict[Tuple[Candidate, ...], Any] = {(): prep.original}
    # What decides a sequence's scores besides its label: the forget sets, the reference, the
    # original models and every method's base settings.
    self._key = record_digest({
        "forget": prep.forget_digest, "reference": prep.retrain_digest, "metrics": list(self.metrics),
        "scores": hashlib.sha256(np.asarray(scores, np.float64).tobytes()).hexdigest()[:16]})
    self._folder = RunFolder.of(prep.folder)  # the validation sets' folder keeps the cache
    self._scored: Dict[str, Optional[Dict[str, List[float]]]] = {}
    if self._folder.readable("plan_sequences"):
      cached = self._folder.read("plan_sequences")
      if cached.get("key") == self._key:
        self._scored = cached["sequences"]

  def _settings(self, c: Candidate) -> ml_collections.ConfigDict:
    settings = ml_collections.ConfigDict(self.settings_of(c.method).to_dict())
    settings.update(c.settings)
    return settings

  def _id(self, plan: Sequence[Candidate]) -> str:
    """A sequence's cache key: its label and its methods' full settings."""
    return json.dumps([[c.method, io.as_json(self._settings(c).to_dict()) if c.method != NONE else {}]
                       for c in plan], sort_keys=True)

  def for_metric(self, metric: str) -> RoundScorer:
    def score_round(stage: int, plan: Plan, options: List[Candidate]) -> List[Optional[np.ndarray]]:
      variants = [plan[:stage] + (c,) + plan[stage + 1:] for c in options]
      todo = [c for c, v in zip(options, variants) if self._id(v) not in self._scored]
      if todo:
        self._run_round(stage, plan, todo)
      out = [self._scored[self._id(v)] for v in variants]
      return [None if v is None else np.asarray(v[metric]) for v in out]
    return score_round

  def _state(self, prefix: Tuple[Candidate, ...]) -> Any:
    """The models after the stages of `prefix` (run once per prefix, from the original)."""
    if prefix not in self._states:
      before = self._state(prefix[:-1])
      c, k = prefix[-1], len(prefix) - 1
      if c.method == NONE:
        self._states[prefix] = before
      else:
        out = grid_lib.unlearn_groups(self.prep.setup, [before], c.method, self._settings(c), self.sets[k].forget,
                                      self.sets[k].retain, base_seed=self.prep.config.seed, run_dir=None,
                                      name=f"plan {STAGES[k]}: {c.label}")
        self._states[prefix] = out.states  # None: diverged, and so is every sequence after it
    return self._states[prefix]

  def _run_round(self, stage: int, plan: Plan, options: List[Candidate]) -> None:
    """Every option at `stage` from the plan's earlier stages, then the plan's later stages for
    all of them as one program per stage; scores the complete sequences on the whole mix."""
    S, prep = self.num_seeds, self.prep
    start = self._state(tuple(plan[:stage]))
    ends: Dict[int, Any] = {}  # option index -> its models [S]
    if start is not None:
      for i, c in enumerate(options):
        if c.method == NONE:
          ends[i] = start
      by_method: Dict[str, List[int]] = {}
      for i, c in enumerate(options):
        if c.method != NONE:
          by_method.setdefault(c.method, []).append(i)
      step = self.sets[stage]
      for method, members in by_method.items():
        for program in grid_lib.unlearn_points(prep.setup, start, method, self.settings_of(method),
                                               [options[i].settings for i in members], step.forget, step.retain,
                                               base_seed=prep.config.seed, root=None,
                                               name=f"plan {STAGES[stage]}: {method}"):
          for g, j in enumerate(program.members):
            ends[members[j]] = _like(_slice(program.states, g, S), start, S)
      for later in range(stage + 1, len(STAGES)):
        c = plan[later]
        alive = sorted(ends)
        if c.method == NONE or not alive:
          continue
        out = grid_lib.unlearn_groups(prep.setup, [ends[i] for i in alive], c.method, self._settings(c),
                                      self.sets[later].forget, self.sets[later].retain, base_seed=prep.config.seed,
                                      run_dir=None, name=f"plan {STAGES[later]}: {c.label} after {len(alive)} candidates")
        ends = {alive[g]: _slice(out.states, m, S) for m, g in enumerate(out.members)}
    for i, c in enumerate(options):
      self._scored[self._id(plan[:stage] + (c,) + plan[stage + 1:])] = None
    if ends:
      alive = sorted(ends)
      states = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x)[:S] for x in xs]), *[ends[i] for i in alive])
      forget = [prep.forget[s] for _ in alive for s in range(S)]
      outputs = unlearning.model_outputs(prep.setup.with_models(len(forget)), states, forget)
      for g, i in enumerate(alive):
        rows = slice(g * S, (g + 1) * S)
        if not all(np.isfinite(v[rows]).all() for v in outputs.logits.values()):
          continue  # logits beyond float range (a finite but exploding loss): as diverged
        one = ModelOutputs({k: v[rows] for k, v in outputs.logits.items()}, outputs.labels, forget[rows],
                           prep.reference_outputs)
        variant = plan[:stage] + (options[i],) + plan[stage + 1:]
        self._scored[self._id(variant)] = {m: one.value(m).tolist() for m in self.metrics}
    self._folder.write("plan_sequences", {"key": self._key, "sequences": self._scored})


def _like(states: Any, start: Any, num_seeds: int) -> Any:
  """`states` with the optimizer state, step and keys of `start`, so that the end states of
  different methods stack into one program. The next step makes its own (a training method a
  fresh optimizer state and keys; a one-shot edit reads neither), so nothing else changes."""
  return states.replace(opt_state=_slice(start.opt_state, 0, num_seeds), step=_slice(start.step, 0, num_seeds),
                        rng=_slice(start.rng, 0, num_seeds))


def _slice(states: Any, group: int, num_seeds: int) -> Any:
  return jax.tree.map(lambda x: np.asarray(x)[group * num_seeds:(group + 1) * num_seeds], states)
