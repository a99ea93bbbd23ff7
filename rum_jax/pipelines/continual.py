"""Continual learning and unlearning runs (continual.py): `run_continual(config, workdir)`.

A run follows a task sequence (`sequences.make_sequence`: A4, ..., or "0,1,2,-2,3") on the
tasks a builder makes of the data set (`task_sets.TASK_BUILDERS`: class blocks shuffled per
seed, or permuted or rotated copies of it), for `config.num_seeds` seeds at once (one
program, spread over devices); `continual.run.ContinualRun` computes its steps, this module
keeps its files, resumes it after its last finished step and records its metrics
(`config.continual.metrics`, entries of the metric registry over its accuracy matrices).

Written into the work directory (the run folder's files of `runfolder.layout`, the per-step
ones after every step):
  config                        the resolved config
  checkpoints/                  after every step (resume from the last finished step)
  continual_steps               per step, seed and task: train/test accuracy and confidence,
                                loss-MIA AUC (train vs test examples of the task), accuracy
                                on the task's unlearn buffer
  progress                      the steps done so far and what each did (unlearning
                                iterations, whether the threshold was reached)
  metrics_record                at the end, the record: one row per seed x metric (pooled
                                metrics of the seed-averaged matrices: seed "all"), the run's
                                columns of `results.RECORD_COLUMNS`
  metrics                       the same per metric (per_seed values, mean, 95% t-interval, n)
  curves_rows                   CL-ToW at every forget step and CLU_mix after every step, per seed
  trace                         per forget step, pass and seed: eval-mode accuracy on the
                                forgotten task's held-out examples and on the kept tasks'
                                (pass 0: before the forgetting), as in tradeoff_figure
  matrices                      every per-step matrix [seeds, steps + 1, tasks] (row 0: the
                                initial model), task classes, buffers (ORIGINAL indices)
  heatmap_figure, task_curves_figure, cl_tow_figure, tradeoff_figure   (`reports`)
"""
import time
from typing import Any, Dict, List, Optional

import ml_collections
import numpy as np
import pandas as pd
from absl import logging

from rum_jax import results, tracking
from rum_jax.continual import sequences
from rum_jax.continual.run import EVAL_KEYS, ContinualRun
from rum_jax.evaluation.metrics import METRICS
from rum_jax.evaluation.metrics.continual import SequenceOutputs, cl_tow_curve, clu_curve
from rum_jax.pipelines import reports
from rum_jax.runfolder import RunFolder, prepare
from rum_jax.runfolder import digest as digest_of
from rum_jax.training.checkpoint import Checkpointer, tree_digest
from rum_jax.training.config import TRAINING_SECTIONS
from rum_jax.training.setup import Setup, program_key

SECTIONS = TRAINING_SECTIONS + ("continual", "algorithm", "sequence")


def _program_key(run: ContinualRun, states) -> Dict[str, Any]:
  """What decides this run's checkpoints (`Checkpointer.claim`)."""
  config = run.config
  sections = {k: config[k].to_dict() if isinstance(config[k], ml_collections.ConfigDict) else config[k]
              for k in ("seed", "train", "continual", "algorithm", "sequence") if k in config}
  return program_key(run.setup, program="continual", **sections, scores=tree_digest(run.file_scores),
                     initial_states=tree_digest(run.runner.unpad(states)))


def _write_progress(run: ContinualRun, folder: RunFolder, record: Dict[str, Any]) -> None:
  rows = [{"step": r, "action": run.step_labels[r], "seed": s, "task": t, **{k: ev[k][s][t] for k in EVAL_KEYS}}
          for r, ev in enumerate(record["evals"]) for s in range(run.num_seeds) for t in range(run.num_tasks)]
  folder.write("continual_steps", rows)
  folder.write("progress", {
      "sequence": sequences.format_sequence(run.sequence), "steps_done": len(record["steps"]),
      "num_steps": len(run.sequence), "threshold": run.threshold, "steps": record["steps"]})


