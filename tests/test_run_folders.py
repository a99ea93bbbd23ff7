"""Run folders: one object owns a work directory's file names, formats, manifest and locks.

Checked here without training: result file names appear nowhere else in rum_jax/; every write
is recorded in the manifest with its digest, so a replaced file is refused and --overwrite
deletes only what rum-jax wrote; a folder holding anything else is refused untouched; a run
holds its folder and every folder below it.
"""
import json
import os
import re

import numpy as np
import pytest

from rum_jax import io, manifest
from rum_jax.runfolder import (ForeignFolderError, ReplacedFileError, RunFolder, WorkdirBusyError, WorkdirError,
                               check_config, claim, config_of, hold, layout, write_config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWNERS = ("rum_jax/runfolder/", "rum_jax/manifest.py")


def test_a_key_names_either_a_file_or_a_folder():
  # check_config's `results` and `clear` take both kinds of key: a key that named another path
  # than the result would make a finished run invisible, and a refused run would then train
  # over it (as the audit's banks once did). The three shared keys name a folder and the files
  # kept in it; a fixed file name wins (scores: memorization.npz), a pattern is its folder.
  assert set(layout.FILES) & set(layout.FOLDERS) == {"predictions", "weights", "scores"}
  assert layout.FILES["predictions"].pattern.startswith(layout.FOLDERS["predictions"] + "/")
  assert layout.FILES["weights"].pattern.startswith(layout.FOLDERS["weights"] + "/")
  assert RunFolder("w").scores().file("scores").startswith(os.path.join("w", layout.FOLDERS["scores"]) + os.sep)


def test_a_score_file_holds_its_folder_against_another_config(tmp_path, tree_digest):
  folder = RunFolder(str(tmp_path / "proxies")).open()
  write_config(folder, {"mode": "proxies", "seed": 0})
  folder.write("scores", {"memorization": np.zeros(3)})
  before = tree_digest(folder.path)
  with pytest.raises(WorkdirError, match=r"holds a run with a different config \(seed: 0 -> 1\)"):
    check_config(folder, {"mode": "proxies", "seed": 1}, results=("scores",))
  assert tree_digest(folder.path) == before


def test_result_file_names_appear_only_in_the_run_folder_modules():
  names = sorted({os.path.basename(f.pattern) for f in layout.FILES.values() if "{" not in os.path.basename(f.pattern)})
  assert {"forget_set.npz", "metrics.json", "evaluation.csv", "config.json", "grid.json"} <= set(names)
  pattern = re.compile(r"(?<![\w/])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])")
  found = []
  for directory, _, files in os.walk(os.path.join(ROOT, "rum_jax")):
    for f in files:
      path = os.path.relpath(os.path.join(directory, f), ROOT)
      if not f.endswith(".py") or path.startswith(OWNERS):
        continue
      for i, line in enumerate(open(os.path.join(ROOT, path)), 1):
        found += [f"{path}:{i}: {m.group(1)}" for m in pattern.finditer(line)]
  assert not found, "result file names outside rum_jax/runfolder/ (use RunFolder and runfolder.layout):\n" + \
      "\n".join(found)


def _run_folder(path) -> RunFolder:
  folder = RunFolder(str(path)).open()
  write_config(folder, {"seed": 0})
  folder.write("metrics", {"per_seed": {"tow": [0.9, 0.8]}})
  folder.write("predictions", {"logits": np.ones((2, 3, 4), np.float32), "labels": np.arange(3)}, split="test")
  folder.write("history", [{"epoch": 1, "seed": 0, "metric": "loss", "value": 0.5}])
  return folder


def test_every_write_is_in_the_manifest_and_a_replaced_file_is_refused(tmp_path):
  folder = _run_folder(tmp_path / "w")
  data = manifest.load(folder.path)
  assert {"config.json", "metrics.json", "predictions/test.npz", "history.csv"} <= set(data["files"])
  assert data["config"] == {"seed": 0}, "the config's copy"
  folder.verify("predictions", split="test")
  # Written again with equal arrays: other bytes (zip headers), the same content digest.
  content = folder.content_digest("predictions", split="test")
  folder.write("predictions", {"logits": np.ones((2, 3, 4), np.float32), "labels": np.arange(3)}, split="test")
  assert folder.content_digest("predictions", split="test") == content
  # Replaced by hand (np.savez, not rum-jax's writer): refused, naming the file and the fix.
  np.savez(folder.file("predictions", split="test"), logits=np.zeros((2, 3, 4), np.float32), labels=np.arange(3))
  with pytest.raises(ReplacedFileError, match=r"predictions/test.npz is not the file rum-jax wrote .* replaced or "
                                              r"edited since\. Restore it from a copy, or delete it"):
    folder.read("predictions", verify=True, split="test")
  os.remove(folder.file("predictions", split="test"))  # the advice: delete it; rum-jax writes it again
  folder.write("predictions", {"logits": np.zeros((2, 3, 4), np.float32), "labels": np.arange(3)}, split="test")
  folder.verify("predictions", split="test")


def test_a_copied_folder_keeps_its_digests(tmp_path):
  import shutil
  folder = _run_folder(tmp_path / "w")
  shutil.copytree(folder.path, tmp_path / "copy")
  copy = RunFolder(str(tmp_path / "copy"))
  copy.verify("predictions", split="test")
  assert copy.foreign() == []


def test_a_write_killed_before_its_rename_leaves_a_file_either_digest_accepts(tmp_path, monkeypatch):
  folder = _run_folder(tmp_path / "w")
  old = manifest.file_sha(folder.file("metrics"))

  begin = manifest.begin

  def killed(*args):
    begin(*args)
    raise KeyboardInterrupt  # as if the process died between the manifest's entry and the rename
  monkeypatch.setattr(manifest, "begin", killed)
  with pytest.raises(KeyboardInterrupt):
    folder.write("metrics", {"per_seed": {"tow": [0.1, 0.2]}})
  monkeypatch.undo()
  entry = manifest.load(folder.path)["files"]["metrics.json"]
  assert entry["previous"] == old
  folder.verify("metrics")  # the old file, still in place, is accepted
  assert folder.foreign() == [], "no temporary file left, none unlisted"


def test_a_folder_rum_jax_did_not_make_is_refused_and_never_cleaned(tmp_path, tree_digest):
  home = tmp_path / "home"
  (home / "checkpoints" / "my_gpt2").mkdir(parents=True)
  (home / "checkpoints" / "my_gpt2" / "model.bin").write_bytes(b"weights")
  before = tree_digest(str(home))
  folder = RunFolder(str(home))
  with pytest.raises(ForeignFolderError, match=r"^--workdir=.*home holds files rum-jax did not write "
                                               r"\(checkpoints/\), so it is not rum-jax's to use or clean"):
    folder.open()
  with pytest.raises(ForeignFolderError):
    check_config(folder, {"seed": 0}, overwrite=True)
  assert tree_digest(str(home)) == before
  # A work directory that holds only run folders of rum-jax (scores computed first) is its own.
  outer = RunFolder(str(tmp_path / "w"))
  _run_folder(outer.scores().path)
  assert outer.foreign() == [] and outer.open().is_run_folder()
  # Inside a run folder: a file rum-jax did not write is foreign too.
  outer.method("finetune").open()
  (tmp_path / "w" / "methods" / "mymethod.txt").write_text("mine")
  assert outer.foreign() == ["methods/mymethod.txt"]
  (tmp_path / "w" / "notes").mkdir()
  (tmp_path / "w" / "notes" / "a.txt").write_text("mine")
  assert sorted(outer.foreign()) == ["methods/mymethod.txt", "notes/"]


def test_discard_deletes_only_what_the_manifests_list(tmp_path):
  folder = _run_folder(tmp_path / "w")
  run = folder.method("finetune").open()
  run.write("metrics", {"per_seed": {}})
  os.makedirs(run.checkpoints("3"))
  manifest.record_tree(run.checkpoints())
  (tmp_path / "w" / "methods" / "finetune" / "checkpoints" / "3" / "state").write_bytes(b"x")
  (tmp_path / "w" / "methods" / "notes.txt").write_text("the user's")  # not rum-jax's
  (tmp_path / "w" / "predictions" / "mine.npz").write_bytes(b"the user's")
  folder.discard("methods", "predictions")
  assert sorted(os.listdir(tmp_path / "w" / "methods")) == ["notes.txt"]
  assert os.listdir(tmp_path / "w" / "predictions") == ["mine.npz"]
  assert "predictions/test.npz" not in manifest.load(folder.path)["files"]
  assert folder.exists("metrics") and folder.exists("config")


def test_a_config_holds_its_folder_only_once_it_produced_a_result(tmp_path, tree_digest):
  folder = RunFolder(str(tmp_path / "w"))
  check_config(folder, {"lr": 1.0}, results=("metrics",)).apply()
  os.makedirs(folder.checkpoints())
  check_config(folder, {"lr": 0.1}, results=("metrics",)).apply()  # no result of lr=1: replaced
  assert config_of(folder) == {"lr": 0.1}
  folder.write("metrics", {})
  before = tree_digest(folder.path)
  with pytest.raises(WorkdirError, match=r"holds a run with a different config \(lr: 0.1 -> 0.2\)"):
    check_config(folder, {"lr": 0.2}, results=("metrics",))
  assert tree_digest(folder.path) == before


def test_a_damaged_or_deleted_config_is_written_again_from_the_manifest(tmp_path, caplog):
  folder = RunFolder(str(tmp_path / "w"))
  check_config(folder, {"lr": 0.1}).apply()
  folder.write("metrics", {})
  with open(folder.file("config"), "w") as f:
    f.write("{ damaged")
  with pytest.raises(io.DamagedFileError, match="delete it"):
    io.read_json(folder.file("config"))
  os.remove(folder.file("config"))  # the advice
  check_config(folder, {"lr": 0.1}).apply()
  assert folder.read("config") == {"lr": 0.1}
  with pytest.raises(WorkdirError, match="different config"):  # and it still guards the folder
    check_config(folder, {"lr": 0.5})


def test_a_claimed_folder_of_another_record_is_discarded_by_its_manifest(tmp_path):
  folder = RunFolder(str(tmp_path / "r"))
  first = claim(folder, {"training": 1}, "retrain reference")
  folder.write("forget_set", {"forget_positions": np.arange(3)})
  assert claim(folder, {"training": 1}, "retrain reference") == first and folder.exists("forget_set")
  claim(folder, {"training": 2}, "retrain reference")
  assert not folder.exists("forget_set") and folder.read("made_by")["training"] == 2


def test_a_run_holds_its_folder_and_every_folder_below_and_above_it(tmp_path, held_elsewhere):
  outer, inner = tmp_path / "w", tmp_path / "w" / "memorization"
  inner.mkdir(parents=True)
  proc = held_elsewhere(outer)
  with pytest.raises(WorkdirBusyError, match=r"another run is using .*memorization \(it holds .*w, which contains "
                                             r"it\); wait for it to finish or choose another --workdir"):
    with hold(str(inner)):
      pass
  proc.kill()
  proc.wait()
  held_elsewhere(inner)
  with pytest.raises(WorkdirBusyError, match=r"\(it holds .*memorization, inside it\)"):
    with hold(str(outer)):
      pass



def test_this_process_may_open_a_folder_below_one_it_holds(tmp_path):
  outer, inner = tmp_path / "w", tmp_path / "w" / "memorization"
  inner.mkdir(parents=True)
  with hold(str(outer)):
    with hold(str(inner)):
      pass


def test_the_manifest_is_json_with_sorted_keys(tmp_path):
  folder = _run_folder(tmp_path / "w")
  text = open(os.path.join(folder.path, manifest.NAME)).read()
  assert json.loads(text)["format"] == 1 and text == json.dumps(json.loads(text), indent=1, sort_keys=True)
