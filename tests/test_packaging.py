"""pyproject.toml: what `pip install .` installs: the package rum_jax with the shipped configs in
its namespace (rum_jax.configs) and the console scripts, the leaderboard's among them. Cheap here
(setuptools lays the package out as a wheel would, in a copy of the project); the real install
into a fresh virtual environment is `slow` (it fetches the build backend from the package index)."""
import ast
import configparser
import os
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"rum-jax-train", "rum-jax-unlearn", "rum-jax-continual", "rum-jax-evaluate", "rum-jax-list",
           "rum-jax-leaderboard"}


def _python_files(root: str, packages) -> set:
  out = set()
  for package in packages:
    for folder, _, files in os.walk(os.path.join(root, package)):
      out |= {os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".py")}
  return out


def _imports(root: str) -> set:
  """Top-level modules every installed file (rum_jax and the configs) imports (also inside functions)."""
  out = set()
  for path in _python_files(root, ["rum_jax", "configs"]):
    for node in ast.walk(ast.parse(open(os.path.join(root, path)).read())):
      if isinstance(node, ast.Import):
        out |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom) and not node.level:
        out.add(node.module.split(".")[0])
  return out


def _normalize(name: str) -> str:
  return name.lower().replace("_", "-")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(the project's copy, the installed layout) as `pip install .` would lay it out."""
  src = tmp_path_factory.mktemp("src")
  for name in ("pyproject.toml", "README.md", "rum_jax", "configs"):
    (shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy)(
        os.path.join(ROOT, name), src / name)
  lib = src / "lib"
  result = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info",
                           "--egg-base", str(src), "build_py", "--build-lib", str(lib)],
                          cwd=src, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return src, lib


def test_the_package_holds_every_module_and_the_configs_in_its_namespace(built):
  """The clone's configs/ is installed as rum_jax.configs (no top-level `configs` to collide with
  a user's own); rum_jax/configs/__init__.py, which reads configs/ in a clone, is not."""
  src, lib = built
  modules = {f for f in _python_files(ROOT, ["rum_jax"]) if not f.startswith(os.path.join("rum_jax", "configs", ""))}
  shipped = {os.path.join("rum_jax", f) for f in _python_files(ROOT, ["configs"])}
  assert _python_files(str(lib), ["rum_jax"]) == modules | shipped and not (lib / "configs").exists()
  assert (lib / "rum_jax" / "configs" / "__init__.py").read_text() == open(os.path.join(ROOT, "configs",
                                                                                    "__init__.py")).read()
  assert (src / "rum_jax.egg-info" / "top_level.txt").read_text().split() == ["rum_jax"]


def test_the_console_scripts_name_the_command_lines(built):
  src, _ = built
  entry_points = configparser.ConfigParser()
  entry_points.read(src / "rum_jax.egg-info" / "entry_points.txt")
  scripts = dict(entry_points["console_scripts"])
  assert set(scripts) == SCRIPTS
  from rum_jax import cli
  for target in scripts.values():
    module, function = target.split(":")
    assert module == "rum_jax.cli" and callable(getattr(cli, function))


def test_every_imported_distribution_is_a_dependency(built):
  src, _ = built
  declared = {_normalize(line.split(">")[0].split("=")[0].split("[")[0].strip())
              for line in (src / "rum_jax.egg-info" / "requires.txt").read_text().splitlines()
              if line.strip() and not line.startswith("[")}
  providers = metadata.packages_distributions()
  third_party = sorted(m for m in _imports(ROOT) if m not in sys.stdlib_module_names and m != "rum_jax")
  missing = [(m, providers.get(m)) for m in third_party if not {_normalize(d) for d in providers.get(m, [m])} & declared]
  assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_the_installed_layout_runs_beside_a_users_own_configs_package(built, tmp_path):
  """From a folder with a `configs` package of the user's, whose default.py would break a shipped
  config importing it: the shipped configs import their own, --config=configs/<name>.py names the
  shipped file where the folder has no such file, and the user's package stays theirs."""
  _, lib = built
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "__init__.py").write_text("")
  (tmp_path / "configs" / "default.py").write_text("raise ImportError('the user\\'s own default.py')\n")
  (tmp_path / "configs" / "mine.py").write_text("NAME = 'mine'\n")
  env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(lib)}
  code = ("import configs.mine, rum_jax, rum_jax.cli as c\n"
          "from rum_jax.configs import rum_digits\n"
          "assert rum_digits.get_config().forget.kind == 'memorization' and configs.mine.NAME == 'mine'\n"
          "config, _ = c.load_config(['rum-jax-unlearn', '--config=configs/rum_digits.py'], None)\n"
          "assert config.forget.level == 'mix'\n"
          "print(rum_jax.__file__); print(c.resolve_config_path('configs/rum_digits.py'))")
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  package, config = result.stdout.split()
  assert package.startswith(str(lib)) and config == str(lib / "rum_jax" / "configs" / "rum_digits.py")


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True])
def test_pip_install_in_a_fresh_venv(tmp_path, editable):
  """pip install [-e] . into a new virtual environment (its dependencies from this Python's site
  packages): the package, the configs and the console scripts, from another directory."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
  pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"] + (["-e"] if editable else [])
  subprocess.run(pip + [ROOT], check=True, timeout=900)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  code = "import rum_jax.configs.digits, rum_jax; print(rum_jax.__file__)"
  out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, check=True).stdout
  assert out.startswith(ROOT if editable else str(venv))
  listing = subprocess.run([str(venv / "bin" / "rum-jax-list")], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout
  assert "configs/rum_digits.py" in listing and "neggrad_plus" in listing
  board = subprocess.run([str(venv / "bin" / "rum-jax-leaderboard"), "--workdirs=nothing"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
  assert board.returncode == 1 and board.stderr.startswith("error: nothing holds no records")
  bad = subprocess.run([str(venv / "bin" / "rum-jax-unlearn"), "--config=configs/rum_digits.py",
                        "--config.unlearn.methd=salun"], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert bad.returncode == 1 and bad.stderr == "error: the config has no field unlearn.methd (did you mean unlearn.method?)\n"
