"""What there is to choose, read from the registries themselves: `rum-jax-list` (or
`python -m rum_jax list`, `--json` for a machine-readable copy), or `describe()` from Python.

Unlearning methods with their settings and defaults (configs/default.py), forget-set kinds,
memorization proxies, data sets, models, shipped configs (each file's first docstring line),
continual sequences, methods and learning algorithms, and the metrics. Everything listed is
an entry of a registry, so a new entry is listed without a change here.
"""
import ast
import inspect
import json
import os
import sys
from typing import Any, Dict, List, Sequence

from rum_jax import data, evaluation, models, unlearning
from rum_jax.evaluation.metrics import METRICS
from rum_jax.continual import methods as continual_methods, sequences
from rum_jax.memorization.config import SCORE_NAMES
from rum_jax.registry import Registry
from rum_jax.unlearning.forget_kinds import FORGET_KINDS



def summary(doc: str) -> str:
  """A docstring's first paragraph as one line ('' without one)."""
  return " ".join(doc.strip().split("\n\n")[0].split())


def first_line(obj: Any) -> str:
  """The summary of an object's docstring."""
  return summary(inspect.getdoc(obj) or "")


def _entries(registry: Registry) -> List[Dict[str, str]]:
  return [{"name": n, "about": first_line(registry.get(n))} for n in registry.names()]


def _methods(defaults: Any) -> List[Dict[str, Any]]:
  out = []
  for name in unlearning.UNLEARNING_METHODS.names():
    method = unlearning.UNLEARNING_METHODS.get(name)
    kind = ("from scratch" if method.from_scratch else "composite" if method.composite
            else "one-shot" if method.apply is not None else "training")
    settings = defaults.unlearn[name].to_dict() if name in defaults.unlearn else {}
    out.append({"name": name, "about": method.about, "kind": kind, "settings": settings,
                "swept_per_model": list(method.swept)})
  return out


def config_files(directory: str) -> List[Dict[str, str]]:
  """Every config file in `directory`: its name and its module docstring's first paragraph."""
  out = []
  for f in sorted(os.listdir(directory)):
    if f.endswith(".py") and not f.startswith("_"):
      with open(os.path.join(directory, f), encoding="utf-8") as fh:
        doc = ast.get_docstring(ast.parse(fh.read())) or ""
      out.append({"name": f"configs/{f}", "about": summary(doc)})
  return out


def _forget_kinds() -> List[Dict[str, str]]:
  out = []
  for name in FORGET_KINDS.names():
    kind = FORGET_KINDS.get(name)
    uses = ([f"ranks by a {kind.score_file} score file (config.forget.scores)"] if kind.score_file else []) + \
        (["config.forget.level"] if kind.uses_level else []) + (["groups by the original models' features, config.forget.group"] if kind.uses_group else [])
    out.append({"name": name, "about": "; ".join(uses) or "uniformly at random (config.forget.seed)"})
  return out


def _metrics(continual: bool) -> List[Dict[str, str]]:
  """The metrics of one-shot runs and banks, or (continual) those of continual runs."""
  out = []
  for name in METRICS.names():
    metric = METRICS.get(name)
    if (metric.kind == "sequence") != continual:
      continue
    better = {True: "higher is better", False: "lower is better", None: "closest to retraining"}
    out.append({"name": name, "about": f"{metric.description or metric.display} "
                f"(from {', '.join(sorted(metric.needs))}; {better[metric.higher_is_better]})"})
  return out


def describe() -> Dict[str, Any]:
  """Everything there is to choose, as plain data (what `rum-jax-list --json` prints)."""
  from rum_jax import configs  # pylint: disable=import-outside-toplevel  (the shipped configs)
  from rum_jax.configs import default  # pylint: disable=import-outside-toplevel
  return {
      "unlearning methods": _methods(default.get_config()),
      "forget-set kinds": _forget_kinds(),
      "memorization proxies": [{"name": n, "about": "train.py config.mode=proxies"} for n in SCORE_NAMES],
      "data sets": _entries(data.DATASETS),
      "models": _entries(models.MODELS),
      "configs": config_files(configs.__path__[0]),
      "continual sequences": _entries(sequences.SEQUENCES),
      "continual methods": [{"name": n, "about": f"{m.about}; learns with {m.learn_algorithm}",
                             "settings": m.defaults()}
                            for n in continual_methods.CONTINUAL_METHODS.names()
                            for m in [continual_methods.CONTINUAL_METHODS.get(n)]],
      "continual learning algorithms": [
          {"name": n, "about": "projected on the memories' gradients"
           if continual_methods.LEARN_ALGORITHMS.get(n).uses_memories else "plain SGD"}
          for n in continual_methods.LEARN_ALGORITHMS.names()],
      "metrics": _metrics(continual=False),
      "continual metrics": _metrics(continual=True),
      "MIA features": [{"name": f, "about": "SVC attack feature"} for f in evaluation.FEATURES],
  }


def render(listing: Dict[str, Any]) -> str:
  """The listing as text: a heading per section, one line per entry (methods: their settings)."""
  lines = []
  for section, entries in listing.items():
    lines += ["", f"{section}:"]
    for e in entries:
      about = "; ".join(x for x in (e.get("kind"), e.get("about")) if x)
      lines.append(f"  {e['name']:<22} {about}".rstrip() if len(e["name"]) < 22 else f"  {e['name']}  {about}")
      if e.get("settings"):
        lines.append("      " + ", ".join(f"{k}={v!r}" for k, v in e["settings"].items()))
      if e.get("swept_per_model"):
        lines.append(f"      swept per model in one program: {', '.join(e['swept_per_model'])}")
  lines += ["", "Set a method with --config.unlearn.method=<name> and its settings with "
            "--config.unlearn.<name>.<setting>=<value>; sweep one with --config.sweep.<name>.<setting>=a,b,c."]
  return "\n".join(lines[1:])


def main(argv: Sequence[str]) -> None:
  """rum-jax-list [--json]."""
  args = list(argv[1:])
  if args not in ([], ["--json"]):
    sys.stderr.write(f"error: rum-jax-list takes no arguments but --json, got {' '.join(args)}\n")
    sys.exit(2)
  listing = describe()
  print(json.dumps(listing, indent=1, default=repr) if args else render(listing))
