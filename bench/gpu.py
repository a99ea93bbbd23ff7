"""The GPU benchmark: what rum-jax costs on one accelerator, against PyTorch on the same one.

python bench/gpu.py            # on the GPU machine; writes bench/GPU_RESULTS.md
python bench/gpu.py --quick    # anywhere, tiny sizes (under a minute on 2 CPU cores): the same
                               # code paths, numbers meaningless; writes a temporary file

Everything runs on synthetic CIFAR-shaped data that is learnable (each class a smooth random
pattern, plus noise; `synthetic_images`), so no data set is needed. Measured, each after its
program is compiled, and each extrapolated from a few epochs or steps to the full run (the
table says from what):

(a) memorization: subset models per hour of the Feldman-Zhang estimator as the product runs it
    (`commands.train` in mode memorization: the pipeline, its checkpoints-free chunks, the
    evaluation and the score files), at the chunk size the pipeline chooses for this device
    and the full data (memorization.chunk_size = 0), for ResNet-18
    (configs/cifar10_resnet18.py: RUM's 30 epochs, batch 256, each model on 70% of 45k) and for
    airbench (configs/cifar10_memorization_fast.py: 10 epochs, batch 1024). The pipeline runs
    two chunks of `--epochs` + 1 epochs on data sized so that an epoch has `--steps` steps; the
    epoch times it records (<workdir>/scalars.jsonl, rum_jax.tracking) give the time per step
    and the evaluation per example, scaled to the full run. Against a PyTorch loop training the
    same model one at a time on the same device (same batch, optimizer, crop + flip on the
    device, data resident on it).
(b) the thesis' continual setting: Split CIFAR-100 shape (20 tasks of 5 classes, 2,500
    examples each, one epoch per task), GEM's reduced ResNet-18 (nf 20), batch 10, 256
    memories per task, as the product runs it (`commands.continual` with
    configs/continual_cifar100_thesis.py's GEM learning), for one seed and for 3 seeds in one
    program: the pipeline learns the first 3 tasks, each of `--steps` steps, and its recorded
    learning epochs after the first give the time per step. Our GEM step projects against all
    20 (padded) memory slots, so its cost is the same for every task: multiplied out to 20
    tasks of 250 steps. PyTorch (GEM's `observe`: one backward per past task, the dual QP on
    the host when a constraint is violated) costs more per step the more tasks are past: timed
    at 1 and 19 past tasks and interpolated linearly. Per-task evaluation and buffer choice
    are not included on either side.
(c) SalUn on ResNet-18 for 3 seeds in one program: its saliency mask (compile included) and
    one epoch over the 45k train split (forget 3,000, batch 256), timed on a second epoch.

It also records the JAX (and PyTorch) version, the device, and the memory used: each
program's own analysis and the device allocator's peak.

On the GPU machine of this project (JAX 0.11 with CUDA 13, PyTorch with CUDA, but neither
ml-collections nor jaxopt), carry those two pure-Python wheels. Here, in the repository:

  echo /.whl/ >> .git/info/exclude
  python -m pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0 jaxopt==0.8.5

and there (the device tool's `carry` names `.whl`):

  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 bench/gpu.py

Sized to finish within 8 minutes on one H200 (an estimate: it has not run on a GPU yet): the
sizes are the full runs', the timed work is a few epochs or steps, and a section that would
start after `--budget` seconds (450) is skipped and says so in the table.
"""
import argparse
import dataclasses
import datetime
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import runtime

runtime.use_cpu_cores()  # one XLA CPU device per core (a no-op for the GPU), before JAX starts
import jax
import jaxlib
import numpy as np

