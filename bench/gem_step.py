"""A GEM step with 19 constraint tasks (Split CIFAR-100 shapes: 20 tasks, 256 memories per
task, batch 10) against a plain SGD step, and against the original's PyTorch loop.

Ours: `engine.train_step` with `updates.gem_transform`: the 20 (padded) memory gradients in
one vmapped grad, the dual QP solved by jaxopt inside the jitted step; steps scanned.
PyTorch baseline, as GEM's `observe` does it: one forward/backward per constraint task, the
gradients copied into a matrix, the batch gradient, and if a constraint is violated the dual
QP solved on the host. quadprog is not installed, so the host QP is solved exactly with
scipy: with u = v - margin and P = GG' + eps I = LL' (Cholesky), the dual
min 0.5 v'Pv + (Gg)'v s.t. v >= margin is scipy.optimize.nnls(L', -L^-1 (P margin + Gg)).
Model: an MLP 3072-256-256-100 (the same in both), float32, random inputs and labels.

python bench/gem_step.py [--steps 10] [--memories 256]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one CPU device per core, before JAX starts
import jax
import jax.numpy as jnp
import numpy as np

from bench import common, floor
from rum_jax.continual import buffers, updates
from rum_jax.models import create_model
from rum_jax.training import loop, optim
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.state import Forward, init_state

NUM_TASKS, CLASSES_PER_TASK, INPUTS, HIDDEN = 20, 5, 3072, (256, 256)
BATCH, LR, MARGIN, EPS = 10, 0.1, 0.5, 1e-3


def make_data(memories, rng):
  """Per task: `memories` examples for its memory, plus the current task's stream."""
  n = NUM_TASKS * memories
  x = rng.normal(size=(n, INPUTS)).astype(np.float32)
  task = np.repeat(np.arange(NUM_TASKS), memories)
  y = (task * CLASSES_PER_TASK + rng.integers(0, CLASSES_PER_TASK, n)).astype(np.int32)
  return x, y, task


def jax_programs(x, y, task, memories, steps):
  runner = ModelRunner(1, [jax.devices()[0]])
  model = create_model("mlp", NUM_TASKS * CLASSES_PER_TASK, hidden=HIDDEN)
  forward = Forward(model)
  tx = optim.make_optimizer(LR, 0.0, 0.0)
  state = init_state(model, tx, jax.random.PRNGKey(0), jnp.asarray(x[:2]))
  class_task = np.repeat(np.arange(NUM_TASKS), CLASSES_PER_TASK).astype(np.int32)
  slots = [buffers.memory_slot(np.flatnonzero(task == t), memories, x, y) for t in range(NUM_TASKS)]
  active = np.ones(NUM_TASKS, bool)
  active[-1] = False  # learning the last task: the 19 others constrain it
  aux = {"class_task": class_task, "task_classes": np.eye(NUM_TASKS, dtype=bool)[class_task].T,
         "active": active, "forget_task": np.int32(0),
         "learn": {k: np.stack([s[k] for s in slots]) for k in slots[0]},
         "salun_mask": jax.tree.map(np.ones_like, state.params)}
  aux["unlearn"] = aux["learn"]
  states = jax.tree.map(lambda a: np.asarray(a)[None], state.replace(aux=aux))
  current = np.flatnonzero(task == NUM_TASKS - 1)
  idx = np.resize(current, steps * BATCH).reshape(1, steps, BATCH).astype(np.int32)
  plan = runner.shard({"train": {"idx": idx, "weight": np.ones(idx.shape, np.float32)}})
  data = runner.replicate({"x": x, "y": y, "pos": np.arange(len(y), dtype=np.int32)})
  out = {}
  for name, transform in (("gem", updates.gem_transform(MARGIN, EPS)), ("sgd", None)):
    fn = loop.make_epoch_fn(runner, forward, tx, loss_fn=updates.learn_loss, grad_transform=transform)

    def run(fn=fn):
      # fn donates its input states: shard a fresh copy each time (a few MB, not timed apart).
      new, _ = fn(runner.shard(states), plan, data)
      jax.block_until_ready(new)
    out[name] = run
  return out


