"""Runs every benchmark; each rewrites its own rows of bench/RESULTS.md.

python bench/run_all.py [--quick]

--quick uses fewer seeds/models/epochs (a smoke run); the committed RESULTS.md comes from a
full run.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

BENCHMARKS = [
    ("train_seeds.py", [], ["--seeds", "4", "--epochs", "5"]),
    ("memorization.py", ["--correlations"], ["--models", "16", "--epochs", "3"]),
    ("unlearn_step.py", [], []),
    ("gem_step.py", [], ["--steps", "3"]),
    ("epsilon.py", [], ["--examples", "100", "--reference-examples", "2"]),
    ("sweep.py", [], ["--lrs", "2", "--seeds", "2"]),
    ("audit.py", [], ["--models", "16", "--baseline-models", "2"]),
    ("floor_breakdown.py", [], ["--models", "8", "--epochs", "2", "--no-flags"]),
    ("scaling.py", [], ["--quick"]),
]
# Not run here (each its own long command, results in bench/RESULTS.md too): mnist1d_45k.py
# (memorization of 45,000 examples from 1,024 models, ~10 min on 2 idle cores, then every
# unlearning method) and the continual benchmarks (continual_thesis.py, continual_permuted.py).


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  failed = []
  for script, full_args, quick_args in BENCHMARKS:
    path = os.path.join(HERE, script)
    if not os.path.exists(path):
      print(f"skip {script}: not present")
      continue
    cmd = [sys.executable, path] + (quick_args if args.quick else full_args)
    print("$", " ".join(cmd), flush=True)
    t = time.time()
    if subprocess.run(cmd, cwd=os.path.dirname(HERE)).returncode:
      failed.append(script)
    print(f"  ({time.time() - t:.0f} s)", flush=True)
  if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
  print(f"results in {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
  main()