from rum_jax.configs import cifar10_memorization_fast, cifar10_resnet18, continual_cifar100_thesis, continual_digits
from rum_jax import commands, tracking
from rum_jax.data import DATASETS
from rum_jax.data.base import Dataset, Split
from rum_jax.data.normalize import channel_stats, standardize
from rum_jax.pipelines import memorization as memorization_pipeline
from rum_jax.training import memory, optim
from rum_jax.training.setup import Setup
from rum_jax.unlearning import runners

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "GPU_RESULTS.md")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How big each measurement is: the full run's sizes, or --quick's tiny ones."""
  train: int = 45_000
  val: int = 5_000
  test: int = 10_000
  image: int = 32
  resnet: tuple = ("resnet18", (("nf", 64),))          # (model name, kwargs) of (a), (c)
  reduced_resnet: tuple = ("reduced_resnet18", (("nf", 20),))  # of (b)
  airbench: tuple = ("airbench", (("widths", (64, 256, 256)),))
  torch_nf: int = 64
  airbench_widths: tuple = (64, 256, 256)
  max_chunk: int = 0               # 0: as many as fit
  cl_tasks: int = 20
  cl_classes_per_task: int = 5
  cl_examples_per_task: int = 2_500
  cl_memories: int = 256
  cl_batch: int = 10
  cl_learned: int = 3              # tasks the continual pipeline learns in (b)
  cl_torch_nf: int = 20
  salun_forget: int = 3_000


# --quick: compiling a ResNet-18 or airbench takes 30 s and more on a 2-core CPU (and a small
# CNN seconds per program), so the JAX side trains a tiny MLP in their place (the torch side
# keeps narrow versions of them); every code path of the script still runs.
TINY = ("mlp", (("hidden", (16,)),))
QUICK = Sizes(train=192, val=32, test=64, image=16, resnet=TINY, reduced_resnet=TINY, airbench=TINY,
              torch_nf=4, airbench_widths=(4, 8, 8), max_chunk=4, cl_tasks=4, cl_examples_per_task=20,
              cl_memories=8, cl_learned=2, cl_torch_nf=4, salun_forget=24)


# ---------------------------------------------------------------------------------------
# Data and measurement helpers.


def synthetic_images(n_train: int, n_val: int, n_test: int, num_classes: int, size: int,
                     seed: int = 0) -> Dataset:
  """Learnable CIFAR-shaped data: class k is a smooth random colour pattern P_k (a random
  [size/4, size/4, 3] field upsampled 4x), each image P_y + noise of the same scale,
  standardised per channel with the train split's statistics."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(num_classes, max(1, size // 4), max(1, size // 4), 3)).astype(np.float32)
  patterns = np.kron(coarse, np.ones((1, 4, 4, 1), np.float32))[:, :size, :size]

  def split(n: int, offset: int) -> Split:
    y = (np.arange(n) % num_classes).astype(np.int32)
    rng.shuffle(y)
    x = patterns[y] + rng.normal(size=(n, size, size, 3)).astype(np.float32)
    return Split(x, y, np.arange(offset, offset + n, dtype=np.int64))

  train, val, test = split(n_train, 0), split(n_val, n_train), split(n_test, n_train + n_val)
  mean, std = channel_stats(train.x)
  norm = lambda s: Split(standardize(s.x, mean, std), s.y, s.index)  # noqa: E731
  return Dataset("synthetic", norm(train), norm(val), norm(test), num_classes,
                 tuple(f"class_{k}" for k in range(num_classes)))


SYNTHETIC = "bench_synthetic"


@DATASETS.register(SYNTHETIC)
def load_synthetic(data_dir: Optional[str], split_seed: int, n_train: int, n_val: int, n_test: int,
                   num_classes: int, size: int, seed: int = 0) -> Dataset:
  """`synthetic_images` as a registered data set, so the pipelines load it from a config."""
  del data_dir, split_seed
  return synthetic_images(n_train, n_val, n_test, num_classes, size, seed)


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def device_peak() -> Optional[int]:
  """The device allocator's peak bytes so far (None where the device reports none)."""
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get("peak_bytes_in_use")


def fmt_bytes(b: Optional[float]) -> str:
  return "-" if b is None else memory.size(b)


def fmt_duration(s: float) -> str:
  if s >= 3600:
    return f"{s / 3600:.2f} h"
  return f"{s / 60:.1f} min" if s >= 120 else f"{s:.2f} s"


# ---------------------------------------------------------------------------------------
# PyTorch: the same models and loops, one model at a time.