def sequence_outputs(run: ContinualRun, record: Dict[str, Any]) -> SequenceOutputs:
  """The metric registry's input of a finished run: its matrices [S, steps + 1, T] and what
  each forget request did ([S, requests]: updates made, whether the stop rule ended it)."""
  matrices = {k: np.stack([np.asarray(ev[k]) for ev in record["evals"]], axis=1) for k in EVAL_KEYS}
  forgets = [step for step in record["steps"] if "reached_threshold" in step]
  per_request = lambda key, dtype: np.asarray([s[key] for s in forgets], dtype).T.reshape(run.num_seeds, -1)  # noqa: E731
  requests = {"updates": per_request("iterations", np.int64), "stopped": per_request("reached_threshold", bool)}
  if all("optimizer_updates" in s for s in forgets):
    requests.update(optimizer_updates=per_request("optimizer_updates", np.int64),
                    clipped_updates=per_request("clipped_updates", np.int64))
  return SequenceOutputs(matrices, sequences.timeline(run.sequence), run.chance,
                         {"clu_beta": run.c.clu_beta}, requests)


def run_columns(run: ContinualRun) -> Dict[str, Any]:
  """The record's run columns: the forgotten tasks are the forget set (kind "task", level the
  sequence, size their number, digest their examples' original indices for every seed)."""
  c = run.config.continual
  forgotten = sorted(sequences.task_sets(run.sequence)[-1][1])
  index = run.setup.dataset.train.index
  digest = digest_of(*[index[run.train_pos[s][t]] for s in range(run.num_seeds) for t in forgotten]) \
      if forgotten else ""
  settings = {"learn_algorithm": run.learn_algorithm, "tasks": c.tasks, **run.unlearning.to_dict()}
  columns = results.run_columns(run.config, c.algorithm, settings, forget_digest=digest)
  columns.update(forget_kind="task", forget_level=c.sequence, forget_size=len(forgotten), forget_split="report")
  return columns


