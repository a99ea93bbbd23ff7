"""One unlearning epoch of neggrad_plus and of salun: rum-jax vs a straightforward PyTorch loop.

Digits, the default MLP (64-256-256-10), a random forget set of 150, each method's default
settings (batch 64, SGD momentum 0.9, weight decay 5e-4). Ours: the compiled epoch that
`unlearn` runs (all seeds in one program), timed after compilation, including the
host-side batch plan. Baseline: the same model, batches, losses and optimizer as a plain
PyTorch loop, one seed after another. SalUn's mask is computed before the timed epoch on
both sides.

python bench/unlearn_step.py [--seeds 1 3] [--repeats 5]
"""
import argparse
import itertools
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax
import numpy as np

from bench import common
from rum_jax.configs import digits
from rum_jax.training import optim
from rum_jax.training import setup as trainer
from rum_jax.unlearning import forget_sets, runners

RUN_METHODS = ("neggrad_plus", "salun")


def jax_epoch(config, method, num_seeds, forget, retain):
  """A function running one epoch of `method` on all seeds (compiled on its first call)."""
  setup = trainer.Setup.create(config, num_models=num_seeds)
  states = setup.init_states(optim.make_optimizer(0.1), config.seed)
  program = runners.build_program(setup, states, method, config.unlearn[method], forget, retain)
  runner = setup.runner
  data = setup.train_data()
  carry = [runner.shard(program.states)]
  epochs = itertools.count()

  def epoch():
    carry[0], metrics = program.epoch_fn(carry[0], runner.shard(program.plan_fn(next(epochs))), data)
    jax.block_until_ready(metrics)
  return epoch


def torch_epoch(config, method, num_seeds, forget, retain):
  """The same epoch as a plain PyTorch loop over the seeds' models."""
  import torch
  ds = trainer.Setup.create(config, num_models=1).dataset
  x = torch.from_numpy(ds.train.x.reshape(len(ds.train), -1))
  y = torch.from_numpy(ds.train.y.astype(np.int64))
  s = config.unlearn[method]
  forget_t, retain_t = torch.from_numpy(forget), torch.from_numpy(retain)
  sizes = [x.shape[1]] + list(config.model.kwargs.hidden)
  ce = torch.nn.CrossEntropyLoss()
  seeds = []
  for seed in range(num_seeds):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
      layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], ds.num_classes))
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    masks = None
    if method == "salun":  # top-50% |grad of the forget loss| (computed once, outside the epoch)
      model.zero_grad()
      ce(model(x[forget_t]), y[forget_t]).backward()
      flat = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
      threshold = torch.kthvalue(flat, len(flat) - int(round(s.mask_ratio * len(flat))) + 1).values
      masks = [(p.grad.abs() >= threshold).float() for p in model.parameters()]
    seeds.append((model, opt, masks))

  def neggrad_plus(model, opt):
    steps = math.ceil(len(retain_t) / s.batch_size)
    order_r = retain_t[torch.randperm(len(retain_t))]
    cycles = math.ceil(steps * s.batch_size / len(forget_t))
    order_f = torch.cat([forget_t[torch.randperm(len(forget_t))] for _ in range(cycles)])
    for i in range(steps):
      r = order_r[i * s.batch_size:(i + 1) * s.batch_size]
      f = order_f[i * s.batch_size:(i + 1) * s.batch_size]
      opt.zero_grad()
      loss = s.alpha * ce(model(x[r]), y[r]) - (1 - s.alpha) * ce(model(x[f]), y[f])
      loss.backward()
      opt.step()

  def salun(model, opt, masks):
    labels = y.clone()
    labels[forget_t] = (y[forget_t] + torch.randint(1, ds.num_classes, (len(forget_t),))) % ds.num_classes
    union = torch.cat([retain_t, forget_t])
    order = union[torch.randperm(len(union))]
    for i in range(math.ceil(len(order) / s.batch_size)):
      b = order[i * s.batch_size:(i + 1) * s.batch_size]
      opt.zero_grad()
      ce(model(x[b]), labels[b]).backward()
      for p, m in zip(model.parameters(), masks):
        p.grad.mul_(m)
      opt.step()

  def epoch():
    for model, opt, masks in seeds:
      if method == "neggrad_plus":
        neggrad_plus(model, opt)
      else:
        salun(model, opt, masks)
  return epoch


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, nargs="+", default=[1, 3])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = digits.get_config()
  n = len(trainer.Setup.create(config, num_models=1).dataset.train)
  forget = forget_sets.select_random(150, num_train=n, seed=0)
  retain = np.setdiff1d(np.arange(n), forget)
  sizes = [64] + list(config.model.kwargs.hidden) + [10]
  rows = []
  for method in RUN_METHODS:
    batch = config.unlearn[method].batch_size
    # Examples through forward + backward in one epoch of one seed.
    examples = (2 * math.ceil(len(retain) / batch) * batch if method == "neggrad_plus" else n)
    for num_seeds in args.seeds:
      ours = jax_epoch(config, method, num_seeds, forget, retain)
      ours()  # compile
      baseline = torch_epoch(config, method, num_seeds, forget, retain)
      baseline()  # warm up
      rows.append({
          "compared": f"unlearn 1 epoch {method} digits MLP {num_seeds} seed(s): compiled epoch vs PyTorch loop",
          "ours": common.best_time(ours, args.repeats),
          "baseline": common.torch_best_time(baseline, args.repeats),
          "floor": common.floor_time(common.mlp_flops(sizes, examples * num_seeds))})
  common.record(rows)


if __name__ == "__main__":
  main()
