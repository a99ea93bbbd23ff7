"""One continual run's computation: its tasks, its sequence, and the steps that learn, forget
and measure, for all seeds at once (`pipelines.continual` owns its files and resumes it).

- learn task k: `config.continual.epochs` epochs of `engine.train_step` over the task's
  training examples (batch `batch_size`), with the learning algorithm's grad_transform
  against the learn buffers of the retained tasks (`methods.LEARN_ALGORITHMS`); then the
  task's learn and unlearn buffers are chosen (`buffers`, by memorization scores from
  `config.continual.scores` or, by default, by the one-run confidence proxy recorded while
  the task was learned);
- forget task t: batches of the continual method (`methods.CONTINUAL_METHODS`) over t's
  buffers (`buffers.FORGET_BATCHES`) until the accuracy on its stop set (`stop_set`: its
  unlearn buffer, or its held-out examples, a part of its training data never trained on;
  measured before each batch, in `stop_mode`) is <= chance + the method's
  `stop_above_chance`, or `unlearn_max_epochs` passes over the buffers; t then leaves the
  constraint set. After every pass the eval-mode accuracy on t's held-out examples and on the
  kept tasks' is traced (where forgetting stands: the trade-off of forgetting against keeping);
- measure: every seed's per-task train and test accuracy and confidence, a loss-MIA AUC
  (`mia.MIA_PROTOCOLS`) and the accuracy on each task's unlearn buffer.

The optimizer is plain SGD, as in GEM, started fresh at every step (learning rate
config.continual.learn.<algorithm>.lr for learning, config.continual.unlearn.<method>.lr for
unlearning). Plain SGD also makes the padding steps of a fixed shape plan (seeds and tasks
with fewer examples) exact no-ops: their gradient is 0.
"""
import dataclasses
import math
from typing import Any, Dict, Optional

import ml_collections
import numpy as np

from rum_jax import tracking
from rum_jax.checks import ConfigError
from rum_jax.continual import buffers, methods, programs, sequences, task_sets, tasks, unlearn_step
from rum_jax.continual import config as continual_config, mia as continual_mia
from rum_jax.memorization import files as score_files, proxies
from rum_jax.training import loop, plans
from rum_jax.training.setup import Setup

EVAL_KEYS = ("train_accuracy", "test_accuracy", "val_accuracy", "train_confidence", "test_confidence",
             "mia_auc", "unlearn_buffer_accuracy")
# Mixed into the seed of the buffer choices so they are independent of every other draw.
_BUFFER_STREAM = 0xB0FF


