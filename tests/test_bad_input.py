"""One line for every mistake on a command line: the config's fields, sweeps, files and work
directories, each refused before any training with a message that names the fix
(docs/bad_input.md, "Command lines")."""
import os
import subprocess
import sys

import pytest

from rum_jax.configs import default
from rum_jax import cli, commands, io, runfolder
from rum_jax.runfolder import RunFolder, write_config
from rum_jax.checks import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (command, arguments, the whole message): one row of docs/bad_input.md each.
CONFIG_LINES = [
    ("unlearn", ["--config.unlearn.methd=salun"], "the config has no field unlearn.methd (did you mean unlearn.method?)"),
    ("train", ["--config.train.epochz=3"], "the config has no field train.epochz (did you mean train.epochs?)"),
    ("evaluate", ["--config=configs/audit_digits.py", "--config.audit.num_model=32"],
     "the config has no field audit.num_model (did you mean audit.num_models?)"),
    ("continual", ["--config.algoritm=neggem"], "the config has no field algoritm (did you mean algorithm?)"),
    ("unlearn", ["--config.sweep.neggrad_plus.lrate=0.01,0.03"],
     "the config has no field sweep.neggrad_plus.lrate (did you mean sweep.neggrad_plus.lr?)"),
    ("unlearn", ["--config.sweep.nonexistent.lr=0.01"],
     "the config has no field sweep.nonexistent.lr (config.sweep has: finetune, l1_sparse, mia, neggrad, "
     "neggrad_plus, random_label, salun, scrub, select_by, wfisher)"),
    ("train", ["--config.num_seeds=three"],
     "config.num_seeds takes an integer (it is 3 now), got 'three': e.g. --config.num_seeds=3"),
    ("train", ["--config.train.lr=fast"], "config.train.lr takes a number (it is 0.1 now), got 'fast': e.g. "
     "--config.train.lr=0.1"),
    ("train", ["--config.num_seeds.x=1"], "the config has no field num_seeds.x: config.num_seeds is a value (3), "
     "not a section"),
    ("evaluate", ["--config.study.levels=mix"], "--config.study.levels=mix overrides a config, but no --config "
     "was given: add --config=<file> (e.g. --config=configs/study_digits.py)"),
]


def _message(command, args):
  with pytest.raises(ConfigError) as err:
    cli.load_config([f"{command}.py", *args, "--workdir=w"], cli.COMMAND_LINES[command].default_config)
  return str(err.value)


@pytest.mark.parametrize("command,args,message", CONFIG_LINES, ids=[" ".join(a) for _, a, _ in CONFIG_LINES])
def test_a_mistake_in_the_config_flags_is_one_message_naming_the_fix(command, args, message):
  assert _message(command, args) == message


def test_a_missing_config_file_with_overrides_names_the_shipped_configs(tmp_path):
  message = _message("train", ["--config=configs/nonexist.py", "--config.num_seeds=2"])
  assert message.startswith("the config file configs/nonexist.py does not exist (from ")
  assert "--config=configs/<name>.py: audit_digits, audit_mnist1d, cifar100_resnet18, " in message and ", study_mnist1d (rum-jax-list" in message
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  assert _message("train", [f"--config={broken}"]).startswith(f"the config file {broken} fails to load: SyntaxError")


def test_good_flags_give_the_config_and_leave_the_other_flags_to_absl():
  config, rest = cli.load_config(["train.py", "--config=configs/digits.py", "--config.train.epochs", "3",
                                  "--noconfig.data.augment", "--workdir=w", "-v", "1"], None)
  assert config.train.epochs == 3 and config.data.augment is False and config.num_seeds == 3
  assert rest == ["train.py", "--workdir=w", "-v", "1"]
  shipped, _ = cli.load_config(["train.py", "--config=digits"], None)  # a shipped config by its name
  assert shipped.to_dict() == default.get_config().to_dict()
  assert cli.load_config(["evaluate.py", "--workdir=w"], None) == (None, ["evaluate.py", "--workdir=w"])


def _tiny():
  c = default.get_config()
  c.num_seeds, c.train.epochs, c.model.kwargs.hidden = 1, 1, (8,)
  return c


