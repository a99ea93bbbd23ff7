"""Work directories that never give a wrong answer: each way a careless or hostile user could get
a number computed from something other than what the directory says is refused or healed here,
and copied or moved work directories give the same results."""
import os
import shutil
import stat
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from rum_jax.configs import continual_digits, default
from rum_jax import commands, io, provenance, results, runfolder, runtime
from rum_jax.checks import ConfigError
from rum_jax.pipelines import evaluation
from rum_jax.runfolder import RunFolder, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(c):
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.train.update(epochs=3, batch_size=128)
  return c


def _rum_config(num_models=32):
  c = _tiny(default.get_config())
  c.memorization.update(num_models=num_models, chunk_size=16, ratio=0.5)
  for name in ("finetune", "salun"):
    c.unlearn[name].update(epochs=2, batch_size=128)
  c.forget.update(kind="memorization", level="mix", size=60)
  c.unlearn.method = "rum"
  return c


def _memorization_config(num_models):
  c = _rum_config(num_models)
  return ml_collections.ConfigDict({k: c[k].to_dict() if isinstance(c[k], ml_collections.ConfigDict) else c[k]
                                    for k in ("seed", "num_seeds", "data", "model", "train", "memorization")}
                                   | {"mode": "memorization"})


@pytest.fixture(scope="module")
def rum_workdir(tmp_path_factory):
  """RUM's whole pipeline on digits (scores computed on the way), finished."""
  workdir = str(tmp_path_factory.mktemp("rum") / "run")
  commands.unlearn(_rum_config(), workdir)
  return workdir


def _forget_digest(workdir):
  return io.read_json(os.path.join(workdir, "forget_set.json"))["digest"]


