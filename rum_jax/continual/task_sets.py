"""Continual benchmarks built from one data set: the task builders (config.continual.tasks).

A builder turns a data set into a `TaskSet`: the splits a run trains and evaluates on, the
classes of every task (`tasks.TaskLayout`) and the task of every row of every split. Three
are registered in `TASK_BUILDERS`:

- "split" (Split CIFAR-100 / Split MNIST, Lopez-Paz & Ranzato 2017, Sec. 5): the splits as
  they are; task k is the k-th block of `classes_per_task` classes, shuffled per seed; the
  task of a row is the task of its class. Examples of a task are classified among its own
  classes only (`tasks.mask_logits`).
- "permuted" (GEM's MNIST Permutations): task k holds `samples_per_task` training examples
  (0: the whole train split) with their input features permuted by the fixed random
  permutation pi_k, and the whole test split permuted by the same pi_k. Every task has every
  class and one shared head (no logit is masked); chance is 1 / num_classes.
- "rotated" (GEM's MNIST Rotations): as "permuted" with each image rotated by a fixed angle
  theta_k drawn uniformly from the k-th of `num_tasks` equal bins of [0, 90) degrees (GEM's
  `mnist_rotations.py` range), bilinear, the same image size, corners filled with the
  background (`Dataset.pad_value`, else the darkest input value). Image data only
  ([N, H, W, C]); 1-D signals such as MNIST-1D are refused.

Every seed draws its own benchmark: its class order (split), its permutations or angles and
its tasks' training subsets (permuted, rotated), each from the run's base seed and the seed's
index, so the intervals over seeds include the draw of the benchmark (GEM draws one set of
permutations into its data file; a run here is many draws). The stacked splits hold one block
of rows per seed and task (row r of seed s's task k block is example `index[r]` of the
original data set); `TaskSet.rows(split)` are each seed's rows and `row_task` their tasks, so
everything downstream (buffers, plans, per-task evaluation) sees rows and their tasks, nothing
else.
"""
import dataclasses
from typing import Callable, Dict, List, Optional

import numpy as np
from scipy import ndimage

from rum_jax.continual.tasks import TaskLayout
from rum_jax.data.base import Dataset, Split
from rum_jax.registry import Registry

SPLITS = ("train", "val", "test")
# GEM's rotation range (mnist_rotations.py: --min_rot 0 --max_rot 90), in degrees.
ROTATION_RANGE = (0.0, 90.0)
# Mixed into the seeds of the transforms and the per-task subsets so they are independent of
# every other draw.
_TRANSFORM_STREAM = 0x7E45
_SUBSET_STREAM = 0x5AB5


@dataclasses.dataclass(frozen=True)
class TaskSet:
  """The data of a continual benchmark.

  dataset: the splits the run trains and evaluates on (stacked per task for the
    transformed benchmarks).
  layout: the classes of every task for every seed.
  row_task: split name -> int [S, N] task of each row of that split for each seed (-1: in
    none of the seed's tasks, e.g. another seed's block).
  """
  dataset: Dataset
  layout: TaskLayout
  row_task: Dict[str, np.ndarray]
  seed_rows: Optional[Dict[str, np.ndarray]] = None

  def rows(self, split: str) -> np.ndarray:
    """int [S, n]: the rows of `split` each seed is evaluated on: its own blocks of a stacked
    benchmark, every row of a split one (rows in none of its tasks are then ignored)."""
    if self.seed_rows is not None:
      return self.seed_rows[split]
    num_seeds, n = self.row_task[split].shape
    return np.broadcast_to(np.arange(n, dtype=np.int32), (num_seeds, n))

  @property
  def chance(self) -> float:
    """Accuracy of a uniform guess among a task's classes."""
    return 1.0 / self.layout.classes_per_task

  def positions(self, split: str = "train") -> List[List[np.ndarray]]:
    """positions[s][t]: rows of `split` that belong to task t for seed s."""
    return [[np.flatnonzero(row == t) for t in range(self.layout.num_tasks)]
            for row in self.row_task[split]]


