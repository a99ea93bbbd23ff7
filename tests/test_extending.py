"""docs/extending.md, followed literally: its metric file plus one config entry make the metric show
up in the evaluation table, the record and as a sweep's select_by."""
import os
import re
import sys
import types

import numpy as np
import pandas as pd

from rum_jax.configs import default
from rum_jax import commands, io, results
from rum_jax.evaluation import mia
from rum_jax.evaluation.metrics import DEFAULT_METRICS, METRICS

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "extending.md")
NAME = "test_loss"


def _add_the_documented_metric():
  """Runs the doc's code block as rum_jax/evaluation/metrics/test_loss.py would run on import."""
  text = open(DOC).read()
  block = re.search(r"## Adding a metric.*?```python\n(.*?)```", text, re.S).group(1)
  if NAME not in METRICS:
    module = types.ModuleType(f"rum_jax.evaluation.metrics.{NAME}")
    exec(compile(block, f"rum_jax/evaluation/metrics/{NAME}.py", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
  return METRICS.get(NAME)


def _config():
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=2, batch_size=128)
  c.unlearn.neggrad_plus.update(epochs=2, batch_size=128)
  c.forget.size = 60
  return c


def test_a_metric_in_one_file_and_one_config_entry(tmp_path):
  metric = _add_the_documented_metric()
  assert metric.display == "test loss" and metric.higher_is_better is False
  c = _config()
  c.evaluation.metrics = DEFAULT_METRICS + (NAME,)   # the one config entry
  c.unlearn.method = "neggrad_plus"
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
