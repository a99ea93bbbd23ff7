"""The challenge score's banks: N retrained + N unlearned digits MLPs for one method.

Ours: each bank as ONE program of N models (`Setup` with num_seeds = N, the models spread
over the devices and looped within each), run by `unlearning.unlearn` ("retrain", then the
method from one original model), followed by the forward passes the challenge score needs
(`pipelines.audit.challenge_outputs`: forget-set confidences, retain and test accuracy).
Timed on the first call, so compilation counts against us.
Baselines, on the same data, model, forget set and recipes: the same JAX engine one model
after another (a runner of one model, compiled once before timing), and a straightforward
PyTorch loop (retraining with the cosine recipe, then fine-tuning from the original's weights
at a constant learning rate, and the same forward passes). Both run on --baseline-models
models of each bank and are scaled per model to N: a sequential PyTorch run of 1,024 models
would take about half an hour here.

The method is fine-tuning (configs/default.py: 10 epochs, lr 0.01 on the retain set), the
forget set a random 150 of digits' 1,257 train examples, the retrain recipe config.train
(30 epochs). Floor: training FLOPs (3 x forward) of every model's epochs plus the forward
passes over the train and test splits, at the measured matmul rate.

python bench/audit.py [--models 512] [--baseline-models 16]
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

from bench import common
from rum_jax.configs import digits
from rum_jax.pipelines import audit
from rum_jax.training import setup as trainer
from rum_jax.unlearning import forget_sets, unlearn

METHOD = "finetune"


def banks(setup, original, config, forget, retain, base_seed=0):
  """Both banks of the challenge score on every model of `setup`'s runner; blocks until done."""
  n = setup.runner.num_models
  replicated = jax.tree.map(lambda a: np.repeat(np.asarray(a)[:1], n, axis=0), original)
  retrained, _ = unlearn(setup, None, "retrain", config.train, forget, retain, base_seed=base_seed)
  out = [audit.challenge_outputs(setup, retrained, forget, retain)]
  unlearned, _ = unlearn(setup, replicated, METHOD, config.unlearn[METHOD], forget, retain, base_seed=base_seed)
  out.append(audit.challenge_outputs(setup, unlearned, forget, retain))
  return out


def torch_banks(config, ds, original, forget, retain, models):
  """`models` retrained and `models` fine-tuned MLPs as a plain PyTorch loop, with the same outputs."""
  import torch
  x = torch.from_numpy(ds.train.x.reshape(len(ds.train), -1))
  y = torch.from_numpy(ds.train.y.astype(np.int64))
  x_test = torch.from_numpy(ds.test.x.reshape(len(ds.test), -1))
  hidden = list(config.model.kwargs.hidden)
  sizes = [x.shape[1]] + hidden + [ds.num_classes]
  s = config.unlearn[METHOD]
  order = torch.as_tensor(retain)

  def outputs(model):  # forget-set log-probabilities (the confidences' input), test predictions
    with torch.no_grad():
      model(x)[forget].log_softmax(1), model(x_test).argmax(1)

  def from_original():  # flax Dense kernels are [in, out], torch weights [out, in]
    linears = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():
      for i, linear in enumerate(linears):
        linear.weight.copy_(torch.from_numpy(np.asarray(original.params[f"Dense_{i}"]["kernel"])[0].T))
        linear.bias.copy_(torch.from_numpy(np.asarray(original.params[f"Dense_{i}"]["bias"])[0]))
    layers = [m for linear in linears[:-1] for m in (linear, torch.nn.ReLU())]
    return torch.nn.Sequential(*layers, linears[-1])

  def run():
    for seed in range(models):
      outputs(common.torch_train_mlp(x, y, retain, hidden, ds.num_classes, config.train, seed=seed))
      torch.manual_seed(seed)
      model = from_original()
      opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
      for _ in range(s.epochs):  # fine-tuning: a constant learning rate
        perm = order[torch.randperm(len(order))]
        for i in range(math.ceil(len(order) / s.batch_size)):
          idx = perm[i * s.batch_size:(i + 1) * s.batch_size]
          opt.zero_grad()
          torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
          opt.step()
      outputs(model)
  return run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", type=int, default=512)
  parser.add_argument("--baseline-models", type=int, default=16)
  args = parser.parse_args()
  config = digits.get_config()
  one = trainer.Setup.create(config, num_models=1)
  ds = one.dataset
  n_train = len(ds.train)
  forget = forget_sets.select_random(150, num_train=n_train, seed=0)
  retain = np.setdiff1d(np.arange(n_train), forget)
  original, _ = trainer.train_on(one, [np.arange(n_train)], config.train, config.seed, None)

  t = time.perf_counter()
  banks(trainer.Setup.create(config, num_models=args.models), original, config, forget, retain)
  ours = time.perf_counter() - t

  k = min(args.baseline_models, args.models)
  banks(one, original, config, forget, retain)  # compile the one-model programs
  t = time.perf_counter()
  for seed in range(k):
    banks(one, original, config, forget, retain, base_seed=seed)
  sequential = (time.perf_counter() - t) / k * args.models
  torch_time = common.torch_best_time(torch_banks(config, ds, original, forget, retain, k)) / k * args.models

  sizes = [int(np.prod(ds.input_shape))] + list(config.model.kwargs.hidden) + [ds.num_classes]
  train_flops = common.mlp_flops(sizes, len(retain) * (config.train.epochs + config.unlearn[METHOD].epochs))
  eval_flops = 2 * common.mlp_flops(sizes, n_train + len(ds.test)) / 3  # forward only, both banks
  floor = common.floor_time(args.models * (train_flops + eval_flops))
  label = (f"challenge banks, {args.models} retrained + {args.models} unlearned ({METHOD}) digits MLPs, "
           "one program per bank (compilation included)")
  print(f"ours: {2 * args.models / ours:.1f} models/s; sequential JAX {2 * args.models / sequential:.1f}; "
        f"PyTorch {2 * args.models / torch_time:.1f} (baselines timed on {k} models per bank and scaled)")
  common.record([
      {"compared": f"{label} vs sequential JAX (one model per program call; timed on {k} per bank, scaled)",
       "ours": ours, "baseline": sequential, "floor": floor},
      {"compared": f"{label} vs PyTorch loop (timed on {k} per bank, scaled)",
       "ours": ours, "baseline": torch_time, "floor": floor},
  ])


if __name__ == "__main__":
  main()
