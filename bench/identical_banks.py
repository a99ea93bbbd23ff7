"""The challenge's forgetting score F of two banks drawn from ONE distribution, for several N.

F of a perfect unlearning method (its bank distributed exactly as the retrained one) is not 1:
each forget example's epsilon is estimated from N + N models, and a threshold that happens to
catch a few models of one bank and one of the other already scores epsilon ln 5 or so, so the
median epsilon and F stay about where they are at every N. This prints F (mean points over the
forget examples, 95% interval over them) and the median epsilon for identical banks of N models
(i.i.d. N(level_i, spread_i) confidences per example, as bench/epsilon.py's retrained bank).

python bench/identical_banks.py [--examples 300] [--models 16,32,64,128,256,512]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from rum_jax.evaluation import challenge
from rum_jax.results import summarize


def identical_banks(models: int, examples: int, rng: np.random.Generator):
  level = rng.normal(2, 2, examples)
  spread = rng.uniform(0.5, 2.5, examples)
  draw = lambda: level + spread * rng.normal(size=(models, examples))  # noqa: E731
  return draw(), draw()


def score(models: int, examples: int, seed: int = 0):
  """(F, its 95% half width over examples, median epsilon) of two identical banks."""
  a, b = identical_banks(models, examples, np.random.default_rng([seed, models]))
  eps = challenge.challenge_epsilons(a, b)
  f = summarize(challenge.epsilon_points(eps, models))
  return f["mean"], f["ci95"], float(np.median(eps))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--examples", type=int, default=300)
  parser.add_argument("--models", default="16,32,64,128,256,512")
  args = parser.parse_args()
  print("| N (models per bank) | F of identical banks | median epsilon |")
  print("|---|---|---|")
  for n in (int(x) for x in args.models.split(",")):
    f, half, median = score(n, args.examples)
    print(f"| {n} | {f:.3f} ± {half:.3f} | {median:.2f} |")


if __name__ == "__main__":
  main()
