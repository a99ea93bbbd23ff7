"""The report of a finished study: its markdown, JSON, tidy record, per-third steps, figure and
timings (the study files of `runfolder.layout`).

Every metric is shown as its registry entry says (`METRICS`: display name, unit, direction),
so a metric added to config.evaluation.metrics (docs/extending.md) reaches every table here.
"""
import os
import shlex
from typing import Any, Dict, List, Optional, Sequence

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results
from rum_jax.runfolder import RunFolder, digest as array_digest, file_digest, layout
from rum_jax.evaluation.metrics import METRICS
from rum_jax.pipelines import reports
from rum_jax.pipelines.study import claims as claims_lib, runs as runs_lib, sets as sets_lib
from rum_jax.pipelines.study.claims import Choices
from rum_jax.pipelines.study.runs import PAPER_NAME, PROXY_NAME, RUM_NAME, SECOND_RETRAIN, SHUFFLE_NAME
from rum_jax.unlearning import grid as grid_lib, rum

LEVEL_ORDER = ("low", "mid", "high", "mix")
RUN_NOTES = {RUM_NAME: "plan searched on the validation mix, thirds by memorization",
             SHUFFLE_NAME: "the same plan on three random parts (Shuffle control)",
             PAPER_NAME: "the paper's plan, thirds by memorization",
             PROXY_NAME: "the searched plan, thirds by the proxy",
             SECOND_RETRAIN: "a second retrain, another initialisation: the noise ceiling",
             "retrain": "the reference", "original": "nothing unlearned"}
# The steps record: the record layout (each row with its run's columns, `method` the study's run,
# `metric` the accuracy on one subset) and which step it is: how the thirds were cut ("thirds":
# by memorization, the proxy, or at random), the step ("end" after the whole run), its stage
# (the third it unlearned) and the method of that step.
STEP_COLUMNS = ("thirds", "step", "stage", "step_method")
STEPS_COLUMNS = results.RECORD_COLUMNS + STEP_COLUMNS


def _note(name: str) -> str:
  base = name.split("_by_")[0]
  return RUN_NOTES.get(base, "single method") + (f", chosen by {name.split('_by_')[1]}" if "_by_" in name else "")


def _plan_text(plan: Dict[str, Any]) -> str:
  return " -> ".join(f"{m}" + (f" ({grid_lib.label(p)})" if p else "") for m, p in (plan[lv] for lv in rum.LEVELS))


def portable(command: str, scores: str = "") -> str:
  """The command line with paths made relative to the current directory, and the score file
  (which lies outside a clone) as <scores>."""
  parts = []
  for arg in shlex.split(command):
    key, eq, value = arg.partition("=")
    if eq and scores and value == scores:
      value = "<scores>"
    elif eq and os.path.isabs(value):
      value = os.path.relpath(value)
    parts.append(key + eq + value if eq else arg)
  return " ".join(shlex.quote(p) if " " in p else p for p in parts)


def edges(points: Sequence[Dict[str, Any]], chosen: Dict[str, Any]) -> List[str]:
  """The settings of `chosen` at the smallest or largest value of their axis in `points`
  (axes of more than one value), e.g. ['lr=0.1 (highest of 0.01, 0.03, 0.1)']."""
  out = []
  for key, value in chosen.items():
    axis = sorted({p[key] for p in points if key in p})
    if len(axis) > 1 and value in (axis[0], axis[-1]):
      out.append(f"{key}={value:g} ({'lowest' if value == axis[0] else 'highest'} of "
                 f"{', '.join(f'{v:g}' for v in axis)})")
  return out


def edge_flags(tuned: Dict[str, Dict[str, Any]], searches: Dict[str, Dict[str, Any]],
               claim_metrics: Sequence[str]) -> List[str]:
  """One line per choice at an edge of its grid: every method's point per level and claim
  metric, and every stage of every searched plan (against the method's grid on the mix)."""
  lines = []
  for level in [lv for lv in LEVEL_ORDER if lv in tuned]:
    for method, t in tuned[level].items():
      for metric in claim_metrics:
        at = edges(t["points"], t["points"][t["chosen"][metric]])
        if at:
          lines.append(f"{level}, {method} by {METRICS.get(metric).display}: {'; '.join(at)}")
  for metric, search in searches.items():
    for stage, (method, point) in search["plan"].items():
      at = edges(tuned["mix"][method]["points"], point) if method in tuned.get("mix", {}) else []
      if at:
        lines.append(f"plan by {METRICS.get(metric).display}, {stage} stage, {method}: {'; '.join(at)}")
  return lines


