"""leaderboard.py: a row is one run (its settings, forget set and original models); the same run
named twice is refused; pooling is explicit and says what it pooled; --output is one .md file
with its records beside it."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rum_jax import commands, io, results
from rum_jax.checks import ConfigError
from rum_jax.pipelines import evaluation
from rum_jax.runfolder import RunFolder, layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS, N, C = 2, 80, 3
METRICS = ["tow", "forget_accuracy", "test_accuracy"]


def _predictions(directory, rng, labels, right):
  for split, y in labels.items():
    z = rng.normal(size=(SEEDS, len(y), C))
    hit = rng.uniform(size=(SEEDS, len(y))) < right
    np.put_along_axis(z, np.where(hit, y[None], (y[None] + 1) % C)[..., None], 5.0, axis=-1)
    io.write_npz(os.path.join(directory, f"{split}.npz"), logits=z.astype(np.float32), labels=y,
                 index=np.arange(len(y)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Synthetic evaluated work directories: one original model, two forget sets."""
  root = tmp_path_factory.mktemp("runs")
  rng = np.random.default_rng(0)
  RunFolder(str(root / "original")).open()  # run folders: what is written in them is in their manifests
  labels = {"train": rng.integers(0, C, N), "val": rng.integers(0, C, 20), "test": rng.integers(0, C, 40)}
  _predictions(str(root / "original" / "predictions"), rng, labels, 0.9)
  forgets = [np.stack([np.sort(rng.choice(N, 20, replace=False)) for _ in range(SEEDS)]) for _ in range(2)]
  references = []
  for k in range(2):
    references.append(str(root / f"reference{k}"))
    RunFolder(references[k]).open()
    io.write_npz(os.path.join(references[k], "forget_set.npz"), forget_positions=forgets[k])
    _predictions(os.path.join(references[k], "predictions"), rng, labels, 0.7)

  def workdir(name, forget, methods):
    """methods: {name: (settings, prediction seed)}; evaluated as evaluate.py does."""
    path = str(root / name)
    for folder in [path] + [os.path.join(path, "methods", m) for m in methods]:
      RunFolder(folder).open()
    io.write_npz(os.path.join(path, "forget_set.npz"), forget_positions=forgets[forget])
    io.write_json(os.path.join(path, "forget_set.json"), {"original_workdir": str(root / "original")})
    io.write_json(os.path.join(path, "config.json"), {
        "data": {"name": "digits"}, "model": {"name": "mlp"}, "evaluation": {"metrics": METRICS},
        "forget": {"kind": "random", "level": "mix", "size": 20, "split": "report"}})
    for method, (settings, seed) in methods.items():
      run = os.path.join(path, "methods", method)
      _predictions(os.path.join(run, "predictions"), np.random.default_rng(seed), labels, 0.8)
      io.write_npz(os.path.join(run, "forget_set.npz"), forget_positions=forgets[forget])
      io.write_json(os.path.join(run, "metrics.json"), {"retrain_reference": references[forget],
                                                         "settings": settings})
    evaluation.evaluate_workdir(path, num_shadow=20)
    return path

  return {"a": workdir("a", 0, {"finetune": ({"lr": 0.01}, 1)}),
          "b": workdir("b", 1, {"finetune": ({"lr": 0.03}, 2)}),   # other settings, other forget set
          "d": workdir("d", 0, {"salun": ({"lr": 0.01}, 3)}),      # a's original and forget set
          "e": workdir("e", 0, {"finetune": ({"lr": 0.01}, 4)}),   # a's recipe run again, other values
          "root": root}


def _rows(board):
  """{(method, from): (cells..., seeds, run)} of a leaderboard's table."""
  out = {}
  for line in board.splitlines():
    if line.startswith("| digits"):
      cells = line.strip("| ").split(" | ")
      out[(cells[0].rsplit(" / ", 1)[1], cells[-1])] = cells[1:-1]
  return out


def _tow_cell(workdir, method):
  values = io.read_json(os.path.join(workdir, "evaluation.json"))["models"][method]["per_seed"]["tow"]
  half = stats.t.ppf(0.975, len(values) - 1) * stats.sem(values)
  return f"{100 * np.mean(values):.1f} ± {100 * half:.1f}"


def test_distinct_runs_are_distinct_rows_and_shared_references_count_once(world, tmp_path, monkeypatch):
  monkeypatch.chdir(world["root"])
  board = commands.leaderboard(["a", "b", "d"], str(tmp_path / "lb.md"), METRICS)
  rows = _rows(board)
  assert sorted(rows) == [("finetune", "a"), ("finetune", "b"), ("original", "a, d"), ("original", "b"),
                          ("retrain", "a, d"), ("retrain", "b"), ("salun", "d")]
  # Each finetune row is its own run's seeds (not the two pooled), as evaluate.py's table has it.
  assert rows[("finetune", "a")][0] == _tow_cell("a", "finetune") != rows[("finetune", "b")][0]
  assert rows[("finetune", "b")][0] == _tow_cell("b", "finetune")
  assert all(cells[len(METRICS)] == str(SEEDS) for cells in rows.values())
  # The original row shared by a and d: its seeds once.
  assert rows[("original", "a, d")][0] == _tow_cell("a", "original")
  for line in ("lr\": 0.01", "lr\": 0.03"):
    assert line in board
  recorded = pd.read_csv(os.path.join("a", "evaluation.csv"))
  assert recorded["original_digest"].nunique() == 1 and len(recorded["original_digest"].iloc[0]) == 16


