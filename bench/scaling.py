"""How the cost grows: time and models per second against five sizes, each beside its floor.

Every point runs a command function (`rum_jax.commands`, what train.py / continual.py run) in a
fresh work directory, twice: cold (compilation included, what a first run waits) and warm
(the same run again, its compiled programs read back from a persistent compilation cache).
Beside each, the floor at the models' shapes (bench/floor.py): the run's training matmuls
(and the evaluation's forward matmuls) alone, measured in the same run.

  models     Feldman-Zhang memorization of MNIST-1D (configs/mnist1d_memorization.py) with
             16 to 1,024 models, 5 epochs each, chunks of min(64, models)
  examples   the same with 64 models and MNIST-1D of 1,000 to 45,000 training examples
             (data.options.num_train), 3 epochs each
  seeds      train.py on MNIST-1D (configs/mnist1d.py, 60 epochs) with 1 to 32 seeds
  tasks      continual.py, permuted digits (configs/continual_permuted.py), GEM learning 5 to
             20 tasks one after another (2 seeds): every step the batch and the memories of
             every earlier task (the constraints), which the floor counts as they grow
  devices    the 64-model memorization with 1 and 2 XLA CPU devices (a process each)

Writes bench/scaling.csv (one row per point), bench/scaling.png and the section "How the cost
grows" of bench/RESULTS.md; `growth` is the log-log slope from the previous point (1 = linear).

python bench/scaling.py [--quick | --medium] [--axes models,examples,seeds,tasks,devices]
"""
import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--child" not in sys.argv:
  from rum_jax import runtime
  runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax  # noqa: E402

from bench import common, floor  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = os.path.join(HERE, "scaling.csv")
FIGURE = os.path.join(HERE, "scaling.png")
AXES = ("models", "examples", "seeds", "tasks", "devices")
FULL = {"models": (16, 64, 256, 1024), "examples": (1000, 3600, 10000, 20000, 45000),
        "seeds": (1, 2, 4, 8, 16, 32), "tasks": (5, 10, 20), "devices": (1, 2)}
QUICK = {"models": (16, 64), "examples": (1000, 3600), "seeds": (1, 4), "tasks": (5,), "devices": (1, 2)}
MEDIUM = {"models": (16, 64, 256), "examples": (1000, 3600, 10000), "seeds": (1, 2, 8), "tasks": (5, 10),
          "devices": (1, 2)}
MEM_EPOCHS, EXAMPLES_EPOCHS, CONTINUAL_SEEDS = 5, 3, 2


def _quiet():
  from absl import logging
  logging.set_verbosity("warning")
  logging.set_stderrthreshold("warning")


def _timed(command, config) -> float:
  """Seconds of `command(config, workdir)` in a fresh work directory (removed afterwards)."""
  workdir = tempfile.mkdtemp(prefix="rum_scaling_")
  try:
    t = time.perf_counter()
    command(config, os.path.join(workdir, "run"))
    return time.perf_counter() - t
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _cold_warm(command, config):
  return _timed(command, config), _timed(command, config)


def _num_train_option(examples: int) -> int:
  """The signals to generate so that the train split (90% of them) holds `examples`."""
  return int(math.ceil(examples / 0.9 / 10) * 10)


def memorization_config(models: int, epochs: int, examples: int = 0):
  from rum_jax.configs import mnist1d_memorization
  c = mnist1d_memorization.get_config()
  c.train.epochs = epochs
  c.memorization.num_models = models
  c.memorization.chunk_size = min(64, models)
  if examples:
    c.data.options.num_train = _num_train_option(examples)
    c.data.options.num_test = 1000
  return c


