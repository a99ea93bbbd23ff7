"""Where a memorization chunk's time goes between the floor at its shapes and the estimator.

One chunk of the MNIST-1D estimator (64 MLPs 40-100-100-10, batch 128, 70% subsets of 3,600)
is rebuilt in layers, each a program over the same models and devices, each timed in the same
run against the floor at the models' shapes (bench/floor.py):

  matmuls     the floor: the step's matmuls alone
  model       + biases, ReLUs and a sum loss: jax.grad of the real model (Flax MLP)
  loss        + softmax cross-entropy and the weighted mean over the batch's real rows
  optimizer   + SGD with momentum, weight decay and the cosine schedule (optax, as the engine)
  gather      + each step's batch gathered from the data set on the device by the plan
  engine      the engine's epoch program itself (`loop.make_epoch_fn`: + the PRNG split and
              the per-step loss and accuracy), one program call per epoch
  train_on    + what `setup.train_on` does around it: initial states, each epoch's plan built
              and copied to the devices, the states and metrics back to the host
  chunk       the estimator's chunk (`pipelines.memorization.train_chunk`): + the correctness
              pass on every split

Then, on the engine's epoch program: the models of a device looped (the CPU default) against
vmapped in groups (`vmap_size`), chunk sizes, and undonated states; and with --xla-flags, each
set of XLA CPU flags in a fresh process (flags are read when JAX starts). Results go to
bench/RESULTS.md's section "Where the time goes".

python bench/floor_breakdown.py [--models 64] [--epochs 10] [--no-flags]
"""
import argparse
import functools
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--child" not in sys.argv:
  from rum_jax import runtime
  runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bench import common, floor  # noqa: E402
from rum_jax.configs import mnist1d  # noqa: E402
from rum_jax.memorization.estimator import sample_subset_masks  # noqa: E402
from rum_jax.pipelines import memorization  # noqa: E402
from rum_jax.training import engine, loop, plans  # noqa: E402
from rum_jax.training import setup as trainer  # noqa: E402

