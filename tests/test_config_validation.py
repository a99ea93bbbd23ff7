"""Every config field is checked before any work starts; one row per bad input.

The same table is written to docs/bad_input.md by `PYTHONPATH=. python tests/test_config_validation.py`.
"""
import pytest

from rum_jax.configs import default
from rum_jax.config_validation import ConfigError, validate

# (field, bad value, what the message must say)
ROWS = [
    ("mode", "finetune", "valid choices: train, memorization, proxies, study"),
    ("data.name", "imagenet", "valid choices: cifar10, cifar100, digits, mnist1d, npz, tfds"),
    ("model.name", "vgg", "valid choices: airbench, cnn, mlp, reduced_resnet18, resnet18"),
    ("model.dtype", "float16", "valid choices: float32, bfloat16"),
    ("data.augment", "yes", "data.augment must be True or False"),
    ("num_seeds", 0, "num_seeds must be a positive integer"),
    ("seed", -1, "seed must be a non-negative integer"),
    ("vmap_size", -1, "vmap_size must be a non-negative integer"),
    ("train.epochs", 0, "train.epochs must be a positive integer"),
    ("train.batch_size", 2.5, "train.batch_size must be a positive integer"),
    ("train.lr", 0.0, "train.lr must be a number in (0.0"),
    ("train.momentum", 1.5, "train.momentum must be a number in [0.0, 0.999]"),
    ("train.weight_decay", -1e-4, "train.weight_decay must be a number in [0.0, 1.0]"),
    ("train.schedule", "linear", "valid choices: constant, cosine, step, triangle"),
    ("train.eval_batch_size", 0, "train.eval_batch_size must be a positive integer"),
    ("memorization.num_models", 0, "memorization.num_models must be a positive integer"),
    ("memorization.chunk_size", -4, "memorization.chunk_size must be a non-negative integer (0 = as many"),
    ("memorization.ratio", 1.0, "memorization.ratio must be in (0, 1)"),
    ("memorization.ratio", 0.0, "memorization.ratio must be a number in (0.0, 1.0]"),
    ("memorization.influence", "yes", "memorization.influence must be True or False"),
    ("proxies.heldout_lr", -0.1, "proxies.heldout_lr must be a number in (0.0"),
    ("proxies.patience", 0, "proxies.patience must be a positive integer"),
    ("forget.kind", "hardest", "valid choices: entanglement, memorization, proxy, random"),
    ("forget.size", 0, "forget.size must be a positive integer"),
    ("forget.seed", -3, "forget.seed must be a non-negative integer"),
    ("unlearn.method", "amnesiac", "valid choices: finetune, l1_sparse, neggrad"),
    ("unlearn.augment", 1, "unlearn.augment must be True or False"),
    ("unlearn.salun.mask_ratio", 1.5, "unlearn.salun.mask_ratio"),
    ("unlearn.neggrad_plus.alpha", 2.0, "unlearn.neggrad_plus.alpha"),
    ("unlearn.finetune.lr", -1.0, "unlearn.finetune.lr must be a number in (0.0"),
    ("unlearn.compute_scores", "no", "unlearn.compute_scores must be True or False"),
    ("data.split_seed", -1, "data.split_seed must be a non-negative integer"),
    ("data.augment", 1, "data.augment must be True or False"),
    ("model.kwargs.hidden", (0,), "model.kwargs.hidden must hold positive layer widths"),
    ("num_seeds", 10 ** 8, "num_seeds=100000000 is more than 4096 models in one program"),
    ("train.nesterov", "on", "train.nesterov must be True or False"),
    ("train.label_smoothing", 1.5, "train.label_smoothing must be a number in [0.0, 1.0]"),
    ("evaluation.metrics", ("tow", "towww"), "has unknown metric(s) ['towww']; valid choices: "),
    ("sweep.select_by", "mia_confidence", "has no better direction"),
    ("sweep.select_by", "forget_score", "valid choices: retain_accuracy, test_accuracy, tow, tow_mia"),
    ("forget.level", "high", "has no effect with config.forget.kind='random': only memorization and proxy"),
    ("data.options.path", "x.npz", "which data set 'digits' does not take; it takes: no options"),
]


