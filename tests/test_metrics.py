"""The metric registry: every metric computes on a tiny record; records, summaries, collect, leaderboard."""
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rum_jax import io, results
from rum_jax.evaluation import challenge, lira, mia
from rum_jax.evaluation.metrics import METRICS, BankOutputs, Metric, ModelOutputs, check_names, register
from rum_jax.evaluation.metrics.accuracy import split_accuracy
from rum_jax.evaluation.tow import tow
from rum_jax.pipelines import reports
from rum_jax.runfolder import layout

S, N, T, V, C = 2, 60, 40, 20, 3


def _tiny_outputs(seed=0, right=0.8):
  rng = np.random.default_rng(seed)
  labels = {"train": rng.integers(0, C, N), "val": rng.integers(0, C, V), "test": rng.integers(0, C, T)}
  logits = {}
  for split, y in labels.items():
    z = rng.normal(size=(S, len(y), C))
    hit = rng.random((S, len(y))) < right
    np.put_along_axis(z, np.where(hit, y[None], (y[None] + 1) % C)[..., None], 4.0, axis=-1)
    logits[split] = z
  forget = [np.sort(rng.choice(N, 12, replace=False)) for _ in range(S)]
  return logits, labels, forget


def _tiny_bank(rng, models=6, examples=N):
  forget_mask = rng.random((models, examples)) < 0.3
  held_out = ~forget_mask & (rng.random((models, examples)) < 0.5)
  forget_mask[:2, :], held_out[:2, :] = True, False
  forget_mask[2:4, :], held_out[2:4, :] = False, True
  return BankOutputs(
      unlearned={"forget_confidence": rng.normal(size=(models, 12)), "retain_accuracy": rng.uniform(0.8, 1, models),
                 "test_accuracy": rng.uniform(0.7, 0.9, models)},
      retrained={"forget_confidence": rng.normal(0.3, 1, size=(models, 12)),
                 "retain_accuracy": rng.uniform(0.8, 1, models), "test_accuracy": rng.uniform(0.7, 0.9, models)},
      shadow={"confidence": rng.normal(size=(models, examples)) + forget_mask, "forget_mask": forget_mask,
              "held_out": held_out, "pool": np.ones(examples, bool)})


def _tiny_sequence(rng, seeds=S):
  """A continual run of "+0,+1,+2,-2,-1" over 3 tasks (`SequenceOutputs`), row 0 the initial model."""
  from rum_jax.continual import sequences
  from rum_jax.evaluation.metrics.continual import SequenceOutputs
  matrices = {k: rng.uniform(0.1, 1.0, (seeds, 6, 3))
              for k in ("train_accuracy", "test_accuracy", "val_accuracy", "mia_auc")}
  updates = rng.integers(1, 4, (seeds, 2))
  return SequenceOutputs(matrices, sequences.timeline(sequences.parse_sequence("+0,+1,+2,-2,-1")), 0.5,
                         requests={"updates": updates, "stopped": rng.random((seeds, 2)) < 0.5,
                                   "optimizer_updates": 2 * updates, "clipped_updates": updates})


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_computes_on_a_tiny_record(name):
  metric = METRICS.get(name)
  if metric.of_banks:
    outputs = _tiny_bank(np.random.default_rng(1))
  elif metric.kind == "sequence":
    outputs = _tiny_sequence(np.random.default_rng(2))
  else:
    reference = ModelOutputs(*_tiny_outputs(0, right=0.7), options={"num_shadow": 20})
    reference.reference = reference
    outputs = ModelOutputs(*_tiny_outputs(0, right=0.9), reference=reference, options={"num_shadow": 20})
  values = outputs.value(name)
  assert values.shape == (1 if metric.pooled else outputs.num_seeds,) and np.all(np.isfinite(values)), (name, values)
  if metric.unit == "%" or name.startswith(("tow", "mia_", "loss_mia")):
    assert np.all((values >= 0) & (values <= 1)), (name, values)
  assert metric.display and metric.description and metric.higher_is_better in (True, False, None)


