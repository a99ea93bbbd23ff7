"""The import graph of rum_jax: no cycle, and every arrow points down the layers.

Layers (docs/architecture.md): commands -> pipelines -> library -> base. Every import counts,
also those inside functions, so no lazy import can hide an arrow that runs up.
"""
import ast
import os
from typing import Dict, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "rum_jax")

# The shipped configs (rum_jax.configs) import the library's registries and are read by the
# command lines only: they sit with the commands.
COMMANDS = {"rum_jax.commands", "rum_jax.config_validation", "rum_jax.runtime", "rum_jax.cli",
            "rum_jax.discovery", "rum_jax.__main__", "rum_jax.configs"}
# Library packages by rank: a package imports only packages of lower rank (and itself).
LIBRARY_RANK = {
    "registry": 0, "checks": 0, "optional": 0, "provenance": 0, "manifest": 0,
    "io": 1,
    "results": 2, "tracking": 2,
    "data": 3, "models": 3, "runfolder": 3,
    "training": 4,
    "memorization": 5, "evaluation": 5,
    "unlearning": 6, "continual": 6,
    "workdir": 7,  # the earlier functions over run folders, for continual and study until they adopt RunFolder
}
# Pipelines by rank: a pipeline imports only pipelines of lower rank.
PIPELINE_RANK = {"config": 0, "reports": 0, "training": 0, "memorization": 1, "evaluation": 1, "continual": 1,
                 "unlearning": 2, "sweep": 3, "audit": 3, "study": 4}


def _modules() -> Dict[str, str]:
  out = {}
  for directory, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(directory, f), ROOT)[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(directory, f)
  return out


def _imports(path: str, module: str, known: Set[str]) -> Set[str]:
  """rum_jax modules `module` imports anywhere in its file (a name imported from a package
  counts as its submodule when there is one)."""
  tree = ast.parse(open(path).read())
  package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("rum_jax")}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      if not base.startswith("rum_jax"):
        continue
      for a in node.names:
        sub = f"{base}.{a.name}"
        out.add(sub if sub in known else base)
  out.discard(module)
  return out


def _graph() -> Dict[str, Set[str]]:
  modules = _modules()
  return {m: _imports(p, m, set(modules)) for m, p in modules.items()}


def _layer(module: str):
  parts = module.split(".")
  if module in COMMANDS:
    return ("commands", 0)
  if len(parts) > 1 and parts[1] == "pipelines":
    return ("pipelines", PIPELINE_RANK.get(parts[2], -1) if len(parts) > 2 else -1)
  if module == "rum_jax":
    return ("root", 0)
  return ("library", LIBRARY_RANK[parts[1]])


def test_every_module_has_a_layer():
  for module in _graph():
    kind, rank = _layer(module)
    assert rank >= 0 or module == "rum_jax.pipelines", f"{module} is in no layer of this test: add it"


def test_no_import_cycle():
  graph = _graph()
  state: Dict[str, int] = {}
  stack = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for n in sorted(graph.get(m, ())):
      if state.get(n) == 1:
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = 2
  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_arrows_point_down_the_layers():
  order = {"root": 3, "commands": 2, "pipelines": 1, "library": 0}
  bad = []
  for module, imports in _graph().items():
    kind, rank = _layer(module)
    for target in imports:
      t_kind, t_rank = _layer(target)
      if target == "rum_jax.pipelines" or module == "rum_jax.pipelines":
        continue  # the package's docstring-only __init__
      if order[t_kind] > order[kind]:
        bad.append(f"{module} ({kind}) imports {target} ({t_kind})")
      elif kind == t_kind == "pipelines" and t_rank >= rank and module.split(".")[2] != target.split(".")[2]:
        bad.append(f"pipeline {module} imports pipeline {target} of the same or a higher rank")
      elif kind == t_kind == "library":
        same_package = module.split(".")[1] == target.split(".")[1]
        if not same_package and t_rank >= rank:
          bad.append(f"{module} (rank {rank}) imports {target} (rank {t_rank})")
  assert not bad, "\n".join(sorted(bad))


def test_the_training_package_knows_no_method():
  for module, imports in _graph().items():
    if module.startswith("rum_jax.training"):
      above = [t for t in imports if t.split(".")[1] in ("unlearning", "continual", "evaluation", "memorization")]
      assert not above, f"{module} imports {above}"


def test_the_test_sees_lazy_imports(tmp_path):
  """The parser finds an import inside a function (the way a cycle used to hide)."""
  f = tmp_path / "m.py"
  f.write_text("def f():\n  from rum_jax.unlearning import rum\n  import rum_jax.commands\n")
  found = _imports(str(f), "rum_jax.training.m", {"rum_jax.unlearning.rum", "rum_jax.commands"})
  assert found == {"rum_jax.unlearning.rum", "rum_jax.commands"}
