"""docs/python_api.md runs as written: every ```python block in order, in one namespace, on tiny
settings (applied after the first block, which sets the config up), in a fresh directory."""
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "python_api.md")


def blocks():
  return re.findall(r"^```python\n(.*?)^```", open(DOC).read(), flags=re.S | re.M)


def _tiny(config):
  config.num_seeds = 2
  config.model.kwargs.hidden = (16,)
  config.train.update(epochs=2, batch_size=128)
  config.memorization.update(num_models=32, chunk_size=32)  # every example held out by some model
  config.proxies.heldout_max_epochs = 2
  config.forget.size = 60
  for name in ("salun", "finetune"):
    config.unlearn[name].update(epochs=1, batch_size=128)


def test_the_python_api_page_runs_and_its_numbers_are_what_the_library_computes(tmp_path, monkeypatch, capfd):
  code = blocks()
  assert len(code) >= 8, "the page has its blocks"
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "python_api"}
  for i, block in enumerate(code):
    exec(compile(block, f"{DOC} block {i + 1}", "exec"), namespace)  # pylint: disable=exec-used
    if i == 0:
      _tiny(namespace["config"])
  err = capfd.readouterr().err
  assert "[train] 2 epochs in" in err, "show_progress() makes the training progress visible"
  ns = namespace
  n, forget, memorization = ns["n"], ns["forget"], ns["memorization"]
  # The forget set: the highest scores (a property any correct selection has).
  assert len(forget) == 60 and memorization[forget].min() >= np.delete(memorization, forget).max()
  # The accuracies the page prints are the library's per-seed numbers.
  test_acc = (ns["logits"]["test"].argmax(-1) == ns["setup"].dataset.test.y).mean(-1)
  np.testing.assert_allclose(ns["acc"]["test"], test_acc)
  assert set(ns["proxies"]) >= {"confidence", "heldout_retraining"} and ns["proxies"]["confidence"].shape == (n,)
  record = ns["record"]
  assert len(record["per_seed"]["forget_accuracy"]) == 2 and record["method"] == "rum"
  assert os.path.exists(tmp_path / "runs" / "api" / "unlearn" / "evaluation.md")
