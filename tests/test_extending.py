"""docs/extending.md, followed literally, one test per section.

Each test reads the page: the section's first code block is written as the new file it names
(`rum_jax/<package>/<name>.py`) into a temporary folder of that package, which the package then
searches as it searches its own folder (`registry.import_modules`); the section's second block,
the config entry, is applied to a config; and a tiny real run shows the component in its
results. The registries, the packages' search paths and sys.modules are restored afterwards.
"""
import importlib
import os
import re
import sys
import tempfile
import textwrap
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import pytest
from scipy import special
from sklearn import datasets

from rum_jax.configs import continual_digits, default
from rum_jax import commands, data, discovery, io, models, registry, results
from rum_jax.config_validation import ConfigError, validate
from rum_jax.continual import methods as continual_methods
from rum_jax.evaluation import mia
from rum_jax.evaluation.metrics import DEFAULT_METRICS, METRICS
from rum_jax.training import optim
from rum_jax.training.state import Forward, init_state
from rum_jax.unlearning import UNLEARNING_METHODS
from rum_jax.unlearning.interface import step_methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "extending.md")
REGISTRIES = (METRICS, UNLEARNING_METHODS, continual_methods.CONTINUAL_METHODS, data.DATASETS, models.MODELS)
NAME = "test_loss"  # the documented metric (tests/test_study.py adds it too)


def section(title):
  """(path of the new file, its code, the config entry or None) of the section `## <title>`."""
  text = open(DOC, encoding="utf-8").read()
  body = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M).group(1)
  path = re.search(r"`(rum_jax/[\w/]+\.py)`:\n\n```python\n", body).group(1)
  blocks = re.findall(r"```python\n(.*?)```", body, re.S)
  return path, blocks[0], (blocks[1] if len(blocks) > 1 else None)


def write_component(path, code, directory):
  """Writes `code` as the module `path` would be, in `directory`/<package>/ added to the package's
  search path, and imports the package's modules as its __init__.py does; returns the module."""
  package_name, stem = os.path.dirname(path).replace("/", "."), os.path.basename(path)[:-3]
  package = importlib.import_module(package_name)
  folder = os.path.join(str(directory), package_name)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f"{stem}.py"), "w", encoding="utf-8") as f:
    f.write(code)
  package.__path__.append(folder)
  registry.import_modules(package_name, package.__path__)
  return sys.modules[f"{package_name}.{stem}"]


@pytest.fixture
def add_component(tmp_path, monkeypatch):
  """add_component(title): the section's new file, added as above, undone when the test ends."""
  for r in REGISTRIES:
    monkeypatch.setattr(r, "_entries", dict(r._entries))
  added = []

  def add(title):
    path, code, _ = section(title)
    package = importlib.import_module(os.path.dirname(path).replace("/", "."))
    monkeypatch.setattr(package, "__path__", list(package.__path__))
    module = write_component(path, code, tmp_path)
    added.append(module.__name__)
    return module
  yield add
  for name in added:
    sys.modules.pop(name, None)


def config_entry(title, c):
  """Applies the section's config entry to the config `c`."""
  exec(section(title)[2], {"c": c, "ml_collections": ml_collections, "DEFAULT_METRICS": DEFAULT_METRICS})  # pylint: disable=exec-used
  return c


def _add_the_documented_metric():
  """The metric section's file, added for the rest of the process (tests/test_study.py)."""
  if NAME not in METRICS:
    path, code, _ = section("A metric")
    write_component(path, code, tempfile.mkdtemp(prefix="rum_jax_extending_"))
  return METRICS.get(NAME)


def _unlearn_config(c):
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=2, batch_size=128)
  c.forget.size = 60
  return c


def _record(workdir, key="metrics_record"):
  name = {"metrics_record": "metrics.csv", "evaluation_record": "evaluation.csv"}[key]
  return pd.read_csv(os.path.join(workdir, name), dtype={"seed": str})


# ---------------------------------------------------------------------------------------
# A metric.


def test_a_metric(add_component, tmp_path):
  add_component("A metric")
  metric = METRICS.get(NAME)
  assert metric.display == "test loss" and metric.higher_is_better is False
  c = config_entry("A metric", _unlearn_config(default.get_config()))
  assert c.evaluation.metrics == DEFAULT_METRICS + (NAME,)
  c.unlearn.method = "neggrad_plus"
  c.unlearn.neggrad_plus.update(epochs=2, batch_size=128)
  c.sweep.neggrad_plus.lr = "0.001,0.1"
  c.sweep.select_by = NAME
  workdir = str(tmp_path / "w")
  out = commands.unlearn(c, workdir)

  # The sweep chose the point with the LOWEST mean test loss on the validation set.
  means = [r["summary"][NAME]["mean"] for r in out["grid"]]
  assert out["select_by"] == NAME and out["chosen"] == int(np.argmin(means))
  assert "test loss" in open(os.path.join(workdir, "sweeps", "neggrad_plus", "sweep.md")).read()

  # The evaluation table has its column, its values are the formula on the saved logits.
  table = open(os.path.join(workdir, "evaluation.md")).read()
  assert "| test loss |" in table.splitlines()[0]
  record = pd.read_csv(os.path.join(workdir, "evaluation.csv"))
  mine = record[(record.metric == NAME) & (record.method == "neggrad_plus")].sort_values("seed")
  with np.load(os.path.join(workdir, "methods", "neggrad_plus", "predictions", "test.npz")) as p:
    expected = [mia.per_example_ce(p["logits"][s].astype(np.float64), p["labels"]).mean() for s in range(2)]
  np.testing.assert_allclose(mine["value"], expected, rtol=1e-6)
  stats = results.summary_frame(record)
  row = stats[(stats.method == "neggrad_plus") & (stats.metric == NAME)].iloc[0]
  assert f"{row['mean']:.3f} ± {row['ci95']:.3f}" in table
  assert io.read_json(os.path.join(workdir, "evaluation.json"))["models"]["retrain"]["summary"][NAME]["mean"] > 0
  assert NAME in [e["name"] for e in discovery.describe()["metrics"]]


