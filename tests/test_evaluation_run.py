"""Evaluation of unlearning work directories (evaluate.py) on synthetic runs, and the study's pieces."""
import math
import os

import ml_collections
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rum_jax import io
from rum_jax import commands, results
from rum_jax.evaluation import mia
from rum_jax.evaluation.metrics import DEFAULT_METRICS
from rum_jax.pipelines import evaluation, study
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


def _summary(tow_values, tow_mia_values=None):
  tow_mia_values = tow_values if tow_mia_values is None else tow_mia_values
  per_seed = {"tow": list(tow_values), "tow_mia": list(tow_mia_values)}
  return {"per_seed": per_seed,
          "summary": {"tow": {"mean": float(np.mean(tow_values))}, "tow_mia": {"mean": float(np.mean(tow_mia_values))}}}


NAMES = {"rum": "rum", "shuffle": "rum_shuffle", "paper": "rum_paper", "proxy": "rum_proxy"}


def test_paired_difference_and_claims():
  a, b = [0.8, 0.9, 0.85], [0.7, 0.75, 0.8]
  mean, half = study.paired_difference(_summary(a), _summary(b))
  diff = np.subtract(a, b)
  lo, hi = scipy_stats.t.interval(0.95, 2, loc=diff.mean(), scale=scipy_stats.sem(diff))
  np.testing.assert_allclose([mean, half], [(lo + hi) / 2, (hi - lo) / 2])

  by_level = {"low": {"x": _summary([0.9, 0.91]), "y": _summary([0.8, 0.8])},
              "high": {"x": _summary([0.5, 0.52]), "y": _summary([0.9, 0.91])},
              "mix": {"x": _summary([0.6, 0.62]), "y": _summary([0.7, 0.72]), "rum": _summary([0.8, 0.83]),
                      "rum_shuffle": _summary([0.8, 0.83]), "rum_paper": _summary([0.7, 0.74]),
                      "rum_proxy": _summary([0.5, 0.6])}}
  # the best single method is chosen on the VALIDATION mix: x there, although y is better on the reported mix
  validation = {"x": {"validation_tow": 0.9}, "y": {"validation_tow": 0.5}}
  best = study.best_on_validation(validation, ["x", "y"])
  assert best == "x"
  records = study.claims(by_level, ["x", "y"], best, True, NAMES)
  by = {(r["claim"], r["a"], r["metric"]): r for r in records}
  # high - low: x by -0.395 (two seeds, differences -0.40, -0.39): lower; y +0.105: higher
  assert by[("(i) harder when more memorized", "x on high", "tow")]["verdict"] == "lower"
  assert by[("(i) harder when more memorized", "y on high", "tow")]["verdict"] == "higher"
  rum = by[("(ii) RUM vs the best single method", "rum", "tow")]
  diff = np.array([0.8, 0.83]) - np.array([0.6, 0.62])
  half = scipy_stats.t.ppf(0.975, 1) * diff.std(ddof=1) / math.sqrt(2)
  np.testing.assert_allclose([rum["mean"], rum["ci95"]], [diff.mean(), half])
  assert rum["b"] == "x" and rum["n"] == 2 and rum["verdict"] == "higher"
  # identical per-seed values: a zero-width interval around 0 is no difference
  assert by[("(iii) RUM vs Shuffle", "rum", "tow")]["verdict"] == "not distinguishable at 95%"
  assert {r["claim"] for r in records} >= {"(ii) RUM vs the paper's plan", "(iv) proxy variant vs RUM"}
  # a data set that does not meet the criterion tests no (i)
  assert not any(r["claim"].startswith("(i)") for r in study.claims(by_level, ["x", "y"], best, False, NAMES))


