"""study.json, study.csv, study.md, study.png and study.timings.json of a finished study."""
import os
from typing import Any, Dict, List, Sequence

import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results
from rum_jax.pipelines.study import claims as claims_lib, sets as sets_lib
from rum_jax.pipelines.study import runs as runs_lib
from rum_jax.pipelines.study.runs import PAPER_NAME, PROXY_NAME, RUM_NAME, SHUFFLE_NAME
from rum_jax.unlearning import grid as grid_lib, rum

LEVEL_ORDER = ("low", "mid", "high", "mix")
NAMES = {"rum": RUM_NAME, "shuffle": SHUFFLE_NAME, "paper": PAPER_NAME, "proxy": PROXY_NAME}
RUN_NOTES = {RUM_NAME: "plan searched on the validation mix, thirds by memorization",
             SHUFFLE_NAME: "the same plan on three random parts (Shuffle control)",
             PAPER_NAME: "the paper's plan, thirds by memorization",
             PROXY_NAME: "the searched plan, thirds by the proxy"}


def _plan_text(plan: Dict[str, Any]) -> str:
  return " -> ".join(f"{m}" + (f" ({grid_lib.label(p)})" if p else "") for m, p in (plan[lv] for lv in rum.LEVELS))


def _timing_lines(invocations: List[Dict[str, float]]) -> List[str]:
  """Seconds per kind of piece, summed over invocations (timings.json has every piece)."""
  groups: Dict[str, float] = {}
  for inv in invocations:
    for piece, seconds in inv.items():
      if piece == "total":
        continue
      kind = ("plan search" if piece.endswith("plan_search") else
              "forgetting score and U-LiRA (banks)" if piece.endswith("/forgetting") else "tuning on validation sets" if "/validation/" in piece
              else "original models" if piece == "original" else "scores" if piece.startswith("scores")
              else "reported runs (and their retrain references)")
      groups[kind] = groups.get(kind, 0.0) + seconds
  total = sum(inv.get("total", 0.0) for inv in invocations)
  cells = [[k, f"{v / 60:.1f}"] for k, v in sorted(groups.items(), key=lambda kv: -kv[1])]
  cells.append(["total wall-clock (incl. evaluation, attacks, set-up)", f"{total / 60:.1f}"])
  return results.markdown_table(["piece", "minutes"], cells).splitlines()


def study_records(workdir: str, levels: Sequence[str]) -> List[Dict[str, Any]]:
  """The tidy records (`results.RECORD_COLUMNS`, one row per model x seed x metric) of every
  level's reported sets: each level's evaluation.csv, with forget_level the study's level
  (the mix included)."""
  rows = []
  for level in levels:
    frame = results.read_records(os.path.join(runs_lib.set_dir(workdir, level), "evaluation.csv"))
    frame["forget_level"] = level
    rows += frame.to_dict("records")
  return rows


