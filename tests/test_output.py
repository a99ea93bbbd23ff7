"""What a command line prints: plain progress lines, each warning as one line, no other library's
chatter, and the main command's table once."""
import logging
import os
import re
import subprocess
import sys

from rum_jax import commands
from rum_jax.configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_command_prints_plain_lines_and_one_line_warnings(tmp_path):
  # As a user runs it: JAX probes every platform (no JAX_PLATFORMS), one device per core.
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  ran = subprocess.run([sys.executable, "train.py", "--config=configs/digits_memorization.py",
                        "--config.memorization.num_models=2", "--config.train.epochs=1",
                        "--config.model.kwargs.hidden=(8,)", f"--workdir={tmp_path / 'w'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert ran.returncode == 0, ran.stderr[-3000:]
  lines = ran.stderr.splitlines()
  assert "Unable to initialize backend" not in ran.stderr
  assert not [line for line in lines if re.match(r"^[IWEF]\d{4} ", line)], "absl's time/thread/source prefix"
  # 2 models leave examples never held out: the estimator's warning, as one line, no source line.
  warned = [line for line in lines if line.startswith("warning: ")]
  assert len(warned) == 1 and "examples were never trained on" in warned[0] and warned[0].endswith("Add models.")
  assert "est = stats.estimate" not in ran.stderr and "RuntimeWarning" not in ran.stderr
  assert any(line.startswith("[chunk 1/1] 1 epochs in ") for line in lines)
  # -v 1 keeps absl's full lines for debugging.
  verbose = subprocess.run([sys.executable, "train.py", "--config=configs/digits_memorization.py",
                            "--config.memorization.num_models=2", "--config.train.epochs=1",
                            "--config.model.kwargs.hidden=(8,)", f"--workdir={tmp_path / 'w'}", "-v", "1"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert verbose.returncode == 0 and re.search(r"^I\d{4} .*\] ", verbose.stderr, re.M), verbose.stderr[-3000:]


def test_the_unlearning_command_shows_its_table_once(tmp_path, caplog):
  c = default.get_config()
  c.num_seeds, c.train.epochs, c.model.kwargs.hidden = 1, 1, (8,)
  c.unlearn.finetune.epochs, c.forget.size = 1, 30
  with caplog.at_level(logging.INFO):
    commands.unlearn(c, str(tmp_path / "w"))
  assert caplog.text.count("| method |") == 1
  assert "| finetune |" in caplog.text and "ToW-MIA (%)" in caplog.text  # the evaluation's table
