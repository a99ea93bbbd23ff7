"""MNIST-1D at CIFAR's size: memorization, the one-run proxies, and every unlearning method.

1. Feldman-Zhang memorization of the 45,000 training examples from 1,024 models
   (configs/mnist1d_45k_memorization.py, train.py's command function) into
   <workdir>/memorization, where unlearn.py looks for it.
2. The one-run proxies (configs/mnist1d_45k_proxies.py) into <workdir>/proxies, and the
   Spearman correlation of each with the estimate; beside them the estimate's own split-half
   reliability (Spearman of the estimates from the first and the last half of the models: no
   proxy can agree with the estimate much better than the estimate agrees with itself).
3. A `mix` forget set of 3,000 (configs/rum_mnist1d_45k.py) unlearned by every method and RUM
   at 4 seeds into one work directory, as unlearn.py runs them one after another (the first
   also trains the original models and the retrain reference), and evaluated as unlearn.py
   evaluates (<workdir>/evaluation.md).

Every step is a command function in this process (the data set is generated once), resumes
where a killed run stopped, and is timed (<workdir>.bench_seconds.json, beside the work directory
so that it stays rum-jax's own folder, keeps the time of each
finished step, so a resumed invocation reports what the steps took, not the resume). Writes bench/mnist1d_45k.json and the section
"MNIST-1D at CIFAR's size" of bench/RESULTS.md.

python bench/mnist1d_45k.py [--workdir runs/mnist1d_45k] [--skip-unlearning]
python bench/mnist1d_45k.py --quick     # a smoke run: 2,000 examples, 32 models, 2 seeds
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime  # noqa: E402

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
runtime.use_compilation_cache()
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bench import common  # noqa: E402
from rum_jax.configs import mnist1d_45k_memorization, mnist1d_45k_proxies, rum_mnist1d_45k  # noqa: E402
from rum_jax import commands  # noqa: E402
from rum_jax.memorization.estimator import MemorizationStats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_METHODS = ("finetune", "l1_sparse", "neggrad", "neggrad_plus", "scrub", "wfisher", "random_label", "salun", "rum")
PROXIES = ("confidence", "max_confidence", "entropy", "binary_accuracy", "heldout_retraining")


def shrink(config, args):
  """--quick: a small data set, few models, epochs and seeds (the same code paths)."""
  if args.quick:
    config.data.options.num_train, config.data.options.num_test = 2000, 1000
    config.train.epochs = 2
    config.memorization.num_models, config.memorization.chunk_size = 32, 16
    config.num_seeds = min(config.num_seeds, 2)
    if "forget" in config:
      config.forget.size = 150
  return config


def timed(fn, *args):
  t = time.perf_counter()
  fn(*args)
  return time.perf_counter() - t


class Times:
  """Seconds of each step, kept in <workdir>.bench_seconds.json: a step that finished in an
  earlier (killed or partial) invocation keeps the time it took then, not its resume's."""

  def __init__(self, workdir):
    self.path = os.path.normpath(workdir) + ".bench_seconds.json"  # not inside: unlearn.py owns the folder
    self.seconds = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.seconds = json.load(f)

  def run(self, name, fn, *args):
    elapsed = timed(fn, *args)  # a finished step returns at once (the commands resume)
    self.seconds.setdefault(name, elapsed)
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    with open(self.path + ".tmp", "w") as f:
      json.dump(self.seconds, f, indent=1)
    os.replace(self.path + ".tmp", self.path)
    return self.seconds[name]