def _memorization_floor(config, cache={}) -> float:
  """The floor of a memorization run at its shapes: every chunk's steps and correctness pass."""
  from rum_jax.data import load_dataset
  m, t = config.memorization, config.train
  ds = load_dataset(config.data.name, split_seed=config.data.split_seed, **config.data.options.to_dict())
  n = len(ds.train)
  sizes = [40] + list(config.model.kwargs.hidden) + [ds.num_classes]
  chunk = m.chunk_size
  if ("train", chunk) not in cache:
    cache[("train", chunk)] = floor.mlp_training(sizes, t.batch_size, chunk)
    cache[("infer", chunk)] = floor.mlp_inference(sizes, t.eval_batch_size, chunk)
  steps = t.epochs * math.ceil(round(m.ratio * n) / t.batch_size)
  rows = n + len(ds.val) + len(ds.test)
  per_chunk = cache[("train", chunk)].time(steps) + cache[("infer", chunk)].time(rows / t.eval_batch_size)
  return per_chunk * math.ceil(m.num_models / chunk)


def point_models(models: int) -> dict:
  from rum_jax import commands
  c = memorization_config(models, MEM_EPOCHS)
  cold, warm = _cold_warm(commands.train, c)
  return {"x": models, "models": models, "cold": cold, "warm": warm, "floor": _memorization_floor(c)}


def point_examples(examples: int) -> dict:
  from rum_jax import commands
  c = memorization_config(64, EXAMPLES_EPOCHS, examples)
  from rum_jax.data import load_dataset
  load_dataset("mnist1d", split_seed=0, **c.data.options.to_dict())  # generated once, not timed
  cold, warm = _cold_warm(commands.train, c)
  return {"x": examples, "models": 64, "cold": cold, "warm": warm, "floor": _memorization_floor(c)}


def point_seeds(seeds: int) -> dict:
  from rum_jax.configs import mnist1d
  from rum_jax import commands
  from rum_jax.data import load_dataset
  c = mnist1d.get_config()
  c.num_seeds = seeds
  cold, warm = _cold_warm(commands.train, c)
  ds = load_dataset("mnist1d", split_seed=0)
  sizes = [40] + list(c.model.kwargs.hidden) + [ds.num_classes]
  steps = c.train.epochs * math.ceil(len(ds.train) / c.train.batch_size)
  rows = len(ds.train) + len(ds.val) + len(ds.test)
  f = (floor.mlp_training(sizes, c.train.batch_size, seeds).time(steps)
       + floor.mlp_inference(sizes, c.train.eval_batch_size, seeds).time(rows / c.train.eval_batch_size))
  return {"x": seeds, "models": seeds, "cold": cold, "warm": warm, "floor": f}


def continual_config(tasks: int):
  from rum_jax.configs import continual_permuted
  c = continual_permuted.get_config()
  c.continual.num_tasks = tasks
  c.num_seeds = CONTINUAL_SEEDS
  c.continual.mia = False
  c.continual.learn_algorithm = "gem"
  c.sequence = ",".join(str(t) for t in range(tasks))  # learning only
  return c


def point_tasks(tasks: int) -> dict:
  from rum_jax import commands
  c = continual_config(tasks)
  cold, warm = _cold_warm(commands.continual, c)
  k = c.continual
  sizes = (64,) + tuple(c.model.kwargs.hidden) + (10,)
  memories = k.learn.gem.memories
  steps_per_task = k.epochs * math.ceil(k.samples_per_task / k.batch_size)
  # A step's floor is a + b g with g the observed earlier tasks: measured at g = 1 and g = T - 1.
  at = {g: floor.measure([floor.Pass(sizes, k.batch_size), floor.Pass(sizes, memories, groups=g)],
                         CONTINUAL_SEEDS).step_seconds for g in sorted({1, max(1, tasks - 1)})}
  g1, g2 = min(at), max(at)
  slope = (at[g2] - at[g1]) / (g2 - g1) if g2 > g1 else 0.0
  per_step = lambda g: at[g1] + slope * (g - g1) if g else at[g1] - slope  # noqa: E731
  f = sum(steps_per_task * per_step(t) for t in range(tasks))  # task t has t earlier tasks
  return {"x": tasks, "models": CONTINUAL_SEEDS, "cold": cold, "warm": warm, "floor": f}


def point_devices_child(devices: int) -> None:
  """In a process with `devices` XLA CPU devices: the 64-model memorization and its floor."""
  from rum_jax import commands
  _quiet()
  c = memorization_config(64, 10)
  cold, warm = _cold_warm(commands.train, c)
  print("RESULT " + json.dumps({"x": devices, "models": 64, "cold": cold, "warm": warm,
                                "floor": _memorization_floor(c)}))