def study_records(workdir: str, levels: Sequence[str], collected: Dict[str, Dict[str, Any]],
                  config: ml_collections.ConfigDict) -> List[Dict[str, Any]]:
  """The tidy records (`results.RECORD_COLUMNS`, one row per model x seed x metric) of every
  level's reported sets: each level's evaluation record, forget_level the study's level (the mix
  included), and the second retrain's rows."""
  rows = []
  for level in levels:
    frame = results.read_records(RunFolder(runs_lib.set_dir(workdir, level)).file("evaluation_record"))
    frame["forget_level"] = level
    rows += frame.to_dict("records")
    ceiling = collected[level].get(SECOND_RETRAIN)
    if ceiling and len(frame):
      first = frame.iloc[0]
      columns = {k: first[k] for k in ("data", "model", "forget_kind", "forget_size", "forget_split", "forget_digest",
                                       "version")}
      rows += results.record_rows(ceiling["per_seed"], **columns, forget_level=level, method=SECOND_RETRAIN,
                                  settings=f'{{"base_seed": {config.seed + 1}}}')
  return rows


def steps_rows(workdir: str, models: Sequence[str], scores: np.ndarray) -> List[Dict[str, Any]]:
  """Per seed, the accuracy on every third: after every step of each RUM run (its steps.json,
  thirds by its own refinement), and at the end of every model of the mix on the thirds by
  memorization (from the saved predictions). Rows {method, seed, metric, value} + STEP_COLUMNS;
  `steps_record` adds the runs' columns."""
  mix = RunFolder(runs_lib.set_dir(workdir, "mix"))
  rows: List[Dict[str, Any]] = []
  forget = list(mix.read("forget_set")["forget_positions"])
  thirds = rum.step_sets(forget, scores, len(scores))
  evaluated = mix.read("evaluation")
  folders = {"original": RunFolder(evaluation_original(mix.path)),
             "retrain": RunFolder(mix.resolve(evaluated["retrain_reference"])),
             SECOND_RETRAIN: runs_lib.noise_ceiling_folder(mix.path, array_digest(np.stack(forget)))}
  for name in models:
    run = folders.get(name, mix.method(name))
    if run.exists("report_table", stem="steps"):
      record = run.read("report_table", stem="steps")
      by = "random" if "shuffle" in name else (record.get("score_key") or "memorization")
      for step in record["steps"]:
        for key, leaf in step["after"].items():
          for s, value in enumerate(leaf["values"]):
            rows.append({"method": name, "seed": s, "metric": key, "value": value, "thirds": by,
                         "step": step["step"], "stage": step["level"], "step_method": step["method"]})
    if not run.exists("predictions", split="train"):
      continue
    data = run.read("predictions", split="train")
    correct = data["logits"].argmax(-1) == data["labels"][None]
    for k, third in enumerate(thirds):
      for s, positions in enumerate(third.forget):
        rows.append({"method": name, "seed": s, "metric": f"{third.level}_accuracy",
                     "value": float(correct[s, positions].mean()), "thirds": "memorization", "step": "end",
                     "stage": "", "step_method": ""})
  return rows


