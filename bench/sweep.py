"""A sweep of 8 learning rates x 8 seeds as ONE program vs 8 separate unlearn.py-style runs.

Digits, the default MLP (64-256-256-10), a random forget set of 150, SalUn (10 epochs, batch
64, mask ratio 0.5). Ours: the 64 models (8 learning rates x 8 seeds) of `unlearn(...,
per_model={"lr": ...}, seed_ids=...)` on one runner, the way `unlearn.py --config.sweep.salun.lr=...`
trains a grid. Baseline: the same work as 8 runs of 8 seeds, one per learning rate, each
with a runner and programs of its own, as 8 invocations of unlearn.py would build them (the
data set is loaded once for both; process start-up is not counted). Both are timed twice:
cold (compilation included, what a user waits for) and warm (the programs compiled, as a
rerun in the same process); the models are equal either way (tests/test_sweeps.py).

python bench/sweep.py [--lrs 8] [--seeds 8]
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax
import numpy as np

from bench import common, floor
from rum_jax.configs import digits
from rum_jax.training import optim
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.setup import Setup
from rum_jax.unlearning import forget_sets, unlearn

METHOD = "salun"


def _fresh(setup: Setup, num_models: int) -> Setup:
  """The data and model of `setup` with a new runner: new programs, as a new invocation has."""
  return Setup(setup.config, setup.dataset, setup.model, setup.forward, ModelRunner(num_models))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--lrs", type=int, default=8)
  parser.add_argument("--seeds", type=int, default=8)
  args = parser.parse_args()
  config = digits.get_config()
  config.num_seeds = args.seeds
  settings = config.unlearn[METHOD]
  lrs = list(np.geomspace(0.01, 0.1, args.lrs))
  base = Setup.create(config)
  n = len(base.dataset.train)
  forget = forget_sets.select_random(150, num_train=n, seed=0)
  retain = np.setdiff1d(np.arange(n), forget)
  originals = base.init_states(optim.make_optimizer(0.1), 0)  # the models to unlearn from (any)
  seed_ids = [s for _ in lrs for s in range(args.seeds)]
  tiled = jax.tree.map(lambda x: np.asarray(x)[np.asarray(seed_ids)], originals)

  def ours(setup):
    out, _ = unlearn(setup, tiled, METHOD, settings, forget, retain, seed_ids=seed_ids,
                     per_model={"lr": [lr for lr in lrs for _ in range(args.seeds)]}, name="sweep")
    jax.block_until_ready(jax.tree.leaves(out.params))

  def separate(setups):
    for lr, setup in zip(lrs, setups):
      s = settings.copy_and_resolve_references()
      s.lr = float(lr)
      out, _ = unlearn(setup, originals, METHOD, s, forget, retain, name=f"lr {lr:.3g}")
      jax.block_until_ready(jax.tree.leaves(out.params))

  grid, singles = _fresh(base, len(seed_ids)), [_fresh(base, args.seeds) for _ in lrs]
  t0 = time.time()
  ours(grid)
  cold_ours = time.time() - t0
  t0 = time.time()
  separate(singles)
  cold_separate = time.time() - t0
  warm_ours = common.best_time(lambda: ours(grid), repeats=2)
  warm_separate = common.best_time(lambda: separate(singles), repeats=2)

  models = len(seed_ids)
  examples = settings.epochs * n  # the "train" stream: retain and forget shuffled together, per epoch
  sizes = [int(np.prod(base.dataset.input_shape))] + list(config.model.kwargs.hidden) + [base.dataset.num_classes]
  large = common.floor_time(models * common.mlp_flops(sizes, examples))
  # The floor at its shapes: every model's epochs of batches of the train stream (SalUn's
  # saliency pass, one gradient over the forget set, is left out: under 1% of the work).
  steps = settings.epochs * math.ceil(n / settings.batch_size)
  shapes = floor.mlp_training(sizes, settings.batch_size, models).time(steps)
  print(f"one program, warm: {shapes / warm_ours:.0%} of the floor at its shapes")
  label = (f"sweep {args.lrs} lrs x {args.seeds} seeds {METHOD} digits MLP {settings.epochs} ep "
           f"({models} models, {models / warm_ours:.0f} models/s warm)")
  common.record([
      {"compared": f"{label}: one program vs {args.lrs} separate runs of {args.seeds} seeds, compilation included",
       "ours": cold_ours, "baseline": cold_separate, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: one program vs {args.lrs} separate runs of {args.seeds} seeds, compiled (warm)",
       "ours": warm_ours, "baseline": warm_separate, "floor": large, "shape_floor": shapes},
  ])


if __name__ == "__main__":
  main()