def test_a_changed_forget_set_is_refused_unless_overwrite_and_never_mixed(rum_workdir, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(rum_workdir, workdir)
  # As the README suggests: more models for the same estimate. The mix set changes with it.
  commands.train(_memorization_config(48), os.path.join(workdir, "memorization"))
  finetune = _rum_config()
  finetune.unlearn.method = "finetune"
  with pytest.raises(runfolder.WorkdirError, match=r"forget set of .* changed: \d+ of its 60 examples are "
                                                     r"the same .* finished runs rum were unlearned from the old"):
    commands.unlearn(finetune, workdir)
  assert RunFolder(workdir).finished_runs() == ["rum"], "refused: nothing discarded"
  old = _forget_digest(workdir)
  commands.unlearn(finetune, workdir, overwrite=True)
  assert RunFolder(workdir).finished_runs() == ["finetune"], "the run of the old set was discarded"
  new = _forget_digest(workdir)
  assert new != old and io.read_json(os.path.join(workdir, "methods", "finetune", "metrics.json"))["forget_digest"] == new
  summary = open(os.path.join(workdir, "summary.md")).read()
  assert "| finetune |" in summary and "| rum |" not in summary


def test_summary_lists_only_runs_of_the_current_forget_set(rum_workdir, tmp_path):
  from rum_jax.pipelines import unlearning
  workdir = str(tmp_path / "run")
  shutil.copytree(rum_workdir, workdir)
  assert "| rum |" in unlearning.write_summary(workdir, _forget_digest(workdir))
  assert "| rum |" not in unlearning.write_summary(workdir, "another-forget-set")


def test_the_original_row_and_the_runs_share_one_forget_set(rum_workdir, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(rum_workdir, workdir)
  data = dict(np.load(os.path.join(workdir, "forget_set.npz")))
  data["forget_positions"] = data["forget_positions"][:, ::-1] + 1  # an edited file
  io.write_npz(os.path.join(workdir, "forget_set.npz"), **data)
  with pytest.raises(runfolder.WorkdirError, match="is not the forget set its runs were unlearned from"):
    evaluation.evaluate_workdir(workdir)


def test_copied_and_moved_unlearning_workdirs_evaluate_against_their_own_files(rum_workdir, tmp_path):
  source = str(tmp_path / "source")
  shutil.copytree(rum_workdir, source)
  table = evaluation.evaluate_workdir(source)
  copy = str(tmp_path / "copy")
  shutil.copytree(source, copy)
  # The copy's reference is its own: damage the source's, the copy is unaffected.
  shutil.rmtree(os.path.join(source, "retrain"))
  shutil.rmtree(os.path.join(source, "original"))
  assert evaluation.evaluate_workdir(copy) == table
  moved = str(tmp_path / "moved")
  shutil.move(copy, moved)
  assert evaluation.evaluate_workdir(moved) == table
  # A rerun of the moved work directory resumes (nothing retrained, same metrics).
  before = io.read_json(os.path.join(moved, "methods", "rum", "metrics.json"))
  record = commands.unlearn(_rum_config(), moved)
  for key, values in before["per_seed"].items():
    np.testing.assert_array_equal(record["per_seed"][key], values)


def test_a_workdir_whose_config_is_gone_accepts_no_other_config(tmp_path):
  c = continual_digits.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (16,)
  c.continual.update(sequence="0,1,-1", memories=8, unlearn_memories=8, unlearn_max_epochs=2, agem_ref_size=16)
  workdir = str(tmp_path / "continual")
  commands.continual(c, workdir)
  os.remove(os.path.join(workdir, "config.json"))
  c.continual.lr = 0.05
  # Its copy in the manifest still says which config made the results.
  with pytest.raises(runfolder.WorkdirError, match=r"holds a run with a different config \(continual.lr"):
    commands.continual(c, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json")), "nothing written"
  c.continual.lr = 0.1
  record = commands.continual(c, workdir, overwrite=True)  # starts over with what config.json now says
  assert io.read_json(os.path.join(workdir, "config.json"))["continual"]["lr"] == 0.1
  assert record["num_seeds"] == 2


def test_fewer_models_give_the_estimate_of_exactly_those_models(tmp_path, monkeypatch):
  from rum_jax.pipelines import memorization
  grown, fresh = str(tmp_path / "grown"), str(tmp_path / "fresh")
  commands.train(_memorization_config(32), grown)
  commands.train(_memorization_config(16), grown)  # lowered
  commands.train(_memorization_config(16), fresh)
  a, b = np.load(os.path.join(grown, "memorization.npz")), np.load(os.path.join(fresh, "memorization.npz"))
  assert int(a["num_models"]) == 16
  np.testing.assert_array_equal(a["memorization"], b["memorization"])
  # Raising it again reuses the kept chunk: no model is trained.
  monkeypatch.setattr(memorization, "train_on", lambda *a, **k: pytest.fail("retrained a finished chunk"))
  commands.train(_memorization_config(32), grown)
  assert int(np.load(os.path.join(grown, "memorization.npz"))["num_models"]) == 32


def test_damaged_result_files(rum_workdir, tmp_path, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(rum_workdir, workdir)
  # A cache: recomputed, with a warning.
  cache = os.path.join(workdir, "methods", "rum", "evaluation.json")
  good = io.read_json(cache)
  with open(cache, "w") as f:
    f.write('{"digest": "ab')
  evaluation.evaluate_workdir(workdir)
  assert io.read_json(cache)["values"] == good["values"]
  assert any("is damaged" in r.getMessage() and "recomputing" in r.getMessage() for r in caplog.records)
  # The original model's metrics: the run is not finished, so it is redone (from its checkpoints).
  with open(os.path.join(workdir, "original", "metrics.json"), "w") as f:
    f.write("garbage")
  assert not runfolder.RunFolder(os.path.join(workdir, "original")).finished()
  commands.unlearn(_rum_config(), workdir)
  assert runfolder.RunFolder(os.path.join(workdir, "original")).finished()
  # config.json: its reading names the file and says to delete it; the run reads the copy in the
  # manifest instead (a warning), and writes config.json again; so does a run after the deletion.
  config = os.path.join(workdir, "config.json")
  with open(config, "w") as f:
    f.write("{not json")
  with pytest.raises(io.DamagedFileError, match=r"run/config.json is damaged \(not valid JSON.*delete it"):
    io.read_json(config)
  caplog.clear()
  commands.unlearn(_rum_config(), workdir)
  assert io.read_json(config)["forget"]["size"] == 60
  assert any("config.json is damaged" in r.getMessage() and "using the copy" in r.getMessage() for r in caplog.records)
  os.remove(config)
  commands.unlearn(_rum_config(), workdir)
  assert io.read_json(config)["forget"]["size"] == 60


def test_result_files_are_readable_by_colleagues(tmp_path):
  old = os.umask(0o022)
  try:
    io.write_json(str(tmp_path / "a.json"), {"a": 1})
    io.write_npz(str(tmp_path / "b.npz"), x=np.zeros(2))
  finally:
    os.umask(old)
  for name in ("a.json", "b.npz"):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644


def test_full_disk_says_so_first_with_the_path(tmp_path, monkeypatch):
  path = str(tmp_path / "metrics.json")
  io.write_json(path, {"a": 1})
  monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
  with pytest.raises(io.DiskFullError) as err:
    io.write_json(path, {"a": 2})
  assert str(err.value).startswith(f"[Errno 28] no space left on the device while writing {path}")
  assert io.read_json(path) == {"a": 1}


def test_leftover_checkpoint_folders_are_named_and_cleaned(tmp_path, caplog):
  from rum_jax.training.checkpoint import Checkpointer
  ckpt = tmp_path / "checkpoints"
  (ckpt / "3.orbax-checkpoint-tmp-1700000000").mkdir(parents=True)
  (ckpt / "unreadable-3-1700000000").mkdir()
  checkpointer = Checkpointer(str(ckpt))
  messages = " ".join(r.getMessage() for r in caplog.records)
  assert "3.orbax-checkpoint-tmp-1700000000: an unfinished checkpoint" in messages
  assert "unreadable-3-1700000000 holds a damaged checkpoint" in messages
  assert not (ckpt / "3.orbax-checkpoint-tmp-1700000000").exists()
  checkpointer.claim({"program": "test"})
  checkpointer.save(2, {"w": np.zeros(2)}, {"epoch": 2})
  assert (ckpt / "unreadable-3-1700000000").exists(), "kept until a newer checkpoint is saved"
  checkpointer.save(3, {"w": np.zeros(2)}, {"epoch": 3})
  assert not (ckpt / "unreadable-3-1700000000").exists()
  checkpointer.close()


# ---------------------------------------------------------------------------------------
# A study that can move and heals itself.


@pytest.fixture(scope="module")
def study_workdir(tmp_path_factory):
  from test_study import study_config as _study_config
  root = tmp_path_factory.mktemp("study")
  workdir = str(root / "study")
  text = commands.evaluate(workdir, _study_config(str(root / "results")))
  return workdir, text, _study_config


def _drop_timing(text):
  return [line for line in text.split("## Where the time went")[0].splitlines() if "wall-clock" not in line]


def test_a_moved_study_resumes_and_a_deleted_reference_is_redone(study_workdir, tmp_path, caplog):
  source, text, study_config = study_workdir
  moved = str(tmp_path / "moved")
  shutil.copytree(source, moved)
  config = study_config(str(tmp_path / "results"))
  caplog.set_level("INFO", logger="absl")
  again = commands.evaluate(moved, config)
  assert _drop_timing(again) == _drop_timing(text)
  done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("study:") and "is done" in r.getMessage()]
  assert len(done) >= 4, "every finished run is recognised after the move"
  assert not any("training" in r.getMessage() and "original" in r.getMessage() for r in caplog.records)
  # Delete a set's retrain reference: the rerun redoes it (and only what depends on it).
  shutil.rmtree(os.path.join(moved, "sets", "memorization_high", "retrain"))
  shutil.rmtree(os.path.join(moved, "sets", "memorization_mix", "methods", "neggrad", "predictions"))
  healed = commands.evaluate(moved, config)
  assert _drop_timing(healed) == _drop_timing(text)


def test_study_md_names_the_command_that_ran(study_workdir):
  _, text, _ = study_workdir
  assert "Command: `python evaluate.py --config=<a study config of digits> --workdir=" in text
  provenance.record_command(["evaluate.py", "--config=configs/study_digits.py", "--workdir=runs/x y"])
  try:
    assert provenance.command("fallback") == "python evaluate.py --config=configs/study_digits.py '--workdir=runs/x y'"
  finally:
    provenance._COMMAND = None  # other tests call the pipelines as a library
  assert "jax " in provenance.machine() and "CPU cores" in provenance.machine()


def test_evaluation_csv_has_one_column_order_fresh_or_cached(rum_workdir, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(rum_workdir, workdir)
  for cache in ("methods/rum/evaluation.json", "original_evaluation.json"):
    os.remove(os.path.join(workdir, cache))
  evaluation.evaluate_workdir(workdir)
  fresh = open(os.path.join(workdir, "evaluation.csv")).readline()
  evaluation.evaluate_workdir(workdir)  # all from the caches now
  assert open(os.path.join(workdir, "evaluation.csv")).readline() == fresh
  assert fresh.strip() == ",".join(results.RECORD_COLUMNS)


# ---------------------------------------------------------------------------------------
# Errors a person can read.


def _cli(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_command_lines_print_one_line_for_the_users_errors(tmp_path):
  workdir = str(tmp_path / "w")
  bad_config = _cli("train.py", "--config=configs/digits.py", "--config.num_seeds=0", f"--workdir={workdir}")
  missing_data = _cli("train.py", "--config=configs/cifar10_resnet18.py", f"--config.data.data_dir={tmp_path}",
                      f"--workdir={workdir}")
  lines = {}
  for name, result in (("config", bad_config), ("data", missing_data)):
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines[name] = errors[0]
  assert "config.num_seeds must be a positive integer, got 0" in lines["config"]
  assert "CIFAR-10 not found" in lines["data"] and "[-v 1 shows the traceback]" in lines["data"]
  verbose = _cli("train.py", "--config=configs/digits.py", "--config.num_seeds=0", f"--workdir={workdir}", "-v", "1")
  assert "Traceback" in verbose.stderr and "ConfigError" in verbose.stderr


def test_a_refused_workdir_is_one_line_too(tmp_path):
  workdir = str(tmp_path / "w")
  folder = RunFolder(workdir).open()
  write_config(folder, {"seed": 5, "num_seeds": 1})
  folder.write("metrics", {})  # a result of that config
  with pytest.raises(runfolder.WorkdirError):
    commands.train(_tiny(default.get_config()), workdir)
  result = _cli("train.py", "--config=configs/digits.py", f"--workdir={workdir}")
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert result.returncode == 1 and len(errors) == 1
  assert "holds a run with a different config (" in errors[0] and "num_seeds: 1 -> 3" in errors[0]


def test_a_damaged_checkpoint_is_one_warning_line(tmp_path):
  workdir = str(tmp_path / "w")
  cmd = ["train.py", "--config=configs/digits.py", "--config.num_seeds=2", "--config.train.epochs=3",
         "--config.model.kwargs.hidden=(16,)", f"--workdir={workdir}"]
  assert _cli(*cmd).returncode == 0
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "3", "state")):
    for f in files:
      if os.sep + "d" in root:
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(3)
  os.remove(os.path.join(workdir, "metrics.json"))
  result = _cli(*cmd)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
  warnings = [line for line in result.stderr.splitlines() if "checkpoint 3 is damaged" in line]
  assert len(warnings) == 1 and "set aside as" in warnings[0]
  assert not any(d.startswith("unreadable-") for d in os.listdir(os.path.join(workdir, "checkpoints"))), \
      "removed once epoch 3 was saved again"


def test_evaluate_names_what_kind_of_work_directory_it_was_given(rum_workdir, study_workdir, tmp_path):
  study, _, _ = study_workdir
  cases = {os.path.join(rum_workdir, "original"): "is a train.py work directory",
           os.path.join(rum_workdir, "memorization"): "holds memorization scores",
           study: "is a study's work directory: run it (or resume it) with python evaluate.py --config="}
  for path, expected in cases.items():
    with pytest.raises(FileNotFoundError, match=expected.replace("(", r"\(").replace(")", r"\)")):
      commands.evaluate(path)
  continual = str(tmp_path / "c")
  write_config(RunFolder(continual).open(), continual_digits.get_config().to_dict())
  with pytest.raises(FileNotFoundError, match="is a continual.py work directory"):
    commands.evaluate(continual)


@pytest.mark.parametrize("field,value,message", [
    ("data.split_seed", -1, "config.data.split_seed must be a non-negative integer, got -1"),
    ("model.kwargs.hidden", (0,), "config.model.kwargs.hidden must hold positive layer widths, got (0,)"),
    ("num_seeds", 10 ** 8, "config.num_seeds=100000000 is more than 4096 models in one program"),
])
def test_fields_that_used_to_fail_deep_inside(field, value, message):
  c = default.get_config()
  section, _, key = field.rpartition(".")
  target = c
  for part in section.split(".") if section else []:
    target = target[part]
  target[key] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
    commands.train(c, "/nonexistent/never-created")


def test_runtime_problems_found_before_any_training(tmp_path):
  c = _rum_config()
  c.forget.size = 5000
  with pytest.raises(ValueError, match=r"config.forget.size=5000 must be in \[1, 1256\]"):
    commands.unlearn(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "original") and not os.path.exists(tmp_path / "w" / "memorization")
  c = _tiny(default.get_config())
  c.train.batch_size = 4096
  with pytest.raises(ValueError, match="batch_size=4096 is larger than the 1257 examples a model trains on"):
    commands.train(c, str(tmp_path / "t"))


def test_runtime_main_records_the_command_line(monkeypatch):
  monkeypatch.setattr(sys, "argv", ["unlearn.py", "--workdir=w"])
  try:
    assert runtime.main(lambda: provenance.command("none")) == "python unlearn.py --workdir=w"
  finally:
    monkeypatch.setattr(provenance, "_COMMAND", None)