def _set(config, field, value):
  *parents, leaf = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = value


def test_default_config_is_valid():
  validate(default.get_config())


@pytest.mark.parametrize("field,value,message", ROWS, ids=[f"{f}={v!r}" for f, v, _ in ROWS])
def test_bad_field_is_refused_with_the_valid_choices(field, value, message):
  config = default.get_config()
  if field == "forget.kind":
    config.forget.level = "mix"
  _set(config, field, value)
  with pytest.raises(ConfigError) as err:
    validate(config)
  assert message in str(err.value)
  assert field.split(".")[-1] in str(err.value)


def write_docs(path="docs/bad_input.md"):
  config_lines = []
  for field, value, _ in ROWS:
    config = default.get_config()
    _set(config, field, value)
    try:
      validate(config)
      msg = "(accepted!)"
    except ConfigError as e:
      msg = str(e)
    config_lines.append(f"| `--config.{field}={value!r}` | {msg} |")
  text = ("# Bad input and what rum-jax says\n\nEvery config field is validated before any "
          "work starts (`rum_jax/config_validation.py`); each row is a test in "
          "`tests/test_config_validation.py` (regenerate this file with `PYTHONPATH=. "
          "python tests/test_config_validation.py`). Run-time problems are listed after the table.\n\n"
          "| bad input | message |\n|---|---|\n" + "\n".join(config_lines) + "\n\n" + RUNTIME)
  with open(path, "w") as f:
    f.write(text)