# XLA CPU flags tried (each in its own process); results must stay bit-equal to be usable.
FLAG_SETS = {
    "default": "",
    "no YNNPACK fusions": "--xla_cpu_experimental_ynn_fusion_type=",
    "no XNNPACK": "--xla_cpu_use_xnnpack=false",
    "oneDNN": "--xla_cpu_use_onednn=true",
    "single-threaded Eigen": "--xla_cpu_multi_thread_eigen=false",
    "prefer 512-bit vectors": "--xla_cpu_prefer_vector_width=512",
    "XNNPACK dots": "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    "oneDNN dots": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}
PROFILE_FLAGS = "--xla_cpu_enable_xprof_traceme=true"  # XLA's CPU kernels (thunks) in jax.profiler's trace


def _config(epochs, vmap_size=0):
  c = mnist1d.get_config()
  c.train.epochs = epochs
  c.vmap_size = vmap_size
  return c


class Chunk:
  """One estimator chunk: its setup, subsets, plans and initial states."""

  def __init__(self, models, epochs, vmap_size=0, flat_optimizer=False):
    self.config = _config(epochs, vmap_size)
    self.t = self.config.train
    self.setup = trainer.Setup.create(self.config, num_models=models)
    self.runner = self.setup.runner
    n = len(self.setup.dataset.train)
    self.masks = sample_subset_masks(0, models, n)
    self.positions = [np.flatnonzero(m) for m in self.masks]
    self.steps = math.ceil(len(self.positions[0]) / self.t.batch_size)
    self.tx, self.epoch_fn = self.setup.compiled_training(self.t, self.steps)
    if flat_optimizer:  # the same update on one vector of all parameters: fewer, larger kernels
      self.tx = optax.flatten(trainer.make_tx(self.t, self.steps))
      self.epoch_fn = loop.make_epoch_fn(self.runner, self.setup.forward, self.tx)
    self.init = self.setup.init_states(self.tx, 0)
    self.data = self.setup.train_data()
    rngs = lambda e: [plans.epoch_rng(0, s, e) for s in range(self.runner.padded_models)]  # noqa: E731
    self.plans = [self.runner.shard({"train": plans.stream_plan(self.positions, self.t.batch_size, rngs(e),
                                                                steps=self.steps)}) for e in range(epochs)]
    self.sizes = [40] + list(self.config.model.kwargs.hidden) + [self.setup.dataset.num_classes]

  def epochs(self, epoch_fn=None, donate_copy=True):
    """The engine's epoch program over every epoch (plans already on the devices)."""
    fn = epoch_fn or self.epoch_fn

    def run():
      states = self.runner.shard(self.init)
      for plan in self.plans:
        states, _ = fn(states, plan, self.data)
      jax.block_until_ready(states)
    return run


def _layer_program(chunk: Chunk, layer: str):
  """A program of the chunk's steps with the engine's parts up to `layer` (module docstring)."""
  forward, tx = chunk.setup.forward, chunk.tx
  train = chunk.setup.dataset.train
  x_fixed = jnp.asarray(train.x[:chunk.t.batch_size])
  y_fixed = jnp.asarray(train.y[:chunk.t.batch_size])
  w_fixed = jnp.ones(chunk.t.batch_size)

  def loss(params, state, xb, yb, wb):
    logits, _ = forward(params, state.batch_stats, xb, train=True)
    if layer == "model":
      return jnp.sum(logits)
    return engine.weighted_mean(engine.cross_entropy(logits, yb), wb)

  def one_seed(state, plan, data):
    def body(state, step_plan):
      if layer == "gather":
        b = engine.gather(data, step_plan["train"]["idx"], step_plan["train"]["weight"])
        xb, yb, wb = b["x"], b["y"], b["weight"]
      else:
        xb, yb, wb = x_fixed, y_fixed, w_fixed
      grads = jax.grad(loss)(state.params, state, xb, yb, wb)
      if layer in ("model", "loss"):
        params = jax.tree.map(lambda p, g: p - 1e-6 * g, state.params, grads)
        return state.replace(params=params), None
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                           step=state.step + 1), None
    state, _ = jax.lax.scan(body, state, plan)
    return state, jnp.zeros(())
  return chunk.runner.map(one_seed, n_seeded=2, donate=True)


def breakdown(models, epochs, repeats=3):
  """Seconds of each layer of the ladder (module docstring) and of the floor, same run."""
  chunk = Chunk(models, epochs)
  total_steps = epochs * chunk.steps
  out = {}
  floor_train = floor.mlp_training(chunk.sizes, chunk.t.batch_size, models)
  out["matmuls"] = floor_train.time(total_steps)
  for layer in ("model", "loss", "optimizer", "gather"):
    fn = _layer_program(chunk, layer)
    run = chunk.epochs(fn)
    run()
    out[layer] = common.best_time(run, repeats)
  run = chunk.epochs()
  run()
  out["engine"] = common.best_time(run, repeats)

  def train_on():
    states, _ = trainer.train_on(chunk.setup, chunk.positions, chunk.t, 0, None)
    jax.block_until_ready(jax.tree.leaves(states))
  train_on()
  out["train_on"] = common.best_time(train_on, repeats)

  def whole():
    memorization.train_chunk(chunk.setup, chunk.masks, chunk.t, 0)
  whole()
  out["chunk"] = common.best_time(whole, repeats)
  infer = floor.mlp_inference(chunk.sizes, chunk.t.eval_batch_size, models)
  rows = sum(len(chunk.setup.dataset.split(s)) for s in ("train", "val", "test"))
  out["floor_chunk"] = out["matmuls"] + infer.time(rows / chunk.t.eval_batch_size)
  out["floor_arrangement"] = floor_train.arrangement
  return out


