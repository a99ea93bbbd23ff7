"""The thesis presets of every method on a small data set, and the committed comparison.

python bench/continual_thesis.py --data=mnist1d   # and --data=digits

1. Feldman-Zhang memorization of the data set's train split (256 subset models,
   configs/<data>_memorization.py) into <workdir>/memorization, unless it is there: the
   thesis chooses its buffers by memorization (`tr_mem` on CIFAR-100).
2. For each run of the thesis' final A4 table (RUNS), continual.py's run of
   configs/continual_<data>.py:thesis with that method (and NegGrad+'s a = 0.95 settings),
   the scores from step 1, into <workdir>/<run>. Finished runs are reused, killed ones resume.
3. results/continual/<data>.md / .csv / .png (`pipelines.continual.compare_runs`), with the
   thesis' CIFAR-100 CL-ToW (results/continual/thesis_reference.json) beside ours, both on
   seed-averaged matrices, and the two rankings.
"""
import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
from bench import continual_report  # noqa: E402
from rum_jax import commands, io  # noqa: E402
from rum_jax.training import loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, method, overrides of config.continual.unlearn.<method>): the runs of the thesis'
# final A4 table (4tests/A4/*/...HYPERPARAMETERS.csv).
RUNS = (
    ("NegGEM", "neggem", {}),
    ("NegAGEM", "negagem", {}),
    ("RL-GEM", "rl_gem", {}),
    ("RL-AGEM", "rl_agem", {}),
    ("ALT-NegGEM", "alt_neggem", {}),
    ("NegGrad+ a=0.5", "neggrad_plus", {}),
    ("NegGrad+ a=0.95", "neggrad_plus", {"alpha": 0.95, "batch_size": 2, "salun": 0.02}),
)
# The thesis' CL-ToW on Split CIFAR-100 A4 (final / mean over the 19 forget steps, on its
# seed-averaged matrices as its tow.py), recomputed from its result files by
# bench/continual_thesis_reference.py.
REFERENCE_FILE = os.path.join(ROOT, "results", "continual", "thesis_reference.json")


def thesis_cl_tow() -> dict:
  with open(REFERENCE_FILE) as f:
    found = json.load(f)
  return {label: {"final_cl_tow": r["final_cl_tow_of_mean_matrices"],
                  "mean_cl_tow": r["mean_cl_tow_of_mean_matrices"]} for label, r in found.items()}


TITLES = {"mnist1d": "Split MNIST-1D (5 tasks of 2 classes), A4, thesis presets",
          "digits": "Split digits (5 tasks of 2 classes), A4, thesis presets"}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", choices=sorted(TITLES), required=True)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--workdir", default="", help="default: runs/thesis_<data>")
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "continual"))
  args = parser.parse_args()
  workdir = args.workdir or os.path.join("runs", f"thesis_{args.data}")
  scores = os.path.join(workdir, "memorization", "memorization.npz")
  t0 = time.time()
  if not os.path.exists(scores):
    memorization = importlib.import_module(f"configs.{args.data}_memorization").get_config()
    commands.train(memorization, os.path.dirname(scores))
  t_scores = time.time() - t0
  preset = importlib.import_module(f"configs.continual_{args.data}")
  runs, seconds, failed = [], {}, {}
  for label, method, overrides in RUNS:
    config = preset.get_config("thesis")
    config.algorithm = method
    config.num_seeds = args.seeds
    config.continual.scores = scores
    for key, value in overrides.items():
      config.continual.unlearn[method][key] = value
    t = time.time()
    run_dir = os.path.join(workdir, label.replace(" ", "_").replace("=", ""))
    try:
      chance = commands.continual(config, run_dir)["chance"]
      runs.append((label, run_dir))
    except loop.NonFiniteLossError as err:  # a result too: reported, the other runs go on
      failed[label] = str(err)
    seconds[label] = time.time() - t
  os.makedirs(args.out, exist_ok=True)
  text = continual_report.comparison(runs, os.path.join(args.out, args.data), TITLES[args.data], chance,
                                     failed=failed)
  io.write_json(os.path.join(args.out, f"{args.data}_timings.json"),
                {"memorization_seconds": t_scores, "run_seconds": seconds, "load": os.getloadavg()})
  print(text)
  print({label: round(s) for label, s in seconds.items()}, f"memorization {t_scores:.0f}s")


if __name__ == "__main__":
  main()