Builder = Callable[..., TaskSet]
TASK_BUILDERS: Registry[Builder] = Registry("task builder")


@TASK_BUILDERS.register("split")
def split_tasks(dataset: Dataset, num_tasks: int, classes_per_task: int, samples_per_task: int,
                num_seeds: int, seed: int) -> TaskSet:
  """Class-incremental blocks of `classes_per_task` classes (0 tasks: all of them)."""
  if samples_per_task:
    raise ValueError("samples_per_task is for the permuted and rotated tasks; split tasks hold "
                     "every example of their classes: set config.continual.samples_per_task=0")
  if classes_per_task > dataset.num_classes // 2:
    raise ValueError(f"classes_per_task={classes_per_task} leaves fewer than 2 tasks of "
                     f"{dataset.name}'s {dataset.num_classes} classes; use at most "
                     f"{dataset.num_classes // 2}")
  num_tasks = num_tasks or dataset.num_classes // classes_per_task
  if num_tasks * classes_per_task > dataset.num_classes:
    raise ValueError(f"num_tasks={num_tasks} tasks of {classes_per_task} classes need "
                     f"{num_tasks * classes_per_task} classes; {dataset.name} has "
                     f"{dataset.num_classes} (num_tasks 0 = {dataset.num_classes // classes_per_task})")
  layout = TaskLayout.shuffled(dataset.num_classes, classes_per_task, num_tasks, num_seeds, seed)
  class_task = layout.class_task()
  row_task = {name: class_task[:, dataset.split(name).y] for name in SPLITS}
  return TaskSet(dataset, layout, row_task)


def _stack(dataset: Dataset, transforms: List[List[Callable[[np.ndarray], np.ndarray]]],
           samples_per_task: int, seed: int) -> TaskSet:
  """One block of rows per seed s and transform k (= task k of seed s, `transforms[s][k]`): the
  train rows a subset of `samples_per_task` examples drawn per seed and task (0: all), val and
  test whole."""
  num_seeds, num_tasks = len(transforms), len(transforms[0])
  n_train = len(dataset.train)
  if samples_per_task > n_train:
    raise ValueError(f"samples_per_task={samples_per_task} is more than the {n_train} training "
                     f"examples of {dataset.name}; use at most {n_train} (0 = all)")
  splits, row_task, seed_rows = {}, {}, {}
  for name in SPLITS:
    split = dataset.split(name)
    blocks, owners = [], []
    for s, per_seed in enumerate(transforms):
      for k, transform in enumerate(per_seed):
        if name == "train" and samples_per_task:
          rng = np.random.default_rng([seed, s, k, _SUBSET_STREAM])
          split_k = split.subset(np.sort(rng.choice(n_train, samples_per_task, replace=False)))
        else:
          split_k = split
        blocks.append(Split(transform(split_k.x).astype(split.x.dtype), split_k.y, split_k.index))
        owners.append((s, k))
    splits[name] = Split(np.concatenate([b.x for b in blocks]), np.concatenate([b.y for b in blocks]),
                         np.concatenate([b.index for b in blocks]))
    sizes = [len(b) for b in blocks]
    block_seed = np.repeat([s for s, _ in owners], sizes)
    block_task = np.repeat([k for _, k in owners], sizes).astype(np.int32)
    row_task[name] = np.stack([np.where(block_seed == s, block_task, -1) for s in range(num_seeds)])
    seed_rows[name] = np.stack([np.flatnonzero(block_seed == s) for s in range(num_seeds)]).astype(
        np.int32).reshape(num_seeds, -1)
  all_classes = np.broadcast_to(np.arange(dataset.num_classes, dtype=np.int32),
                                (num_seeds, num_tasks, dataset.num_classes))
  stacked = dataclasses.replace(dataset, **splits)
  return TaskSet(stacked, TaskLayout(np.ascontiguousarray(all_classes), dataset.num_classes), row_task, seed_rows)


