"""Continual learning and unlearning runs (continual.py): `run_continual(config, workdir)`.

A run follows a task sequence (`sequences.make_sequence`: A4, ..., or "0,1,2,-2,3") on a
task-incremental split of the data set (`tasks.TaskLayout`: classes shuffled per seed,
`classes_per_task` per task), for `config.num_seeds` seeds at once (one program, spread over
devices). Every step is the one training engine:

- learn task k: `config.continual.epochs` epochs of `engine.train_step` over the task's
  training examples (batch `batch_size`), with the GEM or A-GEM grad_transform against the
  learn buffers of the retained tasks (`methods`), or plain SGD; then the task's learn and
  unlearn buffers are chosen (`buffers`, by memorization scores from
  `config.continual.scores` or, by default, by the one-run confidence proxy recorded while
  the task was learned);
- forget task t: batches of the unlearning method over t's buffers (`buffers.FORGET_BATCHES`)
  until the accuracy on its unlearn buffer (measured before each batch, in
  `stop_mode`) is <= chance + the method's `stop_above_chance`, or `unlearn_max_epochs`
  passes over the buffers; t then leaves the constraint set.

The optimizer is plain SGD, as in GEM, started fresh at every step (learning rate
config.continual.learn.<algorithm>.lr for learning, config.continual.unlearn.<method>.lr for
unlearning). Plain SGD also makes the padding steps of a fixed shape plan (seeds and tasks
with fewer examples) exact no-ops: their gradient is 0.

Written into the work directory (the per-step files after every step):
  config.json                   the resolved config
  checkpoints/                  after every step (resume from the last finished step)
  steps.csv                     per step, seed and task: train/test accuracy and confidence,
                                loss-MIA AUC (train vs test examples of the task), accuracy
                                on the task's unlearn buffer
  progress.json                 the steps done so far and what each did (unlearning
                                iterations, whether the threshold was reached)
  metrics.json / metrics.csv    at the end: ACC, BWT/FWT both ways (paper, GEM's code),
                                CL-ToW at every forget step, CLU_mix after every step,
                                retained/forgotten accuracies; per seed and mean with 95%
                                t-interval
  curves.csv                    CL-ToW and CLU_mix per step, mean and 95% half width
  matrices.npz                  every per-step matrix [seeds, steps + 1, tasks] (row 0: the
                                initial model), task classes, buffers (ORIGINAL indices)
  task_accuracy_heatmap.png, task_curves.png, cl_tow.png
"""
import math
import os
import time
from typing import Any, Dict, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.checks import ConfigError
from rum_jax.continual import buffers, methods, metrics as cl_metrics, plots, sequences, tasks
from rum_jax.continual import config as continual_config
from rum_jax.evaluation import mia
from rum_jax.memorization import files as score_files, proxies
from rum_jax.training import engine, loop, optim, plans
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.config import TRAINING_SECTIONS
from rum_jax.training.setup import Setup, program_key

EVAL_KEYS = ("train_accuracy", "test_accuracy", "train_confidence", "test_confidence",
             "mia_auc", "unlearn_buffer_accuracy")
# Mixed into the seed of the buffer choices so they are independent of every other draw.
_BUFFER_STREAM = 0xB0FF


# ---------------------------------------------------------------------------------------
# Host-side state helpers. States carry padded_seeds rows; padded seeds copy seed 0's layout
# and buffers (their results are discarded).


def _pad(a: np.ndarray, padded: int) -> np.ndarray:
  a = np.asarray(a)
  return np.concatenate([a, np.repeat(a[:1], padded - len(a), axis=0)]) if len(a) < padded else a


def _empty_buffer(num_seeds: int, num_tasks: int, size: int, x: np.ndarray) -> Dict[str, np.ndarray]:
  return {"x": np.zeros((num_seeds, num_tasks, size) + x.shape[1:], x.dtype),
          "y": np.zeros((num_seeds, num_tasks, size), np.int32),
          "weight": np.zeros((num_seeds, num_tasks, size), np.float32),
          "pos": np.zeros((num_seeds, num_tasks, size), np.int32)}


