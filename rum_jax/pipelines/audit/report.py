"""The audit pipeline's reports: rows per model (metrics by name from `METRICS`), the tidy
record, the markdown table and the figures of the epsilons and of the U-LiRA ROC curves."""
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from rum_jax import io, results
from rum_jax.runfolder import RunFolder, layout
from rum_jax.evaluation.metrics import DEFAULT_BANK_METRICS, METRICS, BankOutputs, challenge as challenge_metrics
from rum_jax.pipelines import reports
from rum_jax.pipelines.audit.banks import digest
from rum_jax.results import summarize

ACCURACY_COLUMNS = ("forget_accuracy", "retain_accuracy", "test_accuracy")  # means over each bank


def _metrics(config) -> List[str]:
  return list(config.audit.get("metrics", DEFAULT_BANK_METRICS))


def _row(name: str, accuracy: Dict[str, float], outputs: Optional[BankOutputs], metrics: Sequence[str],
         seconds: Optional[float], extra: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
  """A model's row: bank-mean accuracies, every metric of `metrics` its outputs allow (by name
  from `METRICS`), F's 95% interval over the forget examples, seconds."""
  row = {"model": name, **accuracy, **(extra or {})}
  for m in metrics:
    needs = METRICS.get(m).needs
    if outputs is not None and ("shadow" not in needs or outputs.shadow is not None) and (
        "banks" not in needs or outputs.unlearned is not None):
      row[m] = float(outputs.value(m)[0])
  if outputs is not None and outputs.unlearned is not None:
    row["forget_score_ci95"] = summarize(challenge_metrics.points(outputs))["ci95"]
  if seconds is not None:
    row["seconds"] = seconds
  return row


def _accuracies(bank: Dict[str, np.ndarray]) -> Dict[str, float]:
  return {k: float(np.mean(bank[k])) for k in ACCURACY_COLUMNS}


def _cells(row: Dict[str, Any], columns: Sequence[str]) -> List[str]:
  cells = [row["model"]]
  for m in columns:
    half = row.get(f"{m}_ci95", np.nan)  # F: over the forget examples
    cells.append(reports.format_value(m, row[m], half) if m in row else "")
  return cells + [f"{row['seconds']:.0f}" if "seconds" in row else ""]


def records(config, rows: List[Dict[str, Any]], forget_digest: str) -> List[Dict[str, Any]]:
  """The tidy record of the banks: one row per model x metric (seed: config.audit.seed,
  the bank's; a value is over its models, an accuracy the mean over them)."""
  out = []
  for row in rows:
    values = {k: [v] for k, v in row.items() if k in METRICS}
    # 'original (no unlearning)' is the original as in every record; the reference bank keeps its
    # label, apart from the scored method 'retrain' (other models: a bank of their own).
    method = "original" if row["model"].startswith("original") else row["model"]
    out += [{**r, "seed": config.audit.seed}
            for r in results.record_rows(values, **results.run_columns(config, method, {}, forget_digest))]
  return out


def _columns(config) -> List[str]:
  """The table's columns: the challenge metrics, the banks' accuracies, then the attacks."""
  metrics = _metrics(config)
  banks = [m for m in metrics if METRICS.get(m).needs == frozenset({"banks"})]
  return banks + list(ACCURACY_COLUMNS) + [m for m in metrics if m not in banks]


def _markdown(config, rows: List[Dict[str, Any]], record: Dict[str, Any]) -> str:
  f = config.audit
  columns = _columns(config)
  header = ["model"] + [reports.header(m) for m in columns] + ["seconds"]
  lines = [f"# Audit of forgetting quality on {config.data.name}", "",
           f"Forget set: {record['forget_size']} of {record['num_train']} train examples ({config.forget.kind}"
           + (f", {config.forget.level}" if config.forget.kind in ("memorization", "proxy") else "") + "). "
           f"Challenge score (Triantafillou et al. 2024) from {record['num_models']} retrained and "
           f"{record['num_models']} unlearned models per method (F: mean points over the forget examples "
           "± 95% interval over them; final = F x retain and test accuracy ratios to retraining); "
           f"U-LiRA (Hayes et al. 2024) on the forget set's examples from {record['shadow_models']} shadow "
           "models, each the target in turn. Accuracies and TPRs in percent, means over each bank; "
           "seconds: compute time of the method's banks.", "",
           results.markdown_table(header, [_cells(r, columns) for r in rows])]
  attacks = record.get("attacks")
  if attacks:
    lira = attacks["lira"]["all"]
    lines += ["## LiRA on the trained shadow models (no unlearning)", "",
              f"Every train example, members = the model's half: AUC {lira['auc']:.3f}, balanced accuracy "
              f"{100 * lira['balanced_accuracy']:.1f}%, TPR {100 * lira['tpr_at_fpr_0.01']:.1f}% at 1% FPR and "
              f"{100 * lira['tpr_at_fpr_0.001']:.1f}% at 0.1% FPR."]
    if "svc" in attacks:
      svc = attacks["svc"]
      lines += ["", f"Against the SVC attack on the same {svc['targets']} models and examples (balanced "
                "accuracy, no threshold tuned on the judged pairs): LiRA "
                f"{100 * svc['lira_balanced_accuracy']:.1f}%, SVC "
                + ", ".join(f"{k} {100 * v:.1f}%" for k, v in svc["svc_balanced_accuracy"].items())
                + f": LiRA {'beats' if svc['lira_beats_svc'] else 'does NOT beat'} the best SVC feature "
                f"({svc['svc_best_feature']})."]
    mem = attacks["memorization"]
    lines += ["", f"Feldman-Zhang memorization from the {mem['num_models']} halves (ratio {mem['ratio']}): mean "
              f"{mem['mean']:.3f}, written to `{mem['file']}` (in the work directory)."]
  diverged = sorted(set(record["challenge_diverged"]) | set(attacks.get("diverged", {}) if attacks else ()))
  if diverged:
    lines += ["", "Left out because a bank diverged (NaN/inf): " + ", ".join(diverged) + "."]
  lines += ["", f"Computed in {record['seconds'] / 60:.1f} min of model compute ({f.chunk_size} models per "
            "program).", "", f"![epsilons]({layout.name('epsilons_figure')})", "",
            f"![roc]({layout.name('roc_figure')})", ""]
  return "\n".join(lines)


def _plot_epsilons(epsilons: Dict[str, np.ndarray], num_models: int, title: str) -> Any:
  """Per method, a histogram of the forget examples' epsilons over the challenge's point buckets (a figure)."""
  plt = io.pyplot()
  top = math.ceil(math.log(num_models - 1)) if num_models > 2 else 0.5  # the last bucket's end
  bins = np.append(np.arange(0, top + 0.25, 0.5), top + 0.5)
  cols = min(max(len(epsilons), 1), 4)
  rows = math.ceil(max(len(epsilons), 1) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(max(3.2 * cols, 5.5), 2.8 * rows + 0.4), squeeze=False,
                           sharey=True)
  for ax, (name, eps) in zip(axes.ravel(), epsilons.items()):
    ax.hist(np.minimum(eps, top + 0.25), bins=bins)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(f"epsilon (last bar: > {top}, 0 points)", fontsize=8)
  for ax in axes.ravel()[len(epsilons):]:
    ax.axis("off")
  for ax in axes[:, 0]:
    ax.set_ylabel("forget examples")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def _plot_roc(curves: Dict[str, Dict[str, Any]], anchors: Sequence[str], title: str) -> Any:
  """ROC curves on log-log axes (the low-FPR regime, Carlini et al. 2022); the `anchors`
  (no unlearning, LiRA) dashed in grey tones, the methods in colour (a figure)."""
  plt = io.pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  methods = [name for name in curves if name not in anchors]
  colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
  styles = iter([("k", "--"), ("0.5", "-.")])
  for name, m in curves.items():
    colour, style = next(styles) if name in anchors else (colours(methods.index(name) % colours.N), "-")
    ax.plot(np.maximum(m["fpr"], 1e-4), np.maximum(m["tpr"], 1e-4), color=colour, linestyle=style,
            label=f"{name} (AUC {m['auc']:.3f})")
  ax.plot([1e-4, 1], [1e-4, 1], "k:", linewidth=1, label="chance")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(1e-3, 1)
  ax.set_ylim(1e-3, 1)
  ax.set_xlabel("false positive rate")
  ax.set_ylabel("true positive rate")
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return fig


def write(config, workdir: Any, forget: np.ndarray, dataset, original_acc: Dict[str, float],
          challenge: Dict[str, Any], attacks: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """The audit record (rows per model), its tidy rows, the table, every forget example's
  epsilons and the two figures (also in config.audit.results_dir)."""
  workdir = RunFolder.of(workdir)
  f = config.audit
  retrained = challenge["retrained"]
  methods = challenge["methods"]
  num_models = len(retrained["retain_accuracy"])
  metrics = _metrics(config)
  rows = [_row("original (no unlearning)", original_acc, attacks["original"] if attacks else None, metrics, None),
          _row("retrain (reference bank)", _accuracies(retrained), None, metrics, retrained["seconds"])]
  for folder, m in methods.items():
    seconds = m["bank"]["seconds"] + (attacks["seconds"].get(folder, 0.0) if attacks else 0.0)
    rows.append(_row(folder, _accuracies(m["bank"]), m["outputs"], metrics, seconds))
  strip = lambda metrics: {k: v for k, v in metrics.items() if k not in ("fpr", "tpr", "thresholds")}  # noqa: E731
  seconds = retrained["seconds"] + sum(m["bank"]["seconds"] for m in methods.values())
  if attacks:
    seconds += sum(attacks["seconds"].values())
  record = {
      "data": config.data.name, "num_train": len(dataset.train), "forget_size": len(forget),
      "num_models": num_models, "shadow_models": f.shadow_models if attacks else 0,
      "methods": list(methods), "rows": rows, "seconds": seconds, "challenge_diverged": challenge["diverged"],
      "epsilons": {k: {"median": float(np.median(m["epsilons"])), "mean": float(np.mean(m["epsilons"]))}
                   for k, m in methods.items()},
  }
  if attacks:
    record["attacks"] = {
        "lira": {p: strip(v) for p, v in attacks["lira"].items()},
        "no_unlearning": {p: strip(v) for p, v in attacks["no_unlearning"].items()},
        "methods": {k: {p: strip(v) for p, v in pools.items()} for k, pools in attacks["methods"].items()},
        **{k: attacks[k] for k in ("svc", "memorization", "diverged", "seconds", "shadow_accuracy") if k in attacks}}
  positions = {"position": forget, "index": dataset.train.index[forget]}
  workdir.write("epsilons", {**positions, **{k: m["epsilons"] for k, m in methods.items()}})
  workdir.write("epsilons_rows",
                [{"position": int(p), "index": int(i), **{k: float(m["epsilons"][e]) for k, m in methods.items()}}
                 for e, (p, i) in enumerate(zip(*positions.values()))])
  text = _markdown(config, rows, record)
  curves = {}
  anchors = ("original (no unlearning)", "LiRA, trained models, all examples")
  if attacks:
    curves[anchors[0]] = attacks["no_unlearning"]["forget_set"]
    curves.update({k: v["forget_set"] for k, v in attacks["methods"].items()})
    curves[anchors[1]] = attacks["lira"]["all"]
  for folder in [workdir] + ([RunFolder(f.results_dir)] if f.results_dir else []):
    folder.write("audit", record)
    folder.write("audit_record", records(config, rows, digest(forget)))
    folder.write("audit_table", text)
    folder.write("epsilons_figure", _plot_epsilons(
        {k: m["epsilons"] for k, m in methods.items()}, num_models,
        f"{config.data.name}: challenge epsilons of {len(forget)} forget examples, {num_models} models"))
    if curves:
      folder.write("roc_figure", _plot_roc(curves, anchors, f"{config.data.name}: U-LiRA on the forget set, "
                                                            f"{f.shadow_models} shadow models"))
  logging.info("audit written to %s:\n%s", workdir.file("audit_table"), text)
  return record