# ---------------------------------------------------------------------------------------
# An unlearning method.


def _default_with(entry):
  """configs/default.py with the section's config entry where the page puts it (before c.sweep)."""
  source = open(os.path.join(ROOT, "configs", "default.py"), encoding="utf-8").read()
  anchor = "  c.sweep = ml_collections.ConfigDict()\n"
  assert source.count(anchor) == 1, "docs/extending.md places the method's settings before this line"
  module = types.ModuleType("default_with_entry")
  exec(compile(source.replace(anchor, textwrap.indent(entry, "  ") + anchor), "configs/default.py", "exec"),  # pylint: disable=exec-used
       module.__dict__)
  return module


def _ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  return special.logsumexp(logits, axis=-1) - logits[np.arange(len(labels)), labels]


def test_an_unlearning_method(add_component, tmp_path):
  module = add_component("An unlearning method")
  assert "forget_hinge" in step_methods()

  # Its loss against NumPy: CE(retain) + w max(0, log C - CE(forget)), with weighted means, on
  # a forget batch below log C (the hinge acts) and above it (only the retain term is left).
  C, w = 4, 0.7
  model = models.create_model("mlp", C, hidden=())
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 5)).astype(np.float32)
  state = init_state(model, optim.make_optimizer(0.1), jax.random.PRNGKey(0), jnp.asarray(x),
                     aux={"hp": {"weight": jnp.float32(w)}})
  logits = np.asarray(model.apply({"params": state.params}, x), np.float64)
  retain = {"x": x[:3], "y": np.array([0, 1, 2], np.int32), "weight": np.array([1, 1, 0], np.float32)}
  r = _ce(logits[:3], retain["y"])[:2].mean()
  for labels in (logits[3:].argmax(-1), logits[3:].argmin(-1)):
    forget = {"x": x[3:], "y": labels.astype(np.int32), "weight": np.ones(3, np.float32)}
    loss, (_, metrics) = module.forget_hinge_loss(Forward(model), state.params, state, {"retain": retain, "forget": forget}, None)
    f = _ce(logits[3:], labels).mean()
    np.testing.assert_allclose(float(loss), r + w * max(0.0, np.log(C) - f), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["forget_ce"]), f, rtol=1e-5)

  # The config entry in configs/default.py: its settings, its sweep section, its checks.
  c = _unlearn_config(_default_with(section("An unlearning method")[2]).get_config())
  assert c.unlearn.forget_hinge.weight == 1.0 and set(c.sweep.forget_hinge) == set(c.unlearn.forget_hinge)
  c.unlearn.method = "forget_hinge"
  c.unlearn.forget_hinge.weight = -1.0
  with pytest.raises(ConfigError, match="unlearn.forget_hinge.weight"):
    validate(c)
  c.unlearn.forget_hinge.update(epochs=2, batch_size=128, weight=1.0)
  c.unlearn.rum.high.method = "forget_hinge"  # a step of RUM may be it too
  validate(c)

  # A sweep over its own setting (one program), then the chosen point on the reported forget set.
  c.sweep.forget_hinge.weight = "0.5,2"
  workdir = str(tmp_path / "w")
  out = commands.unlearn(c, workdir)
  points = [r["point"] for r in out["grid"]]
  assert sorted(p["weight"] for p in points) == [0.5, 2.0]
  chosen = points[out["chosen"]]
  assert out["chosen"] == int(np.argmax([r["summary"]["tow"]["mean"] for r in out["grid"]]))
  run = os.path.join(workdir, "methods", "forget_hinge")
  assert io.read_json(os.path.join(run, "metrics.json"))["settings"]["weight"] == chosen["weight"]
  history = pd.read_csv(os.path.join(run, "history.csv"))  # its loss's metrics, per epoch and seed
  forget_ce = history[history.metric == "forget_ce"]
  assert len(forget_ce) == 2 * 2 and np.all(np.isfinite(forget_ce["value"]))
  record = _record(workdir, "evaluation_record")
  mine = record[record.method == "forget_hinge"]
  assert set(mine.metric) == set(DEFAULT_METRICS) and set(mine.seed) == {"0", "1"}
  assert "forget_hinge" in open(os.path.join(workdir, "evaluation.md")).read()
  assert "forget_hinge" in open(os.path.join(workdir, "sweeps", "forget_hinge", "sweep.md")).read()
  assert "forget_hinge" in [e["name"] for e in discovery.describe()["unlearning methods"]]