def point_devices(devices: int) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(devices)], env=env,
                        capture_output=True, text=True, cwd=os.path.dirname(HERE))
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if not lines:
    raise RuntimeError(f"devices={devices} failed: {proc.stderr[-2000:]}")
  return json.loads(lines[-1][7:])


POINTS = {"models": point_models, "examples": point_examples, "seeds": point_seeds, "tasks": point_tasks,
          "devices": point_devices}
UNITS = {"models": "models", "examples": "training examples", "seeds": "seeds", "tasks": "continual tasks",
         "devices": "XLA CPU devices"}


def figure(rows, title: str) -> None:
  from rum_jax import io
  plt = io.pyplot()
  axes_present = [a for a in AXES if any(r["axis"] == a for r in rows)]
  fig, panels = plt.subplots(1, len(axes_present), figsize=(3.3 * len(axes_present), 3.2), squeeze=False)
  for ax, name in zip(panels[0], axes_present):
    pts = [r for r in rows if r["axis"] == name]
    x = [r["x"] for r in pts]
    ax.plot(x, [r["warm"] for r in pts], "o-", label="ours (warm)")
    ax.plot(x, [r["cold"] for r in pts], "s--", alpha=0.6, label="ours (cold)")
    ax.plot(x, [r["floor"] for r in pts], "k:", label="floor at its shapes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_xticks(x, [f"{v:,}" for v in x])
    ax.set_xlabel(UNITS[name])
    ax.set_title(name)
  panels[0][0].set_ylabel("seconds")
  panels[0][0].legend(fontsize=7)
  fig.suptitle(title, fontsize=8)
  fig.tight_layout()
  io.save_figure(fig, FIGURE)


def table(rows) -> str:
  lines = ["| axis | size | seconds warm | seconds cold | models/s warm | floor at its shapes | floor / ours "
           "| growth (log-log slope from the previous size) |", "|---|---|---|---|---|---|---|---|"]
  previous = {}
  for r in rows:
    p = previous.get(r["axis"])
    growth = f"{math.log(r['warm'] / p['warm']) / math.log(r['x'] / p['x']):.2f}" if p else ""
    if r["axis"] == "devices":
      growth = ""
    lines.append(f"| {r['axis']} | {r['x']:,} | {r['warm']:.2f} | {r['cold']:.2f} | {r['models'] / r['warm']:.1f} | "
                 f"{r['floor']:.2f} | {r['floor'] / r['warm']:.0%} | {growth} |")
    previous[r["axis"]] = r
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="two sizes per axis (a smoke run)")
  parser.add_argument("--medium", action="store_true", help="three sizes per axis, none of the largest")
  parser.add_argument("--axes", default=",".join(AXES))
  parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  cache = tempfile.mkdtemp(prefix="rum_scaling_xla_")
  jax.config.update("jax_compilation_cache_dir", cache)  # the warm runs read their programs back
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    if args.child:
      point_devices_child(args.child)
      return
    _quiet()
    sizes = QUICK if args.quick else MEDIUM if args.medium else FULL
    rows = []
    for axis in args.axes.split(","):
      if axis not in POINTS:
        raise SystemExit(f"unknown axis {axis!r}; valid: {', '.join(AXES)}")
      for x in sizes[axis]:
        r = {"axis": axis, **POINTS[axis](x)}
        print(json.dumps(r), flush=True)
        rows.append(r)
  finally:
    shutil.rmtree(cache, ignore_errors=True)
  with open(CSV, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["axis", "x", "models", "cold", "warm", "floor"])
    writer.writeheader()
    writer.writerows(rows)
  figure(rows, f"How the cost grows ({common.machine()}, {common.load()})")
  flag = " --quick" if args.quick else " --medium" if args.medium else ""
  body = (f"Command: `python bench/scaling.py{flag}`. Machine: {common.machine()}, "
          f"{common.load()}. Figure: [scaling.png](scaling.png); rows: scaling.csv.\n\n" + table(rows))
  common.record_section("How the cost grows (bench/scaling.py)", body)
  print(body)


if __name__ == "__main__":
  main()