def write_study(config: ml_collections.ConfigDict, workdir: str, record: Dict[str, Any]) -> str:
  """Writes the study's files in workdir and config.study.results_dir; returns the markdown.

  record: {"stats", "criterion", "collected" (level -> model -> {per_seed, summary}), "tuned"
  (level -> method -> run.tune's result), "search" (plan search record or None), "invocations",
  "commands", "failures"}.
  """
  s = config.study
  collected, tuned, search = record["collected"], record["tuned"], record["search"]
  levels = [lv for lv in LEVEL_ORDER if lv in collected]
  n = config.num_seeds
  best = claims_lib.best_on_validation(tuned["mix"], s.methods) if "mix" in tuned else None
  records = claims_lib.claims(collected, s.methods, best, record["criterion"]["met"], NAMES)
  minutes = sum(i.get("total", 0.0) for i in record["invocations"]) / 60
  cmd = record["commands"][-1]
  lines = [f"# RUM study on {config.data.name}", "",
           f"{n} seeds (mean ± 95% t-interval), forget sets of {config.forget.size} train examples, "
           f"{config.model.name} {tuple(config.model.kwargs.get('hidden', ())) or ''}. ToW and ToW-MIA in percent "
           f"(100 = the model retrained without the forget set). Every seed has its own reported and validation "
           f"forget sets, drawn at random from the same band of the memorization ranking, and its own retrain "
           f"references; every setting was chosen on the validation sets (docs/study.md). Command: "
           f"`{cmd['command']}` ({minutes:.1f} min wall-clock over {len(record['invocations'])} invocation(s); "
           f"the last on {cmd['machine']}).", ""]
  if collected:
    lines += ["![study](study.png)", ""]
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
  if collected:
    acc = [[lv] + [results.cell(collected[lv][m]["summary"]["forget_accuracy"]) for m in ("original", "retrain")]
           for lv in levels]
    lines += ["Accuracy on the reported forget sets (percent):", "",
              results.markdown_table(["level", "original", "retrained"], acc)]
  single = [lv for lv in levels if lv != "mix"]
  for metric, label in claims_lib.METRICS:
    if single:
      lines += [f"## {label} per method and level ({n} seeds)", ""]
      cells = [[m] + [results.cell(collected[lv][m]["summary"][metric]) if m in collected[lv] else "n/a"
                      for lv in levels] for m in ["original"] + list(s.methods)]
      lines += [results.markdown_table(["method"] + levels, cells)]
  if search is not None:
    lines += _mix_lines(config, collected.get("mix", {}), tuned.get("mix", {}), best, search)
  if record.get("strong"):
    lines += _strong_lines(record["strong"], best)
  if record["failures"]:
    lines += ["Runs left out because their loss diverged (NaN/inf): " + ", ".join(sorted(record["failures"])) + ".", ""]
  if tuned:
    lines += ["## Settings chosen on the validation sets", "", "Each method's base settings are config.unlearn."
              "<method>; its grid is config.sweep.<method>; the point with the highest mean validation ToW ran on "
              "the reported sets.", ""]
    cells = [[m] + [grid_lib.label(tuned[lv][m]["point"]) or "(base)" if m in tuned.get(lv, {}) else "n/a"
                    for lv in levels] for m in s.methods]
    lines += [results.markdown_table(["method"] + levels, cells)]
  lines += [f"## The claims, as paired differences ({n} seeds)", ""]
  lines += claims_lib.summary_lines(records, s.methods) or ["No claim is tested on this data set."]
  lines += ["", "## Where the time went", ""] + _timing_lines(record["invocations"]) + [""]
  text = "\n".join(lines)

  rows = study_records(workdir, levels)
  payload = {"data": config.data.name, "num_seeds": n, "forget_size": config.forget.size, "methods": list(s.methods),
             "levels": levels, "sets": record["stats"], "criterion": crit, "tuned": tuned, "plan_search": search,
             "best_single": best, "claims": records,
             "forgetting": record.get("strong", {}), "diverged": record["failures"],
             "invocations": record["invocations"], "commands": record["commands"],
             "results": {lv: {name: m["summary"] for name, m in ms.items()} for lv, ms in collected.items()}}
  for directory in [workdir] + ([s.results_dir] if s.results_dir else []):
    io.write_text(os.path.join(directory, "study.md"), text)
    io.write_json(os.path.join(directory, "study.json"), payload)
    io.write_json(os.path.join(directory, "study.timings.json"), {"invocations": record["invocations"],
                                                                  "commands": record["commands"]})
    if rows:
      io.write_csv(os.path.join(directory, "study.csv"), rows, fields=results.RECORD_COLUMNS)
      plot_study(collected, s.methods, levels, os.path.join(directory, "study.png"),
                 f"{config.data.name}: {n} seeds, forget sets of {config.forget.size}")
  logging.info("study written to %s (and %s):\n%s", os.path.join(workdir, "study.md"), s.results_dir or "-", text)
  return text


def _mix_lines(config, mix: Dict[str, Any], tuned_mix: Dict[str, Any], best: str, search: Dict[str, Any]) -> List[str]:
  n = config.num_seeds
  lines = [f"## RUM on the mix ({n} seeds)", "",
           f"RUM's plan, searched on the validation mix (per stage `none` and every method over its grid, each "
           f"scored by the ToW of the whole sequence so far): **{_plan_text(search['plan'])}**. The single methods "
           f"were tuned on the same validation mix: {search['single_evaluated']} configurations; the plan search "
           f"evaluated {search['evaluated']} ({len(rum.LEVELS)} stages). The best single method on the validation "
           f"mix: **{best}** ({grid_lib.label(tuned_mix[best]['point']) or 'base settings'}, validation ToW "
           f"{100 * tuned_mix[best]['validation_tow']:.1f}).", ""]
  cells = []
  for st in search["stages"]:
    means = {c: float(np.mean(v)) for c, v in st["scores"].items() if v is not None}
    top = sorted(means, key=means.get, reverse=True)[:3]
    cells.append([st["stage"], st["chosen"], f"{100 * means[st['chosen']]:.1f}",
                  f"{100 * means.get(rum.NO_METHOD, np.nan):.1f}", ", ".join(f"{c} {100 * means[c]:.1f}" for c in top)])
  lines += [results.markdown_table(["stage", "chosen", "validation ToW", "none", "best three"], cells)]
  rows = []
  for name in ["retrain", best, RUM_NAME, SHUFFLE_NAME, PAPER_NAME, PROXY_NAME]:
    if name not in mix:
      continue
    sm = mix[name]["summary"]
    diff = lambda other, metric="tow": (results.signed(*claims_lib.paired_difference(mix[name], mix[other], metric))
                                         if other in mix and name not in ("retrain", other) else "")
    rows.append([f"{name} ({RUN_NOTES.get(name, 'best single method' if name == best else 'the ideal')})",
                 results.cell(sm["tow"]), results.cell(sm["tow_mia"]), results.cell(sm["forget_accuracy"]),
                 results.cell(sm["retain_accuracy"]), results.cell(sm["test_accuracy"]), diff(best),
                 diff(best, "tow_mia"), diff(SHUFFLE_NAME)])
  lines += ["Differences are paired over seeds (points, mean ± 95% t-interval).", "",
            results.markdown_table(["run", "ToW", "ToW-MIA", "forget acc", "retain acc", "test acc", "ToW - best single",
                                    "ToW-MIA - best single", "ToW - Shuffle"], rows)]
  return lines


