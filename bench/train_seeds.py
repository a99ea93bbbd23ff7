"""N seeds of the digits MLP as one program (seeds spread over the devices and looped inside
each, the CPU default) vs the same program with each device's seeds vmapped, vs the same seeds
one after another (JAX), vs a straightforward PyTorch loop (same model, data, epochs, batch,
optimizer).

python bench/train_seeds.py [--seeds 8] [--epochs 30]
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax
import numpy as np

from bench import common, floor
from rum_jax.configs import digits
from rum_jax.training import loop, plans
from rum_jax.training import setup as trainer


def jax_program(config, num_seeds, vmap_size=0):
  """All seeds as one program; vmap_size 0 = the default (a loop per device on CPUs)."""
  config = config.copy_and_resolve_references()
  config.vmap_size = vmap_size
  setup = trainer.Setup.create(config, num_models=num_seeds)
  n = len(setup.dataset.train)
  return lambda: trainer.train_on(setup, [np.arange(n)] * num_seeds, config.train, 0, None)


def jax_sequential(config, num_seeds):
  """The same seeds, one program per seed, compiled once and reused."""
  setup = trainer.Setup.create(config, num_models=1)
  ds = setup.dataset
  n = len(ds.train)
  steps = math.ceil(n / config.train.batch_size)
  tx = trainer.make_tx(config.train, steps)
  fn = loop.make_epoch_fn(setup.runner, setup.forward, tx)
  data = setup.train_data()
  wide = trainer.Setup.create(config, num_models=num_seeds)
  init = wide.init_states(tx, 0)

  def run():
    for s in range(num_seeds):
      state = setup.runner.shard(jax.tree.map(lambda a: a[s:s + 1], init))
      for epoch in range(config.train.epochs):
        plan = {"train": plans.stream_plan([np.arange(n)], config.train.batch_size,
                                           [plans.epoch_rng(0, s, epoch)], steps=steps)}
        state, _ = fn(state, setup.runner.shard(plan), data)
      jax.block_until_ready(state)
  return run


def torch_loop(config, num_seeds):
  import torch
  ds = trainer.Setup.create(config, num_models=1).dataset
  x = torch.from_numpy(ds.train.x.reshape(len(ds.train), -1))
  y = torch.from_numpy(ds.train.y.astype(np.int64))

  def run():
    for s in range(num_seeds):
      common.torch_train_mlp(x, y, np.arange(len(x)), config.model.kwargs.hidden, ds.num_classes,
                             config.train, seed=s)
  return run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch loop (its row is kept)")
  args = parser.parse_args()
  config = digits.get_config()
  config.train.epochs = args.epochs
  vec, vmapped = jax_program(config, args.seeds), jax_program(config, args.seeds, args.seeds)
  seq, tor = jax_sequential(config, args.seeds), torch_loop(config, args.seeds)
  vec(), vmapped(), seq()  # compile
  t_vec, t_vmap, t_seq = common.best_time(vec), common.best_time(vmapped), common.best_time(seq)
  t_torch = None if args.no_torch else common.torch_best_time(tor)
  n = len(trainer.Setup.create(config, num_models=1).dataset.train)
  sizes = [64] + list(config.model.kwargs.hidden) + [10]
  large = common.floor_time(common.mlp_flops(sizes, n * args.epochs * args.seeds))
  steps = args.epochs * math.ceil(n / config.train.batch_size)
  shapes = floor.mlp_training(sizes, config.train.batch_size, args.seeds).time(steps)
  print(f"one program: {shapes / t_vec:.0%} of the floor at its shapes")
  label = f"train {args.seeds} seeds digits MLP {args.epochs} ep"
  rows = [
      {"compared": f"{label}: one program (seeds looped per device) vs each device's seeds vmapped",
       "ours": t_vec, "baseline": t_vmap, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: one program vs sequential JAX (a program call per seed and epoch)",
       "ours": t_vec, "baseline": t_seq, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: one program vs PyTorch loop", "ours": t_vec, "baseline": t_torch, "floor": large, "shape_floor": shapes},
  ]
  common.record([r for r in rows if r["baseline"] is not None])


if __name__ == "__main__":
  main()