def record_rows(outputs: SequenceOutputs, names, columns: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Tidy rows of the metrics `names` (seed "all" for a pooled metric); a metric the sequence
  does not define (NaN for every seed, e.g. CL-ToW without a forget step) is left out."""
  rows = []
  for name in names:
    values = outputs.value(name)
    if np.all(np.isnan(values)):
      continue
    if METRICS.get(name).pooled:
      rows.append({**columns, "seed": "all", "metric": name, "value": float(values[0])})
    else:
      rows += results.record_rows({name: values}, **columns)
  return rows


def curve_rows(run: ContinualRun, outputs: SequenceOutputs) -> List[Dict[str, Any]]:
  """The curves record: per step and seed, CLU_mix, and CL-ToW at the forget steps."""
  tow, clu = cl_tow_curve(outputs), clu_curve(outputs)
  rows = []
  for i, label in enumerate(run.step_labels[1:]):
    for s in range(run.num_seeds):
      rows.append({"step": i + 1, "action": label, "seed": s, "metric": "clu_mix", "value": float(clu[s, i])})
      if not np.isnan(tow[s, i]):
        rows.append({"step": i + 1, "action": label, "seed": s, "metric": "cl_tow", "value": float(tow[s, i])})
  return rows


def trace_rows(run: ContinualRun, record: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The trace record: where every forgetting stood after each of its passes, per seed."""
  rows = []
  for step in record["steps"]:
    trace = step.get("held_out_trace")
    for p, (forgotten, kept) in enumerate(zip(*trace.values()) if trace else ()):
      rows += [{"step": step["step"], "action": step["action"], "pass": p, "seed": s, "forgotten_held_out": f,
                "kept_held_out": k} for s, (f, k) in enumerate(zip(forgotten, kept))]
  return rows


def write_results(run: ContinualRun, folder: RunFolder, record: Dict[str, Any], states) -> Dict[str, Any]:
  """The metrics (record and summary), curves, trace, matrices and figures of a finished run."""
  c = run.c
  outputs = sequence_outputs(run, record)
  rows = record_rows(outputs, c.metrics, run_columns(run))
  folder.write("metrics_record", rows)
  per_seed: Dict[str, list] = {}
  for r in rows:
    per_seed.setdefault(r["metric"], []).append(r["value"])
  summary = {r.metric: {"mean": r.mean, "ci95": r.ci95, "n": r.n}
             for r in results.summary_frame(rows, by=()).itertuples(index=False)}
  timeline = outputs.timeline
  final = {"algorithm": c.algorithm, "learn_algorithm": run.learn_algorithm, "tasks": c.tasks,
           "threshold": run.threshold, "sequence": sequences.format_sequence(run.sequence),
           "num_tasks": run.num_tasks, "chance": run.chance, "forget_steps": timeline.forget_steps,
           "retained_tasks": list(timeline.retained[-1]), "forgotten_tasks": list(timeline.forgotten[-1]),
           "num_seeds": run.num_seeds, "per_seed": per_seed, "summary": summary}
  folder.write("metrics", final)
  curves = curve_rows(run, outputs)
  folder.write("curves_rows", curves)
  trace = trace_rows(run, record)
  folder.write("trace", trace)
  folder.write("matrices", {**outputs.matrices, "step_labels": np.array(run.step_labels),
                            "task_classes": run.layout.classes, **run.buffers_of(states)})
  shown = final["sequence"] if len(run.sequence) <= 12 else c.sequence
  title = (f"{run.setup.dataset.name}: {shown}\n"
           f"{c.algorithm} (learning: {run.learn_algorithm}), {run.num_seeds} seeds")
  reports.continual_run_figures(outputs.matrices["test_accuracy"], curves, run.step_labels, timeline.forget_steps,
                                folder, title)
  if trace:
    reports.tradeoff_figure(pd.DataFrame(trace).assign(run=c.algorithm), [c.algorithm], run.chance,
                            folder.file("tradeoff_figure"), title, target=run.threshold if
                            c.stop_set == "held_out" else None)
  return final


def run_continual(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False,
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
    The run's metrics record (what it writes as `metrics`).
  """
  run = ContinualRun(config, setup or Setup.create(config))  # refuses a bad sequence or score file first
  folder = RunFolder.of(workdir)
  prepare(folder, config, overwrite, clear=("checkpoints",), sections=SECTIONS,
          results=("continual_steps", "progress", "metrics"))
  states = run.initial_states()
  runner, n = run.runner, len(run.sequence)
  checkpointer = Checkpointer(folder.checkpoints())
  try:
    # Saved without padding seeds (their count depends on the devices): any device count resumes.
    checkpointer.claim(_program_key(run, states))
    restored = checkpointer.restore(runner.unpad(states))
    if restored is None:
      done, record = 0, {"evals": [run.evaluate(states, -1)], "steps": []}
    else:
      done, states, record = restored
      states = runner.pad(states)
      logging.info("[continual] resumed after step %d/%d (%s)", done, n, checkpointer.directory)
    t0 = time.time()
    for i in range(done, n):
      t_step = time.time()
      states, info = run.step(states, i)
      evaluation = run.evaluate(states, i)
      record["evals"].append(evaluation)
      record["steps"].append({"step": i + 1, "action": str(run.sequence[i]), "seconds": time.time() - t_step, **info})
      checkpointer.save(i + 1, runner.unpad(states), record)
      _write_progress(run, folder, record)
      test = np.nanmean(np.asarray(evaluation["test_accuracy"]), axis=0)
      logging.info("[continual] step %d/%d (%s) %.1fs, eta %.0fs: test accuracy per task %s%s", i + 1, n,
                   run.sequence[i], time.time() - t_step, (time.time() - t0) / (i + 1 - done) * (n - i - 1),
                   np.array2string(test, precision=2, separator=" "),
                   f", unlearning iterations {info['iterations']}" if "iterations" in info else "")
      tracking.scalars("continual", "sequence_step", i + 1, {
          **{f"test_accuracy/task_{t}": column for t, column in enumerate(zip(*evaluation["test_accuracy"]))},
          **{k: v for k, v in info.items() if k != "held_out_trace"}})
  finally:
    checkpointer.close()
  final = write_results(run, folder, record, states)
  logging.info("[continual] %s", {k: round(v["mean"], 4) for k, v in final["summary"].items()})
  return final