class ContinualRun:
  """The computation of one run of a task sequence for all seeds (module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, setup: Setup):
    c = config.continual
    self.config, self.c = config, c
    self.runner = setup.runner
    self.num_seeds, self.padded = self.runner.num_models, self.runner.padded_models
    try:
      self.task_set = task_sets.build(c.tasks, setup.dataset, c.num_tasks, c.classes_per_task,
                                      c.samples_per_task, self.num_seeds, config.seed)
    except ValueError as err:
      raise ConfigError(f"config.continual.tasks={c.tasks!r}: {err}") from None
    self.layout = self.task_set.layout
    self.num_tasks = self.layout.num_tasks
    # The run trains and evaluates on the task set's splits (stacked per task when each task
    # transforms the data set); the model's inputs and outputs keep their shapes.
    self.setup = dataclasses.replace(setup, dataset=self.task_set.dataset)
    # A sequence that forgets a task never learned, or names a task out of range, fails here,
    # before any training.
    self.sequence = sequences.make_sequence(c.sequence.strip(), self.num_tasks, seed=config.seed)
    self.train_pos = self.task_set.positions("train")  # [S][T]
    self.method = methods.CONTINUAL_METHODS.get(c.algorithm)
    self.learn_algorithm = continual_config.learn_algorithm(config)
    self.learning = continual_config.learn_section(config)  # lr, buffer sizes
    self.unlearning = continual_config.unlearn_section(config)  # the method's settings
    self.forget_settings = continual_config.forget_settings(config)
    self.capacity = (self.learning.memories, self.learning.unlearn_memories)
    self.chance = self.task_set.chance
    self.threshold = self.chance + self.unlearning.stop_above_chance
    self.file_scores = self._load_scores()
    self.forward = self.setup.forward
    # The lr of each learning step: the learning algorithm's, or after a forget step the
    # unlearning method's with lr_after_forget="unlearn" (the thesis' one optimizer).
    self.learn_lrs = programs.learning_lrs(self.sequence, self.learning.lr, self.unlearning.lr,
                                           c.lr_after_forget)
    self.learn_tx = self.runner.compiled(programs.sgd, self.learning.lr)
    self.unlearn_tx = self.runner.compiled(programs.sgd, self.unlearning.lr,
                                           self.unlearning.get("clip_norm", 0.0))
    self.learn_steps = math.ceil(max(len(p) for seed in self.train_pos for p in seed) / c.batch_size)
    self.step_labels = ["init"] + [str(s) for s in self.sequence]
    self.mia_protocol = continual_mia.MIA_PROTOCOLS.get(c.mia_protocol)
    self.data = self.setup.train_data()
    self._inputs = {"train": self.data["x"]}
    # Held-out examples of every task (the validation split's rows of the task): the stop set
    # of matched forgetting and the trace of every forgetting.
    self.held_out = self.task_set.positions("val")  # [S][T]
    kept = sorted(self.task_sets[-1][0])
    self.kept_held_out = [np.concatenate([p[t] for t in kept]).astype(np.int64) if kept else np.zeros(0, np.int64)
                          for p in self.held_out]
    self.held_out_sizes = (max(len(p) for seed in self.held_out for p in seed),
                           max(len(p) for p in self.kept_held_out))
    if c.stop_set == "held_out" and min(len(p) for seed in self.held_out for p in seed) == 0:
      raise ConfigError("config.continual.stop_set='held_out' measures each forgotten task on its held-out "
                        f"(validation) examples, and {setup.dataset.name} has a task without any: give the data "
                        "set a validation split (e.g. config.data.options.val_per_class > 0) or use "
                        "stop_set='unlearn_buffer'")

  def _needs_scores(self) -> bool:
    c = self.c
    return any(kind != "random" and split > 0 for kind, split in (
        (c.learn_buffer_kind, c.learn_buffer_split), (c.unlearn_buffer_kind, c.unlearn_buffer_split)))

  def _load_scores(self) -> Optional[np.ndarray]:
    if not self.c.scores or not self._needs_scores():
      return None
    return score_files.scores_for_split(self.c.scores, self.setup.dataset.train,
                                        self.c.score_key or "memorization")

  def initial_states(self):
    states = self.setup.init_states(self.learn_tx, self.config.seed)
    return programs.with_aux(states, **programs.initial_aux(self.layout, self.padded, states.params, self.capacity,
                                                            self.setup.dataset.train.x, self.held_out_sizes))

  def _program(self, factory, *args):
    return self.runner.compiled(factory, self.forward, *args)

  # -- steps -------------------------------------------------------------------------------

  def learn(self, states, i: int, task: int, retained) -> tuple:
    """Step i learns `task` under the constraints of the `retained` tasks, then fills its buffers."""
    c, ds = self.c, self.setup.dataset
    tx = self.runner.compiled(programs.sgd, self.learn_lrs[i])
    states = programs.fresh_optimizer(self.runner, programs.with_aux(
        states, active=programs.task_mask(retained, self.num_tasks, self.padded)), tx)
    positions = [self.train_pos[s][task] for s in range(self.num_seeds)]

    def plan_fn(epoch):
      rngs = [plans.epoch_rng(self.config.seed, s, i * c.epochs + epoch, "learn")
              for s in range(self.num_seeds)]
      # Every batch full: a task smaller than the largest one repeats a few of its examples
      # in its last batches, so no padding row enters BatchNorm's batch statistics.
      return {"train": plans.stream_plan(positions, c.batch_size, rngs, steps=self.learn_steps, cycle=True)}

    events = proxies.EventSums(self.num_seeds, len(ds.train))
    epoch_fn = self._program(programs.learn_program, tx, self.learn_algorithm,
                             continual_config.learn_settings(self.config), bool(self.config.data.augment))
    states, history = loop.fit(states, runner=self.runner, epoch_fn=epoch_fn, data=self.data, plan_fn=plan_fn,
                               epochs=c.epochs, name=f"step {i + 1}/{len(self.sequence)} learn {task}",
                               on_epoch=events)
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
    rngs = [np.random.default_rng([self.config.seed, s, i, _BUFFER_STREAM]) for s in range(self.num_seeds)]
    aux = buffers.fill_task_buffers(
        {name: states.aux[name] for name in ("learn", "unlearn")}, task, [p[task] for p in self.train_pos],
        (("learn", self.capacity[0], c.learn_buffer_kind, c.learn_buffer_split),
         ("unlearn", self.capacity[1], c.unlearn_buffer_kind, c.unlearn_buffer_split)),
        scores, rngs, tr.x, tr.y)
    return programs.with_aux(states, **aux)

  def forget(self, states, i: int, task: int, retained) -> tuple:
    """Step i forgets `task` over its buffers, projected against the `retained` tasks, until
    its unlearn buffer's accuracy is <= the threshold or after unlearn_max_epochs passes."""
    c, u = self.c, self.unlearning
    val = self.setup.dataset.val
    states = programs.with_aux(
        states, active=programs.task_mask(retained, self.num_tasks, self.padded),
        forget_task=np.full(self.padded, task, np.int32),
        held_out=programs.held_out_set(val.x, val.y, [p[task] for p in self.held_out], self.held_out_sizes[0],
                                       self.padded),
        kept_held_out=programs.held_out_set(val.x, val.y, self.kept_held_out, self.held_out_sizes[1], self.padded))
    states = programs.fresh_optimizer(self.runner, states, self.unlearn_tx)
    real = lambda buf, s: buf["pos"][s, task][buf["weight"][s, task] > 0]  # noqa: E731
    learn = [real(states.aux["learn"], s) for s in range(self.num_seeds)]
    unlearn = [real(states.aux["unlearn"], s) for s in range(self.num_seeds)]
    batches = buffers.FORGET_BATCHES.get(c.forget_batches)
    runner = self.runner

    def plan_of(p):
      rngs = [plans.epoch_rng(self.config.seed, s, i * c.unlearn_max_epochs + p, "forget")
              for s in range(self.num_seeds)]
      return batches(learn, unlearn, u.batch_size, rngs, self.capacity)

    plan = plan_of(0)
    if u.salun > 0:
      violations = lambda: runner.to_host(self._program(programs.violation_program, self.method.name,  # noqa: E731
                                                        self.forget_settings)(
          runner.shard(states), runner.shard(plan), self.data))
      mask_plan = buffers.SALIENCY_BATCHES.get(u.get("salun_batch", c.salun_batch))(
          plan, learn, unlearn, self.capacity, violations)
      masks = self._program(programs.saliency_program, self.method.name, self.forget_settings, u.salun)(
          runner.shard(states), runner.shard(mask_plan), self.data)
      states = programs.with_aux(states, salun_mask=runner.to_host(masks, keep_padding=True))
    unlearn_program = self._program(programs.unlearn_program, self.unlearn_tx, self.method.name,
                                    self.forget_settings, self.threshold, unlearn_step.CHECK_MODES.get(c.stop_mode),
                                    c.stop_set)
    held_out = self._program(programs.held_out_program)
    device_states = runner.shard(states)
    done = runner.shard(np.zeros(self.num_seeds, bool))
    iterations, updates, clipped = (np.zeros(self.num_seeds, np.int64) for _ in range(3))
    trace = [runner.to_host(held_out(device_states))]  # [passes + 1] x [S, 2]
    # An update of clipped SGD was clipped when it moved the weights by lr x clip_norm.
    step_cap = u.lr * u.get("clip_norm", 0.0) * (1 - 1e-3)
    tracked = tracking.phase(f"step {i + 1}/{len(self.sequence)} forget {task}")
    for p in range(c.unlearn_max_epochs):
      if p > 0:
        plan = plan_of(p)
      device_states, done, m = unlearn_program(device_states, done, runner.shard(plan), self.data)
      m = runner.to_host(m)
      iterations += m["updated"].sum(1).astype(np.int64)
      for norm in (v for k, v in m.items() if k.endswith("_step_norm")):
        updates += m["updated"].sum(1).astype(np.int64)
        clipped += ((norm >= step_cap) * m["updated"]).sum(1).astype(np.int64) if step_cap > 0 else 0
      trace.append(runner.to_host(held_out(device_states)))
      # The steps that ran (weight: whether a seed updated), e.g. the unlearn buffer's accuracy.
      tracked.steps(p * m["updated"].shape[1] + 1, {k: v for k, v in m.items() if v.ndim == 2}, m["updated"])
      if runner.to_host(done).all():  # every seed reached the threshold
        break
    tracking.end_phase(tracked)
    reached = runner.to_host(done)
    states = runner.to_host(device_states, keep_padding=True)
    loop.check_finite_weights(states.params, self.num_seeds, f"forgetting task {task} (step {i + 1})",
                              "the checkpoint of the previous step is kept. Lower "
                              f"config.continual.unlearn.{self.method.name}.lr or bound its steps "
                              f"with config.continual.unlearn.{self.method.name}.clip_norm (e.g. 1).")
    trace = np.stack(trace)  # [passes + 1, S, 2]
    return states, {"iterations": iterations.tolist(), "reached_threshold": reached.tolist(),
                    "optimizer_updates": updates.tolist(), "clipped_updates": clipped.tolist(),
                    "held_out_trace": {"forgotten": trace[:, :, 0].tolist(), "kept": trace[:, :, 1].tolist()}}

  def step(self, states, i: int) -> tuple:
    """Runs step i of the sequence: (states, what it did)."""
    step, sets = self.sequence[i], self.task_sets
    if step.is_learn:
      return self.learn(states, i, step.task, sets[i - 1][0] if i > 0 else frozenset())
    return self.forget(states, i, step.task, sets[i][0])

  @property
  def task_sets(self):
    return sequences.task_sets(self.sequence)

  # -- measurements ------------------------------------------------------------------------

  def _inputs_of(self, split: str):
    """The split's inputs, replicated on the devices once per run."""
    if split not in self._inputs:
      self._inputs[split] = self.runner.replicate(self.setup.dataset.split(split).x)
    return self._inputs[split]

  def evaluate(self, states, i: int) -> Dict[str, list]:
    """Per-seed, per-task measurements of the model after step i (-1: initial model), each
    seed on its own tasks' rows."""
    ds, bs = self.setup.dataset, self.config.train.eval_batch_size
    out, per_split = {}, {}
    for split in ("train", "test", "val"):  # val: the held-out examples of every task
      rows = self.task_set.rows(split)
      logits = programs.predict_rows(self.runner, self.forward, states, self._inputs_of(split), rows, bs,
                                     ds.num_classes)
      per_split[split] = tasks.evaluate_tasks(logits, ds.split(split).y[rows],
                                              np.take_along_axis(self.task_set.row_task[split], rows, axis=1),
                                              self.layout.task_classes())
      out[f"{split}_accuracy"] = per_split[split]["accuracy"]
      if split != "val":
        out[f"{split}_confidence"] = per_split[split]["confidence"]
    correct = np.zeros((self.num_seeds, len(ds.train)), bool)  # by train position, for the buffers
    np.put_along_axis(correct, self.task_set.rows("train"), per_split["train"]["correct"], axis=1)
    unlearn = states.aux["unlearn"]
    out["unlearn_buffer_accuracy"] = tasks.buffer_accuracy(correct, unlearn["pos"], unlearn["weight"],
                                                          self.num_seeds)
    out["mia_auc"] = (self.mia_protocol.per_task(per_split["train"], per_split["test"], self.num_tasks, i + 1)
                      if self.c.mia else np.full((self.num_seeds, self.num_tasks), np.nan))
    return {k: np.asarray(v, np.float64).tolist() for k, v in out.items()}

  def buffers_of(self, states) -> Dict[str, Any]:
    """Every seed's buffers by ORIGINAL index of the data set, and their real-row weights."""
    index = self.setup.dataset.train.index
    return {f"{name}_buffer_{k}": (index[states.aux[name]["pos"][:self.num_seeds]] if k == "index"
                                   else states.aux[name]["weight"][:self.num_seeds])
            for name in ("learn", "unlearn") for k in ("index", "weight")}
