"""Continual learning and unlearning runs (continual.py): `run_continual(config, workdir)`.

A run follows a task sequence (`sequences.make_sequence`: A4, ..., or "0,1,2,-2,3") on the
tasks a builder makes of the data set (`task_sets.TASK_BUILDERS`: class blocks shuffled per
seed, or permuted or rotated copies of it), for `config.num_seeds` seeds at once (one
program, spread over devices). Every step is the one training engine:

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
import dataclasses
import math
import os
import time
from typing import Any, Dict, Optional

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results, tracking, workdir as workdir_lib
from rum_jax.checks import ConfigError
from rum_jax.continual import buffers, methods, plots, programs, sequences, task_sets, tasks, unlearn_step
from rum_jax.continual import mia as continual_mia, summary as cl_summary
from rum_jax.continual import config as continual_config
from rum_jax.memorization import files as score_files, proxies
from rum_jax.training import loop, plans
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.config import TRAINING_SECTIONS
from rum_jax.training.setup import Setup, program_key

EVAL_KEYS = ("train_accuracy", "test_accuracy", "train_confidence", "test_confidence",
             "mia_auc", "unlearn_buffer_accuracy")
# Mixed into the seed of the buffer choices so they are independent of every other draw.
_BUFFER_STREAM = 0xB0FF


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
    try:
      self.task_set = task_sets.build(c.tasks, ds, c.num_tasks, c.classes_per_task,
                                      c.samples_per_task, self.num_seeds, config.seed)
    except ValueError as err:
      raise ConfigError(f"config.continual.tasks={c.tasks!r}: {err}") from None
    self.layout = self.task_set.layout
    num_tasks = self.layout.num_tasks
    # The run trains and evaluates on the task set's splits (stacked per task when each task
    # transforms the data set); the model's inputs and outputs keep their shapes.
    self.setup = setup = dataclasses.replace(setup, dataset=self.task_set.dataset)
    # A sequence that forgets a task never learned, or names a task out of range, fails here,
    # before any training.
    self.sequence = sequences.make_sequence(c.sequence.strip(), num_tasks, seed=config.seed)
    self.num_tasks = num_tasks
    self.train_pos = self.task_set.positions("train")  # [S][T]
    self.method = methods.METHODS.get(c.algorithm)
    self.learn_algorithm = continual_config.learn_algorithm(config)
    self.learning = continual_config.learn_section(config)  # lr, buffer sizes
    self.unlearning = continual_config.unlearn_section(config)  # the method's settings
    self.capacity = (self.learning.memories, self.learning.unlearn_memories)
    self.chance = self.task_set.chance
    self.threshold = self.chance + self.unlearning.stop_above_chance
    self.file_scores = self._load_scores()
    self.forward = setup.forward
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

  def learn_program(self, tx):
    """(states, plan, data) -> (states, metrics): one epoch of learning with optimizer `tx`,
    compiled once per optimizer."""
    c = self.c
    settings = methods.ProjectionSettings(c.margin, c.eps, c.agem_ref_size,
                                          memory_batch_stats=c.memory_batch_stats)
    return self.runner.compiled(programs.learn_program, self.forward, tx, self.learn_algorithm,
                                settings, bool(self.config.data.augment))

  @property
  def unlearn_program(self):
    """(states, done, plan, data) -> (states, done, metrics): one pass of unlearning,
    compiled once."""
    c, u = self.c, self.unlearning
    settings = methods.ProjectionSettings(
        c.unlearn_margin, c.eps, c.agem_ref_size, u.get("alpha", methods.ProjectionSettings.alpha),
        masked=u.salun > 0, memory_batch_stats=c.memory_batch_stats)
    return self.runner.compiled(programs.unlearn_program, self.forward, self.unlearn_tx, self.method.name,
                                settings, float(u.loss_scale), self.threshold,
                                unlearn_step.CHECK_MODES.get(c.stop_mode))

  @property
  def saliency_program(self):
    """(states, one-step plan, data) -> SalUn masks of the task being forgotten."""
    u = self.unlearning
    return self.runner.compiled(programs.saliency_program, self.forward, self.method.name,
                                float(u.loss_scale), u.salun)

  @property
  def violation_program(self):
    """(states, plan, data) -> bool [seeds, steps]: batches violating a GEM constraint."""
    return self.runner.compiled(programs.violation_program, self.forward, self.method.name,
                                float(self.unlearning.loss_scale))

  def initial_states(self):
    states = self.setup.init_states(self.learn_tx, self.config.seed)
    return programs.with_aux(states, **programs.initial_aux(self.layout, self.padded, states.params, self.capacity,
                                           self.setup.dataset.train.x))

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
    states, history = loop.fit(states, runner=self.runner, epoch_fn=self.learn_program(tx),
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
    states = programs.with_aux(states, active=programs.task_mask(retained, self.num_tasks, self.padded),
                       forget_task=np.full(self.padded, task, np.int32))
    states = programs.fresh_optimizer(self.runner, states, self.unlearn_tx)
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
      violations = lambda: self.runner.to_host(self.violation_program(
          self.runner.shard(states), self.runner.shard(plan), self.data))
      mask_plan = buffers.SALIENCY_BATCHES.get(u.get("salun_batch", c.salun_batch))(
          plan, learn, unlearn, self.capacity, violations)
      masks = self.saliency_program(self.runner.shard(states), self.runner.shard(mask_plan), self.data)
      states = programs.with_aux(states, salun_mask=self.runner.to_host(masks, keep_padding=True))
    device_states = self.runner.shard(states)
    done = self.runner.shard(np.zeros(self.num_seeds, bool))
    iterations = np.zeros(self.num_seeds, np.int64)
    tracked = tracking.phase(f"step {i + 1}/{len(self.sequence)} forget {task}")
    for p in range(c.unlearn_max_epochs):
      if p > 0:
        plan = plan_of(p)
      device_states, done, m = self.unlearn_program(device_states, done, self.runner.shard(plan), self.data)
      m = self.runner.to_host(m)
      iterations += m["updated"].sum(1).astype(np.int64)
      # The steps that ran (weight: whether a seed updated), e.g. the unlearn buffer's accuracy.
      tracked.steps(p * m["updated"].shape[1] + 1, {k: v for k, v in m.items() if v.ndim == 2}, m["updated"])
      if self.runner.to_host(done).all():  # every seed reached the threshold
        break
    tracking.end_phase(tracked)
    reached = self.runner.to_host(done)
    states = self.runner.to_host(device_states, keep_padding=True)
    loop.check_finite_weights(states.params, self.num_seeds, f"forgetting task {task} (step {i + 1})",
                              "the checkpoint of the previous step is kept. Lower "
                              f"config.continual.unlearn.{self.method.name}.lr or bound its steps "
                              f"with config.continual.unlearn.{self.method.name}.clip_norm (e.g. 1).")
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
      per_split[split] = tasks.evaluate_tasks(logits, data.y, self.task_set.row_task[split],
                                              self.layout.task_classes())
      out[f"{split}_accuracy"] = per_split[split]["accuracy"]
      out[f"{split}_confidence"] = per_split[split]["confidence"]
    unlearn = states.aux["unlearn"]
    out["unlearn_buffer_accuracy"] = tasks.buffer_accuracy(per_split["train"]["correct"], unlearn["pos"],
                                                          unlearn["weight"], self.num_seeds)
    out["mia_auc"] = (self.mia_protocol.per_task(per_split["train"], per_split["test"], self.num_tasks, i + 1)
                      if self.c.mia else np.full((self.num_seeds, self.num_tasks), np.nan))
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
    """Per-seed CL metrics of the whole sequence, their means with 95% intervals, and CL-ToW
    and CLU on the seed-averaged matrices (`summary.run_metrics`)."""
    return {"algorithm": self.c.algorithm, "learn_algorithm": self.learn_algorithm,
            "tasks": self.c.tasks, "threshold": self.threshold,
            **cl_summary.run_metrics(self.matrices(record), self.sequence, self.chance, self.c.clu_beta,
                                     stopped=self.stopped(record))}

  def stopped(self, record: Dict[str, Any]) -> np.ndarray:
    """[S, forget steps]: whether the stop rule (not the pass limit) ended each forget request."""
    rows = [step["reached_threshold"] for step in record["steps"] if "reached_threshold" in step]
    return np.asarray(rows, bool).T.reshape(self.num_seeds, len(rows))

  def write_results(self, workdir: str, record: Dict[str, Any], states) -> Dict[str, Any]:
    final = self.final_metrics(record)
    io.write_json(os.path.join(workdir, "metrics.json"), final)
    # The record: one row per seed x scalar metric (means and intervals come from it, never rows).
    scalars = [k for k, v in final["per_seed"][0].items() if np.ndim(v) == 0 and not isinstance(v, dict)]
    run = results.run_columns(self.config, self.c.algorithm, self.c.to_dict())
    io.write_csv(os.path.join(workdir, "metrics.csv"),
                 results.record_rows({k: [ps[k] for ps in final["per_seed"]] for k in scalars}, **run),
                 fields=results.RECORD_COLUMNS)
    io.write_csv(os.path.join(workdir, "curves.csv"),
                 cl_summary.curve_rows(final["summary"], self.step_labels, final["forget_steps"]))
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
    plots.run_figures(m["test_accuracy"], final["summary"], self.step_labels, final["forget_steps"],
                      workdir, title)
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
        tracking.scalars("continual", "sequence_step", i + 1, {
            **{f"test_accuracy/task_{t}": column for t, column in enumerate(zip(*evaluation["test_accuracy"]))},
            **info})
    finally:
      checkpointer.close()
    final = self.write_results(workdir, record, states)
    logging.info("[continual] %s", {k: round(v["mean"], 4) for k, v in final["summary"].items()
                                    if isinstance(v.get("mean"), float)})
    return final


# ---------------------------------------------------------------------------------------
# Comparing finished runs (one row per run, e.g. the thesis presets of every method).


def compare_runs(runs, out_prefix: str, title: str, reference=None, failed=None) -> str:
  """<out_prefix>.md / .csv / .png of finished continual runs, one row per run
  (`summary.comparison`); returns the markdown text.

  reference: optional {label: {"final_cl_tow": x, "mean_cl_tow": y}}, published values
    (on seed-averaged matrices, as the thesis' tow.py) shown beside ours.
  failed: optional {label: reason} of runs that did not finish, listed below the table.
  """
  text, csv_rows = cl_summary.comparison(runs, title, reference, failed)
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
