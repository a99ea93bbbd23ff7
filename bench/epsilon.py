"""The challenge epsilons, vectorised (rum_jax) vs the published per-example loop (NumPy port).

Both compute the per-example epsilon of the NeurIPS 2023 unlearning challenge on the same
confidences: `rum_jax.evaluation.challenge.challenge_epsilons` (chunks of examples at once,
counts read from tables) and `bench.epsilon_reference.epsilons` (the loop of
google-deepmind/unlearning_evaluation, metric.py, ported to NumPy: every threshold against
every model, one example at a time). The port takes about half a second per example at 512
models, so it runs on the first --reference-examples examples and its time is scaled per
example to all of them; the epsilons of those examples must agree to 1e-6.

Confidences: per forget example a logit-scaled confidence level m ~ N(2, 2) and spread
s ~ U(0.5, 2.5); the retrained models draw N(m, s), the unlearned ones N(m + d, s * f) with a
per-example residual shift d ~ N(0, 1) and spread factor f ~ U(0.6, 1.5).

python bench/epsilon.py [--examples 1000] [--models 512] [--reference-examples 10]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from bench import common
from bench import epsilon_reference
from rum_jax.evaluation import challenge


def make_confidences(models: int, examples: int, rng: np.random.Generator):
  level = rng.normal(2, 2, examples)
  spread = rng.uniform(0.5, 2.5, examples)
  retrained = level + spread * rng.normal(size=(models, examples))
  unlearned = (level + rng.normal(0, 1, examples)
               + spread * rng.uniform(0.6, 1.5, examples) * rng.normal(size=(models, examples)))
  return unlearned, retrained


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--examples", type=int, default=1000)
  parser.add_argument("--models", type=int, default=512)
  parser.add_argument("--reference-examples", type=int, default=10)
  args = parser.parse_args()
  unlearned, retrained = make_confidences(args.models, args.examples, np.random.default_rng(0))
  ours = common.best_time(lambda: challenge.challenge_epsilons(unlearned, retrained), 2)
  fast = challenge.challenge_epsilons(unlearned, retrained)

  k = min(args.reference_examples, args.examples)
  t = time.perf_counter()
  reference = epsilon_reference.epsilons(
      *epsilon_reference.split_by_median(unlearned[:, :k], retrained[:, :k]))
  baseline = (time.perf_counter() - t) / k * args.examples
  diff = float(np.max(np.abs(fast[:k] - reference)))
  print(f"epsilons of the first {k} examples: max |vectorised - published loop| = {diff:.2e}; "
        f"vectorised epsilons: median {np.median(fast):.3f}, range [{fast.min():.3f}, {fast.max():.3f}]")
  if diff > 1e-6:
    sys.exit(f"the vectorised epsilons differ from the published loop's by {diff:.2e} > 1e-6")
  common.record([{
      "compared": (f"challenge epsilons, {args.examples} forget examples x {args.models} models: "
                   f"vectorised vs the published per-example loop (NumPy port, timed on {k} "
                   "examples and scaled per example; equal to 1e-6)"),
      "ours": ours, "baseline": baseline, "floor": None}])


if __name__ == "__main__":
  main()
