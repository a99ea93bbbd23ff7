"""Memorization estimator throughput and proxy quality.

1. Models trained per second on random 70% subsets: the estimator (chunks of models, each
   chunk one compiled program spread over the devices, the models of a device looped inside
   it: the CPU default) vs the same chunks with all of a device's models vmapped
   (vmap_size = chunk), vs the same models one after another in JAX (one program call per
   model and epoch), vs a sequential PyTorch loop of the same model/epochs/batch fed by a
   DataLoader (how the original scripts train them), and vs the fastest plain PyTorch loop
   (batches gathered by indexing whole tensors).
2. With --correlations: Spearman correlation of every one-run proxy with the full
   Feldman-Zhang estimate (runs train.py's memorization and proxies modes into runs/bench_*).

python bench/memorization.py [--dataset mnist1d] [--models 64] [--epochs 10] [--chunk C] [--correlations]
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
from rum_jax.memorization.estimator import sample_subset_masks
from rum_jax.pipelines import memorization
from rum_jax.training import plans
from rum_jax.training import setup as trainer


def get_config(dataset):
  from rum_jax.configs import digits, mnist1d
  return {"digits": digits, "mnist1d": mnist1d}[dataset].get_config()


def memorization_chunk(dataset):
  from rum_jax.configs import digits_memorization, mnist1d_memorization
  mod = {"digits": digits_memorization, "mnist1d": mnist1d_memorization}[dataset]
  return mod.get_config().memorization.chunk_size


def timings(config, num_models, chunk, with_torch=True):
  """Trains the same `num_models` subset models five ways and records the ratios.

  Every way ends with each model's correctness on the train and test splits, which is what
  the estimator needs from a model (`pipelines.memorization.train_chunk`, the per-chunk
  work of `run_memorization` without its files).
  """
  if num_models % chunk:
    raise SystemExit(f"--models {num_models} must be a multiple of --chunk {chunk}")
  setup = trainer.Setup.create(config, num_models=chunk)
  ds = setup.dataset
  n = len(ds.train)
  masks = sample_subset_masks(0, num_models, n)
  positions = [np.flatnonzero(r) for r in masks]
  t = config.train

  def estimator(setup):  # the estimator's own chunk work (`run_memorization`), without files
    def run():
      for j in range(0, num_models, chunk):
        memorization.train_chunk(setup, masks[j:j + chunk], t, j)
    return run

  looped = estimator(setup)  # the CPU default: each device loops over its models
  all_vmapped = config.copy_and_resolve_references()
  all_vmapped.vmap_size = chunk
  vmapped = estimator(trainer.Setup.create(all_vmapped, num_models=chunk))

  one = trainer.Setup.create(config, num_models=1)
  steps = math.ceil(len(positions[0]) / t.batch_size)
  tx, fn = one.compiled_training(t, steps)
  data = one.train_data()
  init = setup.init_states(tx, 0)

  def sequential():  # the same engine, one model after another
    for k in range(num_models):
      state = one.runner.shard(jax.tree.map(lambda a: a[k % chunk:k % chunk + 1], init))
      for epoch in range(t.epochs):
        plan = {"train": plans.stream_plan([positions[k]], t.batch_size, [plans.epoch_rng(0, k, epoch)], steps=steps)}
        state, _ = fn(state, one.runner.shard(plan), data)
      trainer.accuracies(one, state, t.eval_batch_size)

  import torch
  x = torch.from_numpy(ds.train.x.reshape(n, -1))
  y = torch.from_numpy(ds.train.y.astype(np.int64))
  x_test = torch.from_numpy(ds.test.x.reshape(len(ds.test), -1))
  hidden = list(config.model.kwargs.hidden)

  def torch_loop(dataloader):
    def run():
      for k in range(num_models):
        model = common.torch_train_mlp(x, y, positions[k], hidden, ds.num_classes, t, seed=k,
                                       dataloader=dataloader)
        with torch.no_grad():  # the correctness pass every estimator needs
          model(x).argmax(1), model(x_test).argmax(1)
    return run

  looped(), vmapped(), sequential()  # compile
  t_vec = common.best_time(looped, 3)
  t_vmap = common.best_time(vmapped, 3)
  t_seq = common.best_time(sequential, 1)
  t_torch = common.torch_best_time(torch_loop(False)) if with_torch else None
  t_loader = common.torch_best_time(torch_loop(True)) if with_torch else None
  sizes = [int(np.prod(ds.input_shape))] + hidden + [ds.num_classes]
  flops = common.mlp_flops(sizes, len(positions[0]) * t.epochs * num_models)
  large = common.floor_time(flops)
  shapes = shape_floor(setup, sizes, t, chunk, steps) * (num_models // chunk)
  label = f"memorization {num_models} models {config.data.name} MLP {t.epochs} ep"
  print(f"estimator (chunks of {chunk}): {num_models / t_vec:.1f} models/s, "
        f"{flops / t_vec / 1e9:.0f} GFLOP/s of {common.matmul_rate() / 1e9:.0f}, "
        f"{shapes / t_vec:.0%} of the floor at its shapes; all vmapped "
        f"{num_models / t_vmap:.1f}; sequential JAX "
        f"{num_models / t_seq:.1f}" + (f"; PyTorch {num_models / t_torch:.1f}; PyTorch DataLoader "
                                        f"{num_models / t_loader:.1f}" if with_torch else ""))
  rows = [
      {"compared": f"{label}: estimator (models looped per device) vs all of a device's models vmapped",
       "ours": t_vec, "baseline": t_vmap, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: estimator vs sequential JAX (a program call per model and epoch)",
       "ours": t_vec, "baseline": t_seq, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: estimator vs PyTorch loop as the original scripts (DataLoader over a Subset)",
       "ours": t_vec, "baseline": t_loader, "floor": large, "shape_floor": shapes},
      {"compared": f"{label}: estimator vs PyTorch loop with whole-tensor indexing (fastest plain PyTorch)",
       "ours": t_vec, "baseline": t_torch, "floor": large, "shape_floor": shapes},
  ]
  common.record([r for r in rows if r["baseline"] is not None])


def shape_floor(setup, sizes, train_cfg, chunk, steps_per_epoch):
  """The floor of one chunk at its own shapes (bench/floor.py): its training steps (forward and
  backward at the batch size) and the correctness pass (forward at the evaluation batch size
  over every split), the chunk's models over the same devices."""
  train = floor.mlp_training(sizes, train_cfg.batch_size, chunk)
  infer = floor.mlp_inference(sizes, train_cfg.eval_batch_size, chunk)
  rows = sum(len(setup.dataset.split(s)) for s in ("train", "val", "test"))
  return (train.time(train_cfg.epochs * steps_per_epoch)
          + infer.time(rows / train_cfg.eval_batch_size))


