"""The audit (forgetting quality) end to end with shrunk banks: U-LiRA and LiRA on planted memorization,
the challenge score's files, resume per chunk, and bad input."""
import os

import ml_collections
import numpy as np
import pytest

import rum_jax.data
import rum_jax.training.setup
from rum_jax.configs import audit_digits
from rum_jax import commands, io
from rum_jax.config_validation import ConfigError, validate
from rum_jax.evaluation import lira
from rum_jax.memorization.files import scores_for_split
from rum_jax.pipelines import audit as run
from rum_jax.unlearning import interface

FLIPPED = 300  # mislabelled train examples: memorized when trained on, the forget set


def _config(methods=("retrain", "finetune"), num_models=8, shadow_models=16, chunk_size=8, hidden=(512,),
            epochs=40):
  """Shrunk banks; the default MLP fits ~94% of the flipped labels it trains on."""
  c = audit_digits.get_config()
  c.model.kwargs.hidden = hidden
  c.train.update(epochs=epochs, batch_size=64)
  c.unlearn.finetune.update(epochs=3, batch_size=128)
  c.audit.update(methods=methods, num_models=num_models, shadow_models=shadow_models,
                 chunk_size=chunk_size, svc_targets=4)
  return c


def _flipped_loader():
  """digits with FLIPPED train labels changed to another class (planted memorization)."""
  original = rum_jax.data.load_dataset

  def load(name, **kwargs):
    ds = original(name, **kwargs)
    y = ds.train.y.copy()
    rng = np.random.default_rng(0)
    load.positions = np.sort(rng.choice(len(y), FLIPPED, replace=False))
    y[load.positions] = (y[load.positions] + rng.integers(1, ds.num_classes, FLIPPED)) % ds.num_classes
    return rum_jax.data.Dataset(ds.name, rum_jax.data.Split(ds.train.x, y, ds.train.index), ds.val, ds.test,
                                ds.num_classes, ds.class_names)
  load("digits")
  return load


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """The flipped examples as the forget set, scored with retraining and fine-tuning."""
  workdir = str(tmp_path_factory.mktemp("planted"))
  load = _flipped_loader()
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(rum_jax.training.setup, "load_dataset", load)  # what Setup.create calls
    config = _config()
    validate(config)
    record = run.evaluate_forget_set(config, workdir, load.positions)
  return workdir, record, load


def test_ulira_detects_no_unlearning_and_not_retraining(planted):
  _, record, _ = planted
  attacks = record["attacks"]
  # The trained shadow models scored as if they had unlearned their forget subsets: the
  # mislabelled examples they trained on are confidently 'wrong' only when trained on.
  assert attacks["no_unlearning"]["forget_set"]["auc"] > 0.95
  assert attacks["no_unlearning"]["forget_set"]["tpr_at_fpr_0.01"] > 0.3
  # Retraining without the subset leaves nothing to detect: its in- and out-models are alike.
  assert abs(attacks["methods"]["retrain"]["forget_set"]["auc"] - 0.5) < 0.08
  assert attacks["methods"]["retrain"]["forget_set"]["balanced_accuracy"] < 0.6
  # LiRA on the trained models (members = their halves) detects the planted examples too.
  assert attacks["lira"]["forget_set"]["auc"] > 0.95
  # Every pair counted is a (model, example) pair with the example in its forget subset / out of its half.
  ulira = attacks["methods"]["retrain"]["forget_set"]
  assert ulira["examples"] <= FLIPPED and ulira["members"] + ulira["nonmembers"] <= 16 * FLIPPED


def test_ulira_matches_the_attack_recomputed_from_the_bank(planted):
  workdir, record, load = planted
  chunks = [np.load(os.path.join(workdir, "shadow", "retrain", "chunks", f"chunk_{j:05d}.npz")) for j in range(2)]
  trained = [np.load(os.path.join(workdir, "shadow", "trained", "chunks", f"chunk_{j:05d}.npz")) for j in range(2)]
  conf = np.concatenate([c["confidence"] for c in chunks])
  forget_mask = np.concatenate([c["forget_mask"] for c in chunks])
  halves = np.concatenate([t["in_mask"] for t in trained])
  # Each subset lies in its model's half and has the forget set's size.
  assert np.all(forget_mask <= halves) and np.all(forget_mask.sum(1) == FLIPPED)
  # A half is exactly half of the train split (Feldman-Zhang masks with ratio 0.5).
  assert np.all(halves.sum(1) == round(0.5 * halves.shape[1]))
  # Leave-one-out by hand for one target: Gaussians over the other models, each group's
  # variance pooled over every example the other models can score.
  k = 3
  others = np.arange(16) != k
  cols = np.flatnonzero((forget_mask[others].sum(0) > 0) & ((~halves[others]).sum(0) > 0))
  c, fin, fout = conf[others][:, cols], forget_mask[others][:, cols], ~halves[others][:, cols]

  def fit(mask):
    mean = (c * mask).sum(0) / mask.sum(0)
    var = (((c - mean) ** 2) * mask).sum() / (mask.sum(0) - 1).sum()
    return mean, np.sqrt(var)
  (mi, si), (mo, so) = fit(fin), fit(fout)
  t = conf[k, cols]
  expected = np.log(so / si) - 0.5 * ((t - mi) / si) ** 2 + 0.5 * ((t - mo) / so) ** 2
  scores = lira.leave_one_out_scores(conf, forget_mask, ~halves)
  np.testing.assert_allclose(scores[k, cols], expected, rtol=1e-10)