def _study_config(results_dir):
  from configs import default
  c = default.get_config()
  c.mode = "study"
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=3, batch_size=128)
  c.memorization.update(num_models=16, chunk_size=16, ratio=0.5)
  c.forget.size = 30
  c.unlearn.neggrad.update(epochs=2, batch_size=128)
  c.unlearn.neggrad_plus.update(epochs=2, batch_size=128, forget_passes=2)
  c.sweep.neggrad.lr = "0.01,0.05"
  c.study = ml_collections.ConfigDict(dict(
      methods=("neggrad", "neggrad_plus"), levels=("high", "mix"), proxy="", shuffle=True,
      paper_plan={"low": {"method": "none", "overrides": {}}, "mid": {"method": "neggrad", "overrides": {}},
                  "high": {"method": "neggrad", "overrides": {"lr": 0.1}}},
      match_tolerance=0.3, criterion=dict(high_min=-1.0, mid_range=(-1.0, 1.0), low_max=1.0),
      mix_when_unmet=False, mia_features=("confidence",), loss_mia=False, results_dir=results_dir, scores=""))
  return c


def test_tiny_study_end_to_end_resumes_and_reports_divergence(tmp_path, monkeypatch):
  from rum_jax.pipelines import unlearning
  from rum_jax.training import loop
  from rum_jax.unlearning import METHODS
  results_dir = str(tmp_path / "results")
  workdir = str(tmp_path / "study")
  tried = []
  real = unlearning.run_method

  def diverging_neggrad_plus(prep, cfg, *args, **kwargs):
    name = METHODS.get(cfg.unlearn.method).folder_of(cfg)
    tried.append(name)
    if name.endswith("neggrad_plus"):
      raise loop.NonFiniteLossError(f"[{name}] non-finite loss at epoch 1")
    return real(prep, cfg, *args, **kwargs)
  monkeypatch.setattr(unlearning, "run_method", diverging_neggrad_plus)

  text = commands.evaluate(workdir, _study_config(results_dir))
  for name in ("study.md", "study.png", "study.csv", "study.json", "study.timings.json"):
    assert os.path.exists(os.path.join(results_dir, name)), name
  record = io.read_json(os.path.join(workdir, "study.json"))
  assert set(record["diverged"]) == {"memorization_high/neggrad_plus", "memorization_mix/neggrad_plus"}
  assert "Runs left out because their loss diverged" in text and "| neggrad_plus | n/a |" in text
  # Each seed has its own reported set, and its validation set is disjoint from it.
  forget = np.load(os.path.join(workdir, "sets", "memorization_mix", "forget_set.npz"))["forget_positions"]
  validation = np.load(os.path.join(workdir, "sets", "memorization_mix", "validation", "forget_set.npz"))
  assert not np.array_equal(forget[0], forget[1])
  assert all(not np.intersect1d(f, v).size for f, v in zip(forget, validation["forget_positions"]))
  # The plan search: 3 stages x (none + 2 neggrad points + neggrad_plus); RUM ran the chosen plan.
  search = record["plan_search"]
  assert search["evaluated"] == 12 and search["single_evaluated"] == 3
  for stage in search["stages"]:
    means = {c: np.mean(v) for c, v in stage["scores"].items()}
    assert stage["chosen"] == max(means, key=means.get)
  steps = io.read_json(os.path.join(workdir, "sets", "memorization_mix", "methods", "rum", "steps.json"))
  assert [s["method"] for s in steps["steps"][1:]] == [search["plan"][lv][0] for lv in ("low", "mid", "high")]
  paper = io.read_json(os.path.join(workdir, "sets", "memorization_mix", "methods", "rum_paper", "steps.json"))
  assert [s["method"] for s in paper["steps"][1:]] == ["none", "neggrad", "neggrad"]
  mix_runs = RunFolder(os.path.join(workdir, "sets", "memorization_mix")).finished_runs()
  assert mix_runs == ["neggrad", "rum", "rum_paper", "rum_shuffle"]
  assert {"(ii) RUM vs the best single method", "(iii) RUM vs Shuffle"} <= {r["claim"] for r in record["claims"]}
  # A ToW cell of the table is the mean ± t-interval of that set's evaluation.
  models = io.read_json(os.path.join(workdir, "sets", "memorization_high", "evaluation.json"))["models"]
  assert results.cell(models["neggrad"]["summary"]["tow"]) in text
  # study.csv is the tidy record of every level: its per-seed ToW values give that cell too.
  records = results.read_records(os.path.join(results_dir, "study.csv"))
  assert list(records.columns) == list(results.RECORD_COLUMNS)
  assert set(records["forget_level"]) == {"high", "mix"} and "rum" in set(records["method"])
  tow = records.query("forget_level == 'high' and method == 'neggrad' and metric == 'tow'")
  assert sorted(tow["seed"]) == list(range(len(models["neggrad"]["per_seed"]["tow"])))
  np.testing.assert_allclose(tow.sort_values("seed")["value"], models["neggrad"]["per_seed"]["tow"], rtol=1e-12)

  timings = os.path.join(workdir, "timings.json")
  first = io.read_json(timings)["invocations"]
  assert len(first) == 1 and "original" in first[0] and "memorization_high/neggrad" in first[0]
  assert "memorization_mix/validation/plan_search" in first[0]
  assert first[0]["total"] >= sum(v for k, v in first[0].items() if k != "total")

  # A rerun killed after its first piece still counts, with the piece it finished.
  tried.clear()

  def killed_at_second_piece(prep, cfg, *args, **kwargs):
    if tried:
      raise KeyboardInterrupt
    return diverging_neggrad_plus(prep, cfg, *args, **kwargs)
  monkeypatch.setattr(unlearning, "run_method", killed_at_second_piece)
  with pytest.raises(KeyboardInterrupt):
    commands.evaluate(workdir, _study_config(results_dir))
  killed = io.read_json(timings)["invocations"]
  assert killed[0] == first[0] and len(killed) == 2 and len(killed[1]) == 2  # one piece + total
  monkeypatch.setattr(unlearning, "run_method", diverging_neggrad_plus)

  # Rerun: every finished run is skipped; only the diverged ones are tried again, the plan search
  # reads its checkpoints back and chooses the same plan.
  tried.clear()
  again = commands.evaluate(workdir, _study_config(results_dir))
  assert sorted(tried) == ["neggrad_plus", "neggrad_plus"]
  drop_timing = lambda t: [line for line in t.split("## Where the time went")[0].splitlines() if "wall-clock" not in line]
  assert drop_timing(again) == drop_timing(text)
  assert io.read_json(os.path.join(workdir, "study.json"))["plan_search"]["plan"] == search["plan"]
  assert len(io.read_json(timings)["invocations"]) == 3 and "over 3 invocation(s)" in again

  # The strong metric added to the finished study scores the mix without redoing any run.
  strong = _study_config(results_dir)
  strong.study.strong = True
  strong.forgetting = ml_collections.ConfigDict(dict(methods=("retrain",), num_models=4, shadow_models=16,
                                                     chunk_size=8, seed=0, svc_targets=4, results_dir=""))
  tried.clear()
  scored = commands.evaluate(workdir, strong)
  assert sorted(tried) == ["neggrad_plus", "neggrad_plus"]
  rows = io.read_json(os.path.join(workdir, "study.json"))["forgetting"]
  assert set(rows) == {"retrain", "neggrad", "rum", "rum_shuffle"}
  epsilons = np.load(os.path.join(workdir, "sets", "memorization_mix", "forgetting", "epsilons.npz"))
  np.testing.assert_array_equal(epsilons["position"], np.sort(forget[0]))  # seed 0's reported mix
  for name, r in rows.items():
    assert 0.0 <= r["forget_score"] <= 1.0 and 0.0 <= r["ulira_auc"] <= 1.0
    assert f"| {name} | {r['forget_score']:.3f} ± {r['forget_score_ci95']:.3f} | {r['ulira_auc']:.3f} |" in scored


@pytest.mark.parametrize("update,message", [
    ({"match_tolerance": -1.0}, r"study.match_tolerance"),
    ({"criterion": {"mid_range": (0.7, 0.3)}}, "config.study.criterion needs high_min, mid_range"),
    ({"paper_plan": {"low": {"method": "none"}, "mid": {"method": "nothing"}, "high": {"method": "none"}}},
     "config.study.paper_plan.mid.method must be one of none, "),
])
def test_bad_study_settings_are_named(update, message, tmp_path):
  from rum_jax.checks import ConfigError
  from rum_jax.config_validation import validate
  c = _study_config(str(tmp_path))
  c.study.update(update)
  with pytest.raises(ConfigError, match=message):
    validate(c)
  c = _study_config(str(tmp_path))
  c.forget.draw = "ranking"
  with pytest.raises(ConfigError, match="set config.forget.draw='band'"):
    validate(c)
