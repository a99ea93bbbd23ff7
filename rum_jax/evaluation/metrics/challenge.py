"""The NeurIPS 2023 unlearning challenge score of a method's bank (Triantafillou et al. 2024).

Per forget example, the privacy epsilon separating its logit-scaled confidences under the N
unlearned and N retrained models (`challenge.challenge_epsilons`), bucketed into points
(`challenge.epsilon_points`):

  forget_score F = mean over forget examples of the points,
  final_score    = F x (retain acc ratio) x (test acc ratio), unlearned bank over retrained.

References: Triantafillou et al. 2024, arXiv:2406.09073.
"""
import numpy as np

from rum_jax.evaluation import challenge
from rum_jax.evaluation.metrics.interface import BankOutputs, Metric, register
from rum_jax.results import summarize


def epsilons(outputs: BankOutputs) -> np.ndarray:
  """Every forget example's epsilon (the shared intermediate of F and the figures)."""
  unlearned = outputs.need("unlearned", "forget_score")
  retrained = outputs.need("retrained", "forget_score")
  return outputs.cached("epsilons", lambda: challenge.challenge_epsilons(unlearned["forget_confidence"],
                                                                  retrained["forget_confidence"]))


def points(outputs: BankOutputs) -> np.ndarray:
  return challenge.epsilon_points(epsilons(outputs), len(outputs.unlearned["forget_confidence"]))


def forget_score(outputs: BankOutputs) -> np.ndarray:
  return np.array([summarize(points(outputs))["mean"]])


def final_score(outputs: BankOutputs) -> np.ndarray:
  u, r = outputs.need("unlearned", "final_score"), outputs.need("retrained", "final_score")
  return np.array([challenge.challenge_score(outputs.value("forget_score")[0], u["retain_accuracy"], r["retain_accuracy"],
                                      u["test_accuracy"], r["test_accuracy"])])


register(Metric("forget_score", forget_score, needs=frozenset({"banks"}), display="forget score F", unit="",
                description="challenge forgetting score F: mean epsilon points of the forget examples"))
register(Metric("final_score", final_score, needs=frozenset({"banks"}), display="final score", unit="",
                description="challenge final score: F x retain and test accuracy ratios to retraining"))