def correlations(dataset):
  """Spearman rho of each proxy with the 256-model estimate, via the real commands."""
  from scipy.stats import spearmanr
  from rum_jax import commands
  from rum_jax.configs import digits_memorization, digits_proxies, mnist1d_memorization, mnist1d_proxies
  mods = {"digits": (digits_memorization, digits_proxies), "mnist1d": (mnist1d_memorization, mnist1d_proxies)}
  mem_cfg, proxy_cfg = (m.get_config() for m in mods[dataset])
  mem_dir, proxy_dir = f"runs/bench_{dataset}_mem", f"runs/bench_{dataset}_proxies"
  commands.train(mem_cfg, mem_dir)
  commands.train(proxy_cfg, proxy_dir)
  mem = np.load(os.path.join(mem_dir, "memorization.npz"))
  prox = np.load(os.path.join(proxy_dir, "memorization.npz"))
  assert np.array_equal(mem["index"], prox["index"])
  rows = []
  for name in ("confidence", "max_confidence", "entropy", "binary_accuracy", "heldout_retraining"):
    rho = spearmanr(prox[name], mem["memorization"]).statistic
    rows.append(f"| {dataset} | {name} | {rho:.3f} | {int(mem['num_models'])} |")
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--dataset", default="mnist1d", choices=["digits", "mnist1d"])
  parser.add_argument("--models", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--chunk", type=int, default=None,
                      help="models per vmapped program (default: the memorization config's chunk_size)")
  parser.add_argument("--correlations", action="store_true")
  parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch loops (their rows are kept)")
  args = parser.parse_args()
  config = get_config(args.dataset)
  config.train.epochs = args.epochs
  timings(config, args.models, min(args.chunk or memorization_chunk(args.dataset), args.models),
          with_torch=not args.no_torch)
  if args.correlations:
    rows = []
    for dataset in ("digits", "mnist1d"):
      rows += correlations(dataset)
    body = (f"Command: `python bench/memorization.py --correlations`. Machine: {common.machine()}.\n\n"
            "| data set | proxy | Spearman rho | models in the estimate |\n|---|---|---|---|\n"
            + "\n".join(rows))
    common.record_section("Spearman correlation of one-run proxies with the Feldman-Zhang estimate", body)
    print(body)


if __name__ == "__main__":
  main()