def test_a_sweep_the_command_does_not_run_or_with_an_empty_value_is_refused(tmp_path):
  c = _tiny()
  c.unlearn.method = "neggrad_plus"
  c.sweep.salun.lr = "0.01,0.03"
  with pytest.raises(ConfigError, match=r"^config.sweep.salun lists values, but unlearn.py runs "
                                        r"config.unlearn.method='neggrad_plus' only \(set it to the method to tune\)"):
    commands.unlearn(c, str(tmp_path / "w"))
  with pytest.raises(ConfigError, match="config.sweep.salun lists values, but train.py runs no unlearning method"):
    commands.train(c, str(tmp_path / "w"))
  c.sweep.salun.lr = ""
  c.sweep.neggrad_plus.lr = "0.01,,0.03"
  with pytest.raises(ConfigError, match=r"config.sweep.neggrad_plus.lr='0.01,,0.03' has an empty value between "
                                        r"commas; give comma-separated numbers"):
    commands.unlearn(c, str(tmp_path / "w"))
  from rum_jax.configs import study_digits
  s = study_digits.get_config()
  s.study.methods = ("finetune",)
  with pytest.raises(ConfigError, match=r"config.sweep.l1_sparse lists values, but the study runs "
                                        r"config.study.methods \['finetune'\] only"):
    commands.evaluate(str(tmp_path / "w"), s)
  assert not (tmp_path / "w").exists(), "refused before the work directory is made"


def test_a_workdir_that_is_a_file_or_cannot_be_written_says_what_to_do(tmp_path, monkeypatch):
  a_file = tmp_path / "results.txt"
  a_file.write_text("mine")
  for workdir, what in ((a_file, "is a file"), (a_file / "run", f"is inside {a_file}, which is a file")):
    with pytest.raises(runfolder.WorkdirError, match=f"^--workdir={workdir} {what}, not a folder: choose another "
                                                       r"--workdir \(a new folder is created\)$"):
      commands.train(_tiny(), str(workdir))
  assert a_file.read_text() == "mine"
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o555)
  if os.access(locked, os.W_OK):  # root writes anywhere: pretend it may not
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real(p, mode))
  with pytest.raises(PermissionError, match=f"^--workdir={locked} cannot be written: you may not write in {locked} "
                                            r"\(permission denied\); choose a folder you can write to .*chmod u\+w"):
    commands.train(_tiny(), str(locked))


def test_a_value_refused_at_run_time_leaves_no_config_behind(tmp_path):
  c = _tiny()
  c.forget.size = 5000
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=r"config.forget.size=5000 must be in \[1, 1256\]"):
    commands.unlearn(c, str(workdir))
  assert not workdir.exists(), "a new work directory refused before any result is removed"
  c = _tiny()
  c.train.batch_size = 4096
  workdir.mkdir()  # an empty folder the user made
  with pytest.raises(ValueError, match="batch_size=4096 is larger than the 1257 examples"):
    commands.train(c, str(workdir))
  assert sorted(os.listdir(workdir)) == [".lock"], "no config.json to refuse the corrected command"
  # A config.json that was there before (a finished run's) is never removed by a refusal.
  folder = RunFolder(str(workdir)).open()
  write_config(folder, {"seed": 5})
  folder.write("metrics", {})
  with pytest.raises(runfolder.WorkdirError, match="holds a run with a different config"):
    commands.train(_tiny(), str(workdir))
  assert io.read_json(str(workdir / "config.json")) == {"seed": 5}


def test_the_command_lines_print_these_mistakes_as_one_line(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  cases = {("unlearn.py", "--config.unlearn.methd=salun"): CONFIG_LINES[0][2],
           ("-m", "rum_jax", "train", "--config.num_seeds=three"): CONFIG_LINES[6][2],
           ("evaluate.py", "--config=configs/study_digits.py", "--bogus=1"):
               "Unknown command line flag 'bogus' (--helpfull lists the flags)"}
  for args, message in cases.items():
    result = subprocess.run([sys.executable, *args, f"--workdir={tmp_path / 'w'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr == f"error: {message}\n", result.stderr[-2000:]
  assert not (tmp_path / "w").exists()
