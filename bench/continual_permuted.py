"""The continual benchmark at matched forgetting: 20 permuted (or rotated) digits tasks, A4.

python bench/continual_permuted.py --seeds=16                       # into runs/permuted_digits
python bench/continual_permuted.py --variant=rotated --seeds=16     # 20 rotated-digits tasks
python bench/continual_permuted.py --seeds=16 --publish             # also results/continual/

0. Feldman-Zhang memorization of the digits train split (256 subset models,
   configs/digits_memorization.py) into <workdir>/memorization, unless it is there: the thesis
   chooses its buffers by memorization (an MLP's training is equivariant to a fixed
   permutation of its inputs, so an image's memorization is its permuted copy's too; for
   rotated tasks an approximation).
1. For each protocol (`PROTOCOLS`: how every run of it is made like the others), the seven
   runs of the thesis' final A4 table (bench/continual_thesis.py RUNS), each one continual.py
   run of configs/continual_permuted.py into <workdir>/<protocol>/<run> (finished runs are
   reused, killed ones resume). Matched forgetting: every forget request runs until the
   forgotten task's accuracy on its held-out examples (its validation rows, never trained on)
   is <= chance + TARGET, or CAP passes; every seed draws its own permutations (or angles) and
   training subsets; the thesis' MIA protocol is recorded after every step.
2. Baselines of each protocol, learning runs of the same model: doing nothing after learning
   (GEM or A-GEM learning of the 20 tasks, scored on A4's kept and forgotten tasks) and
   retraining on the kept tasks only (task 0 learned alone).
3. <name>_<protocol>.md / .csv / .png / _tradeoff.png and <name>_timings.json, into
   <workdir>/report, and into results/continual with --publish: the matched-forgetting table
   (metrics of the registry), the pairs of runs that separate (`continual_analysis`), Spearman
   correlations with both of the thesis' reference sets (results/continual/thesis_reference.json,
   bench/continual_thesis_reference.py) over all seven runs and over the five GEM-learned ones,
   with exact p-values and bootstrap intervals, and the timings with the CPU and the load.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench import continual_analysis as analysis  # noqa: E402
from bench.continual_thesis import RUNS  # noqa: E402
from rum_jax.configs import continual_permuted, digits_memorization  # noqa: E402
from rum_jax import commands, io, results  # noqa: E402
from rum_jax.continual import sequences  # noqa: E402
from rum_jax.evaluation.metrics.continual import SequenceOutputs  # noqa: E402
from rum_jax.pipelines import reports  # noqa: E402
from rum_jax.training import loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 0.05  # matched forgetting: the forgotten task's held-out accuracy <= chance + TARGET
CAP = 48       # passes over the buffers at most (the thesis' final code)
# How the seven runs of a protocol are made alike. "clipped": GEM's MLP, every forget step's
# gradient clipped to global norm 1 (without normalisation, gradient ascent on a ReLU MLP
# diverges). "layernorm": LayerNorm after each hidden layer (the thesis' net normalises after
# every convolution; BatchNorm's running statistics cannot follow 20 permutations), no clipping.
PROTOCOLS = {"clipped": {"layer_norm": False, "clip_norm": 1.0},
             "layernorm": {"layer_norm": True, "clip_norm": 0.0}}
# The table's columns, metrics of the registry.
COLUMNS = ("acc", "retained_test_accuracy_before_forgetting", "final_retained_test_accuracy",
           "final_forgotten_test_accuracy", "final_forgotten_held_out_accuracy", "forget_requests_stopped",
           "forget_requests_without_update", "forget_updates_clipped", "final_cl_tow",
           "final_cl_tow_of_mean_matrices", "final_forgotten_mia_auc")
BASELINE_METRICS = ("acc", "final_retained_test_accuracy", "final_forgotten_test_accuracy",
                    "final_forgotten_held_out_accuracy", "final_forgotten_mia_auc")


def base_config(variant: str, protocol: str, seeds: int, scores: str):
  c = continual_permuted.get_config(variant)
  c.num_seeds = seeds
  c.continual.scores = scores
  c.continual.mia = True  # the thesis' protocol (tasks 1..8), set by the preset
  c.model.kwargs.layer_norm = PROTOCOLS[protocol]["layer_norm"]
  return c


def run_config(variant: str, protocol: str, method: str, overrides: dict, seeds: int, scores: str):
  c = base_config(variant, protocol, seeds, scores)
  c.algorithm = method
  c.continual.stop_set = "held_out"
  c.continual.unlearn_max_epochs = CAP
  u = c.continual.unlearn[method]
  u.update(stop_above_chance=TARGET, clip_norm=PROTOCOLS[protocol]["clip_norm"], **overrides)
  return c


def baseline_config(variant: str, protocol: str, algorithm: str, tasks: str, seeds: int, scores: str):
  c = base_config(variant, protocol, seeds, scores)
  c.continual.learn_algorithm = algorithm
  c.continual.sequence = tasks
  return c


def baseline_rows(workdir: str, label: str, sequence: str, num_tasks: int) -> list:
  """Tidy rows of a learning run scored on A4's kept task (0) and forgotten tasks (1..T-1)."""
  m = np.load(os.path.join(workdir, "matrices.npz"))
  info = io.read_json(os.path.join(workdir, "metrics.json"))
  outputs = SequenceOutputs({k: m[k] for k in ("train_accuracy", "test_accuracy", "val_accuracy", "mia_auc")},
                            sequences.timeline(sequences.make_sequence(sequence, num_tasks)), info["chance"],
                            tasks=([0], list(range(1, num_tasks))))
  rows = []
  for name in BASELINE_METRICS:
    values = outputs.value(name)
    if not np.all(np.isnan(values)):  # e.g. no ACC after learning a single task
      rows += [{"run": label, "seed": s, "metric": name, "value": float(v)} for s, v in enumerate(values)]
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--variant", default="", choices=continual_permuted.VARIANTS)
  parser.add_argument("--seeds", type=int, default=16)
  parser.add_argument("--workdir", default="")
  parser.add_argument("--protocols", default=",".join(PROTOCOLS))
  parser.add_argument("--publish", action="store_true", help="also write results/continual/")
  args = parser.parse_args()
  name = f"{args.variant or 'permuted'}_digits"
  workdir = args.workdir or os.path.join("runs", name)
  outs = [os.path.join(workdir, "report")] + ([os.path.join(ROOT, "results", "continual")] if args.publish else [])
  timings = {"cpu": analysis.cpu_name(), "cores": os.cpu_count(), "devices": jax.device_count(), "jax": jax.__version__,
             "seeds": args.seeds, "runs": {}}

  def timed(label, fn):
    load, t, c = os.getloadavg(), time.time(), time.process_time()
    out = fn()
    timings["runs"][label] = {"seconds": time.time() - t, "cpu_seconds": time.process_time() - c,
                              "load_before": load, "load_after": os.getloadavg()}
    print(f"{label}: {time.time() - t:.0f}s, load {os.getloadavg()[0]:.1f}", flush=True)
    return out

  scores = os.path.join(workdir, "memorization", "memorization.npz")
  if not os.path.exists(scores):
    timed("memorization", lambda: commands.train(digits_memorization.get_config(), os.path.dirname(scores)))
  with open(os.path.join(ROOT, "results", "continual", "thesis_reference.json")) as f:
    found = json.load(f)
  reference = {"final runs": found["final runs"], "reported": found["reported"]}
  for protocol in args.protocols.split(","):
    base = os.path.join(workdir, protocol)
    records, curves, traces, labels, workdirs, learning, failed = [], [], [], [], {}, {}, {}
    for label, method, overrides in RUNS:
      run_dir = os.path.join(base, label.replace(" ", "_").replace("=", ""))
      config = run_config(args.variant, protocol, method, overrides, args.seeds, scores)
      try:
        out = timed(f"{protocol}: {label}", lambda: commands.continual(config, run_dir))
      except loop.NonFiniteLossError as err:  # a result too: reported, the other runs go on
        failed[label] = str(err).splitlines()[0]
        continue
      labels.append(label)
      workdirs[label], learning[label] = run_dir, out["learn_algorithm"]
      records.append(results.read_records(os.path.join(run_dir, "metrics.csv")).assign(run=label, protocol=protocol))
      curves.append(pd.read_csv(os.path.join(run_dir, "curves.csv")).assign(run=label))
      traces.append(pd.read_csv(os.path.join(run_dir, "trace.csv")).assign(run=label))
    num_tasks = continual_permuted.get_config(args.variant).continual.num_tasks
    baselines = []
    for algorithm in ("gem", "agem"):
      for title, sequence in (("doing nothing after learning", ",".join(map(str, range(num_tasks)))),
                              ("retraining on the kept task only", "0")):
        label = f"{title} ({algorithm.upper().replace('AGEM', 'A-GEM')})"
        run_dir = os.path.join(base, f"baseline_{algorithm}_{'all' if len(sequence) > 1 else 'kept'}")
        config = baseline_config(args.variant, protocol, algorithm, sequence, args.seeds, scores)
        timed(f"{protocol}: {label}", lambda: commands.continual(config, run_dir))
        baselines += baseline_rows(run_dir, label, sequence, num_tasks)
    records = pd.concat(records, ignore_index=True)
    curves, traces = pd.concat(curves, ignore_index=True), pd.concat(traces, ignore_index=True)
    base_frame = pd.DataFrame(baselines)
    chance = 1.0 / 10
    title = (f"{'Rotated' if args.variant else 'Permuted'} digits, 20 tasks of all 10 classes, A4, matched forgetting "
             f"({protocol}): held-out accuracy of the forgotten task <= chance + {TARGET} or {CAP} passes, "
             f"{args.seeds} seeds")
    base_labels = list(dict.fromkeys(base_frame["run"]))
    table = reports.continual_table(pd.concat([records, base_frame], ignore_index=True), COLUMNS, labels + base_labels)
    text = (f"### {title}\n\nMeans over {args.seeds} seeds with 95% t-intervals (each seed its own permutations "
            "and training subsets); test accuracies (fractions) unless \"held out\" (the tasks' validation rows, "
            "never trained on, which the stop rule measures); \"kept\" is task 0, never forgotten. Averaged "
            "matrices: the accuracy matrices averaged over seeds, then CL-ToW (the thesis' tow.py), one value per "
            "run. MIA AUC: the thesis' protocol (tasks 1..8, raw losses, one 50/50 split) on the forgotten "
            "tasks. The baselines learn with GEM or A-GEM and are scored on A4's kept and forgotten tasks.\n\n"
            + table)
    for label, reason in failed.items():
      text += f"\n{label}: not finished, {reason}\n"
    text += ("\nThe runs at equal forgetting, from their traces (trace.csv: the held-out accuracies after every pass): "
             "the kept task's held-out accuracy at the first pass where the forgotten task's held-out accuracy was at "
             "most L, averaged over the forget requests of a seed that got there, and the share of requests that got "
             "there (mean and 95% interval over seeds; fewer seeds where some never got there):\n\n"
             + analysis.kept_at_forgetting(traces, labels, (0.25, 0.2, chance + TARGET)))
    text += analysis.analyse(records, labels, workdirs, learning, reference, num_tasks)
    for out in outs:
      prefix = os.path.join(out, f"{name}_{protocol}")
      os.makedirs(out, exist_ok=True)
      io.write_text(prefix + ".md", text)
      io.write_csv(prefix + ".csv", pd.concat([records, base_frame.assign(protocol=protocol)], ignore_index=True)
                   .to_dict("records"), fields=list(results.RECORD_COLUMNS) + ["run", "protocol"])
      reports.continual_comparison_figure(records, curves, labels, chance, prefix + ".png", title)
      reports.tradeoff_figure(traces, labels, chance, prefix + "_tradeoff.png", title, target=chance + TARGET)
    print(text, flush=True)
  timings["load_at_end"] = os.getloadavg()
  for out in outs:
    path = os.path.join(out, f"{name}_timings.json")
    earlier = io.read_json(path).get("runs", {}) if os.path.exists(path) else {}  # other protocols' runs (none in an older file)
    io.write_json(path, {**timings, "runs": {**earlier, **timings["runs"]}})


if __name__ == "__main__":
  main()
