"""Messages that lead somewhere: each mistake's message names the right value and a fix, and
the fix it names is run here too (docs/bad_input.md, "Command lines")."""
import os
import re

import numpy as np
import pytest

from rum_jax import cli, commands, data
from rum_jax.checks import ConfigError
from rum_jax.config_validation import validate
from rum_jax.pipelines import memorization


def _load(*args, config="configs/digits.py"):
  return cli.load_config(["train.py", f"--config={config}", *args, "--workdir=w"], None)[0]


def _refused(*args):
  with pytest.raises(ConfigError) as err:
    _load(*args)
  return str(err.value)


def test_the_bad_one_of_two_values_of_a_field_is_named():
  message = _refused("--config.num_seeds=2", "--config.num_seeds=three")
  assert message == "config.num_seeds takes an integer (it is 3 now), got 'three': e.g. --config.num_seeds=3"
  assert _load("--config.num_seeds=2", "--config.num_seeds=3").num_seeds == 3  # the fix


def test_a_list_field_takes_comma_separated_values_as_the_sweep_flags_do():
  config = _load("--config.evaluation.metrics=tow,tow_mia")
  assert config.evaluation.metrics == ("tow", "tow_mia")
  validate(config)
  assert _load("--config.evaluation.metrics=tow").evaluation.metrics == ("tow",)
  assert _load("--config.evaluation.metrics=('tow', 'test_accuracy')").evaluation.metrics == ("tow", "test_accuracy")
  with pytest.raises(ConfigError, match=r"unknown metric\(s\) \['tow_mai'\]; valid choices: "):
    validate(_load("--config.evaluation.metrics=tow,tow_mai"))


def _npz(path, n=60):
  rng = np.random.default_rng(0)
  np.savez(path, x=rng.normal(size=(n, 4)).astype(np.float32), y=np.arange(n) % 2)


def test_the_npz_data_set_is_pointed_to_by_the_option_its_message_names(tmp_path):
  config = _load("--config.data.name=npz")
  validate(config)
  with pytest.raises(ValueError) as err:
    data.load_dataset(config.data.name, **config.data.options)
  assert "set --config.data.options.path=<file.npz>" in str(err.value)
  _npz(tmp_path / "mine.npz")
  fixed = _load("--config.data.name=npz", f"--config.data.options.path={tmp_path / 'mine.npz'}",
                "--config.data.options.val_fraction=0.25", "--config.num_seeds=1", "--config.train.epochs=1",
                "--config.model.kwargs.hidden=(8,)", "--config.train.batch_size=16")
  assert fixed.data.options.to_dict() == {"path": str(tmp_path / "mine.npz"), "val_fraction": 0.25}
  record = commands.train(fixed, str(tmp_path / "w"))  # the run finishes on the user's file
  assert len(record["per_seed"]["test_accuracy"]) == 1
  with np.load(tmp_path / "w" / "predictions" / "train.npz") as predictions:
    assert len(predictions["index"]) == len(data.load_dataset("npz", **fixed.data.options).train)
  # An option the data set does not take is refused before any work, naming the ones it takes.
  with pytest.raises(ConfigError, match=r"^config.data.options has pth, which data set 'npz' does not take; it "
                                        r"takes: path, val_fraction, test_fraction"):
    validate(_load("--config.data.name=npz", "--config.data.options.pth=x.npz"))
  with pytest.raises(ConfigError, match="config.data.options has path, which data set 'digits' does not take; "
                                        "it takes: no options"):
    validate(_load("--config.data.options.path=x.npz"))


def test_an_npz_path_that_is_no_archive_names_the_file_and_how_to_save_one(tmp_path):
  text = tmp_path / "mine.txt"
  text.write_text("x,y\n1,0\n")
  with pytest.raises(ValueError) as err:
    data.load_dataset("npz", path=str(text))
  message = str(err.value)
  assert message == (f"the npz data set's file {text} is no .npz archive (it starts with b'x,y\\n1,'): save the "
                     f"data set with np.savez('{tmp_path / 'mine.npz'}', x=inputs, y=labels) and set "
                     f"--config.data.options.path={tmp_path / 'mine.npz'}")
  assert "pickle" not in message
  _npz(tmp_path / "mine.npz")  # the fix
  assert len(data.load_dataset("npz", path=str(tmp_path / "mine.npz"), val_fraction=0.25).train) > 0


def test_a_missing_score_file_names_a_command_that_makes_it(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = _load("--config.forget.kind=memorization", f"--config.forget.scores={tmp_path / 'scores' / 'mine.npz'}")
  with pytest.raises(FileNotFoundError) as err:
    memorization.ensure_scores(config, str(tmp_path / "w"))
  message = str(err.value)
  command = re.search(r"`python train.py (--config=\S+) --workdir=(\S+)` and pass --config.forget.scores=(\S+) ",
                      message)
  assert command and command.groups() == ("--config=configs/digits_memorization.py", "runs/digits_memorization",
                                          "runs/digits_memorization/memorization.npz"), message
  # The fix: that command (fewer and smaller models), then the path it names.
  trained = _load("--config.memorization.num_models=2", "--config.train.epochs=1", "--config.model.kwargs.hidden=(8,)",
                  config="configs/digits_memorization.py")
  commands.train(trained, command.group(2))
  config.forget.scores = command.group(3)
  assert memorization.ensure_scores(config, str(tmp_path / "w")) == [] and os.path.exists(command.group(3))
  # A missing default file is made by train.py in its own folder (no second step).
  assert memorization.missing_scores_message("w/memorization/memorization.npz", "digits", False).startswith(
      "no memorization scores at w/memorization/memorization.npz. Compute them with `python train.py "
      "--config=configs/digits_memorization.py --workdir=w/memorization` (or let")


def test_a_level_with_a_forget_kind_that_picks_no_level_is_refused():
  with pytest.raises(ConfigError) as err:
    validate(_load("--config.forget.kind=random", "--config.forget.level=high"))
  assert str(err.value) == ("config.forget.level='high' has no effect with config.forget.kind='random': only "
                            "memorization and proxy forget sets are picked by level; use "
                            "--config.forget.kind=memorization --config.forget.level=high, or leave forget.level "
                            "at 'mix'")
  validate(_load("--config.forget.kind=memorization", "--config.forget.level=high"))  # the fix
  validate(_load("--config.forget.kind=random"))


def test_leaderboard_output_that_is_a_folder_or_no_markdown_name_is_one_line(tmp_path):
  folder = tmp_path / "boards"
  folder.mkdir()
  with pytest.raises(ConfigError) as err:
    commands.leaderboard_files(str(folder))
  assert str(err.value) == (f"--output={folder} is a folder; name the markdown file to write in it, e.g. "
                            f"--output={folder / 'leaderboard.md'} (the records go beside it as .csv)")
  assert commands.leaderboard_files(str(folder / "leaderboard.md")) == (
      str(folder / "leaderboard.md"), str(folder / "leaderboard.csv"))