def torch_program(x, y, task, memories, steps):
  import torch
  from scipy import linalg, optimize
  torch.manual_seed(0)
  sizes = [INPUTS] + list(HIDDEN)
  layers = []
  for a, b in zip(sizes[:-1], sizes[1:]):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
  net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], NUM_TASKS * CLASSES_PER_TASK))
  opt = torch.optim.SGD(net.parameters(), lr=LR)
  ce = torch.nn.CrossEntropyLoss()
  params = list(net.parameters())
  dim = sum(p.numel() for p in params)
  mem_x = torch.from_numpy(x).view(NUM_TASKS, memories, INPUTS)
  mem_y = torch.from_numpy(y.astype(np.int64)).view(NUM_TASKS, memories)
  current = np.flatnonzero(task == NUM_TASKS - 1)
  cur_x, cur_y = torch.from_numpy(x[current]), torch.from_numpy(y[current].astype(np.int64))
  grads = torch.zeros(dim, NUM_TASKS)

  def task_loss(xb, yb, t):
    lo = t * CLASSES_PER_TASK
    return ce(net(xb)[:, lo:lo + CLASSES_PER_TASK], yb - lo)

  def store(t):
    grads[:, t] = torch.cat([p.grad.view(-1) for p in params])

  def solve(G, g):  # exact dual QP on the host (module docstring)
    G, g = G.double().numpy(), g.double().numpy()
    P = G @ G.T + EPS * np.eye(len(G))
    L = linalg.cholesky(P, lower=True)
    b = -linalg.solve_triangular(L, P @ np.full(len(G), MARGIN) + G @ g, lower=True)
    u, _ = optimize.nnls(L.T, b)
    return torch.from_numpy(G.T @ (u + MARGIN) + g).float()

  violations = [0]

  def run():
    violations[0] = 0
    for step in range(steps):
      for t in range(NUM_TASKS - 1):  # past tasks, one backward each
        net.zero_grad()
        task_loss(mem_x[t], mem_y[t], t).backward()
        store(t)
      net.zero_grad()
      rows = torch.arange(step * BATCH, (step + 1) * BATCH) % len(cur_y)
      task_loss(cur_x[rows], cur_y[rows], NUM_TASKS - 1).backward()
      store(NUM_TASKS - 1)
      G, g = grads[:, :NUM_TASKS - 1].T, grads[:, NUM_TASKS - 1]
      if (G @ g < 0).any():
        violations[0] += 1
        new = solve(G, g)
        offset = 0
        for p in params:
          p.grad.copy_(new[offset:offset + p.numel()].view_as(p))
          offset += p.numel()
      opt.step()
  return run, violations


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--memories", type=int, default=256)
  args = parser.parse_args()
  x, y, task = make_data(args.memories, np.random.default_rng(0))
  progs = jax_programs(x, y, task, args.memories, args.steps)
  for run in progs.values():
    run()  # compile
  t_gem = common.best_time(progs["gem"]) / args.steps
  t_sgd = common.best_time(progs["sgd"]) / args.steps
  torch_run, violations = torch_program(x, y, task, args.memories, args.steps)
  t_torch = common.torch_best_time(torch_run) / args.steps
  print(f"PyTorch loop: {violations[0]}/{args.steps} steps violated a constraint and solved the QP")
  sizes = [INPUTS] + list(HIDDEN) + [NUM_TASKS * CLASSES_PER_TASK]
  large = common.floor_time(common.mlp_flops(sizes, (NUM_TASKS - 1) * args.memories + BATCH))
  # At its shapes: the batch's forward and backward, and the 19 constraint tasks' memories
  # through the same weights (one matmul forward, per-task weight gradients), on one device.
  shapes = floor.measure([floor.Pass(tuple(sizes), BATCH),
                          floor.Pass(tuple(sizes), args.memories, groups=NUM_TASKS - 1)], 1,
                         devices=jax.devices()[:1]).step_seconds
  print(f"GEM step: {shapes / t_gem:.0%} of the floor at its shapes")
  label = (f"GEM step, {NUM_TASKS - 1} constraint tasks x {args.memories} memories, batch {BATCH}, "
           f"MLP 3072-256-256-100")
  common.record([
      # Swapped roles: the ratio reads as "one GEM step costs this many plain SGD steps".
      {"compared": f"{label}: its cost in plain SGD steps (ours = SGD step, baseline = GEM step)",
       "ours": t_sgd, "baseline": t_gem, "floor": None},
      {"compared": f"{label}: vs PyTorch per-task loop + host QP (scipy NNLS)", "ours": t_gem,
       "baseline": t_torch, "floor": large, "shape_floor": shapes},
  ])


if __name__ == "__main__":
  main()
