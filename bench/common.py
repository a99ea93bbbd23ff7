"""Shared benchmark helpers: machine description, timing, and the RESULTS.md table."""
import os
import platform
import re
import sys
import time
from typing import Callable, List

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
HEADER = ("| compared | ours | baseline | ratio | floor (FLOPs / measured matmul rate) | floor at the models' shapes "
          "(the same matmuls alone) | command | machine |\n"
          "|---|---|---|---|---|---|---|---|\n")
COLUMNS = HEADER.count("|", 0, HEADER.index("\n")) - 1


_MATMUL_RATE = None


def matmul_rate() -> float:
  """FLOP/s of a large float32 matmul through JAX on this machine (best of 5, measured once).

  The floor of a benchmark is its FLOPs at this rate: no implementation does better.
  (A 2-core AVX-512 machine gave ~400 GFLOP/s, a 2-core AVX2 one ~100.)
  """
  global _MATMUL_RATE
  if _MATMUL_RATE is None:
    import jax
    import jax.numpy as jnp
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    _MATMUL_RATE = 2 * n ** 3 / best_time(lambda: jax.block_until_ready(f(a)), 5)
  return _MATMUL_RATE


def floor_time(flops: float) -> float:
  """The best possible time of `flops` on this machine (see matmul_rate)."""
  return flops / matmul_rate()


def machine() -> str:
  cpu = platform.processor() or "cpu"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
  except (OSError, AttributeError):
    pass
  import jax
  return (f"{os.cpu_count()} cores {cpu}, jax {jax.__version__} {jax.default_backend()}, "
          f"matmul {matmul_rate() / 1e9:.0f} GFLOP/s")


_LOAD_START = os.getloadavg()[0]


def load() -> str:
  """The 1-minute load average when the benchmark started and now (2 cores: > ~2.5 is shared)."""
  now = os.getloadavg()[0]
  busy = " (under load)" if max(_LOAD_START, now) > 2.5 else ""
  return f"load {_LOAD_START:.1f}-{now:.1f}{busy}"


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
  """Minimum wall time of `repeats` calls (fn must block until its work is done)."""
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def fmt_s(seconds: float) -> str:
  return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _read_results() -> tuple:
  """(table rows, sections) of bench/RESULTS.md: sections are the `## ` blocks after the table."""
  rows, sections = [], {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      text = f.read()
    table, _, rest = text.partition("\n## ")
    rows = [_with_columns(l) for l in table.splitlines() if l.startswith("| ") and not l.startswith("| compared")]
    for block in ("## " + rest).split("\n## ") if rest else []:
      block = block if block.startswith("## ") else "## " + block
      title = block.splitlines()[0][3:].strip()
      sections[title] = block.rstrip("\n") + "\n"
  return rows, sections


def _with_columns(row: str) -> str:
  """A table row with the current columns: rows written before the shape floor existed get '-'."""
  cells = row.strip().strip("|").split("|")
  if len(cells) == COLUMNS - 1:
    cells.insert(5, " - ")
  return "|" + "|".join(cells) + "|"


def _write_results(rows: List[str], sections: dict) -> None:
  text = ("# Benchmark results\n\nRatio = baseline time / our time (higher is better for us). "
          "Floor = the benchmark's FLOPs at the rate a large float32 matmul reaches through JAX on "
          "the same machine in the same run (the GFLOP/s in the machine column). Floor at the models' "
          "shapes = the same matmuls as the benchmark's steps (forward and backward, the models' layer "
          "sizes and batch, all models), timed alone in one jitted loop in the same run "
          "(bench/floor.py): what this CPU does at those shapes. `load` is the 1-minute load average "
          "before and after the benchmark (2 cores: above ~2.5 the cores were shared, under load)."
          "\nRegenerate with `python bench/run_all.py`.\n\n"
          + HEADER + "\n".join(rows) + "\n"
          + "".join("\n" + sections[t] for t in sorted(sections)))
  tmp = RESULTS + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, RESULTS)