def _strong_lines(rows: Dict[str, Dict[str, Any]], best: str) -> List[str]:
  """The challenge score and U-LiRA table, and F differences with intervals from the two rows'
  intervals over the forget examples (half widths in quadrature: an approximation, the two
  scores share their examples)."""
  first = next(iter(rows.values()))
  lines = ["## Forgetting score and U-LiRA on the mix (seed 0)", "",
           f"The NeurIPS 2023 challenge's forgetting score F (mean points over the forget examples ± 95% interval "
           f"over them; {first['num_models']} unlearned vs {first['num_models']} retrained models from seed 0's "
           f"original model and reported mix) and U-LiRA's AUC ({first['shadow_models']} shadow models; 0.5 = "
           f"indistinguishable from never trained on); docs/forgetting.md defines both. 'retrain' is retraining "
           f"judged the same way: what the ideal scores with this many models.", ""]
  cells = []
  for name in ("retrain", best, RUM_NAME, SHUFFLE_NAME):
    r = rows.get(name)
    if r is not None and "forget_score" in r:
      auc = f"{r['ulira_auc']:.3f}" if "ulira_auc" in r else "n/a"
      cells.append([name, f"{r['forget_score']:.3f} ± {r['forget_score_ci95']:.3f}", auc])
  lines += [results.markdown_table(["model", "forgetting score F", "U-LiRA AUC"], cells)]
  for other in (best, SHUFFLE_NAME):
    a, b = rows.get(RUM_NAME, {}), rows.get(other, {})
    if "forget_score" in a and "forget_score" in b:
      mean = a["forget_score"] - b["forget_score"]
      half = float(np.hypot(a["forget_score_ci95"], b["forget_score_ci95"]))
      lines.append(f"- F of {RUM_NAME} - {other}: {mean:+.3f} ± {half:.3f}: {claims_lib.verdict(mean, half)}.")
  return lines + [""]


def plot_study(collected: Dict[str, Dict[str, Any]], methods: Sequence[str], levels: Sequence[str], path: str,
               title: str) -> None:
  """ToW and ToW-MIA per method grouped by level (bars = levels); on the mix, the RUM runs beside."""
  plt = io.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(17, 3.8))
  names = ["original"] + list(methods)
  x = np.arange(len(names))
  for ax, (metric, label) in zip(axes[:2], claims_lib.METRICS):
    width = 0.8 / len(levels)
    for i, level in enumerate(levels):
      missing = {"mean": np.nan, "ci95": np.nan}  # a diverged run: no bar
      sm = [collected[level][m]["summary"][metric] if m in collected[level] else missing for m in names]
      ax.bar(x + (i - (len(levels) - 1) / 2) * width, [v["mean"] for v in sm], width,
             yerr=[np.nan_to_num(results.half_width(v)) for v in sm], capsize=1.5, label=level)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel(label)
    ax.legend(fontsize=7, title="forget set", title_fontsize=7, ncol=len(levels), loc="upper center")
  ax = axes[2]
  mix = collected.get("mix", {})
  runs = [m for m in list(methods) + [RUM_NAME, SHUFFLE_NAME, PAPER_NAME, PROXY_NAME] if m in mix]
  for j, (metric, label) in enumerate(claims_lib.METRICS):
    sm = [mix[m]["summary"][metric] for m in runs]
    ax.bar(np.arange(len(runs)) + (j - 0.5) * 0.4, [v["mean"] for v in sm], 0.4,
           yerr=[np.nan_to_num(results.half_width(v)) for v in sm], capsize=1.5, label=label)
  ax.set_xticks(np.arange(len(runs)))
  ax.set_xticklabels(runs, rotation=30, ha="right", fontsize=8)
  ax.set_ylim(0, 1.25)
  ax.set_ylabel("on the mix")
  ax.legend(fontsize=7, loc="upper center", ncol=2)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  io.save_figure(fig, path, dpi=110)
