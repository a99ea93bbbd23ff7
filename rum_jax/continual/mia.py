"""Per-task loss membership inference of a continual run (config.continual.mia_protocol).

After every step, each task's training examples (members) are told apart from its test
examples (non-members) by their cross-entropy; the score is the attack's ROC AUC (0.5: the
losses reveal nothing). Two protocols, entries of `MIA_PROTOCOLS`:

- "rank_cv" (ours, every task): `evaluation.mia.loss_mia_auc`, the larger class subsampled
  to the smaller, a logistic regression on the rank of the loss, 5-fold stratified
  cross-validated AUC.
- "thesis" (the thesis' negGem/MIA.py `basic_mia`, run by negGemGradMIA.py on tasks 1..8
  only): n = min(members, non-members) // 2; 2n of each drawn without replacement, the first
  n of each fit a logistic regression on the RAW loss clipped to [-400, 400], the other n of
  each are scored by it: one 50/50 split, no cross-validation. Fewer than 2 pairs give 0.5.
"""
import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from rum_jax.evaluation import mia
from rum_jax.registry import Registry

# negGem/MIA.py's `clip_val`: losses are clipped to [-400, 400] before the regression.
THESIS_CLIP = 400.0


def thesis_loss_mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray, seed: int = 0,
                        clip: float = THESIS_CLIP) -> float:
  """AUC of the thesis' loss attack (module docstring): one 50/50 split, raw clipped losses."""
  members = np.asarray(member_losses, np.float64)
  outsiders = np.asarray(nonmember_losses, np.float64)
  n = min(len(members), len(outsiders)) // 2
  if n < 2:
    return 0.5
  rng = np.random.default_rng(seed)
  members = np.clip(members[rng.choice(len(members), 2 * n, replace=False)], -clip, clip)
  outsiders = np.clip(outsiders[rng.choice(len(outsiders), 2 * n, replace=False)], -clip, clip)
  labels = np.concatenate([np.ones(n), np.zeros(n)])
  fit_x = np.concatenate([members[:n], outsiders[:n]])[:, None]
  eval_x = np.concatenate([members[n:], outsiders[n:]])[:, None]
  attacker = LogisticRegression(max_iter=1000).fit(fit_x, labels)
  return float(roc_auc_score(labels, attacker.predict_proba(eval_x)[:, 1]))


@dataclasses.dataclass(frozen=True)
class MiaProtocol:
  """auc(members, non-members, seed) -> AUC, on `tasks` only (None: every task)."""
  auc: Callable[[np.ndarray, np.ndarray, int], float]
  tasks: Optional[Tuple[int, ...]] = None

  def scores_task(self, task: int) -> bool:
    return self.tasks is None or task in self.tasks

  def per_task(self, train: dict, test: dict, num_tasks: int, step: int) -> np.ndarray:
    """[S, T] AUC of every seed and scored task (NaN elsewhere) after step `step`.

    train / test: `tasks.evaluate_tasks` outputs ("loss" and "task" [S, N]) of the splits.
    """
    num_seeds = train["loss"].shape[0]
    auc = np.full((num_seeds, num_tasks), np.nan)
    for s in range(num_seeds):
      for t in filter(self.scores_task, range(num_tasks)):
        members = train["loss"][s][train["task"][s] == t]
        outsiders = test["loss"][s][test["task"][s] == t]
        if min(len(members), len(outsiders)) >= 2:
          auc[s, t] = self.auc(members, outsiders, step * 1000 + s)
    return auc


MIA_PROTOCOLS: Registry[MiaProtocol] = Registry("membership-inference protocol")
MIA_PROTOCOLS.register("rank_cv")(MiaProtocol(lambda m, o, seed: mia.loss_mia_auc(m, o, seed=seed)))
MIA_PROTOCOLS.register("thesis")(MiaProtocol(lambda m, o, seed: thesis_loss_mia_auc(m, o, seed=seed),
                                             tasks=tuple(range(1, 9))))
