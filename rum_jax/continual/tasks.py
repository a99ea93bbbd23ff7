"""Which classes form each task, logit masking and per-task evaluation.

Split CIFAR-100 / Split digits (Lopez-Paz & Ranzato 2017, Sec. 5): the
classes are shuffled once per run and seed, and task k is the k-th block of
`classes_per_task` of them. The model keeps ONE output per class of the data set; the task
identity is known at train and test time, so an example of task k is classified among task
k's classes only ("logit masking": the other logits are set to a large negative number, the
same as a softmax over the task's slice of the output).

`class_task[c]` names the first task holding class c (-1 for classes left out when the tasks
do not use all of them), and `task_classes[k, c]` is True when class c belongs to task k. Both
are per-seed arrays; inside the jitted step every example is masked with ITS OWN task's
classes, `task_classes[class_task[y]]`, so a batch that mixes tasks (A-GEM's reference batch)
is handled like a batch of one task. That lookup is exact whenever all tasks holding a class
have the same classes: split tasks (one task per class) and the shared-head permuted and
rotated tasks (every task has every class, `task_sets`) both are so.
"""
import dataclasses
from typing import Dict

import jax.numpy as jnp
import numpy as np
from scipy import special

# Logit given to classes outside an example's task. Finite (not -inf) so no 0 * inf appears
# in gradients; exp(-1e9 - max) is exactly 0 in float32, so the softmax ignores them.
MASKED_LOGIT = -1e9

# Mixed into the seed of the class shuffle so it is independent of every other draw.
_LAYOUT_STREAM = 0x7A5C


@dataclasses.dataclass(frozen=True)
class TaskLayout:
  """The class blocks of every task for every seed.

  classes: int [S, T, c], the classes of task t for seed s.
  num_classes: classes of the data set (outputs of the model).
  """
  classes: np.ndarray
  num_classes: int

  @classmethod
  def shuffled(cls, num_classes: int, classes_per_task: int, num_tasks: int, num_seeds: int,
               base_seed: int) -> "TaskLayout":
    """Seed s shuffles the classes with its own generator and cuts them into tasks."""
    if classes_per_task < 1 or num_tasks < 1 or num_tasks * classes_per_task > num_classes:
      raise ValueError(
          f"{num_tasks} tasks of {classes_per_task} classes need {num_tasks * classes_per_task} "
          f"classes; the data set has {num_classes}")
    blocks = []
    for s in range(num_seeds):
      order = np.random.default_rng([base_seed, s, _LAYOUT_STREAM]).permutation(num_classes)
      blocks.append(order[:num_tasks * classes_per_task].reshape(num_tasks, classes_per_task))
    return cls(np.stack(blocks).astype(np.int32), num_classes)

  @property
  def num_seeds(self) -> int:
    return self.classes.shape[0]

  @property
  def num_tasks(self) -> int:
    return self.classes.shape[1]

  @property
  def classes_per_task(self) -> int:
    return self.classes.shape[2]

  def class_task(self) -> np.ndarray:
    """int32 [S, C]: the first task holding each class, -1 for classes in no task."""
    out = np.full((self.num_seeds, self.num_classes), -1, np.int32)
    for s in range(self.num_seeds):
      for t in reversed(range(self.num_tasks)):
        out[s, self.classes[s, t]] = t
    return out

  def task_classes(self) -> np.ndarray:
    """bool [S, T, C]: True where class c belongs to task t."""
    out = np.zeros((self.num_seeds, self.num_tasks, self.num_classes), bool)
    for s in range(self.num_seeds):
      for t in range(self.num_tasks):
        out[s, t, self.classes[s, t]] = True
    return out


def mask_logits(logits: jnp.ndarray, labels: jnp.ndarray, class_task: jnp.ndarray,
                task_classes: jnp.ndarray) -> jnp.ndarray:
  """Logits of each example restricted to its own task's classes (jittable).

  Args:
    logits: [B, C] model outputs.
    labels: [B] labels; example i belongs to task class_task[labels[i]].
    class_task: int [C] task of each class (one seed's `TaskLayout.class_task`).
    task_classes: bool [T, C] (one seed's `TaskLayout.task_classes`).

  Returns:
    [B, C] logits with MASKED_LOGIT outside each example's task.
  """
  # -1 (no task) never reaches a batch; the clip only keeps the index in range.
  tasks = jnp.clip(jnp.asarray(class_task)[labels], 0)
  return jnp.where(jnp.asarray(task_classes)[tasks], logits, MASKED_LOGIT)


def evaluate_tasks(logits: np.ndarray, labels: np.ndarray, row_task: np.ndarray,
                   task_classes: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-task accuracy and confidence of every seed, task-incremental (masked) predictions.

  For seed s and example i of task k = row_task[s, i], the prediction is the argmax of
  the logits over task k's classes, the confidence is max_c softmax(masked logits)_c (the
  thesis' `eval_task`) and the loss is the cross-entropy over the same slice.

  Args:
    logits: [S, N, C] eval-mode logits.
    labels: [N] labels, or [S, N] when every seed has its own examples.
    row_task: int [S, N] task of each example (-1: none; `task_sets.TaskSet.row_task`).
    task_classes: bool [S, T, C] (`TaskLayout.task_classes`).

  Returns:
    {"accuracy": [S, T], "confidence": [S, T], "loss": [S, N] per-example cross-entropy
    (NaN for examples in no task), "correct": bool [S, N], "task": int [S, N] task of
    each example}; a task without examples gets NaN accuracy and confidence.
  """
  logits = np.asarray(logits, np.float64)
  num_seeds, num_tasks = logits.shape[0], task_classes.shape[1]
  tasks = np.asarray(row_task)  # [S, N]
  labels = np.broadcast_to(np.asarray(labels), tasks.shape)
  in_task = np.stack([task_classes[s][np.clip(tasks[s], 0, None)] for s in range(num_seeds)])
  masked = np.where(in_task, logits, -np.inf)
  log_p = special.log_softmax(np.where(tasks[..., None] >= 0, masked, 0.0), axis=-1)
  correct = np.argmax(masked, axis=-1) == labels
  confidence = np.exp(np.max(log_p, axis=-1))
  loss = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  loss = np.where(tasks >= 0, loss, np.nan)
  acc = np.full((num_seeds, num_tasks), np.nan)
  conf = np.full((num_seeds, num_tasks), np.nan)
  for s in range(num_seeds):
    for t in range(num_tasks):
      rows = tasks[s] == t
      if rows.any():
        acc[s, t] = correct[s, rows].mean()
        conf[s, t] = confidence[s, rows].mean()
  return {"accuracy": acc, "confidence": conf, "loss": loss, "correct": correct, "task": tasks}


def buffer_accuracy(correct: np.ndarray, positions: np.ndarray, weight: np.ndarray,
                    num_seeds: int) -> np.ndarray:
  """[S, T] accuracy on each task's buffer (NaN for an empty one).

  correct: bool [S, N] per train example (`evaluate_tasks`); positions / weight: the buffers'
  train positions and real-row weights [padded S, T, M].
  """
  out = np.full((num_seeds, positions.shape[1]), np.nan)
  for s in range(num_seeds):
    for t in range(positions.shape[1]):
      real = weight[s, t] > 0
      if real.any():
        out[s, t] = correct[s, positions[s, t][real]].mean()
  return out