def test_the_same_run_named_twice_is_refused(world, tmp_path, monkeypatch):
  monkeypatch.chdir(world["root"])
  out = str(tmp_path / "lb.md")
  with pytest.raises(ValueError, match=r"^a/evaluation.csv is named twice \(through a and a\)"):
    commands.leaderboard(["a", "a"], out)
  with pytest.raises(ValueError, match=r"is named twice \(through \. and a\)"):
    results.collect([".", "a"], layout.RECORD_FILES)
  shutil.copytree("a", str(tmp_path / "copy"))
  with pytest.raises(ValueError, match=r" hold the same run \(finetune with settings \{\"lr\": 0.01\}, forget set "
                                       r"\w+, original \w+\) with identical values: it is named twice"):
    commands.leaderboard(["a", str(tmp_path / "copy")], out)
  assert not os.path.exists(out), "a refused leaderboard writes nothing"


def test_runs_of_one_recipe_are_pooled_only_when_asked_and_the_table_says_so(world, tmp_path, monkeypatch):
  monkeypatch.chdir(world["root"])
  out = str(tmp_path / "lb.md")
  with pytest.raises(ValueError, match=r"^a and e hold two runs of one recipe \(finetune with settings "
                                       r"\{\"lr\": 0.01\}.*\) with different values: name one of them, or pass --pool"):
    commands.leaderboard(["a", "e"], out)
  board = commands.leaderboard(["a", "e"], out, METRICS, pool=True)
  rows = _rows(board)
  assert rows[("finetune", "a, e")][len(METRICS)] == str(2 * SEEDS)
  pooled = np.concatenate([io.read_json(os.path.join(w, "evaluation.json"))["models"]["finetune"]["per_seed"]["tow"]
                           for w in ("a", "e")])
  half = stats.t.ppf(0.975, len(pooled) - 1) * stats.sem(pooled)
  assert rows[("finetune", "a, e")][0] == f"{100 * pooled.mean():.1f} ± {100 * half:.1f}"
  assert "POOLED (--pool): the seeds of a (2), e (2)" in board
  assert rows[("original", "a, e")][len(METRICS)] == str(SEEDS), "identical references still count once"


def test_output_is_one_markdown_file_with_its_records_beside_it(world, tmp_path, monkeypatch):
  monkeypatch.chdir(world["root"])
  (tmp_path / "dl").mkdir()
  (tmp_path / "dl" / "my.csv").write_text("mine")
  for output, fix in ((tmp_path / "dl" / "my.dir" / "lb", tmp_path / "dl" / "my.dir" / "lb.md"),
                      (tmp_path / "x.csv", tmp_path / "x.md")):
    with pytest.raises(ConfigError) as err:
      commands.leaderboard(["a"], str(output))
    assert str(err.value) == (f"--output={output} is not a markdown file name (.md): e.g. --output={fix} writes the "
                              "table there and the records it was made from beside it (.csv)")
  assert sorted(os.listdir(tmp_path)) == ["dl"] and os.listdir(tmp_path / "dl") == ["my.csv"]
  assert (tmp_path / "dl" / "my.csv").read_text() == "mine"
  board = commands.leaderboard(["a"], str(tmp_path / "dl" / "my.dir" / "lb.md"))  # the fix
  assert sorted(os.listdir(tmp_path / "dl" / "my.dir")) == ["lb.csv", "lb.md"]
  assert board in (tmp_path / "dl" / "my.dir" / "lb.md").read_text()
  assert len(pd.read_csv(tmp_path / "dl" / "my.dir" / "lb.csv")) == len(pd.read_csv("a/evaluation.csv"))


def test_the_leaderboard_is_a_command_of_the_package(world, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = ROOT
  out = tmp_path / "board.md"
  ran = subprocess.run([sys.executable, "-m", "rum_jax", "leaderboard", "--workdirs=a,b", f"--output={out}"],
                       cwd=world["root"], env=env, capture_output=True, text=True, timeout=300)
  assert ran.returncode == 0, ran.stderr[-2000:]
  assert "| digits / mlp / random /  / 20 / report / finetune |" in out.read_text()
  bad = subprocess.run([sys.executable, "-m", "rum_jax", "leaderboard", "--workdirs=a", f"--output={tmp_path}"],
                       cwd=world["root"], env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and bad.stderr == (
      f"error: --output={tmp_path} is a folder; name the markdown file to write in it, e.g. "
      f"--output={tmp_path / 'leaderboard.md'} (the records go beside it as .csv) [-v 1 shows the traceback]\n")