def steps_record(records: Sequence[Dict[str, Any]], steps: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """The steps rows (`steps_rows`) in the record layout: each with the columns of its run's rows
  on the reported mix in the study's record (`study_records`), so one key joins the two files."""
  run_columns = [k for k in results.RECORD_COLUMNS if k not in ("seed", "metric", "value")]
  runs = {r["method"]: {k: r.get(k, "") for k in run_columns} for r in records if r["forget_level"] == "mix"}
  blank = dict.fromkeys(results.RECORD_COLUMNS, "")
  return [{**blank, **runs.get(row["method"], {}), **row} for row in steps]


def evaluation_original(set_dir: str) -> str:
  """The original models' folder of a set (recorded in its forget set's description)."""
  folder = RunFolder(set_dir)
  return folder.resolve(folder.read("forget_set_info").get("original_workdir", ""))


def write_study(config: ml_collections.ConfigDict, workdir: str, record: Dict[str, Any]) -> str:
  """Writes the study's files in workdir and config.study.results_dir; returns the markdown.

  record: {"stats", "criterion", "collected" (level -> model -> {per_seed, summary}), "tuned"
  (level -> method -> Runner.level's result), "searches" (claim metric -> plan search),
  "choices" (claim metric -> `Choices`), "strong", "invocations", "commands", "failures"}.
  """
  s = config.study
  collected, tuned, searches, choices = record["collected"], record["tuned"], record["searches"], record["choices"]
  claim_metrics, metrics = tuple(s.claim_metrics), tuple(config.evaluation.metrics)
  levels = [lv for lv in LEVEL_ORDER if lv in collected]
  n = config.num_seeds
  strong = record.get("strong") or {}
  bank_metrics = [m for m in config.get("audit", {}).get("metrics", ())
                  if METRICS.get(m).higher_is_better is not None] if strong else []
  records = claims_lib.claims(collected, s.methods, choices, record["criterion"]["met"], strong.get("models"),
                              bank_metrics)
  scores_file = runs_lib.scores_path(config, workdir, runs_lib.MEMORIZATION)
  digest = file_digest(scores_file)
  minutes = sum(i.get("total", 0.0) for i in record["invocations"]) / 60
  cmd = record["commands"][-1]
  shown = [METRICS.get(m).display for m in claim_metrics]
  lines = [f"# RUM study on {config.data.name}", "",
           f"{n} seeds (mean ± 95% t-interval), forget sets of {config.forget.size} train examples, "
           f"{config.model.name} {tuple(config.model.kwargs.get('hidden', ())) or ''}, evaluated by "
           f"{', '.join(METRICS.get(m).display for m in metrics)}. The claims are made by {', '.join(shown)}, each "
           f"with both sides chosen on the validation sets by that metric; verdicts are Holm-corrected over all "
           f"{len(records)} paired tests (family-wise error 5%). Every seed has its own reported and validation "
           f"forget sets, drawn at random from the same band of the memorization ranking (two seeds share about half "
           f"of a band, so the intervals cover the draw of the sets from the band, not the band itself), and its own "
           f"retrain references (docs/study.md).", "",
           f"Memorization scores: `{os.path.basename(scores_file)}`, sha256 {digest} ({layout.name('study')}). Command: "
           f"`{portable(cmd['command'], s.scores)}` ({minutes:.1f} min wall-clock over {len(record['invocations'])} "
           f"invocation(s); the last on {cmd['machine']}, load average {cmd.get('load', 'not recorded')}).", ""]
  if collected:
    lines += [f"![study]({layout.name('study_figure')})", ""]
  lines += ["## The forget sets", "", f"Memorization of each level's reported and validation sets, means over "
            f"the {n} seeds of each seed's set mean and quartiles; 'largest gap' is the largest difference in "
            f"mean between one seed's two sets (refused above config.study.match_tolerance = "
            f"{s.match_tolerance:g}); 'shared' counts examples in both of a seed's sets.", ""]
  lines += sets_lib.sets_table(record["stats"]) + [""]
  crit = record["criterion"]
  lines += ["Data set criterion (config.study.criterion): " + "; ".join(
      f"{c['level']} mean {c['mean']:.3f} {c['rule']}: {'met' if c['met'] else 'NOT met'}" for c in crit["checks"])
      + (". The levels differ: 'harder when more memorized' is tested here." if crit["met"] else
         ". The levels do not differ enough: no memorization claim is tested on this data set."), ""]
  for metric in claim_metrics:
    lines += _level_table(collected, levels, s.methods, choices[metric], metric, n)
  if searches:
    lines += _mix_lines(config, collected["mix"], tuned["mix"], searches, choices, metrics)
    lines += _thirds_lines(record["steps"], n)
  if strong:
    lines += _strong_lines(strong, bank_metrics)
  if record["failures"]:
    lines += ["Runs left out because their loss diverged (NaN/inf): " + ", ".join(sorted(record["failures"])) + ".", ""]
  if tuned:
    lines += _settings_lines(tuned, searches, claim_metrics, levels)
  lines += [f"## The claims, as paired differences ({n} seeds"
            + (f"; the strong metric {strong['seeds']} seeds' banks)" if strong else ")"), ""]
  lines += claims_lib.summary_lines(records) or ["No claim is tested on this data set."]
  if records:
    lines += ["", "Every test (p: two-sided paired t-test; Holm p: adjusted over the family):", "",
              claims_lib.table(records)]
  lines += ["", "## Where the time went", ""] + _timing_lines(record["invocations"]) + [""]
  text = "\n".join(lines)

  rows = study_records(workdir, levels, collected, config)
  payload = {"data": config.data.name, "num_seeds": n, "forget_size": config.forget.size, "methods": list(s.methods),
             "metrics": list(metrics), "claim_metrics": list(claim_metrics), "budget": s.get("budget"),
             "scores": {"file": os.path.basename(scores_file), "sha256": digest},
             "levels": levels, "sets": record["stats"], "criterion": crit, "tuned": tuned, "plan_searches": searches,
             "choices": {m: vars(c) for m, c in choices.items()}, "claims": records, "audit": strong,
             "edges": edge_flags(tuned, searches, claim_metrics), "diverged": record["failures"],
             "invocations": record["invocations"], "commands": record["commands"],
             "results": {lv: {name: m["summary"] for name, m in ms.items()} for lv, ms in collected.items()}}
  for directory in [workdir] + ([s.results_dir] if s.results_dir else []):
    folder = RunFolder(directory)
    folder.write("study_table", text)
    folder.write("study", payload)
    folder.write("study_timings", {"invocations": record["invocations"], "commands": record["commands"]})
    if rows:
      folder.write("study_record", rows)
      folder.write("study_figure", plot_study(collected, s.methods, levels, choices,
                                              f"{config.data.name}: {n} seeds, forget sets of {config.forget.size}"))
    if record.get("steps"):
      io.write_csv(folder.file("study_steps"), steps_record(rows, record["steps"]), fields=STEPS_COLUMNS)
  logging.info("study written to %s (and %s):\n%s", RunFolder(workdir).file("study_table"), s.results_dir or "-", text)
  return text


def _cell(model: Optional[Dict[str, Any]], metric: str) -> str:
  if model is None or metric not in model["summary"]:
    return "n/a"
  return _cell_of(metric, model["summary"][metric])


def _cell_of(metric: str, leaf: Dict[str, Any]) -> str:
  """A summary's 'mean ± ci95' in the metric's unit."""
  return reports.format_value(metric, leaf["mean"], results.half_width(leaf))


def _level_table(collected, levels, methods, choice: Choices, metric: str, n: int) -> List[str]:
  display = METRICS.get(metric).display
  cells = [[f"{name} ({_note(name)})"] + [_cell(collected[lv].get(name), metric) for lv in levels]
           for name in ("original", SECOND_RETRAIN)]
  cells += [[m] + [_cell(collected[lv].get(choice.levels.get(lv, {}).get(m, "")), metric) for lv in levels]
            for m in methods]
  return [f"## {reports.header(metric)} per method and level, each method at the point {display} chose ({n} seeds)",
          "", results.markdown_table(["method"] + levels, cells)]


def _mix_lines(config, mix: Dict[str, Any], tuned_mix: Dict[str, Any], searches: Dict[str, Dict[str, Any]],
               choices: Dict[str, Choices], metrics: Sequence[str]) -> List[str]:
  n = config.num_seeds
  lines = [f"## RUM on the mix ({n} seeds)", ""]
  for metric, search in searches.items():
    display, ch = METRICS.get(metric).display, choices[metric]
    best = ch.best
    top = sorted(((results.summarize(v)["mean"], k) for k, v in search["sequences"].items() if v is not None),
                 key=lambda mk: mk[0], reverse=METRICS.get(metric).higher_is_better is not False)[:5]
    runs = "; ".join(f"start {i + 1} {'until a pass changed nothing' if done else 'until the budget ran out'}"
                     for i, done in enumerate(search["converged"]))
    lines += [f"By {display}: RUM's plan, searched on whole sequences on the validation mix (coordinate descent "
              f"over the stages, {len(search['rounds'])} rounds: {runs}; each stage's candidates: "
              f"{', '.join(search['options'])}): "
              f"**{_plan_text(search['plan'])}**, validation {display} "
              f"{reports.format_value(metric, search['mean'])}. It scored {search['evaluated']} complete sequences; "
              f"the single side {search['single_evaluated']} configurations (`none` and every grid point), budget "
              f"{config.study.budget}. The best single configuration on the validation mix: **{best}**. The best "
              f"five sequences:", "",
              results.markdown_table(["sequence", f"validation {display}"],
                                     [[k, reports.format_value(metric, mean)] for mean, k in top])]
  names = ["original", "retrain", SECOND_RETRAIN]
  for ch in choices.values():
    names += [x for x in (ch.best, ch.rum, ch.shuffle, ch.paper, ch.proxy) if x]
  names += [m for m in config.study.methods if m in mix]
  rows = [[f"{name} ({_note(name)})"] + [_cell(mix[name], m) for m in metrics]
          for name in dict.fromkeys(names) if name in mix]
  lines += ["Every run on the reported mix:", "",
            results.markdown_table(["run"] + [reports.header(m) for m in metrics], rows)]
  return lines


def _thirds_lines(steps: List[Dict[str, Any]], n: int) -> List[str]:
  """Accuracy on the memorization thirds of the reported mix at the end (the study's steps record)."""
  ends = [r for r in steps if r["step"] == "end"]
  if not ends:
    return []
  summary = results.summary_frame(ends, by=("method",))
  stats = {(r["method"], r["metric"]): r for r in summary.to_dict("records")}
  cells = [[name] + [results.cell(stats[(name, f"{third}_accuracy")]) for third in rum.LEVELS]
           for name in dict.fromkeys(summary["method"])]
  return [f"Accuracy (%) on the reported mix's thirds by memorization at the end ({n} seeds; every seed and every "
          f"step of the RUM runs in {layout.name('study_steps')}):", "",
          results.markdown_table(["model"] + [f"{lv} third" for lv in rum.LEVELS], cells)]


def _strong_lines(strong: Dict[str, Any], bank_metrics: Sequence[str]) -> List[str]:
  seeds = strong["seeds"]
  lines = [f"## The strong metric on the mix ({seeds} seeds' banks)", "",
           f"{', '.join(METRICS.get(m).display for m in bank_metrics)} (docs/audit.md): per seed, "
           f"{strong['num_models']} unlearned vs {strong['num_models']} retrained models from that seed's original "
           f"model and reported mix, {strong['shadow_models']} shadow models; mean ± 95% t-interval over the {seeds} "
           f"seeds. 'retrain' is retraining judged the same way: what the ideal scores with this many models "
           f"(the challenge uses 512; scores from other bank sizes do not compare).", ""]
  cells = []
  for role in ("retrain", "best", "rum", "shuffle"):
    model = strong["models"].get(role)
    if model:
      cells.append([f"{model['name']} ({role})"] + [
          _cell_of(m, results.summarize(model["per_seed"][m])) + " (" + ", ".join(
              f"{v:.3f}" for v in model["per_seed"][m]) + ")" for m in bank_metrics])
  return lines + [results.markdown_table(["model"] + [f"{reports.header(m)} (per seed)" for m in bank_metrics], cells)]


def _settings_lines(tuned, searches, claim_metrics, levels) -> List[str]:
  lines = ["## Settings chosen on the validation sets", "",
           "Each method's base settings are config.unlearn.<method>; its grid is config.sweep.<method>; each claim "
           "metric chose its best point (the highest mean, or the lowest where lower is better); `*` marks a choice "
           "at an edge of its grid.", ""]
  for metric in claim_metrics:
    cells = []
    for method in dict.fromkeys(m for lv in levels for m in tuned.get(lv, {}) if m != runs_lib.plan_lib.NONE):
      row = [method]
      for lv in levels:
        t = tuned.get(lv, {}).get(method)
        point = t and t["points"][t["chosen"][metric]]
        row.append("n/a" if t is None else (grid_lib.label(point) or "(base)") + (" *" if edges(t["points"], point) else ""))
      cells.append(row)
    lines += [f"By {METRICS.get(metric).display}:", "", results.markdown_table(["method"] + list(levels), cells)]
  flags = edge_flags(tuned, searches, claim_metrics)
  lines += ["Choices at an edge of their grid (the grid was not wide enough there, or the edge is a bound such as "
            "the fewest epochs): " + ("; ".join(flags) if flags else "none") + ".", ""]
  return lines


def _timing_lines(invocations: List[Dict[str, float]]) -> List[str]:
  """Seconds per kind of piece, summed over invocations (the work directory's timings have every piece)."""
  groups: Dict[str, float] = {}
  for inv in invocations:
    for piece, seconds in inv.items():
      if piece == "total":
        continue
      kind = ("plan search" if "/plan_search" in piece else
              "strong metric (banks)" if piece.endswith("/audit") else
              "second retrain (noise ceiling)" if piece.endswith(runs_lib.NOISE_CEILING) else
              "tuning on validation sets" if "/validation/" in piece else
              "original models" if piece == "original" else "scores" if piece.startswith("scores")
              else "reported runs (and their retrain references)")
      groups[kind] = groups.get(kind, 0.0) + seconds
  total = sum(inv.get("total", 0.0) for inv in invocations)
  cells = [[k, f"{v / 60:.1f}"] for k, v in sorted(groups.items(), key=lambda kv: -kv[1])]
  cells.append(["total wall-clock (incl. evaluation, attacks, set-up)", f"{total / 60:.1f}"])
  return results.markdown_table(["piece", "minutes"], cells).splitlines()


def plot_study(collected: Dict[str, Dict[str, Any]], methods: Sequence[str], levels: Sequence[str],
               choices: Dict[str, Choices], title: str) -> Any:
  """Per claim metric, each method's runs (chosen by it) grouped by level; on the mix, the RUM runs beside."""
  plt = io.pyplot()
  fig, axes = plt.subplots(1, len(choices) + 1, figsize=(6 * (len(choices) + 1), 3.8), squeeze=False)
  axes = axes[0]
  names = ["original", SECOND_RETRAIN] + list(methods)
  x = np.arange(len(names))
  missing = {"mean": np.nan, "ci95": np.nan}  # a diverged run: no bar
  for ax, (metric, ch) in zip(axes, choices.items()):
    width = 0.8 / len(levels)
    for i, level in enumerate(levels):
      runs = [n if n in ("original", SECOND_RETRAIN) else ch.levels.get(level, {}).get(n, "") for n in names]
      sm = [collected[level][r]["summary"].get(metric, missing) if r in collected[level] else missing for r in runs]
      ax.bar(x + (i - (len(levels) - 1) / 2) * width, [v["mean"] for v in sm], width,
             yerr=[np.nan_to_num(results.half_width(v)) for v in sm], capsize=1.5, label=level)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{METRICS.get(metric).display} (chosen by it)")
    ax.legend(fontsize=7, title="forget set", title_fontsize=7, ncol=len(levels), loc="upper center")
  ax = axes[-1]
  mix = collected.get("mix", {})
  width = 0.8 / max(len(choices), 1)
  roles = ("best single", "RUM", "Shuffle", "paper's plan", "proxy")
  for j, (metric, ch) in enumerate(choices.items()):
    runs = (ch.best, ch.rum, ch.shuffle, ch.paper, ch.proxy)
    sm = [mix[r]["summary"].get(metric, missing) if r in mix else missing for r in runs]
    ax.bar(np.arange(len(runs)) + (j - (len(choices) - 1) / 2) * width, [v["mean"] for v in sm], width,
           yerr=[np.nan_to_num(results.half_width(v)) for v in sm], capsize=1.5, label=METRICS.get(metric).display)
  ax.set_xticks(np.arange(len(roles)))
  ax.set_xticklabels(roles, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("on the mix (each chosen by its metric)")
  ax.legend(fontsize=7, loc="upper center", ncol=2)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