# ---------------------------------------------------------------------------------------
# A continual method.


def test_a_continual_method(add_component, tmp_path):
  module = add_component("A continual method")
  settings = continual_methods.ForgetSettings(loss_scale=1.5, options=(("rl_weight", 2.0),))
  assert module.weighted_random_labels(settings).keywords["scale"] == 3.0

  # No config entry: its section is built from the registry, its option's range is checked.
  c = continual_digits.get_config()
  assert c.continual.unlearn.neg_agem_rl_gem.rl_weight == 1.0 and c.continual.unlearn.neg_agem_rl_gem.lr == 0.01
  c.algorithm = "neg_agem_rl_gem"
  c.continual.unlearn.neg_agem_rl_gem.rl_weight = 11.0
  with pytest.raises(ConfigError, match=r"rl_weight must be a number in \[0, 10\]"):
    validate(c)
  c.continual.unlearn.neg_agem_rl_gem.rl_weight = 2.0
  from test_continual_methods import test_every_continual_method_keeps_its_contract  # pylint: disable=import-outside-toplevel
  test_every_continual_method_keeps_its_contract("neg_agem_rl_gem")

  # A tiny continual run: learn tasks 0 and 1, forget task 1.
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.sequence = "0,1,-1"
  continual_digits.set_memories(c, memories=8, agem_memories=8)
  c.continual.update(unlearn_max_epochs=2, agem_ref_size=16)
  workdir = str(tmp_path / "c")
  commands.continual(c, workdir)
  record = _record(workdir)
  assert record["method"].unique().tolist() == ["neg_agem_rl_gem"]
  assert set(record.metric) == set(c.continual.metrics) and np.all(np.isfinite(record["value"]))
  assert "neg_agem_rl_gem" in [e["name"] for e in discovery.describe()["continual methods"]]


# ---------------------------------------------------------------------------------------
# A data set.


def test_a_data_set(add_component, tmp_path):
  add_component("A data set")
  raw = datasets.load_breast_cancer()
  ds = data.load_dataset("breast_cancer", split_seed=0)
  index = np.concatenate([ds.split(s).index for s in ("train", "val", "test")])
  assert np.array_equal(np.sort(index), np.arange(len(raw.target)))  # disjoint, complete
  pool = np.concatenate([ds.train.index, ds.val.index])
  mean, std = raw.data[pool].mean(0), raw.data[pool].std(0)
  for split in ("train", "val", "test"):  # each row is sklearn's row of its original index, standardised
    s = ds.split(split)
    np.testing.assert_array_equal(s.y, raw.target[s.index])
    np.testing.assert_allclose(s.x, (raw.data[s.index] - mean) / std, rtol=1e-4, atol=1e-4)
  other = data.load_dataset("breast_cancer", split_seed=1)
  assert np.array_equal(other.test.index, ds.test.index) and not np.array_equal(other.val.index, ds.val.index)

  c = config_entry("A data set", default.get_config())
  # scikit-learn's stratified split holds out ceil(f N) examples.
  assert len(data.load_dataset(c.data.name, **c.data.options).test) == int(np.ceil(0.25 * len(raw.target)))
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=5, batch_size=64)
  c.data.options.bogus = 1
  with pytest.raises(ConfigError, match="bogus"):
    validate(c)
  del c.data.options["bogus"]
  workdir = str(tmp_path / "d")
  commands.train(c, workdir)
  record = _record(workdir)
  assert record["data"].unique().tolist() == ["breast_cancer"]
  assert record[record.metric == "test_accuracy"]["value"].min() > 0.85  # 63% is the majority class
  assert "breast_cancer" in [e["name"] for e in discovery.describe()["data sets"]]


# ---------------------------------------------------------------------------------------
# A model.


def test_a_model(add_component, tmp_path):
  add_component("A model")
  c = config_entry("A model", default.get_config())
  width, depth = c.model.kwargs.width, c.model.kwargs.depth
  model = models.create_model(c.model.name, 10, **c.model.kwargs)
  x = np.zeros((3, 8, 8, 1), np.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  stem, block, head = 64 * width + width, 2 * width + width * width + width, width * 10 + 10
  assert sum(p.size for p in jax.tree.leaves(variables)) == stem + depth * block + head
  assert model.apply(variables, x).shape == (3, 10) and model.apply(variables, x, features=True).shape == (3, width)

  c.num_seeds = 2
  c.train.update(epochs=5, batch_size=64)
  workdir = str(tmp_path / "m")
  commands.train(c, workdir)
  record = _record(workdir)
  assert record["model"].unique().tolist() == ["residual_mlp"]
  assert record[record.metric == "test_accuracy"]["value"].min() > 0.8  # 10 classes: chance is 0.1
  assert "residual_mlp" in [e["name"] for e in discovery.describe()["models"]]
