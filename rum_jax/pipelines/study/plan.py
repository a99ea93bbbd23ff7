"""RUM's plan, searched end to end on the validation mix with the single methods' grids.

Zhao et al. 2024 (arXiv:2406.01257, Sec. 5) set RUM's plan (which method unlearns each of the
low, mid and high thirds) by hand. Here it is searched on the VALIDATION mix set, the set the
single methods are tuned on, so that RUM and the best single method are chosen alike:

  per stage k = low, mid, high, in that order, every candidate, `none` and each method at every
  point of its grid (config.sweep.<method>), unlearns the stage's third from the models the
  earlier stages' choices left (retain set D minus the thirds so far, as RUM's steps), and is
  scored by the ToW of the whole sequence so far on the whole validation mix against its
  retrain reference; the candidate with the highest mean over seeds is kept (`greedy_search`).

So a stage's choice knows what the earlier ones did (each step of the earlier, per-level plan
started from the original model, on level sets of another size). A method's grid points x
seeds run as one program (`grid.split_by_program`), from each seed's models after the
prefix; every program checkpoints under <validation dir>/plan/<stage>/<key>/<method>/, keyed by
the prefix, the forget sets, the method's settings and the grid, so a rerun reads them back.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io
from rum_jax.evaluation.metrics import ModelOutputs
from rum_jax.pipelines import unlearning
from rum_jax.training import loop
from rum_jax.unlearning import grid as grid_lib, rum

NONE = rum.NO_METHOD


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One choice for a stage: a method (or `none`) at one grid point."""
  method: str
  point: Tuple[Tuple[str, Any], ...] = ()

  @property
  def settings(self) -> Dict[str, Any]:
    return dict(self.point)

  @property
  def label(self) -> str:
    return self.method + (f" ({grid_lib.label(self.settings)})" if self.point else "")


def candidates(methods: Sequence[str], grids: Dict[str, List[Dict[str, Any]]]) -> List[Candidate]:
  """`none`, then every method at every point of its grid ([{}]: its settings alone)."""
  out = [Candidate(NONE)]
  for m in methods:
    out += [Candidate(m, tuple(p.items())) for p in (grids.get(m) or [{}])]
  return out


# score_stage(stage, prefix, start, candidates) -> per candidate (per-seed ToW [S], end state),
# None where it diverged.
StageScorer = Callable[[int, List[Candidate], Any, List[Candidate]], List[Optional[Tuple[np.ndarray, Any]]]]


def greedy_search(stages: Sequence[str], options: List[Candidate], start: Any, score_stage: StageScorer
                  ) -> Dict[str, Any]:
  """Chooses one candidate per stage, in order, each by the mean ToW of the whole sequence.

  Returns:
    {"plan": {stage: Candidate}, "stages": [{"stage", "scores": {label: mean or None}, "chosen"}],
    "evaluated": configurations scored, "state": the chosen sequence's end state}.
  """
  prefix: List[Candidate] = []
  record = []
  for k, stage in enumerate(stages):
    found = score_stage(k, list(prefix), start, options)
    means = [-np.inf if f is None else float(np.mean(f[0])) for f in found]
    if np.all(np.isneginf(means)):
      raise loop.NonFiniteLossError(f"every candidate of RUM's {stage} step diverged on the validation mix")
    best = int(np.argmax(means))
    prefix.append(options[best])
    start = found[best][1]
    record.append({"stage": stage, "chosen": options[best].label,
                   "scores": {c.label: (None if f is None else [float(v) for v in f[0]])
                              for c, f in zip(options, found)}})
    logging.info("RUM plan search, %s: %s (validation ToW %.4f)", stage, options[best].label, means[best])
  return {"plan": dict(zip(stages, prefix)), "stages": record, "evaluated": len(stages) * len(options),
          "state": start}


class ValidationMixScorer:
  """`StageScorer` of RUM's steps on a prepared validation mix (its forget sets refined by `scores`)."""

  def __init__(self, prep: unlearning.Prepared, scores: np.ndarray,
               settings_of: Callable[[str], ml_collections.ConfigDict], root: str):
    self.prep, self.settings_of, self.root = prep, settings_of, root
    self.num_seeds = prep.config.num_seeds
    self.sets = rum.step_sets(prep.forget[:self.num_seeds], scores, len(prep.setup.dataset.train))

  def tow(self, states: Any, seed_ids: Sequence[int]) -> np.ndarray:
    """ToW of each model on the whole validation mix against its seed's reference; seed_ids is
    range(S) repeated (a grid's points x seeds), so each group of S models is one point."""
    S = self.num_seeds
    forget = [self.prep.forget[s] for s in seed_ids]
    outputs = unlearning.model_outputs(self.prep.setup.with_models(len(seed_ids)), states, forget)
    values = []
    for g in range(len(seed_ids) // S):
      rows = slice(g * S, (g + 1) * S)
      point = ModelOutputs({k: v[rows] for k, v in outputs.logits.items()}, outputs.labels, forget[rows],
                           self.prep.reference_outputs)
      values.append(np.asarray(point.value("tow")))
    return np.concatenate(values)

  def __call__(self, k: int, prefix: List[Candidate], start: Any, options: List[Candidate]):
    found: List[Optional[Tuple[np.ndarray, Any]]] = [None] * len(options)
    seeds = list(range(self.num_seeds))
    by_method: Dict[str, List[int]] = {}
    for i, c in enumerate(options):
      by_method.setdefault(c.method, []).append(i)
    for method, members in by_method.items():
      if method == NONE:
        for i in members:
          found[i] = (self.tow(start, seeds), start)
        continue
      for i, out in zip(members, self._run(k, prefix, start, method, [options[i].settings for i in members])):
        found[i] = out
    return found

  def _run(self, k: int, prefix: List[Candidate], start: Any, method_name: str,
           points: List[Dict[str, Any]]) -> List[Optional[Tuple[np.ndarray, Any]]]:
    """Every point of one method from `start` on stage k's sets, as few programs as the grid allows."""
    S = self.num_seeds
    base = self.settings_of(method_name)
    key = hashlib.sha256(json.dumps({"prefix": [c.label for c in prefix], "forget": self.prep.forget_digest,
                                     "settings": base.to_dict(), "points": io.as_json(points)},
                                    sort_keys=True).encode()).hexdigest()[:12]
    root = os.path.join(self.root, f"{k + 1}_{rum.LEVELS[k]}", key, method_name)
    out: List[Optional[Tuple[np.ndarray, Any]]] = [None] * len(points)
    step = self.sets[k]
    for program in grid_lib.unlearn_points(self.prep.setup, start, method_name, base, points, step.forget,
                                           step.retain, base_seed=self.prep.config.seed, root=root,
                                           name=f"plan {rum.LEVELS[k]}: {method_name}"):
      if program.diverged:  # a diverged point is never chosen
        logging.warning("RUM plan search, %s: %s diverged", rum.LEVELS[k],
                        ", ".join(f"{method_name} {grid_lib.label(points[i])}" for i in program.diverged))
      if not program.members:
        continue
      tows = self.tow(program.states, program.seed_ids)
      for g, i in enumerate(program.members):
        out[i] = (tows[g * S:(g + 1) * S], jax.tree.map(lambda x: np.asarray(x)[g * S:(g + 1) * S], program.states))
    return out