def initial_aux(layout: tasks.TaskLayout, padded: int, params: Any, capacity: tuple,
                train_x: np.ndarray) -> Dict[str, Any]:
  """The per-seed constants of `methods` for a run that has learned nothing yet.

  capacity: (learn buffer size, unlearn buffer size) per task.
  """
  t = layout.num_tasks
  return {"class_task": _pad(layout.class_task(), padded),
          "task_classes": _pad(layout.task_classes(), padded),
          "active": np.zeros((padded, t), bool),
          "forget_task": np.zeros(padded, np.int32),
          "learn": _empty_buffer(padded, t, capacity[0], train_x),
          "unlearn": _empty_buffer(padded, t, capacity[1], train_x),
          "salun_mask": jax.tree.map(lambda p: np.ones(np.shape(p), np.float32), params)}


def _with_aux(states, **updates):
  return states.replace(aux={**states.aux, **updates})


def _task_mask(task_set, num_tasks: int, padded: int) -> np.ndarray:
  mask = np.zeros(num_tasks, bool)
  mask[sorted(task_set)] = True
  return np.tile(mask, (padded, 1))


def _opt_init_program(runner, tx):
  del runner
  return jax.jit(jax.vmap(tx.init))


def _fresh_optimizer(runner, states, tx):
  init = runner.compiled(_opt_init_program, tx)
  return states.replace(opt_state=jax.device_get(init(states.params)))


def _sgd(runner, lr: float):
  """Plain SGD as in GEM; one object per (runner, lr) so programs keyed by it are reused."""
  del runner
  return optim.make_optimizer(lr, 0.0, 0.0)


def _learn_program(runner, forward, tx, algorithm: str, settings: methods.ProjectionSettings, augment: bool):
  """(states, plan, data) -> (states, metrics): one epoch of learning."""
  from rum_jax.data.augment import random_crop_flip
  loss_fn, transform = methods.learn_update(algorithm, settings)
  return loop.make_epoch_fn(runner, forward, tx, loss_fn=loss_fn, grad_transform=transform,
                            augment=random_crop_flip if augment else None)


def _unlearn_program(runner, forward, tx, method_name: str, settings: methods.ProjectionSettings,
                     loss_scale: float, threshold: float, train_mode_check: bool):
  """(states, done, plan, data) -> (states, done, metrics): one pass of unlearning; `done`
  [seeds] marks the seeds that have reached the stop rule (they stay as they are)."""
  updates = methods.unlearn_updates(methods.METHODS.get(method_name), settings, loss_scale)
  step = methods.make_unlearn_step(forward, tx, updates, threshold, train_mode_check)

  def one_seed(state, done, plan, data):
    (state, done), metrics = engine.run_plan((state, done), data, plan, step)
    return state, done, metrics
  return runner.map(one_seed, n_seeded=3, donate=True)


def _saliency_program(runner, forward, method_name: str, loss_scale: float, fraction: float):
  """(states, one-step plan, data) -> SalUn masks of the task being forgotten, from the
  gradient of the method's first objective on the plan's batch."""
  objective = methods.METHODS.get(method_name).updates[0][0]
  loss_fn = methods.OBJECTIVES.get(objective)(loss_scale)

  def one_seed(state, plan, data):
    batch = {name: engine.gather(data, p["idx"][0], p["weight"][0]) for name, p in plan.items()}
    return methods.saliency_mask(forward, state, batch, loss_fn, fraction)
  return runner.map(one_seed, n_seeded=2)


# ---------------------------------------------------------------------------------------
# The run.


