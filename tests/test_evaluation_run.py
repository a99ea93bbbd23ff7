"""Evaluation of unlearning work directories (evaluate.py) on synthetic runs (the study: test_study.py)."""
import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rum_jax import io
from rum_jax import commands, results
from rum_jax.evaluation import mia
from rum_jax.evaluation.metrics import DEFAULT_METRICS
from rum_jax.pipelines import evaluation
from rum_jax.evaluation.tow import tow
from rum_jax.runfolder import RunFolder

NUM_SEEDS, NUM_TRAIN, NUM_VAL, NUM_TEST, C = 2, 120, 30, 60, 4


def _labels(rng):
  return {"train": rng.integers(0, C, NUM_TRAIN), "val": rng.integers(0, C, NUM_VAL),
          "test": rng.integers(0, C, NUM_TEST)}


def _logits(rng, labels, right):
  """Logits [S, N, C] that are right (argmax = label) on a `right` fraction of each split."""
  out = {}
  for split, y in labels.items():
    z = rng.normal(size=(NUM_SEEDS, len(y), C))
    correct = rng.uniform(size=(NUM_SEEDS, len(y))) < right[split]
    target = np.where(correct, y[None], (y[None] + 1) % C)
    np.put_along_axis(z, target[..., None], 6.0, axis=-1)
    out[split] = z
  return out


def _write_predictions(directory, logits, labels):
  for split in ("train", "val", "test"):
    io.write_npz(os.path.join(directory, f"{split}.npz"), logits=logits[split].astype(np.float32),
                 labels=labels[split], index=np.arange(len(labels[split])) + 1000)


def _make_workdir(root, rng, forget, methods):
  """An unlearning work directory as unlearn.py leaves it: original, retrain/<key>, methods/<m>."""
  workdir = str(root)
  labels = _labels(rng)
  reference_dir = os.path.join(workdir, "retrain", "key")
  original_dir = os.path.join(workdir, "original")
  forget_stack = np.stack(forget)
  for folder in [workdir, reference_dir, original_dir] + [os.path.join(workdir, "methods", m) for m in methods]:
    RunFolder(folder).open()  # run folders: what is written in them is in their manifests
  io.write_npz(os.path.join(workdir, "forget_set.npz"), forget_positions=forget_stack)
  io.write_json(os.path.join(workdir, "forget_set.json"), {"original_workdir": original_dir})
  io.write_npz(os.path.join(reference_dir, "forget_set.npz"), forget_positions=forget_stack)
  reference = _logits(rng, labels, {"train": 0.8, "val": 0.7, "test": 0.7})
  _write_predictions(os.path.join(reference_dir, "predictions"), reference, labels)
  _write_predictions(os.path.join(original_dir, "predictions"),
                     _logits(rng, labels, {"train": 1.0, "val": 0.75, "test": 0.75}), labels)
  all_logits = {"retrain": reference}
  for name, logits in methods.items():
    method_dir = os.path.join(workdir, "methods", name)
    logits = reference if logits is None else logits
    _write_predictions(os.path.join(method_dir, "predictions"), logits, labels)
    io.write_npz(os.path.join(method_dir, "forget_set.npz"), forget_positions=forget_stack)
    io.write_json(os.path.join(method_dir, "metrics.json"), {"retrain_reference": reference_dir})
    io.write_json(os.path.join(method_dir, "config.json"), {"method": name, "settings": {}})
    all_logits[name] = logits
  return workdir, labels, all_logits


def _forget(rng):
  return [np.sort(rng.choice(NUM_TRAIN, 30, replace=False)) for _ in range(NUM_SEEDS)]


def test_model_outputs_by_hand():
  rng = np.random.default_rng(0)
  labels = _labels(rng)
  logits = _logits(rng, labels, {"train": 0.6, "val": 0.5, "test": 0.4})
  forget = _forget(rng)
  outputs = evaluation.outputs_of(logits, labels, forget, num_shadow=50, seed=3)
  values = evaluation.metric_values(outputs, ["forget_accuracy", "retain_accuracy", "test_accuracy"]
                                    + [f"mia_{f}" for f in mia.FEATURES])
  for s, f in enumerate(forget):
    in_forget = np.isin(np.arange(NUM_TRAIN), f)
    right = logits["train"][s].argmax(-1) == labels["train"]
    assert values["forget_accuracy"][s] == pytest.approx(right[in_forget].sum() / 30)
    assert values["retain_accuracy"][s] == pytest.approx(right[~in_forget].sum() / (NUM_TRAIN - 30))
    assert values["test_accuracy"][s] == pytest.approx(np.mean(logits["test"][s].argmax(-1) == labels["test"]))
    # The attack sees the retain rows as members and the test rows as non-members, seeded by seed + s;
    # one feature at a time gives what all five at once give.
    expected = mia.svc_mia(logits["train"][s][~in_forget], labels["train"][~in_forget], logits["test"][s],
                           labels["test"], logits["train"][s][f], labels["train"][f], num_shadow=50, seed=3 + s)
    assert {f: values[f"mia_{f}"][s] for f in mia.FEATURES} == expected


