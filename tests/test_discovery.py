"""rum-jax-list: every registry entry, each method's settings with the defaults of
configs/default.py, every shipped config with its docstring, and the metrics."""
import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

from rum_jax.configs import default
from rum_jax import data, discovery, models, unlearning
from rum_jax.continual import methods as continual_methods, sequences
from rum_jax.evaluation import metrics
from rum_jax.unlearning import methods as unlearning_methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _names(listing, section):
  return [e["name"] for e in listing[section]]


def test_the_listing_holds_every_registry_entry_with_its_settings():
  listing = discovery.describe()
  assert _names(listing, "unlearning methods") == unlearning.UNLEARNING_METHODS.names()
  assert _names(listing, "data sets") == data.DATASETS.names()
  assert _names(listing, "models") == models.MODELS.names()
  assert _names(listing, "continual sequences") == sequences.SEQUENCES.names()
  assert _names(listing, "continual methods") == continual_methods.CONTINUAL_METHODS.names()
  neggrad_plus = next(e for e in listing["continual methods"] if e["name"] == "neggrad_plus")
  assert neggrad_plus["settings"] == {"alpha": 0.5} and neggrad_plus["about"]
  defaults = default.get_config().unlearn
  for entry in listing["unlearning methods"]:
    expected = defaults[entry["name"]].to_dict() if entry["name"] in defaults else {}
    assert entry["settings"] == expected and entry["about"], entry["name"]
  salun = next(e for e in listing["unlearning methods"] if e["name"] == "salun")
  assert salun["swept_per_model"] == list(unlearning.UNLEARNING_METHODS.get("salun").swept)


def test_every_module_of_a_plugin_package_is_imported_and_a_method_is_one_file():
  """The packages import every module in them (a new file is found with no edit elsewhere), and
  each unlearning or continual method is the file named as it (RUM, the meta-method, is
  unlearning/rum.py; common.py and interface.py hold what the methods share)."""
  for package in (data, models, metrics, unlearning_methods, continual_methods):
    for module in pkgutil.iter_modules(package.__path__):
      assert f"{package.__name__}.{module.name}" in sys.modules, f"{package.__name__}.{module.name} was not imported"
  stems = lambda package, shared: {m.name for m in pkgutil.iter_modules(package.__path__)} - {shared}  # noqa: E731
  assert stems(unlearning_methods, "common") == set(unlearning.UNLEARNING_METHODS.names()) - {"rum"}
  assert stems(continual_methods, "interface") == set(continual_methods.CONTINUAL_METHODS.names())


def test_every_shipped_config_is_listed_with_its_docstring():
  listing = discovery.describe()
  files = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f != "__init__.py")
  assert _names(listing, "configs") == [f"configs/{f}" for f in files]
  for entry, f in zip(listing["configs"], files):
    first = importlib.import_module(f"rum_jax.configs.{f[:-3]}").__doc__.strip().splitlines()[0]
    assert entry["about"].startswith(first), f


def test_the_metrics_are_the_registry():
  from rum_jax.evaluation.metrics import METRICS
  listing = discovery.describe()
  assert sorted(_names(listing, "metrics") + _names(listing, "continual metrics")) == METRICS.names()
  for entry in listing["metrics"] + listing["continual metrics"]:
    metric = METRICS.get(entry["name"])
    assert entry["about"].startswith(metric.description or metric.display)
  assert {"tow", "tow_mia", "forget_score"} <= set(_names(listing, "metrics"))
  assert {METRICS.get(n).kind for n in _names(listing, "continual metrics")} == {"sequence"}
  assert {"final_cl_tow", "final_cl_tow_of_mean_matrices", "acc"} <= set(_names(listing, "continual metrics"))


def test_the_command_prints_the_listing_as_text_and_json(capsys):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  as_json = subprocess.run([sys.executable, "-m", "rum_jax", "list", "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
  assert as_json.returncode == 0, as_json.stderr[-2000:]
  assert json.loads(as_json.stdout) == json.loads(json.dumps(discovery.describe(), default=repr))
  discovery.main(["rum-jax-list"])
  text = capsys.readouterr().out
  assert text == discovery.render(discovery.describe()) + "\n"
  assert "neggrad_plus" in text and "alpha=0.9, batch_size=64, epochs=5, forget_passes=0, lr=0.03" in text
  assert "configs/rum_digits.py" in text and "A4" in text
  with pytest.raises(SystemExit):
    discovery.main(["rum-jax-list", "--bogus"])
  assert capsys.readouterr().err == "error: rum-jax-list takes no arguments but --json, got --bogus\n"