def torch_device():
  import torch
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_sync():
  import torch
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def torch_resnet18(num_classes: int, nf: int):
  """CIFAR ResNet-18 as rum_jax.models.resnet (3x3 stem, no max-pool, projection shortcuts)."""
  import torch.nn as tnn

  class Block(tnn.Module):
    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.c1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.b1 = tnn.BatchNorm2d(c_out)
      self.c2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      self.b2 = tnn.BatchNorm2d(c_out)
      self.short = (tnn.Sequential(tnn.Conv2d(c_in, c_out, 1, stride, bias=False), tnn.BatchNorm2d(c_out))
                    if stride != 1 or c_in != c_out else tnn.Identity())

    def forward(self, x):
      y = self.b2(self.c2(tnn.functional.relu(self.b1(self.c1(x)))))
      return tnn.functional.relu(y + self.short(x))

  layers, c_in = [tnn.Conv2d(3, nf, 3, 1, 1, bias=False), tnn.BatchNorm2d(nf), tnn.ReLU()], nf
  for stage in range(4):
    for b in range(2):
      c_out = nf * 2 ** stage
      layers.append(Block(c_in, c_out, 2 if stage > 0 and b == 0 else 1))
      c_in = c_out
  return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, num_classes))


def torch_airbench(num_classes: int, widths):
  """airbench94's net as rum_jax.models.airbench (whitening filters random: same cost)."""
  import torch
  import torch.nn as tnn

  def group(c_in, c_out):
    return tnn.Sequential(tnn.Conv2d(c_in, c_out, 3, padding=1, bias=False), tnn.MaxPool2d(2),
                          tnn.BatchNorm2d(c_out, momentum=0.4, affine=False), tnn.GELU(),
                          tnn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                          tnn.BatchNorm2d(c_out, momentum=0.4, affine=False), tnn.GELU())

  class Net(tnn.Module):
    def __init__(self):
      super().__init__()
      self.whiten = tnn.Conv2d(3, 24, 2)
      self.whiten.weight.requires_grad_(False)
      groups, c_in = [], 24
      for w in widths:
        groups.append(group(c_in, w))
        c_in = w
      self.groups = tnn.Sequential(*groups)
      self.head = tnn.Linear(c_in, num_classes, bias=False)

    def forward(self, x):
      x = self.groups(tnn.functional.gelu(self.whiten(x)))
      return self.head(torch.amax(x, dim=(2, 3))) / 9.0
  return Net()


def torch_crop_flip(x, pad: int = 4):
  """Random crop (zero padding) + horizontal flip of a batch on its device, like ours."""
  import torch
  n, c, h, w = x.shape
  padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
  rows = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device) + torch.arange(h, device=x.device)
  cols = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device) + torch.arange(w, device=x.device)
  flip = torch.rand(n, 1, device=x.device) < 0.5
  cols = torch.where(flip, cols.flip(1), cols)
  return padded[torch.arange(n, device=x.device)[:, None, None, None],
                torch.arange(c, device=x.device)[None, :, None, None], rows[:, None, :, None],
                cols[:, None, None, :]]


def torch_memorization(name: str, config, dataset: Dataset, sizes: Sizes, steps: int) -> Dict[str, float]:
  """Seconds per step and per evaluated example of a plain PyTorch loop, one model."""
  import torch
  dev = torch_device()
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  k = dataset.num_classes
  net = (torch_resnet18(k, sizes.torch_nf) if name == "resnet18" else torch_airbench(k, sizes.airbench_widths)).to(dev)
  t = config.train
  opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=t.lr, momentum=t.momentum,
                        nesterov=bool(t.get("nesterov", False)), weight_decay=t.weight_decay)
  x = torch.from_numpy(dataset.train.x).permute(0, 3, 1, 2).contiguous().to(dev)
  y = torch.from_numpy(dataset.train.y.astype(np.int64)).to(dev)
  ce = torch.nn.CrossEntropyLoss(label_smoothing=float(t.get("label_smoothing", 0.0)))
  batch = t.batch_size
  positions = torch.randperm(len(y), device=dev)[:int(round(0.7 * len(y)))]

  def step(i):
    idx = positions[(torch.arange(batch, device=dev) + i * batch) % len(positions)]
    xb = torch_crop_flip(x[idx]) if config.data.augment else x[idx]
    opt.zero_grad(set_to_none=True)
    ce(net(xb), y[idx]).backward()
    opt.step()

  net.train()
  for i in range(3):
    step(i)
  torch_sync()
  t0 = time.perf_counter()
  for i in range(steps):
    step(i)
  torch_sync()
  per_step = (time.perf_counter() - t0) / steps
  xt = torch.from_numpy(dataset.test.x).permute(0, 3, 1, 2).contiguous().to(dev)
  net.eval()
  with torch.no_grad():
    eval_batch = config.train.eval_batch_size
    run = lambda: [net(xt[i:i + eval_batch]).argmax(1) for i in range(0, len(xt), eval_batch)]  # noqa: E731
    run()
    torch_sync()
    t0 = time.perf_counter()
    run()
    torch_sync()
  per_example = (time.perf_counter() - t0) / len(xt)
  peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
  return {"step": per_step, "eval_example": per_example, "peak": peak}


