"""A continual benchmark that separates the methods: 20 permuted-digits tasks, the thesis' A4.

python bench/continual_permuted.py --seeds=5            # configs/continual_permuted.py
python bench/continual_permuted.py --variant=rotated    # 20 rotated-digits tasks instead

0. Feldman-Zhang memorization of the digits train split (256 subset models,
   configs/digits_memorization.py) into <workdir>/memorization, unless it is there: the
   thesis chooses its buffers by memorization. An MLP's training is equivariant to a fixed
   permutation of its inputs (its first layer's i.i.d. initialisation is invariant to it),
   so an image's memorization is also its permuted copy's; for rotated tasks the scores are
   an approximation.
1. Plain SGD and GEM learning of the 20 tasks alone (no forgetting): the interference the
   benchmark is sized for (SGD's BWT <= -0.05, GEM's smaller in magnitude).
2. The seven runs of the thesis' final A4 table (bench/continual_thesis.py RUNS), each one
   continual.py run of configs/continual_permuted.py with that method, into <workdir>/<run>
   (finished runs are reused, killed ones resume). The per-seed MIA is off: the table does
   not use it.
3. results/continual/permuted_digits{.md,.csv,.png} (`continual_report.comparison`; the .csv
   is the runs' tidy records, one row per run x seed x metric) and permuted_digits_timings.json; the .md adds which pairs of runs separate (disjoint
   95% intervals) and the Spearman correlation of our ordering with the thesis' (recomputed
   from its files: results/continual/thesis_reference.json, bench/continual_thesis_reference.py).
"""
import argparse
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bench import continual_report  # noqa: E402
from bench.continual_thesis import RUNS  # noqa: E402
from configs import continual_permuted, digits_memorization  # noqa: E402
from rum_jax import commands, io, results  # noqa: E402
from rum_jax.training import loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "results", "continual")
# The metrics the separation and the orderings are judged on: (name, our summary key, the
# thesis reference key).
ORDERINGS = (("final CL-ToW (averaged matrices)", "final_cl_tow_of_mean_matrices", "final_cl_tow_of_mean_matrices"),
             ("kept task, final accuracy", "final_retained_test_accuracy", "task0_final"))
SEPARATING = ("final_retained_test_accuracy", "final_cl_tow", "mean_cl_tow")


def config_for(variant: str, method: str, overrides: dict, seeds: int, scores: str):
  config = continual_permuted.get_config(variant)
  config.algorithm = method
  config.continual.scores = scores
  config.num_seeds = seeds
  config.continual.mia = False
  for key, value in overrides.items():
    config.continual.unlearn[method][key] = value
  return config


def learning_only(variant: str, algorithm: str, seeds: int, workdir: str, scores: str) -> dict:
  """BWT of learning the 20 tasks with `algorithm` alone."""
  config = config_for(variant, "neggem", {}, seeds, scores)
  config.continual.learn_algorithm = algorithm
  config.continual.sequence = ",".join(str(t) for t in range(config.continual.num_tasks))
  return commands.continual(config, os.path.join(workdir, f"learn_{algorithm}"))


def separated_pairs(runs) -> list:
  """(metric, run a, run b) whose 95% intervals over seeds do not overlap."""
  out = []
  for key in SEPARATING:
    for (a, ma), (b, mb) in itertools.combinations(runs, 2):
      la, lb = ma["summary"][key], mb["summary"][key]
      if abs(la["mean"] - lb["mean"]) > la["ci95"] + lb["ci95"]:
        out.append((key, a, b))
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--variant", default="", choices=continual_permuted.VARIANTS)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  name = f"{args.variant or 'permuted'}_digits"
  workdir = args.workdir or os.path.join("runs", name)
  seconds, cpu = {}, {}
  scores = os.path.join(workdir, "memorization", "memorization.npz")
  if not os.path.exists(scores):
    t, c = time.time(), time.process_time()
    commands.train(digits_memorization.get_config(), os.path.dirname(scores))
    seconds["memorization"], cpu["memorization"] = time.time() - t, time.process_time() - c
  learning = {}
  for algorithm in ("sgd", "gem"):
    t, c = time.time(), time.process_time()
    learning[algorithm] = learning_only(args.variant, algorithm, args.seeds, workdir, scores)["summary"]
    seconds[f"learn only, {algorithm}"] = time.time() - t
    cpu[f"learn only, {algorithm}"] = time.process_time() - c
  runs, run_dirs, failed = [], [], {}
  for label, method, overrides in RUNS:
    config = config_for(args.variant, method, overrides, args.seeds, scores)
    t, c = time.time(), time.process_time()
    run_dir = os.path.join(workdir, label.replace(" ", "_").replace("=", ""))
    try:
      runs.append((label, commands.continual(config, run_dir)))
      run_dirs.append((label, run_dir))
    except loop.NonFiniteLossError as err:  # a result too: reported, the other runs go on
      failed[label] = str(err)
    seconds[label], cpu[label] = time.time() - t, time.process_time() - c
    print(f"{label}: {seconds[label]:.0f}s, {cpu[label]:.0f} CPU-s", flush=True)
  title = (f"{'Rotated' if args.variant else 'Permuted'} digits, 20 tasks of all 10 classes, A4, "
           f"the thesis' protocol")
  text = continual_report.comparison(run_dirs, os.path.join(OUT, name), title, runs[0][1]["chance"], failed=failed)
  text += "\nLearning the 20 tasks alone (no forgetting), test accuracy:\n\n" + results.markdown_table(
      ["learning", "ACC", "BWT"], [[a, results.cell(s["acc"], 1.0, 3), results.cell(s["bwt_paper"], 1.0, 3)]
                                   for a, s in learning.items()])
  pairs = separated_pairs(runs)
  text += (f"\nPairs of runs whose 95% intervals do not overlap ({len(pairs)}):\n\n"
           + "".join(f"- {key}: {a} vs {b}\n" for key, a, b in pairs))
  reference_file = os.path.join(OUT, "thesis_reference.json")
  if os.path.exists(reference_file):
    with open(reference_file) as f:
      reference = json.load(f)
    text += "\nOrdering against the thesis' Split CIFAR-100 A4 runs (results/continual/thesis_reference.md):\n\n"
    rows = []
    for title_, ours_key, ref_key in ORDERINGS:
      labels = [label for label, _ in runs if label in reference]
      ours = [dict(runs)[label]["summary"][ours_key]["mean"] for label in labels]
      theirs = [reference[label][ref_key] for label in labels]
      rho, p = stats.spearmanr(ours, theirs)
      rows.append([title_, f"{rho:.2f}", f"{p:.2f}", " > ".join(np.array(labels)[np.argsort(ours)[::-1]]),
                   " > ".join(np.array(labels)[np.argsort(theirs)[::-1]])])
    text += results.markdown_table(["metric", "Spearman rho", "p", "ours, best first", "thesis, best first"], rows)
  text += (f"\nSeconds per run ({args.seeds} seeds; wall-clock / CPU seconds of the process, "
           f"{os.cpu_count()} CPU cores; a run reused from <workdir> counts only its loading): "
           + ", ".join(f"{k} {seconds[k]:.0f} / {cpu[k]:.0f}" for k in seconds)
           + f"; load average at the end {os.getloadavg()[0]:.1f}.\n")
  io.write_text(os.path.join(OUT, name + ".md"), text)
  io.write_json(os.path.join(OUT, name + "_timings.json"),
                {"run_seconds": seconds, "cpu_seconds": cpu, "load": os.getloadavg()})
  print(text)


if __name__ == "__main__":
  main()