def test_challenge_files_and_scores(planted):
  workdir, record, load = planted
  eps = np.load(os.path.join(workdir, "epsilons.npz"))
  np.testing.assert_array_equal(eps["position"], load.positions)
  retrained = np.concatenate([np.load(os.path.join(workdir, "retrained", "chunks", "chunk_00000.npz"))[
      "forget_confidence"]])
  assert retrained.shape == (8, FLIPPED)
  rows = {r["model"]: r for r in record["rows"]}
  for method in ("retrain", "finetune"):
    e = eps[method]
    assert e.shape == (FLIPPED,) and np.all((e >= 0) & (e <= 50))
    # F = the mean of the challenge's points: 8 models per side give buckets of width 0.5 up
    # to ceil(ln 7) = 2, worth 1, 1/2, 1/4, 1/8; epsilons beyond score 0.
    points = np.select([e < 0.5, e < 1, e < 1.5, e < 2], [1, 0.5, 0.25, 0.125], 0.0)
    assert rows[method]["forget_score"] == pytest.approx(points.mean())
  # Fine-tuning on the retain set leaves mislabelled examples more recognisable than retraining.
  assert np.median(eps["finetune"]) > np.median(eps["retrain"])
  assert rows["retrain"]["forget_score"] > rows["finetune"]["forget_score"]
  for name in ("audit.json", "audit.csv", "audit.md", "epsilons.csv", "audit_epsilons.png",
               "audit_roc.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name


def test_lira_beats_svc_and_memorization_byproduct(planted):
  workdir, record, load = planted
  svc = record["attacks"]["svc"]
  assert svc["targets"] == 4 and svc["lira_beats_svc"]
  assert svc["lira_balanced_accuracy"] > max(svc["svc_balanced_accuracy"].values())
  path = os.path.join(workdir, "shadow", "memorization.npz")
  data = np.load(path)
  assert int(data["num_models"]) == 16 and data["in_mask"].shape == (16, 1257)
  ds = load("digits")
  mem = scores_for_split(path, ds.train)  # read back by ORIGINAL index, as unlearn.py reads it
  flipped = np.isin(np.arange(len(mem)), load.positions)
  ok = np.isfinite(mem)
  assert np.nanmean(mem[flipped & ok]) > 0.5 > np.nanmean(mem[~flipped & ok]) + 0.3
  # The estimate is Feldman & Zhang's formula on the saved masks and correctness.
  in_mask, correct = data["in_mask"], data["correct_train"]
  with np.errstate(invalid="ignore", divide="ignore"):
    expected = (correct & in_mask).sum(0) / in_mask.sum(0) - (correct & ~in_mask).sum(0) / (~in_mask).sum(0)
  np.testing.assert_allclose(data["memorization"], expected)


def test_a_method_added_later_unlearns_the_kept_shadow_weights(planted, monkeypatch):
  workdir, record, load = planted
  # A method that changes nothing: its banks must reproduce the trained models exactly.
  identity = interface.Method("identity", lambda ctx, states: (ctx.setup.runner.pad(states), {}), sgd_recipe=False,
                              custom_settings=lambda config, workdir: ml_collections.ConfigDict(),
                              custom_validate=lambda unlearn: None)
  monkeypatch.setitem(interface.UNLEARNING_METHODS._entries, "identity", identity)
  monkeypatch.setattr(rum_jax.training.setup, "load_dataset", load)
  config = _config(methods=("retrain", "finetune", "identity"))
  validate(config)
  trained = os.path.join(workdir, "shadow", "trained", "chunks")
  before = {f: os.path.getmtime(os.path.join(trained, f)) for f in os.listdir(trained)}
  again = run.evaluate_forget_set(config, workdir, load.positions)
  assert {f: os.path.getmtime(os.path.join(trained, f)) for f in os.listdir(trained)} == before
  attacks = again["attacks"]
  for pool in ("forget_set", "all"):  # restored weights: the very confidences of the trained models
    assert attacks["methods"]["identity"][pool] == attacks["no_unlearning"][pool]
    assert attacks["methods"]["retrain"][pool] == record["attacks"]["methods"]["retrain"][pool]
  rows = {r["model"]: r for r in again["rows"]}
  # N copies of one model: a distribution of zero spread, far peakier than retraining's, gets
  # the cap (epsilon 50) at every example: no points.
  assert rows["identity"]["forget_score"] == 0.0 and rows["identity"]["final_score"] == 0.0
  np.testing.assert_array_equal(np.load(os.path.join(workdir, "epsilons.npz"))["identity"], 50.0)


def _small(**kw):
  c = _config(methods=("finetune",), num_models=8, shadow_models=0, chunk_size=4, hidden=(32,), epochs=3)
  c.forget.size = 100
  for k, v in kw.items():
    c.audit[k] = v
  return c


def _chunks(workdir):
  return sorted(os.path.relpath(os.path.join(d, f), workdir) for d, _, fs in os.walk(workdir) for f in fs
                if "chunks" in d)


def test_killed_run_resumes_from_the_last_finished_chunk(tmp_path, monkeypatch):
  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  commands.evaluate(full, _small())
  saved = []
  real_save = run.Bank.save

  def dying_save(self, j, seconds, **arrays):  # the process dies right after the first chunk
    real_save(self, j, seconds, **arrays)
    saved.append((self.name, j))
    if len(saved) == 1:
      raise KeyboardInterrupt
  monkeypatch.setattr(run.Bank, "save", dying_save)
  with pytest.raises(KeyboardInterrupt):
    commands.evaluate(resumed, _small())
  assert _chunks(resumed) == ["retrained/chunks/chunk_00000.npz"]
  commands.evaluate(resumed, _small())
  # The rerun computed every chunk but the finished one, and got the same results.
  assert saved[1:] == [("retrained", 1), ("unlearned finetune", 0), ("unlearned finetune", 1)]
  assert _chunks(resumed) == _chunks(full)
  np.testing.assert_array_equal(np.load(os.path.join(resumed, "epsilons.npz"))["finetune"],
                                np.load(os.path.join(full, "epsilons.npz"))["finetune"])
  rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in io.read_json(os.path.join(d, "audit.json"))["rows"]]
          for d in (resumed, full)]
  assert rows[0] == rows[1]

  # A work directory (or a bank in it) made with another config is refused, and nothing is lost.
  before = {f: os.path.getmtime(os.path.join(full, f)) for f in _chunks(full)}
  other = _small()
  other.train.epochs = 4
  with pytest.raises(ValueError, match=r"different config.*train\.epochs"):
    commands.evaluate(full, other)
  with pytest.raises(ValueError, match=r"retrained holds a run with a different config.*seed: 0 -> 1"):
    commands.evaluate(full, _small(seed=1))
  augmented = _small()  # crop + flip in the retraining and unlearning: other banks
  augmented.unlearn.augment = True
  with pytest.raises(ValueError, match=r"retrained holds a run with a different config.*unlearn_augment"):
    commands.evaluate(full, augmented)
  assert {f: os.path.getmtime(os.path.join(full, f)) for f in _chunks(full)} == before
  # More models later: only the new chunks are trained.
  saved.clear()
  monkeypatch.setattr(run.Bank, "save", lambda self, j, seconds, **a: (saved.append((self.name, j)),
                                                                       real_save(self, j, seconds, **a)))
  commands.evaluate(full, _small(num_models=12))
  assert saved == [("retrained", 2), ("unlearned finetune", 2)]
  assert io.read_json(os.path.join(full, "audit.json"))["num_models"] == 12


@pytest.mark.parametrize("field,value,message", [
    ("num_models", 1, "audit.num_models must be an integer in [2, 4096]"),
    ("shadow_models", 2, "audit.shadow_models must be 0 (no attacks) or an integer >= 3"),
    ("methods", ("finetune", "forget_everything"), "valid choices: finetune, l1_sparse"),
    ("chunk_size", 0, "audit.chunk_size must be a positive integer"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, message):
  config = _small()
  with config.audit.ignore_type():
    config.audit[field] = value
  with pytest.raises(ConfigError) as err:
    commands.evaluate(str(tmp_path / "run"), config)
  assert message in str(err.value)
  assert not (tmp_path / "run").exists()


def test_forget_set_larger_than_a_shadow_half_is_refused_before_training(tmp_path):
  config = _config()
  config.forget.size = 629  # digits: 1,257 train examples, halves of 628
  with pytest.raises(ValueError, match="at most 627 examples"):
    commands.evaluate(str(tmp_path / "run"), config)
  assert not os.path.exists(tmp_path / "run" / "original")
  with pytest.raises(ValueError, match="at most 627 examples"):
    run.evaluate_forget_set(config, str(tmp_path / "set"), np.arange(700))
  assert not os.path.exists(tmp_path / "set" / "original")