def test_split_accuracy_and_tow_against_numpy():
  logits, labels, forget = _tiny_outputs(2)
  ref_logits, _, _ = _tiny_outputs(3)
  reference = ModelOutputs(ref_logits, labels, forget)
  run = ModelOutputs(logits, labels, forget, reference)
  for s in range(S):
    right = logits["train"][s].argmax(-1) == labels["train"]
    keep = np.setdiff1d(np.arange(N), forget[s])
    assert run.value("forget_accuracy")[s] == right[forget[s]].mean()
    assert run.value("retain_accuracy")[s] == right[keep].mean()
    assert run.value("val_accuracy")[s] == np.mean(logits["val"][s].argmax(-1) == labels["val"])
    acc = lambda z, s: {"forget": (z["train"][s].argmax(-1) == labels["train"])[forget[s]].mean(),  # noqa: E731
                        "retain": (z["train"][s].argmax(-1) == labels["train"])[keep].mean(),
                        "test": np.mean(z["test"][s].argmax(-1) == labels["test"])}
    assert run.value("tow")[s] == pytest.approx(tow(acc(logits, s), acc(ref_logits, s)))
  # A given retain set (a shadow model's half minus its forget subset) replaces the complement.
  given = ModelOutputs(logits, labels, forget, retain=[np.arange(10)] * S)
  np.testing.assert_allclose(split_accuracy(given, "retain"),
                             [np.mean((logits["train"][s].argmax(-1) == labels["train"])[:10]) for s in range(S)])


def test_metric_values_are_computed_once_and_errors_name_the_choices():
  logits, labels, forget = _tiny_outputs(4)
  outputs = ModelOutputs(logits, labels, forget, options={"num_shadow": 20})
  first = outputs.value("mia_confidence")
  outputs.logits = None  # a second call must not touch the logits again
  assert outputs.value("mia_confidence") is first
  with pytest.raises(ValueError, match="compares with the retrain reference"):
    ModelOutputs(logits, labels, forget).value("tow")
  with pytest.raises(ValueError, match="valid choices: .*tow_mia"):
    check_names(["tow", "towww"], "config.evaluation.metrics")
  with pytest.raises(ValueError, match="valid inputs"):
    Metric("bad", lambda o: [0.0], needs=frozenset({"weights"}), display="bad")


def test_bank_metrics_match_the_formulas():
  outputs = _tiny_bank(np.random.default_rng(5))
  eps = challenge.challenge_epsilons(outputs.unlearned["forget_confidence"], outputs.retrained["forget_confidence"])
  f = np.mean(challenge.epsilon_points(eps, 6))
  assert outputs.value("forget_score")[0] == pytest.approx(f)
  u, r = outputs.unlearned, outputs.retrained
  assert outputs.value("final_score")[0] == pytest.approx(
      f * u["retain_accuracy"].mean() / r["retain_accuracy"].mean() * u["test_accuracy"].mean()
      / r["test_accuracy"].mean())
  sh = outputs.shadow
  scores = lira.leave_one_out_scores(sh["confidence"], sh["forget_mask"], sh["held_out"])
  ok = np.isfinite(scores)
  expected = lira.attack_metrics(scores[ok & sh["forget_mask"]], scores[ok & sh["held_out"]])
  assert outputs.value("ulira_auc")[0] == pytest.approx(expected["auc"])
  median = BankOutputs(shadow=sh, options={"centring": "median"})
  assert median.value("ulira_auc")[0] != outputs.value("ulira_auc")[0]