def record(rows: List[dict]) -> None:
  """Replaces rows of the same `compared` name in bench/RESULTS.md (creating it if needed).

  Each row: compared, ours (s), baseline (s), floor (s or None), and optionally shape_floor
  (s: the same matmuls alone, bench/floor.py). ratio = baseline / ours.
  """
  command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
  lines, sections = _read_results()
  names = {r["compared"] for r in rows}
  lines = [l for l in lines if l.split("|")[1].strip() not in names]
  for r in rows:
    floor, shape = (f"{fmt_s(r[k])} ({r[k] / r['ours'] * 100:.0f}% of ours)" if r.get(k) else "-"
                    for k in ("floor", "shape_floor"))
    lines.append(f"| {r['compared']} | {fmt_s(r['ours'])} | {fmt_s(r['baseline'])} | "
                 f"{r['baseline'] / r['ours']:.1f}x | {floor} | {shape} | `{command}` | {machine()}, {load()} |")
  _write_results(lines, sections)
  for r in rows:
    print(f"{r['compared']}: ours {fmt_s(r['ours'])}, baseline {fmt_s(r['baseline'])}, "
          f"ratio {r['baseline'] / r['ours']:.1f}x")


def record_section(title: str, body: str) -> None:
  """Replaces (or adds) the `## title` section after the table in bench/RESULTS.md."""
  lines, sections = _read_results()
  sections[title] = f"## {title}\n\n{body.strip()}\n"
  _write_results(lines, sections)


def mlp_flops(sizes: List[int], examples: int) -> float:
  """Forward + backward FLOPs of a dense MLP: 3 x (2 x multiply-adds) per example."""
  macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
  return 6.0 * macs * examples


def torch_best_time(run: Callable[[], object], repeats: int = 1) -> float:
  """PyTorch at its best: the faster of 1 thread and all cores.

  On a small model and a busy 2-core machine, torch's default of one OpenMP thread per core
  can be 50x slower than one thread (threads spin waiting for each other), which would
  flatter us; the comparison is against the better setting.
  """
  import torch
  best = float("inf")
  for threads in sorted({1, os.cpu_count() or 1}):
    torch.set_num_threads(threads)
    best = min(best, best_time(run, repeats))
  return best


def torch_train_mlp(x, y, positions, hidden, num_classes: int, train_cfg, seed: int,
                    dataloader: bool = False):
  """A straightforward PyTorch loop: an MLP trained with SGD (momentum, weight decay, cosine
  per step) on rows `positions` of (x, y), shuffled each epoch. Returns the model.

  dataloader=False gathers each batch by indexing the whole tensors (the fastest plain
  PyTorch); dataloader=True feeds it the way the original research scripts do:
  `DataLoader(Subset(dataset, positions), batch_size, shuffle=True)`, one example at a time
  collated into batches (num_workers=0: worker processes only add overhead on 2 cores).
  """
  import torch
  torch.manual_seed(seed)
  sizes = [x.shape[1]] + list(hidden)
  layers = []
  for a, b in zip(sizes[:-1], sizes[1:]):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
  model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], num_classes))
  t = train_cfg
  steps = -(-len(positions) // t.batch_size)
  opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs * steps)

  def step(xb, yb):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xb), yb).backward()
    opt.step()
    sched.step()

  if dataloader:
    data = torch.utils.data.Subset(torch.utils.data.TensorDataset(x, y), [int(i) for i in positions])
    loader = torch.utils.data.DataLoader(data, batch_size=t.batch_size, shuffle=True)
    for _ in range(t.epochs):
      for xb, yb in loader:
        step(xb, yb)
    return model
  positions = torch.as_tensor(positions)
  for _ in range(t.epochs):
    perm = positions[torch.randperm(len(positions))]
    for i in range(steps):
      idx = perm[i * t.batch_size:(i + 1) * t.batch_size]
      step(x[idx], y[idx])
  return model