class ContinualRun:
  """One run of a task sequence for all seeds (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, setup: Setup):
    c = config.continual
    self.config, self.c, self.setup = config, c, setup
    ds = setup.dataset
    self.runner = setup.runner
    self.num_seeds, self.padded = self.runner.num_seeds, self.runner.padded_seeds
    if c.classes_per_task > ds.num_classes // 2:
      raise ConfigError(f"config.continual.classes_per_task={c.classes_per_task} leaves fewer than 2 tasks of "
                        f"{ds.name}'s {ds.num_classes} classes; use at most {ds.num_classes // 2}")
    num_tasks = c.num_tasks or ds.num_classes // c.classes_per_task
    if num_tasks * c.classes_per_task > ds.num_classes:
      raise ConfigError(f"config.continual.num_tasks={num_tasks} tasks of {c.classes_per_task} "
                        f"classes need {num_tasks * c.classes_per_task} classes; {ds.name} has "
                        f"{ds.num_classes} (num_tasks 0 = {ds.num_classes // c.classes_per_task})")
    # A sequence that forgets a task never learned, or names a task out of range, fails here,
    # before any training.
    self.sequence = sequences.make_sequence(c.sequence.strip(), num_tasks, seed=config.seed)
    self.num_tasks = num_tasks
    self.layout = tasks.TaskLayout.shuffled(ds.num_classes, c.classes_per_task, num_tasks,
                                            self.num_seeds, config.seed)
    self.class_task = self.layout.class_task()
    self.train_pos = self.layout.positions(ds.train.y)  # [S][T]
    self.method = methods.METHODS.get(c.algorithm)
    self.learn_algorithm = continual_config.learn_algorithm(config)
    self.learning = continual_config.learn_section(config)  # lr, buffer sizes
    self.unlearning = continual_config.unlearn_section(config)  # the method's settings
    self.capacity = (self.learning.memories, self.learning.unlearn_memories)
    self.chance = 1.0 / c.classes_per_task
    self.threshold = self.chance + self.unlearning.stop_above_chance
    self.file_scores = self._load_scores()
    self.forward = setup.forward
    self.learn_tx = self.runner.compiled(_sgd, self.learning.lr)
    self.unlearn_tx = self.runner.compiled(_sgd, self.unlearning.lr)
    self.learn_steps = math.ceil(max(len(p) for seed in self.train_pos for p in seed) / c.batch_size)
    self.step_labels = ["init"] + [str(s) for s in self.sequence]

  # -- pieces ------------------------------------------------------------------------------

  def _needs_scores(self) -> bool:
    c = self.c
    return any(kind != "random" and split > 0 for kind, split in (
        (c.learn_buffer_kind, c.learn_buffer_split), (c.unlearn_buffer_kind, c.unlearn_buffer_split)))

  def _load_scores(self) -> Optional[np.ndarray]:
    if not self.c.scores or not self._needs_scores():
      return None
    return score_files.scores_for_split(self.c.scores, self.setup.dataset.train,
                                        self.c.score_key or "memorization")

  @property
  def learn_program(self):
    """(states, plan, data) -> (states, metrics): one epoch of learning, compiled once."""
    c = self.c
    settings = methods.ProjectionSettings(c.margin, c.eps, c.agem_ref_size,
                                          memory_batch_stats=c.memory_batch_stats)
    return self.runner.compiled(_learn_program, self.forward, self.learn_tx, self.learn_algorithm,
                                settings, bool(self.config.data.augment))

  @property
  def unlearn_program(self):
    """(states, done, plan, data) -> (states, done, metrics): one pass of unlearning,
    compiled once."""
    c, u = self.c, self.unlearning
    settings = methods.ProjectionSettings(
        c.unlearn_margin, c.eps, c.agem_ref_size, u.get("alpha", methods.ProjectionSettings.alpha),
        masked=u.salun > 0, memory_batch_stats=c.memory_batch_stats)
    return self.runner.compiled(_unlearn_program, self.forward, self.unlearn_tx, self.method.name,
                                settings, float(u.loss_scale), self.threshold,
                                methods.CHECK_MODES.get(c.stop_mode))

  @property
  def saliency_program(self):
    """(states, one-step plan, data) -> SalUn masks of the task being forgotten."""
    u = self.unlearning
    return self.runner.compiled(_saliency_program, self.forward, self.method.name,
                                float(u.loss_scale), u.salun)

  def initial_states(self):
    states = self.setup.init_states(self.learn_tx, self.config.seed)
    return _with_aux(states, **initial_aux(self.layout, self.padded, states.params, self.capacity,
                                           self.setup.dataset.train.x))

  # -- steps -------------------------------------------------------------------------------

  def learn(self, states, i: int, task: int, retained) -> tuple:
    """Step i learns `task` under the constraints of the `retained` tasks, then fills its buffers."""
    c, ds = self.c, self.setup.dataset
    states = _fresh_optimizer(self.runner, _with_aux(
        states, active=_task_mask(retained, self.num_tasks, self.padded)), self.learn_tx)
    positions = [self.train_pos[s][task] for s in range(self.num_seeds)]

    def plan_fn(epoch):
      rngs = [plans.epoch_rng(self.config.seed, s, i * c.epochs + epoch, "learn")
              for s in range(self.num_seeds)]
      # Every batch full: a task smaller than the largest one repeats a few of its examples
      # in its last batches, so no padding row enters BatchNorm's batch statistics.
      return {"train": plans.stream_plan(positions, c.batch_size, rngs, steps=self.learn_steps, cycle=True)}

    events = proxies.EventSums(self.num_seeds, len(ds.train))
    states, history = loop.fit(states, runner=self.runner, epoch_fn=self.learn_program,
                               data=self.data, plan_fn=plan_fn, epochs=c.epochs,
                               name=f"step {i + 1}/{len(self.sequence)} learn {task}", on_epoch=events)
    states = self._fill_buffers(self.runner.pad(states), i, task, events)
    return states, {"train_loss": history["loss"][-1]}

  def _fill_buffers(self, states, i: int, task: int, events: proxies.EventSums):
    """Chooses the task's learn and unlearn buffers for every seed and writes them into aux."""
    c, tr = self.c, self.setup.dataset.train
    scores = None  # [S, N] memorization scores of the train split, high = more memorized
    if self._needs_scores():
      if self.file_scores is not None:
        scores = np.broadcast_to(self.file_scores, (self.num_seeds, len(tr)))
      else:
        scores = events.proxies()[c.score_key or "confidence"]
    aux = {name: {k: np.array(v) for k, v in states.aux[name].items()} for name in ("learn", "unlearn")}
    for s in range(self.padded):
      src = s if s < self.num_seeds else 0  # padded seeds copy seed 0
      candidates = self.train_pos[src][task]
      rng = np.random.default_rng([self.config.seed, src, i, _BUFFER_STREAM])
      for name, size, kind, split in (("learn", self.capacity[0], c.learn_buffer_kind, c.learn_buffer_split),
                                      ("unlearn", self.capacity[1], c.unlearn_buffer_kind,
                                       c.unlearn_buffer_split)):
        chosen = buffers.select_buffer(candidates, size, kind, split,
                                       None if scores is None else scores[src][candidates], rng)
        for k, v in buffers.memory_slot(chosen, size, tr.x, tr.y).items():
          aux[name][k][s, task] = v
    return _with_aux(states, **aux)

  def forget(self, states, i: int, task: int, retained) -> tuple:
    """Step i forgets `task` over its buffers, projected against the `retained` tasks, until
    its unlearn buffer's accuracy is <= the threshold or after unlearn_max_epochs passes."""
    c, u = self.c, self.unlearning
    states = _with_aux(states, active=_task_mask(retained, self.num_tasks, self.padded),
                       forget_task=np.full(self.padded, task, np.int32))
    states = _fresh_optimizer(self.runner, states, self.unlearn_tx)
    real = lambda buf, s: buf["pos"][s, task][buf["weight"][s, task] > 0]
    learn = [real(states.aux["learn"], s) for s in range(self.num_seeds)]
    unlearn = [real(states.aux["unlearn"], s) for s in range(self.num_seeds)]
    batches = buffers.FORGET_BATCHES.get(c.forget_batches)

    def plan_of(p):
      rngs = [plans.epoch_rng(self.config.seed, s, i * c.unlearn_max_epochs + p, "forget")
              for s in range(self.num_seeds)]
      return batches(learn, unlearn, u.batch_size, rngs, self.capacity)

    plan = plan_of(0)
    if u.salun > 0:
      mask_plan = buffers.SALIENCY_BATCHES.get(c.salun_batch)(plan, learn, unlearn, self.capacity)
      masks = self.saliency_program(self.runner.shard(states), self.runner.shard(mask_plan), self.data)
      states = _with_aux(states, salun_mask=self.runner.to_host(masks, keep_padding=True))
    device_states = self.runner.shard(states)
    done = self.runner.shard(np.zeros(self.num_seeds, bool))
    iterations = np.zeros(self.num_seeds, np.int64)
    for p in range(c.unlearn_max_epochs):
      if p > 0:
        plan = plan_of(p)
      device_states, done, m = self.unlearn_program(device_states, done, self.runner.shard(plan), self.data)
      iterations += self.runner.to_host(m)["updated"].sum(1).astype(np.int64)
      if self.runner.to_host(done).all():  # every seed reached the threshold
        break
    reached = self.runner.to_host(done)
    states = self.runner.to_host(device_states, keep_padding=True)
    loop.check_finite_weights(states.params, self.num_seeds, f"forgetting task {task} (step {i + 1})",
                              "the checkpoint of the previous step is kept. Lower "
                              f"config.continual.unlearn.{self.method.name}.lr.")
    return states, {"iterations": iterations.tolist(), "reached_threshold": reached.tolist()}

  # -- evaluation --------------------------------------------------------------------------

  def evaluate(self, states, i: int) -> Dict[str, list]:
    """Per-seed, per-task metrics of the model after step i (-1: initial model)."""
    ds, bs = self.setup.dataset, self.config.train.eval_batch_size
    out = {}
    per_split = {}
    for split in ("train", "test"):
      data = ds.split(split)
      logits = loop.predict(self.runner, self.forward, states, data.x, bs)
      per_split[split] = tasks.evaluate_tasks(logits, data.y, self.class_task, self.num_tasks)
      out[f"{split}_accuracy"] = per_split[split]["accuracy"]
      out[f"{split}_confidence"] = per_split[split]["confidence"]
    auc = np.full((self.num_seeds, self.num_tasks), np.nan)
    buffer_acc = np.full((self.num_seeds, self.num_tasks), np.nan)
    unlearn = states.aux["unlearn"]
    for s in range(self.num_seeds):
      for t in range(self.num_tasks):
        real = unlearn["weight"][s, t] > 0
        if real.any():
          buffer_acc[s, t] = per_split["train"]["correct"][s, unlearn["pos"][s, t][real]].mean()
        if self.c.mia:
          members = per_split["train"]["loss"][s][per_split["train"]["task"][s] == t]
          outsiders = per_split["test"]["loss"][s][per_split["test"]["task"][s] == t]
          if min(len(members), len(outsiders)) >= 2:
            auc[s, t] = mia.loss_mia_auc(members, outsiders, seed=(i + 1) * 1000 + s)
    out["mia_auc"] = auc
    out["unlearn_buffer_accuracy"] = buffer_acc
    return {k: np.asarray(v, np.float64).tolist() for k, v in out.items()}

  # -- outputs -----------------------------------------------------------------------------

  def write_progress(self, workdir: str, record: Dict[str, Any]) -> None:
    rows = []
    for r, ev in enumerate(record["evals"]):
      for s in range(self.num_seeds):
        for t in range(self.num_tasks):
          rows.append({"step": r, "action": self.step_labels[r], "seed": s, "task": t,
                       **{k: ev[k][s][t] for k in EVAL_KEYS}})
    io.write_csv(os.path.join(workdir, "steps.csv"), rows)
    io.write_json(os.path.join(workdir, "progress.json"), {
        "sequence": sequences.format_sequence(self.sequence), "steps_done": len(record["steps"]),
        "num_steps": len(self.sequence), "threshold": self.threshold, "steps": record["steps"]})

  def matrices(self, record: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Each eval key as [S, steps + 1, T] (row 0: the initial model)."""
    return {k: np.stack([np.asarray(ev[k]) for ev in record["evals"]], axis=1) for k in EVAL_KEYS}

  def final_metrics(self, record: Dict[str, Any]) -> Dict[str, Any]:
    """Per-seed CL metrics of the whole sequence, and their means with 95% intervals."""
    m = self.matrices(record)
    seq = self.sequence
    forget_rows = [i for i, step in enumerate(seq) if step.is_forget]
    retained, forgotten = (sorted(x) for x in sequences.task_sets(seq)[-1])
    learned_at = sequences.last_learned_steps(seq)[-1]
    learned = len({step.task for step in seq if step.is_learn})
    per_seed = []
    for s in range(self.num_seeds):
      train, test = m["train_accuracy"][s, 1:], m["test_accuracy"][s, 1:]
      entry: Dict[str, Any] = {}
      if learned >= 2:
        entry.update(cl_metrics.transfer_metrics(test, seq, m["test_accuracy"][s, 0]))
      if forget_rows:
        tow = cl_metrics.cl_tow(train, test, seq, m["train_accuracy"][s, 0], m["test_accuracy"][s, 0])
        entry["cl_tow"] = tow[forget_rows].tolist()
        entry["final_cl_tow"] = float(tow[forget_rows[-1]])
        entry["mean_cl_tow"] = float(np.mean(tow[forget_rows]))
      clu = cl_metrics.clu(train, seq, self.chance, self.c.clu_beta)
      entry["clu_mix"] = clu.tolist()
      entry["final_clu_mix"] = float(clu[-1])
      mean = lambda values: float(np.mean(values)) if len(values) else float("nan")
      entry["final_retained_test_accuracy"] = mean(test[-1, retained])
      entry["retained_test_accuracy_after_learning"] = mean([test[learned_at[k], k] for k in retained])
      if forget_rows and forget_rows[0] > 0:
        # A4: task 0 after all tasks are learned, the thesis' "task 0 at step 19".
        entry["retained_test_accuracy_before_forgetting"] = mean(test[forget_rows[0] - 1, retained])
      entry["final_forgotten_test_accuracy"] = mean(test[-1, forgotten])
      entry["final_forgotten_train_accuracy"] = mean(train[-1, forgotten])
      per_seed.append(entry)
    return {"sequence": sequences.format_sequence(seq), "algorithm": self.c.algorithm,
            "learn_algorithm": self.learn_algorithm, "num_tasks": self.num_tasks,
            "chance": self.chance, "threshold": self.threshold,
            "forget_steps": forget_rows, "retained_tasks": retained, "forgotten_tasks": forgotten,
            "per_seed": per_seed, "summary": results.summarize(per_seed)}

  def write_results(self, workdir: str, record: Dict[str, Any], states) -> Dict[str, Any]:
    final = self.final_metrics(record)
    io.write_json(os.path.join(workdir, "metrics.json"), final)
    io.write_csv(os.path.join(workdir, "metrics.csv"), results.seed_rows(final["per_seed"], final["summary"]))
    summary = final["summary"]
    tow_rows = final["forget_steps"]
    curve_rows = []
    for i, label in enumerate(self.step_labels[1:]):
      row = {"step": i + 1, "action": label, "clu_mix_mean": summary["clu_mix"]["mean"][i],
             "clu_mix_ci95": summary["clu_mix"]["ci95"][i]}
      if i in tow_rows:
        j = tow_rows.index(i)
        row.update(cl_tow_mean=summary["cl_tow"]["mean"][j], cl_tow_ci95=summary["cl_tow"]["ci95"][j])
      curve_rows.append(row)
    io.write_csv(os.path.join(workdir, "curves.csv"), curve_rows)
    m = self.matrices(record)
    index = self.setup.dataset.train.index
    io.write_npz(os.path.join(workdir, "matrices.npz"), **m, step_labels=np.array(self.step_labels),
                 task_classes=self.layout.classes,
                 learn_buffer_index=index[states.aux["learn"]["pos"][:self.num_seeds]],
                 learn_buffer_weight=states.aux["learn"]["weight"][:self.num_seeds],
                 unlearn_buffer_index=index[states.aux["unlearn"]["pos"][:self.num_seeds]],
                 unlearn_buffer_weight=states.aux["unlearn"]["weight"][:self.num_seeds])
    shown = final["sequence"] if len(self.sequence) <= 12 else self.c.sequence
    title = (f"{self.setup.dataset.name}: {shown}\n"
             f"{self.c.algorithm} (learning: {self.learn_algorithm}), {self.num_seeds} seeds")
    mean, half = results.mean_ci(m["test_accuracy"])
    plots.accuracy_heatmap(mean, self.step_labels,
                           os.path.join(workdir, "task_accuracy_heatmap.png"), title)
    plots.task_curves(mean, half, self.step_labels, [r + 1 for r in tow_rows],
                      os.path.join(workdir, "task_curves.png"), title)
    tow = summary.get("cl_tow", {"mean": [], "ci95": []})
    as_array = lambda values: np.asarray(values, float)
    plots.unlearning_scores(self.step_labels, [r + 1 for r in tow_rows], as_array(tow["mean"]),
                            as_array(tow["ci95"]), as_array(summary["clu_mix"]["mean"]),
                            as_array(summary["clu_mix"]["ci95"]),
                            os.path.join(workdir, "cl_tow.png"), title)
    return final

  # -- driver ------------------------------------------------------------------------------

  def program_key(self, states) -> Dict[str, Any]:
    """What decides this run's checkpoints (`Checkpointer.claim`)."""
    sections = {k: self.config[k].to_dict() if isinstance(self.config[k], ml_collections.ConfigDict)
                else self.config[k] for k in ("seed", "train", "continual", "algorithm", "sequence")
                if k in self.config}
    return program_key(self.setup, program="continual", **sections, scores=tree_digest(self.file_scores),
                       initial_states=tree_digest(self.runner.unpad(states)))

  def run(self, workdir: str) -> Dict[str, Any]:
    self.data = self.setup.train_data()
    states = self.initial_states()
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
      # Saved without padding seeds (their count depends on the devices): any device count resumes.
      checkpointer.claim(self.program_key(states))
      restored = checkpointer.restore(self.runner.unpad(states))
      if restored is not None:
        done, states, record = restored
        states = self.runner.pad(states)
        logging.info("[continual] resumed after step %d/%d (%s)", done, len(self.sequence),
                     checkpointer.directory)
      else:
        done, record = 0, {"evals": [self.evaluate(states, -1)], "steps": []}
      sets = sequences.task_sets(self.sequence)
      t0 = time.time()
      for i in range(done, len(self.sequence)):
        step = self.sequence[i]
        t_step = time.time()
        if step.is_learn:
          retained = sets[i - 1][0] if i > 0 else frozenset()
          states, info = self.learn(states, i, step.task, retained)
        else:
          states, info = self.forget(states, i, step.task, sets[i][0])
        evaluation = self.evaluate(states, i)
        record["evals"].append(evaluation)
        record["steps"].append({"step": i + 1, "action": str(step),
                                "seconds": time.time() - t_step, **info})
        checkpointer.save(i + 1, self.runner.unpad(states), record)
        self.write_progress(workdir, record)
        elapsed = time.time() - t0
        test = np.nanmean(np.asarray(evaluation["test_accuracy"]), axis=0)
        logging.info("[continual] step %d/%d (%s) %.1fs, eta %.0fs: test accuracy per task %s%s",
                     i + 1, len(self.sequence), step, time.time() - t_step,
                     elapsed / (i + 1 - done) * (len(self.sequence) - i - 1),
                     np.array2string(test, precision=2, separator=" "),
                     f", unlearning iterations {info['iterations']}" if step.is_forget else "")
    finally:
      checkpointer.close()
    final = self.write_results(workdir, record, states)
    logging.info("[continual] %s", {k: round(v["mean"], 4) for k, v in final["summary"].items()
                                    if isinstance(v.get("mean"), float)})
    return final


# ---------------------------------------------------------------------------------------
# Comparing finished runs (one row per run, e.g. the thesis presets of every method).

COMPARISON_COLUMNS = (
    ("ACC after learning", "acc"),
    ("final CL-ToW", "final_cl_tow"),
    ("mean CL-ToW", "mean_cl_tow"),
    ("final CLU_mix", "final_clu_mix"),
    ("retained, before forgetting", "retained_test_accuracy_before_forgetting"),
    ("retained, final", "final_retained_test_accuracy"),
    ("forgotten, final", "final_forgotten_test_accuracy"),
)


def _ranks(values) -> list:
  """1 = the largest value."""
  order = np.argsort(-np.asarray(values, float), kind="stable")
  ranks = np.empty(len(order), int)
  ranks[order] = np.arange(1, len(order) + 1)
  return ranks.tolist()


def compare_runs(runs, out_prefix: str, title: str, reference=None, failed=None) -> str:
  """A table and a figure of finished continual runs, one row per run.

  Args:
    runs: [(label, metrics)] with each run's metrics.json contents (`run_continual`).
    out_prefix: writes <out_prefix>.md, .csv (means and 95% half widths) and .png.
    title: the table's heading and the figure's title.
    reference: optional {label: {"final_cl_tow": x, "mean_cl_tow": y}}, published values
      shown beside ours with both rankings by final CL-ToW.
    failed: optional {label: reason} of runs that did not finish, listed below the table.

  Returns:
    The markdown text.
  """
  header = ["run"] + [name for name, _ in COMPARISON_COLUMNS]
  rows, csv_rows = [], []
  for label, metrics in runs:
    summary = metrics["summary"]
    rows.append([label] + [results.cell(summary[key], scale=1.0, digits=3) if key in summary else "-"
                           for _, key in COMPARISON_COLUMNS])
    csv_row = {"run": label, "seeds": len(metrics["per_seed"])}
    for _, key in COMPARISON_COLUMNS:
      if key in summary:
        csv_row[f"{key}_mean"] = summary[key]["mean"]
        csv_row[f"{key}_ci95"] = summary[key]["ci95"]
    csv_rows.append(csv_row)
  seeds = sorted({len(m["per_seed"]) for _, m in runs})
  text = (f"### {title}\n\nMeans over {', '.join(map(str, seeds))} seeds with 95% t-intervals; "
          "accuracies are test accuracies (fractions).\n\n" + results.markdown_table(header, rows))
  for label, reason in (failed or {}).items():
    text += f"\n{label}: not finished, {reason}\n"
  if reference:
    labels = [label for label, _ in runs if label in reference]
    ours = [dict(runs)[label]["summary"]["final_cl_tow"]["mean"] for label in labels]
    theirs = [reference[label]["final_cl_tow"] for label in labels]
    rank_rows = [[label, f"{o:.3f}", r_o, f"{t:.3f}", f"{reference[label]['mean_cl_tow']:.3f}", r_t]
                 for label, o, r_o, t, r_t in zip(labels, ours, _ranks(ours), theirs, _ranks(theirs))]
    text += ("\nRanking by final CL-ToW, ours against the thesis' (its Split CIFAR-100 A4 runs):\n\n"
             + results.markdown_table(["run", "final CL-ToW (ours)", "rank", "final CL-ToW (thesis)",
                                       "mean CL-ToW (thesis)", "rank (thesis)"], rank_rows))
  io.write_text(out_prefix + ".md", text)
  io.write_csv(out_prefix + ".csv", csv_rows)
  first = runs[0][1]
  steps = first["sequence"].split(",")
  plots.comparison([(label, m["summary"]) for label, m in runs], [steps[i] for i in first["forget_steps"]],
                   first["chance"], out_prefix + ".png", title)
  return text


def run_continual(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
                  setup: Optional[Setup] = None) -> Dict[str, Any]:
  """Runs config.continual's task sequence for config.num_seeds seeds; see the module docstring.

  Args:
    config: the run's config (configs/continual_*.py), validated.
    workdir: where checkpoints and results go; a finished or killed run with the same config
      is resumed after its last finished step.
    overwrite: discard a run in `workdir` made with another config.
    setup: data, model and seed runner; built from the config when None (tests pass a small
      one).

  Returns:
    The contents of metrics.json.
  """
  setup = setup or Setup.create(config)
  run = ContinualRun(config, setup)  # refuses a bad sequence or score file before any work
  workdir_lib.prepare(workdir, config, overwrite, clear=("checkpoints",),
                      sections=TRAINING_SECTIONS + ("continual", "algorithm", "sequence"),
                      outputs=("steps.csv", "progress.json"))
  return run.run(workdir)