def test_workdir_evaluation_tables_cache_and_reference_row(tmp_path, monkeypatch):
  rng = np.random.default_rng(1)
  forget = _forget(rng)
  labels = _labels(rng)
  other = _logits(rng, labels, {"train": 0.95, "val": 0.6, "test": 0.65})
  workdir, labels, logits = _make_workdir(tmp_path / "run", rng, forget, {"copy": None, "other": other})
  table = evaluation.evaluate_workdir(workdir, num_shadow=40)
  for name in ("original", "retrain", "copy", "other"):
    assert f"| {name} |" in table
  for f in ("evaluation.json", "evaluation.csv", "evaluation.md", "evaluation.png", "original_evaluation.json"):
    assert os.path.exists(os.path.join(workdir, f)), f
  models = io.read_json(os.path.join(workdir, "evaluation.json"))["models"]
  # A run identical to the reference has ToW = ToW-MIA = 1 on every seed.
  for s in range(NUM_SEEDS):
    assert models["copy"]["per_seed"]["tow"][s] == 1.0 == models["copy"]["per_seed"]["tow_mia"][s]
    assert models["retrain"]["per_seed"]["tow"][s] == 1.0
  # ToW of `other` recomputed from the logits by hand.
  for s, f in enumerate(forget):
    keep = np.setdiff1d(np.arange(NUM_TRAIN), f)
    def acc(z, where):
      return np.mean(z["train"][s][where].argmax(-1) == labels["train"][where])
    u = {"forget": acc(other, f), "retain": acc(other, keep),
         "test": np.mean(other["test"][s].argmax(-1) == labels["test"])}
    r = {"forget": acc(logits["retrain"], f), "retain": acc(logits["retrain"], keep),
         "test": np.mean(logits["retrain"]["test"][s].argmax(-1) == labels["test"])}
    np.testing.assert_allclose(models["other"]["per_seed"]["tow"][s], tow(u, r))
  # One seed has no interval: JSON stores null and the table shows the mean alone.
  assert results.cell({"mean": 0.5, "ci95": None}) == "50.0"
  assert results.cell({"mean": 0.5, "ci95": 0.0123}) == "50.0 ± 1.2"
  # Mean and interval are the t-interval over seeds.
  values = models["other"]["per_seed"]["tow"]
  lo, hi = scipy_stats.t.interval(0.95, NUM_SEEDS - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
  np.testing.assert_allclose(models["other"]["summary"]["tow"]["ci95"], (hi - lo) / 2)

  # A pandas groupby of the tidy record reproduces every cell of the markdown table.
  record = pd.read_csv(os.path.join(workdir, "evaluation.csv"))
  assert len(record) == 4 * NUM_SEEDS * len(DEFAULT_METRICS) and set(record["seed"]) == set(range(NUM_SEEDS))
  lines = {line.split(" | ")[0][2:]: line.strip("| \n").split(" | ") for line in table.splitlines()[2:]}
  for (method, metric), group in record.groupby(["method", "metric"]):
    v = group["value"].to_numpy()
    half = scipy_stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    cell = lines[method][1 + list(DEFAULT_METRICS).index(metric)]
    assert cell == f"{100 * v.mean():.1f} ± {100 * half:.1f}", (method, metric, cell)

  # Re-evaluating reads the caches; changed predictions are evaluated again.
  def fail(*args, **kwargs):
    raise AssertionError("recomputed a cached evaluation")
  monkeypatch.setattr(evaluation, "metric_values", fail)
  assert evaluation.evaluate_workdir(workdir, num_shadow=40) == table
  _write_predictions(os.path.join(workdir, "methods", "other", "predictions"), logits["retrain"], labels)
  with pytest.raises(AssertionError, match="recomputed"):
    evaluation.evaluate_workdir(workdir, num_shadow=40)


def test_one_method_folder_and_bad_input(tmp_path):
  rng = np.random.default_rng(2)
  forget = _forget(rng)
  workdir, _, _ = _make_workdir(tmp_path / "run", rng, forget, {"copy": None})
  method_dir = os.path.join(workdir, "methods", "copy")
  table = commands.evaluate(method_dir)
  assert "| copy |" in table and "| retrain |" in table
  assert os.path.exists(os.path.join(method_dir, "evaluation.json"))

  # The forget set of the run differs from the one the reference was retrained without.
  shifted = np.stack([np.sort((f + 1) % NUM_TRAIN) for f in forget])
  io.write_npz(os.path.join(method_dir, "forget_set.npz"), forget_positions=shifted)
  with pytest.raises(ValueError, match="differs from the one its retrain reference"):
    evaluation.evaluate_method(method_dir)
  io.write_npz(os.path.join(method_dir, "forget_set.npz"), forget_positions=shifted[:, :10])
  with pytest.raises(ValueError, match="differs"):
    evaluation.evaluate_method(method_dir)

  # No retrain reference: the message says how to make one.
  io.write_json(os.path.join(method_dir, "metrics.json"), {"retrain_reference": str(tmp_path / "gone")})
  with pytest.raises(FileNotFoundError, match="no retrain reference.*unlearn.py.*method=retrain"):
    evaluation.evaluate_method(method_dir)
  # A reference without predictions (made before they were saved): the same advice.
  reference_dir = os.path.join(workdir, "retrain", "key")
  io.write_json(os.path.join(method_dir, "metrics.json"), {"retrain_reference": reference_dir})
  io.write_npz(os.path.join(method_dir, "forget_set.npz"), forget_positions=np.stack(forget))
  os.remove(os.path.join(reference_dir, "predictions", "val.npz"))
  with pytest.raises(FileNotFoundError, match="val.npz missing.*re-running the same unlearn.py"):
    evaluation.evaluate_method(method_dir)

  with pytest.raises(FileNotFoundError, match="is no work directory of rum-jax"):
    commands.evaluate(str(tmp_path / "empty"))
  with pytest.raises(FileNotFoundError, match="no finished unlearning run"):
    evaluation.evaluate_workdir(str(tmp_path / "empty"))
