"""The thesis presets of every method on a small data set, and the committed comparison.

python bench/continual_thesis.py --data=mnist1d   # and --data=digits

1. Feldman-Zhang memorization of the data set's train split (256 subset models,
   configs/<data>_memorization.py) into <workdir>/memorization, unless it is there: the
   thesis chooses its buffers by memorization (`tr_mem` on CIFAR-100).
2. For each run of the thesis' final A4 table (RUNS), continual.py's run of
   configs/continual_<data>.py:thesis with that method (and NegGrad+'s a = 0.95 settings),
   the scores from step 1, into <workdir>/<run>. Finished runs are reused, killed ones resume.
3. <out>/<data>.md / .csv / .png (`continual_report.comparison`: the table and the runs' tidy
   records), the pairs of runs that separate and Spearman correlations of our ordering with
   both of the thesis' reference sets (results/continual/thesis_reference.json: its final run
   folders and the values it reports), with exact p-values and bootstrap intervals
   (`continual_analysis.analyse`), and <data>_timings.json (with the CPU and the load).
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
from bench import continual_analysis, continual_report  # noqa: E402
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
# The thesis' Split CIFAR-100 A4 numbers, both reference sets (its final run folders and the
# values it reports), recomputed from its files by bench/continual_thesis_reference.py.
REFERENCE_FILE = os.path.join(ROOT, "results", "continual", "thesis_reference.json")


def references() -> dict:
  with open(REFERENCE_FILE) as f:
    found = json.load(f)
  return {"final runs": found["final runs"], "reported": found["reported"]}


TITLES = {"mnist1d": "Split MNIST-1D (5 tasks of 2 classes), A4, thesis presets",
          "digits": "Split digits (5 tasks of 2 classes), A4, thesis presets"}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", choices=sorted(TITLES), required=True)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--workdir", default="", help="default: runs/thesis_<data>")
  parser.add_argument("--out", default="", help="default: <workdir>/report")
  args = parser.parse_args()
  workdir = args.workdir or os.path.join("runs", f"thesis_{args.data}")
  out = args.out or os.path.join(workdir, "report")
  scores = os.path.join(workdir, "memorization", "memorization.npz")
  t0 = time.time()
  if not os.path.exists(scores):
    memorization = importlib.import_module(f"rum_jax.configs.{args.data}_memorization").get_config()
    commands.train(memorization, os.path.dirname(scores))
  t_scores = time.time() - t0
  preset = importlib.import_module(f"rum_jax.configs.continual_{args.data}")
  runs, timings, failed, learning = [], {}, {}, {}
  for label, method, overrides in RUNS:
    config = preset.get_config("thesis")
    config.algorithm = method
    config.num_seeds = args.seeds
    config.continual.scores = scores
    for key, value in overrides.items():
      config.continual.unlearn[method][key] = value
    load, t, c = os.getloadavg(), time.time(), time.process_time()
    run_dir = os.path.join(workdir, label.replace(" ", "_").replace("=", ""))
    try:
      final = commands.continual(config, run_dir)
      chance, num_tasks, learning[label] = final["chance"], final["num_tasks"], final["learn_algorithm"]
      runs.append((label, run_dir))
    except loop.NonFiniteLossError as err:  # a result too: reported, the other runs go on
      failed[label] = str(err).splitlines()[0]
    timings[label] = {"seconds": time.time() - t, "cpu_seconds": time.process_time() - c, "load_before": load,
                      "load_after": os.getloadavg()}
  os.makedirs(out, exist_ok=True)
  text = continual_report.comparison(runs, os.path.join(out, args.data), TITLES[args.data], chance, failed=failed)
  records, _ = continual_report.run_records(runs)
  text += continual_analysis.analyse(records, [label for label, _ in runs], dict(runs), learning, references(),
                                     num_tasks)
  io.write_text(os.path.join(out, f"{args.data}.md"), text)
  io.write_json(os.path.join(out, f"{args.data}_timings.json"),
                {"cpu": continual_analysis.cpu_name(), "cores": os.cpu_count(), "seeds": args.seeds,
                 "memorization_seconds": t_scores, "runs": timings, "load_at_end": os.getloadavg()})
  print(text)


if __name__ == "__main__":
  main()