def torch_gem(sizes: Sizes, past_tasks: int, steps: int) -> float:
  """Seconds per GEM step of the original's loop (bench/gem_step.py's) with `past_tasks`
  constraints, on the reduced ResNet-18."""
  import torch
  from scipy import linalg, optimize
  dev = torch_device()
  torch.manual_seed(0)
  k, m, s = sizes.cl_classes_per_task, sizes.cl_memories, sizes.image
  tasks = past_tasks + 1
  net = torch_resnet18(sizes.cl_tasks * k, sizes.cl_torch_nf).to(dev)
  opt = torch.optim.SGD(net.parameters(), lr=0.1)
  ce = torch.nn.CrossEntropyLoss()
  params = [p for p in net.parameters()]
  mem_x = torch.randn(tasks, m, 3, s, s, device=dev)
  mem_y = (torch.arange(tasks, device=dev)[:, None] * k + torch.randint(0, k, (tasks, m), device=dev))
  grads = torch.zeros(sum(p.numel() for p in params), tasks, device=dev)

  def task_loss(xb, yb, task):
    return ce(net(xb)[:, task * k:(task + 1) * k], yb - task * k)

  def store(task):
    grads[:, task] = torch.cat([p.grad.reshape(-1) for p in params])

  def solve(G, g):  # the exact dual QP on the host, as bench/gem_step.py
    G, g = G.double().cpu().numpy(), g.double().cpu().numpy()
    P = G @ G.T + 1e-3 * np.eye(len(G))
    L = linalg.cholesky(P, lower=True)
    b = -linalg.solve_triangular(L, P @ np.full(len(G), 0.5) + G @ g, lower=True)
    u, _ = optimize.nnls(L.T, b)
    return torch.from_numpy(G.T @ (u + 0.5) + g).float().to(dev)

  def step():
    net.train()
    for task in range(past_tasks):
      net.zero_grad()
      task_loss(mem_x[task], mem_y[task], task).backward()
      store(task)
    net.zero_grad()
    xb = torch.randn(sizes.cl_batch, 3, s, s, device=dev)
    yb = past_tasks * k + torch.randint(0, k, (sizes.cl_batch,), device=dev)
    task_loss(xb, yb, past_tasks).backward()
    store(past_tasks)
    G, g = grads[:, :past_tasks].T, grads[:, past_tasks]
    if past_tasks and (G @ g < 0).any():
      new, offset = solve(G, g), 0
      for p in params:
        p.grad.copy_(new[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    opt.step()

  for _ in range(2):
    step()
  torch_sync()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  torch_sync()
  return (time.perf_counter() - t0) / steps


# ---------------------------------------------------------------------------------------
# The measurements.


@dataclasses.dataclass
class Row:
  what: str
  ours: str
  torch: str = "-"
  ratio: str = "-"
  how: str = ""


def _synthetic_data(config, n_train: int, n_val: int, n_test: int, num_classes: int, size: int, seed: int = 0):
  """config.data set to the registered synthetic data set of these sizes."""
  config.data.name, config.data.data_dir = SYNTHETIC, ""
  config.data.options = dict(n_train=n_train, n_val=n_val, n_test=n_test, num_classes=num_classes, size=size,
                             seed=seed)
  return config


def _epochs(workdir: str, prefix: str) -> List[dict]:
  """The epoch records of the run's phases whose name starts with `prefix` (rum_jax.tracking)."""
  return [r for r in tracking.read_scalars(workdir) if r["axis"] == "epoch" and r["phase"].startswith(prefix)]


def measure_memorization(name: str, config, sizes: Sizes, args, with_torch: bool) -> List[Row]:
  """(a): subset models per hour of the memorization pipeline at the chunk size it chooses, and
  the PyTorch loop's.

  The pipeline (train.py's `memorization` mode, `commands.train`) runs two chunks of `--epochs`
  + 1 epochs on data sized so that each subset model's epoch has `--steps` steps; the second
  chunk's epochs after its first (compiled programs by then) give the time per step, and the
  time from its last epoch to the end of the run (evaluation of every split, the chunk, the
  statistics and score files) the evaluation per example. Both are scaled to the full run."""
  m, t = config.memorization, config.train
  n_full = sizes.train
  _synthetic_data(config, n_full, sizes.val, sizes.test, 10, sizes.image)
  examples = int(round(m.ratio * n_full))
  full_steps = math.ceil(examples / t.batch_size)
  steps = min(args.steps, full_steps)
  workdir = tempfile.mkdtemp(prefix=f"rum_jax_gpu_{name}_")
  # The chunk the pipeline would choose for the full data (memorization.chunk_size = 0).
  chunk = memorization_pipeline.models_per_program(config, workdir, Setup.create(config, num_models=1), 0)
  if sizes.max_chunk and chunk > sizes.max_chunk:
    print(f"[{name}] the pipeline chooses {chunk} models per program; --quick caps it at {sizes.max_chunk}")
    chunk = sizes.max_chunk
  n_small = math.ceil(steps * t.batch_size / m.ratio)
  _synthetic_data(config, n_small, sizes.val, sizes.test, 10, sizes.image)
  config.mode = "memorization"
  config.memorization.update(num_models=2 * chunk, chunk_size=chunk)
  config.train.epochs = args.epochs + 1
  t0 = time.time()
  commands.train(config, workdir)
  end = time.time()
  first, second = _epochs(workdir, "chunk 1/"), _epochs(workdir, "chunk 2/")
  shutil.rmtree(workdir, ignore_errors=True)
  per_step = (second[-1]["time"] - second[0]["time"]) / (args.epochs * steps)
  compile_s = first[0]["scalars"]["seconds"] - second[1]["scalars"]["seconds"]
  evaluated = n_small + sizes.val + sizes.test  # `accuracies` predicts every split
  eval_example = (end - second[-1]["time"]) / evaluated
  eval_examples = n_full + sizes.val + sizes.test
  seconds_per_chunk = t.epochs * full_steps * per_step + eval_examples * eval_example
  ours = 3600 * chunk / seconds_per_chunk
  loss = [np.mean(r["scalars"]["loss"]) for r in first]
  how = (f"the memorization pipeline (commands.train, mode memorization) with {chunk} models per program "
         f"(its choice for {n_full:,} examples: chunk_size 0), two chunks of {args.epochs + 1} epochs of "
         f"{steps} steps in {end - t0:.0f} s; the second chunk's last {args.epochs} epochs timed (the first "
         f"epoch's compilation: {compile_s:.0f} s), extrapolated to {t.epochs} epochs x {full_steps} steps "
         f"+ evaluation of {eval_examples:,} examples; mean loss {loss[0]:.3f} -> {loss[-1]:.3f}")
  row = Row(f"(a) memorization, {name} (JAX: {config.model.name}): subset models per hour", f"{ours:,.0f}", how=how)
  if with_torch:
    dataset = synthetic_images(n_full, sizes.val, sizes.test, 10, sizes.image)
    tr = torch_memorization(name, config, dataset, sizes, steps)
    theirs = 3600 / (t.epochs * full_steps * tr["step"] + eval_examples * tr["eval_example"])
    row.torch, row.ratio = f"{theirs:,.0f}", f"{ours / theirs:.1f}x"
    row.how += (f". PyTorch: one model at a time, {steps} steps timed and extrapolated the same way"
                + (f", peak {fmt_bytes(tr['peak'])}" if tr["peak"] else ""))
  return [row]


def continual_config(sizes: Sizes, steps: int, seeds: int):
  """configs/continual_cifar100_thesis.py (GEM learning) on synthetic data of the same task
  layout, each task `steps` batches, learning the first `sizes.cl_learned` tasks."""
  c = continual_cifar100_thesis.get_config()
  t, k, batch = sizes.cl_tasks, sizes.cl_classes_per_task, sizes.cl_batch
  _synthetic_data(c, t * steps * batch, t * k, t * k * 2, t * k, sizes.image, seed=1)
  c.model.name, c.model.kwargs = sizes.reduced_resnet[0], dict(sizes.reduced_resnet[1])
  c.num_seeds = seeds
  c.algorithm = "neggem"  # GEM learning
  continual_digits.set_memories(c, memories=sizes.cl_memories, agem_memories=sizes.cl_memories)
  c.continual.update(sequence=",".join(str(task) for task in range(sizes.cl_learned)), batch_size=batch, epochs=1,
                     mia=False)
  return c


def measure_gem(sizes: Sizes, args, with_torch: bool) -> List[Row]:
  """(b): the thesis' 20-task GEM learning, one seed and 3 seeds in one program.

  The continual pipeline (continual.py, `commands.continual`) learns the first tasks of the
  20-task layout; each task is `--steps` batches, and the learning epochs after the first
  (compiled by then) give the time per step, which is the same for every task: our GEM step
  projects against all 20 (padded) memory slots."""
  t = sizes.cl_tasks
  steps_task = math.ceil(sizes.cl_examples_per_task / sizes.cl_batch)
  steps = min(args.steps, steps_task)
  model_name = sizes.reduced_resnet[0]
  rows, per_seed = [], {}
  for seeds in (1, 3):
    workdir = tempfile.mkdtemp(prefix=f"rum_jax_gpu_continual_{seeds}_")
    t0 = time.time()
    commands.continual(continual_config(sizes, steps, seeds), workdir)
    wall = time.time() - t0
    learn = _epochs(workdir, "step ")
    shutil.rmtree(workdir, ignore_errors=True)
    per_step = np.mean([r["scalars"]["seconds"] for r in learn[1:]]) / steps
    compile_s = learn[0]["scalars"]["seconds"] - per_step * steps
    total = t * steps_task * per_step
    per_seed[seeds] = total / seeds
    rows.append(Row(f"(b) continual GEM, {model_name}, {t} tasks, {seeds} seed{'s' if seeds > 1 else ''} in one program",
                    fmt_duration(total),
                    how=(f"the continual pipeline (commands.continual, GEM learning) on the first {len(learn)} "
                         f"tasks of {steps} steps in {wall:.0f} s; their learning epochs after the first "
                         f"(compilation: {compile_s:.0f} s) timed, x {steps_task} steps x {t} tasks; "
                         f"{fmt_duration(total / seeds)} per seed")))
  if with_torch:
    few, many = torch_gem(sizes, 1, steps), torch_gem(sizes, t - 1, steps)
    slope = (many - few) / (t - 2)
    one_seed = sum(steps_task * (few + slope * (past - 1)) for past in range(t))
    for row, seeds in zip(rows, (1, 3)):
      row.torch = fmt_duration(one_seed * seeds)
      row.ratio = f"{one_seed * seeds / (per_seed[seeds] * seeds):.1f}x"
      row.how += (f". PyTorch (GEM's loop, seeds one after another): {few * 1e3:.1f} ms/step with 1 past "
                  f"task, {many * 1e3:.1f} ms with {t - 1}, interpolated over the tasks")
  return rows


def measure_salun(config, sizes: Sizes) -> List[Row]:
  """(c): one SalUn epoch of ResNet-18 for 3 seeds in one program."""
  setup = Setup.create(_synthetic_data(config, sizes.train, sizes.val, sizes.test, 10, sizes.image), num_models=3)
  n = len(setup.dataset.train)
  forget = np.random.default_rng(0).choice(n, sizes.salun_forget, replace=False)
  retain = np.setdiff1d(np.arange(n), forget)
  states = setup.init_states(optim.make_optimizer(0.1), 0)
  settings = config.unlearn.salun
  t0 = time.perf_counter()
  program = runners.build_program(setup, states, "salun", settings, forget, retain)
  mask_s = time.perf_counter() - t0
  runner = setup.runner
  dev, data = runner.shard(program.states), setup.train_data()
  t0 = time.perf_counter()
  dev, _ = block(program.epoch_fn(dev, runner.shard(program.plan_fn(0)), data))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  dev, metrics = block(program.epoch_fn(dev, runner.shard(program.plan_fn(1)), data))
  epoch_s = time.perf_counter() - t0
  steps = math.ceil(n / settings.batch_size)
  return [Row(f"(c) SalUn, {config.model.name}, 3 seeds in one program: one epoch", fmt_duration(epoch_s),
              how=(f"{steps} steps of batch {settings.batch_size} (train = retain + forget, "
                   f"forget {sizes.salun_forget:,}), the second epoch timed (first with compilation: "
                   f"{compile_s:.0f} s); the saliency mask took {mask_s:.0f} s with its compilation"))]


# ---------------------------------------------------------------------------------------


def memorization_configs(sizes: Sizes):
  """(name, config) of (a), with --quick's tiny widths."""
  resnet = cifar10_resnet18.get_config()
  resnet.model.name, resnet.model.kwargs = sizes.resnet[0], dict(sizes.resnet[1])
  fast = cifar10_memorization_fast.get_config()
  fast.model.name, fast.model.kwargs = sizes.airbench[0], dict(sizes.airbench[1])
  return [("resnet18", resnet), ("airbench", fast)]


def torch_version() -> Optional[str]:
  try:
    import torch
  except ImportError:
    return None
  return f"{torch.__version__} ({'CUDA ' + str(torch.version.cuda) if torch.cuda.is_available() else 'CPU'})"


def write_results(path: str, rows: List[Row], header: Dict[str, str]) -> str:
  table = ["| measurement | rum-jax | PyTorch loop | ratio | how it was measured |", "|---|---|---|---|---|"]
  table += [f"| {r.what} | {r.ours} | {r.torch} | {r.ratio} | {r.how} |" for r in rows]
  text = ("# GPU benchmark (bench/gpu.py)\n\n" + "\n".join(f"- {k}: {v}" for k, v in header.items())
          + "\n\n" + "\n".join(table) + "\n\nEvery number is extrapolated from the timed epochs or "
          "steps named in its row to the full run; synthetic CIFAR-shaped data (class patterns "
          "plus noise). Regenerate with `python bench/gpu.py` on the GPU machine.\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return "\n".join(table)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
  parser.add_argument("--out", default=None, help="results file (default bench/GPU_RESULTS.md; "
                      "--quick: a temporary file)")
  parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 40; --quick 2)")
  parser.add_argument("--epochs", type=int, default=2, help="timed short epochs of (a) after the compiling one")
  parser.add_argument("--budget", type=float, default=None,
                      help="skip sections that would start after this many seconds (default 450; --quick: none)")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
  args = parser.parse_args(argv)
  sizes = QUICK if args.quick else Sizes()
  args.steps = args.steps or (2 if args.quick else 40)
  args.budget = args.budget or (math.inf if args.quick else 450.0)
  out = args.out or (os.path.join(tempfile.gettempdir(), "rum_jax_gpu_quick.md") if args.quick else RESULTS)
  with_torch = not args.no_torch and torch_version() is not None
  if with_torch and args.quick:
    import torch
    torch.set_num_threads(1)  # a busy 2-core CPU: more threads only spin
  start = time.perf_counter()
  device = jax.devices()[0]
  header = {
      "date": datetime.date.today().isoformat(),
      "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
      "device": f"{len(jax.devices())} x {device.device_kind} ({device.platform})",
      "JAX": f"{jax.__version__} (jaxlib {jaxlib.__version__})",
      "PyTorch": torch_version() or "not installed (baselines skipped)",
      "host": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}",
  }
  if args.quick:
    header["NOTE"] = ("--quick: tiny data, and a tiny MLP in place of JAX's ResNets and airbench: a "
                      "check that the script runs, not a measurement")
  sections: List[tuple] = [(f"(a) memorization, {name}", lambda name=name, c=c: measure_memorization(
      name, c, sizes, args, with_torch)) for name, c in memorization_configs(sizes)]
  sections.append(("(b) continual GEM", lambda: measure_gem(sizes, args, with_torch)))
  resnet = memorization_configs(sizes)[0][1]
  sections.append(("(c) SalUn", lambda: measure_salun(resnet, sizes)))
  rows: List[Row] = []
  for title, run in sections:
    elapsed = time.perf_counter() - start
    if elapsed > args.budget:
      rows.append(Row(title, "not measured", how=f"skipped: {elapsed:.0f} s had passed (--budget {args.budget:g})"))
      continue
    print(f"{title} ...", flush=True)
    rows += run()
  header["device memory"] = (f"allocator peak {fmt_bytes(device_peak())}" if device_peak() is not None
                             else f"host peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB "
                                  f"(this device reports no allocator statistics)")
  header["wall time"] = f"{time.perf_counter() - start:.0f} s"
  table = write_results(out, rows, header)
  print("\n".join(f"{k}: {v}" for k, v in header.items()))
  print(table)
  print(f"written to {out}")


if __name__ == "__main__":
  main()