def variants(models, epochs, repeats=3):
  """The engine's epoch program with the models looped vs vmapped in groups, other chunk sizes
  and undonated states, each against its own floor (seconds, floor seconds)."""
  out = {}
  for vmap_size in sorted({1, 2, 4, 8, max(1, models // len(jax.devices()))}):
    chunk = Chunk(models, epochs, vmap_size)
    run = chunk.epochs()
    run()
    f = floor.mlp_training(chunk.sizes, chunk.t.batch_size, models).time(epochs * chunk.steps)
    out[f"vmap_size {vmap_size}"] = (common.best_time(run, repeats), f)
  for size in (16, 256):
    chunk = Chunk(size, epochs)
    run = chunk.epochs()
    run()
    f = floor.mlp_training(chunk.sizes, chunk.t.batch_size, size).time(epochs * chunk.steps)
    out[f"chunk of {size} models"] = (common.best_time(run, repeats), f)
  chunk = Chunk(models, epochs)
  step = functools.partial(engine.train_step, forward=chunk.setup.forward, tx=chunk.tx)
  undonated = chunk.runner.map(lambda s, p, d: engine.run_plan(s, d, p, step), n_seeded=2, donate=False)
  run = chunk.epochs(undonated)
  run()
  f = floor.mlp_training(chunk.sizes, chunk.t.batch_size, models).time(epochs * chunk.steps)
  out["states not donated"] = (common.best_time(run, repeats), f)
  flat = Chunk(models, epochs, flat_optimizer=True)
  run = flat.epochs()
  run()
  same = _final_params(flat) == _final_params(chunk)
  out[f"optimizer on one flat vector (optax.flatten; weights bit-equal: {'yes' if same else 'no'})"] = (
      common.best_time(run, repeats), f)
  return out


def _final_params(chunk: Chunk) -> str:
  """Digest of the weights after the chunk's epochs."""
  from rum_jax.training.checkpoint import tree_digest
  states = chunk.runner.shard(chunk.init)
  for plan in chunk.plans:
    states, _ = chunk.epoch_fn(states, plan, chunk.data)
  return tree_digest(chunk.runner.to_host(states).params)


def flag_child(models, epochs, repeats=3):
  """In a process started with XLA_FLAGS: the engine's epochs and the floor, and a digest of
  the trained states (whether the flags keep results bit-equal)."""
  chunk = Chunk(models, epochs)
  run = chunk.epochs()
  run()
  t = common.best_time(run, repeats)
  f = floor.mlp_training(chunk.sizes, chunk.t.batch_size, models).time(epochs * chunk.steps)
  digest = _final_params(chunk)
  print("RESULT " + json.dumps({"ours": t, "floor": f, "digest": digest}))


def _kernel_kinds(hlo: str) -> dict:
  """Kernel (thunk) name -> matmul | copy | gather | other, from the compiled program's HLO text:
  a matmul is a dot or a fusion whose computation holds one."""
  import re
  bodies = dict(re.findall(r"^%?([\w.\-]+) \(.*?\{\n(.*?)\n\}", hlo, flags=re.S | re.M))
  kinds = {}
  for name, rhs in re.findall(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", hlo, flags=re.M):
    called = re.search(r"calls=%?([\w.\-]+)", rhs)
    if re.search(r"\bdot\(", rhs) or (called and " dot(" in bodies.get(called.group(1), "")):
      kinds[name] = "matmul"
    elif name.startswith("copy"):
      kinds[name] = "copy"
    elif "gather" in name:
      kinds[name] = "gather"
    else:
      kinds[name] = "other"
  return kinds


def profile_child(models, epochs):
  """In a process with XLA's kernel trace on: where the engine's epoch program spends its time
  (jax.profiler), by kind of kernel, against the program's wall time on each device."""
  import collections
  import glob
  import tempfile
  chunk = Chunk(models, epochs)
  run = chunk.epochs()
  run()
  states = chunk.runner.shard(chunk.init)
  hlo = chunk.epoch_fn.lower(states, chunk.plans[0], chunk.data).compile().as_text()
  kinds = _kernel_kinds(hlo)
  trace = tempfile.mkdtemp(prefix="rum_profile_")
  jax.profiler.start_trace(trace)
  run()
  jax.profiler.stop_trace()
  data = jax.profiler.ProfileData.from_file(glob.glob(os.path.join(trace, "**", "*.xplane.pb"), recursive=True)[-1])
  seconds = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        if ev.name == "ThunkExecutor::Execute (wait for completion)":
          seconds["program"] += ev.duration_ns / 1e9
        elif ev.name in kinds and not ev.name.startswith(("while", "call", "conditional")):
          seconds[kinds[ev.name]] += ev.duration_ns / 1e9
  print("RESULT " + json.dumps(dict(seconds)))


def profile(models, epochs):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={os.cpu_count()} {PROFILE_FLAGS}")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--profile", "--models", str(models),
                         "--epochs", str(epochs)], env=env, capture_output=True, text=True)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if not lines:
    raise RuntimeError(f"the profile failed: {proc.stderr[-2000:]}")
  return json.loads(lines[-1][7:])


def flags(models, epochs):
  out = {}
  for name, value in FLAG_SETS.items():
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()} {value}".strip()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--models", str(models),
                           "--epochs", str(epochs)], env=env, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    out[name] = json.loads(lines[-1][7:]) if lines else {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--no-flags", action="store_true")
  parser.add_argument("--child", action="store_true")
  parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    (profile_child if args.profile else flag_child)(args.models, args.epochs)
    return
  b = breakdown(args.models, args.epochs)
  lines = [f"Command: `python bench/floor_breakdown.py --models {args.models} --epochs {args.epochs}`. "
           f"Machine: {common.machine()}, {common.load()}.", "",
           f"One memorization chunk ({args.models} MNIST-1D MLPs 40-100-100-10, batch 128, {args.epochs} "
           f"epochs), built up from the floor at its shapes (fastest arrangement: {b['floor_arrangement']}); "
           "each row adds to the one above (bench/floor_breakdown.py).", "",
           "| program | seconds | floor / this | added by this row |", "|---|---|---|---|"]
  previous = None
  for name in ("matmuls", "model", "loss", "optimizer", "gather", "engine", "train_on", "chunk"):
    ref = b["floor_chunk"] if name == "chunk" else b["matmuls"]
    added = "" if previous is None else f"{b[name] - previous:+.3f} s"
    lines.append(f"| {name} | {b[name]:.3f} | {ref / b[name]:.0%} | {added} |")
    previous = b[name]
  lines += ["", "The chunk row's floor adds the correctness pass's forward matmuls.", ""]
  p = profile(args.models, args.epochs)
  program = p.pop("program")
  lines += ["Inside the engine's epoch program (jax.profiler with XLA's kernel trace, "
            f"`{PROFILE_FLAGS}`; seconds summed over both devices):", "",
            "| kernels | seconds | share of the program's time |", "|---|---|---|"]
  for kind in ("matmul", "gather", "copy", "other"):
    lines.append(f"| {kind} | {p.get(kind, 0.0):.3f} | {p.get(kind, 0.0) / program:.0%} |")
  gap = program - sum(p.values())
  lines += [f"| between kernels (the executor, loop control) | {gap:.3f} | {gap / program:.0%} |",
            f"| the program | {program:.3f} | 100% |", "",
            "| engine epochs, variant | seconds | floor at its shapes | floor / this |", "|---|---|---|---|"]
  for name, (t, f) in variants(args.models, args.epochs).items():
    lines.append(f"| {name} | {t:.3f} | {f:.3f} | {f / t:.0%} |")
  if not args.no_flags:
    lines += ["", "| XLA_FLAGS (engine epochs, a fresh process each) | seconds | floor | floor / this | "
              "states bit-equal to the default |", "|---|---|---|---|---|"]
    found = flags(args.models, args.epochs)
    reference = found.get("default", {}).get("digest")
    for name, r in found.items():
      if "error" in r:
        lines.append(f"| {name} (`{FLAG_SETS[name]}`) | failed: {r['error'][:80]} | | | |")
        continue
      lines.append(f"| {name} (`{FLAG_SETS[name] or 'none'}`) | {r['ours']:.3f} | {r['floor']:.3f} | "
                   f"{r['floor'] / r['ours']:.0%} | {'yes' if r['digest'] == reference else 'no'} |")
  body = "\n".join(lines)
  print(body)
  common.record_section("Where the time goes: a memorization chunk against the floor at its shapes", body)


if __name__ == "__main__":
  main()