def _check_shared_head(name: str, num_tasks: int) -> None:
  if num_tasks < 1:
    raise ValueError(f"{name} tasks need config.continual.num_tasks >= 1 (any number: each "
                     f"task is one more transform of the whole data set); got {num_tasks}")


def permutations(num_features: int, num_tasks: int, seed: int, seed_index: int) -> np.ndarray:
  """int [T, F]: task k's fixed permutation of the flattened input features, for one seed."""
  rng = np.random.default_rng([seed, seed_index, _TRANSFORM_STREAM])
  return np.stack([rng.permutation(num_features) for _ in range(num_tasks)])


def permute_features(x: np.ndarray, permutation: np.ndarray) -> np.ndarray:
  """x [N, ...] with its flattened features reordered: out.flat[i] = x.flat[permutation[i]]."""
  flat = x.reshape(len(x), -1)
  return flat[:, permutation].reshape(x.shape)


@TASK_BUILDERS.register("permuted")
def permuted_tasks(dataset: Dataset, num_tasks: int, classes_per_task: int, samples_per_task: int,
                   num_seeds: int, seed: int) -> TaskSet:
  """GEM's MNIST Permutations on any data set: one feature permutation per task."""
  del classes_per_task  # every task has every class
  _check_shared_head("permuted", num_tasks)
  features = int(np.prod(dataset.input_shape))
  transforms = [[lambda x, p=p: permute_features(x, p) for p in permutations(features, num_tasks, seed, s)]
                for s in range(num_seeds)]
  return _stack(dataset, transforms, samples_per_task, seed)


def rotation_angles(num_tasks: int, seed: int, seed_index: int) -> np.ndarray:
  """float [T]: task k's angle for one seed, uniform in the k-th of T equal bins of ROTATION_RANGE."""
  low, high = ROTATION_RANGE
  width = (high - low) / num_tasks
  u = np.random.default_rng([seed, seed_index, _TRANSFORM_STREAM]).uniform(size=num_tasks)
  return low + (np.arange(num_tasks) + u) * width


def rotate_images(x: np.ndarray, degrees: float, background: np.ndarray) -> np.ndarray:
  """Images [N, H, W, C] rotated by `degrees` about their centre (bilinear, same size; 90
  degrees is exactly np.rot90 over the H, W axes), each channel's outside filled with
  `background[c]`."""
  channels = [ndimage.rotate(x[..., c], degrees, axes=(1, 2), reshape=False, order=1,
                             mode="constant", cval=float(background[c]))
              for c in range(x.shape[-1])]
  return np.stack(channels, axis=-1)


@TASK_BUILDERS.register("rotated")
def rotated_tasks(dataset: Dataset, num_tasks: int, classes_per_task: int, samples_per_task: int,
                  num_seeds: int, seed: int) -> TaskSet:
  """GEM's MNIST Rotations on an image data set: one fixed rotation per task."""
  del classes_per_task  # every task has every class
  _check_shared_head("rotated", num_tasks)
  shape = dataset.input_shape
  if len(shape) != 3 or min(shape[:2]) < 2:
    raise ValueError(f"rotated tasks need images [H, W, C]; {dataset.name}'s inputs have shape "
                     f"{shape} (not an image): use config.continual.tasks='permuted'")
  background = (np.asarray(dataset.pad_value, np.float64) if dataset.pad_value is not None
                else dataset.train.x.min(axis=(0, 1, 2)))
  transforms = [[lambda x, a=a: rotate_images(x, a, background) for a in rotation_angles(num_tasks, seed, s)]
                for s in range(num_seeds)]
  return _stack(dataset, transforms, samples_per_task, seed)


def build(name: str, dataset: Dataset, num_tasks: int, classes_per_task: int,
          samples_per_task: int, num_seeds: int, seed: int) -> TaskSet:
  """The TaskSet of the builder called `name` (an entry of TASK_BUILDERS)."""
  return TASK_BUILDERS.get(name)(dataset, num_tasks, classes_per_task, samples_per_task,
                                 num_seeds, seed)