def split_half(scores_path: str) -> float:
  """Spearman of the estimates from the first and the last half of the models."""
  with np.load(scores_path) as f:
    in_mask, correct = f["in_mask"], f["correct_train"]
  half = len(in_mask) // 2
  a, b = (MemorizationStats.from_arrays(in_mask[s], correct[s]).estimate()["memorization"]
          for s in (slice(0, half), slice(half, 2 * half)))
  return float(stats.spearmanr(a, b, nan_policy="omit").statistic)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default="runs/mnist1d_45k")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--skip-unlearning", action="store_true")
  parser.add_argument("--methods", default=",".join(RUN_METHODS))
  args = parser.parse_args()
  from absl import logging
  logging.set_verbosity("info")
  out = {"machine": common.machine(), "load_start": common.load()}
  mem_cfg, proxy_cfg = (shrink(m.get_config(), args) for m in (mnist1d_45k_memorization, mnist1d_45k_proxies))
  from rum_jax.data import load_dataset
  out["seconds_generating_data"] = timed(lambda: load_dataset("mnist1d", **mem_cfg.data.options.to_dict()))
  mem_dir, proxy_dir = os.path.join(args.workdir, "memorization"), os.path.join(args.workdir, "proxies")
  times = Times(args.workdir)
  out["seconds_memorization"] = times.run("memorization", commands.train, mem_cfg, mem_dir)
  out["seconds_proxies"] = times.run("proxies", commands.train, proxy_cfg, proxy_dir)
  out["load_after_scores"] = common.load()
  mem = np.load(os.path.join(mem_dir, "memorization.npz"))
  prox = np.load(os.path.join(proxy_dir, "memorization.npz"))
  assert np.array_equal(mem["index"], prox["index"])
  out["num_models"] = int(mem["num_models"])
  out["num_train"] = int(len(mem["index"]))
  out["mean_memorization"] = float(np.nanmean(mem["memorization"]))
  out["fraction_above_0.5"] = float(np.nanmean(mem["memorization"] > 0.5))
  out["spearman"] = {name: float(stats.spearmanr(prox[name], mem["memorization"], nan_policy="omit").statistic)
                     for name in PROXIES}
  out["split_half_spearman"] = split_half(os.path.join(mem_dir, "memorization.npz"))
  if not args.skip_unlearning:
    out["seconds_unlearning"] = {}
    for method in args.methods.split(","):
      config = shrink(rum_mnist1d_45k.get_config(), args)
      config.unlearn.method = method
      try:
        out["seconds_unlearning"][method] = times.run(f"unlearn {method}", commands.unlearn, config, args.workdir)
      except FloatingPointError as err:  # a method that diverges at these settings: say so, go on
        out.setdefault("diverged", {})[method] = str(err).split(";")[0]
        continue
      print(json.dumps({method: out["seconds_unlearning"][method]}), flush=True)
    with open(os.path.join(args.workdir, "evaluation.md")) as f:
      out["evaluation_table"] = f.read()
  out["load_end"] = common.load()
  if not args.quick:
    with open(os.path.join(HERE, "mnist1d_45k.json"), "w") as f:
      json.dump(out, f, indent=1)
  body = report(out, args)
  print(body)
  if not args.quick:
    common.record_section("MNIST-1D at CIFAR's size (bench/mnist1d_45k.py)", body)


def report(out, args) -> str:
  lines = [f"Command: `python bench/mnist1d_45k.py{' --quick' if args.quick else ''}` (resumable). Machine: "
           f"{out['machine']}; {out['load_start']} at the start, {out['load_after_scores']} after the scores, "
           f"{out['load_end']} at the end.", "",
           f"{out['num_train']:,} training examples, {out['num_models']:,} models in the estimate; mean memorization "
           f"{out['mean_memorization']:.3f}, {out['fraction_above_0.5']:.1%} of the examples above 0.5.", "",
           "| step | seconds |", "|---|---|",
           f"| generating the data set (once per process) | {out['seconds_generating_data']:.0f} |",
           f"| memorization, {out['num_models']:,} models | {out['seconds_memorization']:.0f} |",
           f"| one-run proxies (3 seeds, held-out retraining) | {out['seconds_proxies']:.0f} |",
           f"| memorization and proxies together | {out['seconds_memorization'] + out['seconds_proxies']:.0f} "
           f"({(out['seconds_memorization'] + out['seconds_proxies']) / 60:.1f} min) |"]
  for method, s in out.get("seconds_unlearning", {}).items():
    lines.append(f"| unlearn.py {method}{' (+ original models, forget set, retrain reference)' if method == next(iter(out['seconds_unlearning'])) else ''} | {s:.0f} |")
  if "seconds_unlearning" in out:
    total = sum(out["seconds_unlearning"].values())
    lines.append(f"| every method, evaluated | {total:.0f} ({total / 60:.1f} min) |")
  lines += ["", "| proxy | Spearman rho with the estimate |", "|---|---|"]
  lines += [f"| {k} | {v:.3f} |" for k, v in out["spearman"].items()]
  lines.append(f"| (the estimate's split-half reliability: first vs last {out['num_models'] // 2} models) | "
               f"{out['split_half_spearman']:.3f} |")
  for method, message in out.get("diverged", {}).items():
    lines.append(f"\n{method} made non-finite weights at its settings ({message}); its row is missing.")
  if "evaluation_table" in out:
    lines += ["", f"The evaluation ({args.workdir}/evaluation.md, means and 95% intervals over the seeds):", "",
              out["evaluation_table"].strip()]
  return "\n".join(lines)


if __name__ == "__main__":
  main()