def test_records_summaries_collect_and_leaderboard(tmp_path):
  rng = np.random.default_rng(6)
  config = {"data": {"name": "digits"}, "model": {"name": "mlp"},
            "forget": {"kind": "memorization", "level": "high", "size": 30, "split": "report"}}
  values = {name: {"tow": rng.uniform(size=4), "forget_accuracy": rng.uniform(size=4)}
            for name in ("salun", "original", "retrain")}
  for d, workdir in enumerate(("a", "b")):
    rows = [r for name, v in values.items()
            for r in results.record_rows(v, **results.run_columns(config, name, {"lr": 0.1 * (d + 1)}))]
    assert len(rows) == 3 * 2 * 4 and {r["seed"] for r in rows} == {0, 1, 2, 3}
    io.write_csv(os.path.join(tmp_path, workdir, "evaluation.csv"), rows, fields=results.RECORD_COLUMNS)
  frame = results.collect([str(tmp_path / "a"), str(tmp_path / "b")], layout.RECORD_FILES)
  assert len(frame) == 2 * 24 and frame["source"].nunique() == 2
  summary = results.summary_frame(frame, by=("method",))
  salun = summary[(summary.method == "salun") & (summary.metric == "tow")].iloc[0]
  twice = np.concatenate([values["salun"]["tow"]] * 2)
  assert salun["mean"] == pytest.approx(twice.mean()) and salun["n"] == 8
  assert salun["ci95"] == pytest.approx(stats.t.ppf(0.975, 7) * stats.sem(twice))
  board = reports.leaderboard(frame, ["tow", "forget_accuracy"])
  lines = [line for line in board.splitlines() if line.startswith("| digits")]
  # A row per run (a and b differ in settings): the references first, each run's own seeds.
  assert [line.split(" | ")[0].rsplit(" / ", 1)[1] for line in lines] == [
      "original", "original", "retrain", "retrain", "salun", "salun"]
  assert all(line.split(" | ")[3] == "4" for line in lines)
  with pytest.raises(FileNotFoundError, match="holds no records"):
    results.collect([str(tmp_path / "nothing")], layout.RECORD_FILES)
  # leaderboard.py: the table and the collected records beside it.
  from rum_jax import commands
  out = str(tmp_path / "board" / "leaderboard.md")
  assert commands.leaderboard([str(tmp_path / "a"), str(tmp_path / "b")], out, ["tow"]) in open(out).read()
  assert len(pd.read_csv(out[:-3] + ".csv")) == 48
  with pytest.raises(ValueError, match="valid choices"):
    commands.leaderboard([str(tmp_path / "a")], out, ["nope"])


def test_a_metric_registered_twice_is_refused():
  with pytest.raises(ValueError, match="registered twice"):
    register(Metric("tow", lambda o: [1.0], needs=frozenset({"train"}), display="again"))


def test_summary_frame_matches_pandas_groupby():
  rows = results.record_rows({"tow": [0.5, 0.7, 0.9]}, method="x") + results.record_rows({"tow": [0.2]}, method="y")
  summary = results.summary_frame(rows)
  frame = pd.DataFrame(rows).groupby(["method", "metric"], sort=False)["value"]
  np.testing.assert_allclose(summary["mean"], frame.mean().to_numpy())
  assert np.isnan(summary["ci95"].iloc[1])  # one seed: no interval
  assert summary["ci95"].iloc[0] == pytest.approx(stats.t.ppf(0.975, 2) * frame.sem().iloc[0])
  assert reports.format_value("tow", 0.5, 0.0123) == "50.0 ± 1.2"
  assert reports.format_value("forget_score", 0.171, np.nan) == "0.171"
  assert set(mia.FEATURES) <= {n[4:] for n in METRICS.names() if n.startswith("mia_")}


def test_the_audit_table_shows_the_configured_bank_metrics():
  import ml_collections
  from rum_jax.pipelines.audit import report
  config = ml_collections.ConfigDict({"audit": {"metrics": ("ulira_auc", "forget_score"), "seed": 3}})
  assert report._columns(config) == ["forget_score", "forget_accuracy", "retain_accuracy", "test_accuracy",
                                     "ulira_auc"]
  outputs = _tiny_bank(np.random.default_rng(7))
  row = report._row("m", {"forget_accuracy": 0.5}, outputs, report._metrics(config), 12.0)
  assert set(row) == {"model", "forget_accuracy", "ulira_auc", "forget_score", "forget_score_ci95", "seconds"}
  assert row["ulira_auc"] == outputs.value("ulira_auc")[0]
  shadow_only = report._row("original (no unlearning)", {}, BankOutputs(shadow=outputs.shadow),
                            report._metrics(config), None)
  assert set(shadow_only) == {"model", "ulira_auc"}  # no banks: no challenge score
  records = report.records(ml_collections.ConfigDict({**config.to_dict(), "data": {"name": "digits"}}),
                           [row, shadow_only], "abc")
  assert {(r["method"], r["metric"], r["seed"]) for r in records} == {
      ("m", "forget_accuracy", 3), ("m", "ulira_auc", 3), ("m", "forget_score", 3), ("original", "ulira_auc", 3)}