RUNTIME = """## Run-time checks

| situation | what happens | test |
|---|---|---|
| forget set larger than the train split, empty, or overlapping the retain set | ValueError naming the sizes | tests/test_unlearning_run.py |
| `forget.level` without a score file | FileNotFoundError with the `train.py --config=configs/<data>_memorization.py` command | tests/test_unlearning_run.py |
| score file of the wrong length, with NaNs, other labels, or unreadable | ValueError naming the file, key, expected and actual length | tests/test_memorization_files.py |
| NaN/inf loss | NonFiniteLossError naming epoch and seeds; the last good checkpoint is kept | tests/test_training.py, tests/test_unlearning_run.py |
| work directory made with another config | refused, listing the differing fields, unless `--overwrite`; a moved or copied one (paths differ, contents do not) is not | tests/test_faults.py |
| a second run on the same work directory, or on a folder inside or around one another run holds (`train.py --workdir=W/memorization` while `unlearn.py --workdir=W` computes scores there) | refused: `another run is using W/memorization (it holds W, which contains it); wait for it to finish or choose another --workdir`; nothing created | tests/test_faults.py, tests/test_trust.py, tests/test_run_folders.py |
| damaged newest checkpoint | one warning line; set aside as `unreadable-<step>-<time>`, the previous one is used | tests/test_faults.py, tests/test_workdirs.py |
| full disk while writing a result or a checkpoint | one line that starts with "no space left on the device while writing <path>"; the previous file is intact, no temp files left | tests/test_faults.py, tests/test_workdirs.py |
| the forget set of a work directory changed (scores recomputed, another score file) | refused, naming the runs made with the old set and how many examples are shared, unless `--overwrite`, which discards those runs | tests/test_workdirs.py |
| a work directory whose config.json was deleted | the copy its manifest keeps says which config made its results: the same config resumes (config.json written again), another is refused unless `--overwrite` | tests/test_workdirs.py, tests/test_run_folders.py |
| forget_set.npz edited by hand | evaluate.py refuses: it is not the forget set its runs were unlearned from | tests/test_workdirs.py |
| fewer `memorization.num_models` than already estimated | the estimate of exactly the first models (chunk files kept; raising it again reuses them) | tests/test_workdirs.py |
| a damaged metrics.json / evaluation.json / config.json | the run is redone / the cache recomputed with a warning / the manifest's copy of the config is used, with a warning naming the file, and config.json written again (deleting it, as its reading error advises, works too) | tests/test_workdirs.py, tests/test_run_folders.py |
| a copied or moved work directory or study | evaluated against its own reference and original; a moved study resumes | tests/test_workdirs.py |
| a study whose retrain reference or predictions were deleted | the rerun redoes only what is missing | tests/test_workdirs.py |
| evaluate.py on a train.py, memorization, continual or study work directory | says what kind it is and where its results are (or how to run it) | tests/test_workdirs.py |
| `train.batch_size` larger than the examples a model trains on | refused (every step would be one padded batch) | tests/test_workdirs.py |
| `forget.size` not smaller than the train split | refused before any training | tests/test_workdirs.py |
| a config, work-directory, data or disk error in a command line | one line `error: <what and the fix>`; `-v 1` shows the traceback | tests/test_workdirs.py |
| a config field that does not exist, in any command (`--config.unlearn.methd=salun`, `--config.train.epochz=3`, `--config.audit.num_model=32`, `--config.algoritm=neggem`, `--config.sweep.neggrad_plus.lrate=...`) | `error: the config has no field unlearn.methd (did you mean unlearn.method?)`; without a close name, the fields of that section (`--config.sweep.nonexistent.lr`: the sweepable methods) | tests/test_bad_input.py |
| a value of the wrong type (`--config.num_seeds=three`) | `error: config.num_seeds takes an integer (it is 3 now), got 'three': e.g. --config.num_seeds=3` | tests/test_bad_input.py |
| a config file that does not exist (with or without overrides), or fails to load | names the shipped configs (`--config=configs/<name>.py` works from any directory) / the file's error in one line | tests/test_bad_input.py |
| `--config.<field>` without `--config` (evaluate.py) | says to add `--config=<file>` | tests/test_bad_input.py |
| an unknown flag | `error: Unknown command line flag 'bogus' (--helpfull lists the flags)` | tests/test_bad_input.py |
| a sweep of a method the command does not run (unlearn.py with another `unlearn.method`, train.py, continual.py, a study method not in `study.methods`) | refused, naming the sweep and what the command runs | tests/test_bad_input.py |
| a swept list with an empty value (`--config.sweep.neggrad_plus.lr=0.01,,0.03`) | refused: an empty value between commas | tests/test_bad_input.py |
| `--workdir` naming a file, or a path inside one | `error: --workdir=<path> is a file, not a folder: choose another --workdir (a new folder is created)`; the file is untouched | tests/test_bad_input.py, tests/test_faults.py |
| `--workdir` that cannot be written | names the folder you may not write in: choose another `--workdir` or `chmod u+w` it | tests/test_bad_input.py |
| a value refused once the run started (forget set larger than the data, batch larger than the train split, missing data) | the work directory is left as it was: no config.json that would refuse the corrected command (a new work directory is removed); a config.json that was there is kept | tests/test_bad_input.py |
| a killed save (`*.orbax-checkpoint-tmp*`) or a set-aside damaged checkpoint | named in the next run's log; removed (the first at once, the second once a newer checkpoint is saved) | tests/test_workdirs.py |
| CIFAR not on disk | FileNotFoundError saying where to download it or how to build it with TFDS | tests/test_data.py |
| unknown data set / model / method / sequence name | ValueError listing the valid names | tests/test_data.py, tests/test_training.py, tests/test_continual_sequences.py |
| subset ratio outside (0, 1); too few models for every example to be in and out | ValueError; a warning with the count of undefined examples | tests/test_memorization_estimator.py |
| `memorization.chunk_size=0` and not even one model per device fits the device's memory | MemoryError naming the bytes a model needs, the usable bytes, and the remedies (smaller batch, bfloat16) | tests/test_memory.py |
| checkpoints of another program in a run's folder (a sweep's grid, base settings or epochs changed; a method's settings, the original models, the forget set or the data changed; checkpoints of an older version that record no program) | one warning naming what changed (`program.json` against the run's key); they are deleted and the run starts over, never resumed | tests/test_stale_checkpoints.py |
| a retrain reference replaced by another (other training, augmentation or forget set) | evaluate.py refuses: it is not the reference the runs were compared with, re-run unlearn.py; unlearn.py retrains it with a warning naming the differences (`made_by.json`) | tests/test_stale_checkpoints.py |
| a work directory resumed or extended on another number of devices (padding seeds: 3 seeds on 2 devices run as 4) | resumes with equal results: checkpoints, SalUn saliency and shadow-model weights are saved without padding seeds | tests/test_device_counts.py |
| the same config field twice, the second bad (`--config.num_seeds=2 --config.num_seeds=three`) | the bad value is named: `error: config.num_seeds takes an integer (it is 3 now), got 'three': e.g. --config.num_seeds=3` | tests/test_bad_input_fixes.py |
| a list field given as `a,b` (`--config.evaluation.metrics=tow,tow_mia`) | accepted as the tuple ('tow', 'tow_mia'), as the sweep flags take `a,b`; an unknown name in it is refused, listing the valid ones | tests/test_bad_input_fixes.py |
| `--config.data.name=npz` without a file; an option the data set does not take | `the npz data set needs a file: set --config.data.options.path=<file.npz> (or --config.data.data_dir=<file.npz>)`, and `--config.data.options.<option>=<value>` adds any option of the data set's loader; an option it does not take is refused before any work, naming those it takes | tests/test_bad_input_fixes.py, tests/test_config_validation.py |
| an npz data set path that is a text file (or one .npy array) | `the npz data set's file <file> is no .npz archive (it starts with b'...'): save the data set with np.savez('<name>.npz', x=inputs, y=labels) and set --config.data.options.path=<name>.npz` | tests/test_bad_input_fixes.py |
| a missing score file `--config.forget.scores=<folder>/mine.npz` | names `python train.py --config=configs/<data>_memorization.py --workdir=runs/<data>_memorization` and `--config.forget.scores=runs/<data>_memorization/memorization.npz` (train.py writes memorization.npz in its work directory); a missing `<dir>/memorization.npz`: the command with `--workdir=<dir>` | tests/test_bad_input_fixes.py |
| `--config.forget.kind=random --config.forget.level=high` (a level with a kind that picks no level) | refused: `config.forget.level='high' has no effect with config.forget.kind='random': only memorization and proxy forget sets are picked by level; use --config.forget.kind=memorization --config.forget.level=high, or leave forget.level at 'mix'` | tests/test_bad_input_fixes.py, tests/test_config_validation.py |
| `memorization.chunk_size` larger than `num_models`, or `num_models` not a multiple of it | exactly `num_models` models are trained (the last chunk cut short, never rounded up); raising num_models later retrains only the cut chunk | tests/test_memorization_run.py |
| `leaderboard.py --output=<a folder>` | `error: --output=<folder> is a folder; name the markdown file to write in it, e.g. --output=<folder>/leaderboard.md (the records go beside it as .csv)` | tests/test_bad_input_fixes.py, tests/test_leaderboard.py |
| `leaderboard.py --output=x.csv` or `--output=/tmp/dl/my.dir/lb` (no `.md` name) | refused, nothing written: `--output=x.csv is not a markdown file name (.md): e.g. --output=x.md writes the table there and the records it was made from beside it (.csv)`; a `.md` name writes it and the records beside it (`x.csv`), nothing outside its folder | tests/test_leaderboard.py |
| `leaderboard.py --workdirs=a,a` (or a folder and one inside it) | refused: `a/evaluation.csv is named twice (through a and a): its runs would count twice; name each work directory once` | tests/test_leaderboard.py |
| `leaderboard.py` on a work directory and its copy, or on two runs of one recipe (settings, forget set, original models) | refused, naming both work directories and the run; `--pool` pools reruns' seeds into one row whose note says what it pooled (a copy counts once); distinct runs are distinct rows, never pooled | tests/test_leaderboard.py |
| `--workdir` (or a folder inside it) holding files rum-jax did not write, with or without `--overwrite` (`train.py --overwrite --workdir=$HOME`; a folder with `methods/mymethod.txt`) | refused in one line before anything is created: `--workdir=<dir> holds files rum-jax did not write (checkpoints/), so it is not rum-jax's to use or clean: choose an empty or new --workdir (or move those files out)`; nothing is deleted; a work directory of an earlier rum-jax (no manifest) is refused the same way, saying so | tests/test_trust.py, tests/test_run_folders.py |
| `--overwrite` on a work directory made with another config | deletes only what the manifests (`.manifest.json`) list as written by rum-jax (the runs and references it redoes) | tests/test_trust.py, tests/test_run_folders.py |
| a damaged `.manifest.json` | refused: rum-jax cannot tell which files it wrote; move the results out and run again in an empty `--workdir` | tests/test_run_folders.py |
| a changed sweep grid (or `sweep.select_by`) without `--overwrite` | refused before anything is deleted or rewritten (`holds a sweep of <method> over another grid (...)`); the whole tree unchanged | tests/test_stale_checkpoints.py |
| a run that failed at run time (`forget.size` = all but one example, `train.lr=inf`, a diverging method's `lr=1e6`) | its config holds no result, so it does not hold the work directory: the corrected command runs | tests/test_trust.py |
| evaluate.py after the original models of its runs were retrained (`train.py --overwrite` on the `original_workdir` with other settings) | refused: `the runs <names> of <dir> were unlearned from other original models than those now in <original> (retrained since)`; each run records the digest of the original it started from; unlearn.py refuses the retrained original too | tests/test_trust.py |
| a result replaced or edited since rum-jax wrote it (a retrain reference's `predictions/`, a forget set) | refused by evaluate.py and unlearn.py: `<file> is not the file rum-jax wrote (its digest differs ...)`; deleting it makes unlearn.py write it again | tests/test_trust.py, tests/test_run_folders.py |
| evaluate.py on a work directory you may not write (a colleague's) | one line: `--workdir=<dir> cannot be written ...; pass --output=<a folder you can write> to write the evaluation there`; `--output` writes it there and changes nothing in `--workdir` | tests/test_trust.py |
| a refused run (any of the above) | changes nothing: what it wrote before the refusal (log lines, TensorBoard files, manifest entries) is undone; tests compare a digest of the whole tree before and after | tests/test_trust.py, tests/test_stale_checkpoints.py |
| MNIST-1D `data.options.num_train` / `num_test` not an integer >= 10, or summing to no multiple of 10; another option | ValueError naming the option and what it must be (the options it takes: num_train, num_test) | tests/test_data.py |
"""


def test_a_command_refuses_a_mode_it_does_not_run_and_names_the_one_that_does(tmp_path):
  from rum_jax import commands
  from rum_jax.configs import study_mnist1d
  with pytest.raises(ConfigError, match=r"config.mode='study' is run by evaluate.py, not train.py .*"
                                        r"python evaluate.py --config="):
    commands.train(study_mnist1d.get_config(), str(tmp_path / "w"))
  c = default.get_config()
  c.mode = "proxies"
  with pytest.raises(ConfigError, match="config.mode='proxies' is run by train.py, not evaluate.py"):
    commands.evaluate(str(tmp_path / "w"), c)
  assert not (tmp_path / "w").exists(), "refused before the work directory is touched"


if __name__ == "__main__":
  write_docs()

