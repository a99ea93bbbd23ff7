"""The thesis' Split CIFAR-100 A4 numbers, both reference sets, recomputed from its own files.

python bench/continual_thesis_reference.py --thesis=/path/to/Machine-Unlearning-x-Continual-Learning

reads a checkout of DROP-TABLE-CS407/Machine-Unlearning-x-Continual-Learning (no file of it is
kept here) and writes results/continual/thesis_reference.md / .csv / .json with two sets:

- "final runs": its final A4 run folders, 4tests/A4/<run>/Results<date>...ALL_TASK_ACCURACIES*.csv
  and ALL_*_ACCURACIES_AVERAGED.csv (the *_FINAL folders; NegGrad+ a = 0.95: neggrad095);
- "reported": the CL-ToW values the thesis reports, its ToW/ToW_scores_<run>.csv (commit
  e08e557, "plotting files ToW/average"; ToW/ is unchanged up to the repository's HEAD), made by
  its ToW/tow.py from ToW/<run>test.csv and <run>train.csv, the seed-averaged matrices it was
  given. For NegGEM, NegAGEM and RL-GEM those inputs equal no final run folder (NegGEM's are
  neggemcracked's, a run with forget batch 1); for RL-AGEM, ALT-NegGEM and both NegGrad+ runs
  they equal the final folders' averaged files (checked below, and printed).

Each run's files hold 39 rows (after each step of A4 at T = 20: learn 0..19, forget 19..1)
and 20 task columns: test accuracy (ALL_TASK_ACCURACIES.csv, its 3 seeds one after another;
..._AVERAGED.csv, their mean) and train accuracy (ALL_TASK_ACCURACIES_TRAIN.csv;
ALL_TRAIN_ACCURACIES_AVERAGED.csv). From them, as the thesis' code computes them:

- CL-ToW with its ToW/tow.py on the AVERAGED files: rows i <= 18 score 1; row i >= 19 is
  compared with row 38 - i, (1 - mean_S |dA_train|) (1 - mean_R |dA_train|)
  (1 - |mean_R At_test(i) - mean_R At_test(38 - i)|); "final" is row 38, "mean" the mean over
  the 19 forget rows 20..38. The same formula per seed, then the mean over the 3 seeds, gives
  the per-seed mean (ours); rum_jax.evaluation.continual.cl_tow on the same matrices must agree
  with tow.py (checked below).
- CLU_mix with its CUL/CUL.py (beta 0.2, chance 0.2) on the averaged train file, row 38.
- BWT of learning (Lopez-Paz & Ranzato 2017, Sec. 2) on rows 0..19 of the averaged test file;
  task 0's test accuracy after learning all tasks (row 19) and at the end (row 38); the
  forgotten tasks' (1..19) final test accuracy.
"""
import argparse
import csv
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rum_jax import io, results  # noqa: E402
from rum_jax.continual import sequences  # noqa: E402
from rum_jax.evaluation import continual as cl_metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 20
# The reported set: (label, tow.py's test and train inputs, its output), all under ToW/ (tow.py's
# CSV_FILES and the ToW_scores files it wrote).
REPORTED = (
    ("NegGEM", "neggemtest.csv", "neggemtrain.csv", "ToW_scores_NegGEM.csv"),
    ("NegAGEM", "negagemtest.csv", "negagemtrain.csv", "ToW_scores_NegAGEM.csv"),
    ("RL-GEM", "rlgemtest.csv", "rlgemtrain.csv", "ToW_scores_RL-GEM.csv"),
    ("RL-AGEM", "rlagemtest.csv", "rlagemtrain.csv", "ToW_scores_RL-AGEM.csv"),
    ("ALT-NegGEM", "altneggemtest.csv", "altneggemtrain.csv", "ToW_scores_ALT-NEGGEM.csv"),
    ("NegGrad+ a=0.5", "neggradtest050.csv", "neggradtrain050.csv", "ToW_scores_NegGradplus_(alpha_=_0.50).csv"),
    ("NegGrad+ a=0.95", "neggradtest095.csv", "neggradtrain095.csv", "ToW_scores_NegGradplus_(alpha_=_0.95).csv"),
)
STEPS = 2 * T - 1
# (label, folder under 4tests/A4): the thesis' final A4 runs; NegGrad+ a = 0.95 has no
# *_FINAL folder, its run is neggrad095. neggemcracked (NegGEM, forget batch 1) is the
# run the old reference values came from, shown for the record.
RUNS = (
    ("NegGEM", "NEGGEM_FINAL"),
    ("NegAGEM", "NEGAGEM-FINAL"),
    ("RL-GEM", "RL_GEM_FINAL"),
    ("RL-AGEM", "RL_AGEM_FINAL"),
    ("ALT-NegGEM", "ALT_NEGGEM_FINAL"),
    ("NegGrad+ a=0.5", "NEGGRAD_FINAL"),
    ("NegGrad+ a=0.95", "neggrad095"),
    ("NegGEM, forget batch 1 (neggemcracked)", "neggemcracked"),
)
CLU_BETA, CHANCE = 0.2, 0.2  # CUL.py's BETA and RANDOM_GUESS (5-class tasks)


def read_matrix(path: str) -> np.ndarray:
  """A result CSV (index column, then task columns 0..19) as float [rows, 20]."""
  with open(path) as f:
    rows = list(csv.reader(f))
  header = rows[0][1:]
  if header != [str(t) for t in range(T)]:
    raise ValueError(f"{path}: expected task columns 0..{T - 1}, got {header}")
  return np.array([[float(v) for v in r[1:]] for r in rows[1:]])


def tow_py(train: np.ndarray, test: np.ndarray) -> np.ndarray:
  """The thesis' ToW/tow.py `calculate_tow_single` on [39, 20] matrices (A4, T = 20)."""
  out = np.ones(STEPS)
  for i in range(T - 1, STEPS):
    forgotten = list(range(STEPS - i, T)) if i >= T else []  # forget 19..1 after row 19
    retained = [t for t in range(T) if t not in forgotten]
    b = STEPS - 1 - i
    d_s = np.abs(train[i, forgotten] - train[b, forgotten]).mean() if forgotten else 0.0
    d_r = np.abs(train[i, retained] - train[b, retained]).mean()
    d_test = abs(test[i, retained].mean() - test[b, retained].mean())
    out[i] = (1 - d_s) * (1 - d_r) * (1 - d_test)
  return out


def cul_py(train: np.ndarray) -> np.ndarray:
  """The thesis' CUL/CUL.py `clu_mix_single` (anchors: accuracy when first learned)."""
  anchors = np.diag(train[:T])
  out = []
  for i in range(STEPS):
    learned = list(range(min(i, T - 1) + 1))
    forgotten = list(range(STEPS - i, T)) if i >= T else []
    retained = [t for t in learned if t not in forgotten]
    diff = anchors[retained] - train[i, retained]
    loss_ret, gain = np.maximum(0, diff).mean(), np.maximum(0, -diff).mean()
    loss_res = np.maximum(0, train[i, forgotten] - CHANCE).mean() if forgotten else 0.0
    out.append(((1 - loss_ret) * (1 - loss_res) + CLU_BETA * gain) / (1 + CLU_BETA))
  return np.array(out)


def recompute(folder: str) -> tuple:
  """(every reference number of one run folder with the files it came from, its averaged
  (test, train) matrices)."""
  def one(pattern):
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    if len(found) != 1:
      raise ValueError(f"expected one {pattern} in {folder}, found {len(found)}")
    return found[0]
  files = {"test": one("*ALL_TASK_ACCURACIES.csv"), "train": one("*ALL_TASK_ACCURACIES_TRAIN.csv"),
           "test_averaged": one("*ALL_TASK_ACCURACIES_AVERAGED.csv"),
           "train_averaged": one("*ALL_TRAIN_ACCURACIES_AVERAGED.csv"),
           "hyperparameters": one("*HYPERPARAMETERS.csv")}
  test_runs, train_runs = read_matrix(files["test"]), read_matrix(files["train"])
  seeds = len(test_runs) // STEPS
  test_runs, train_runs = (a.reshape(seeds, STEPS, T) for a in (test_runs, train_runs))
  test_avg, train_avg = read_matrix(files["test_averaged"]), read_matrix(files["train_averaged"])
  # The AVERAGED files are the mean of the per-seed blocks (to the CSVs' precision).
  np.testing.assert_allclose(test_avg, test_runs.mean(0), atol=1e-6)
  np.testing.assert_allclose(train_avg, train_runs.mean(0), atol=1e-6)
  forget_rows = slice(T, STEPS)
  tow_avg = tow_py(train_avg, test_avg)
  tow_seeds = np.stack([tow_py(tr, te) for tr, te in zip(train_runs, test_runs)])
  # Our CL-ToW on the same matrices equals tow.py's (A4 mirrors row i with row 38 - i).
  a4 = sequences.timeline(sequences.make_sequence("A4", T))
  ours = cl_metrics.cl_tow(train_avg, test_avg, a4)
  np.testing.assert_allclose(ours[forget_rows], tow_avg[forget_rows], atol=1e-12)
  R, _ = cl_metrics.learning_matrix(test_avg, a4)
  with open(files["hyperparameters"]) as f:
    hyper = dict(zip(*list(csv.reader(f))[:2]))
  hyper.pop("", None)
  return {
      "files": {k: os.path.basename(v) for k, v in files.items()}, "seeds": seeds,
      "hyperparameters": hyper,
      "final_cl_tow_of_mean_matrices": float(tow_avg[-1]),
      "mean_cl_tow_of_mean_matrices": float(tow_avg[forget_rows].mean()),
      "final_cl_tow_per_seed_mean": float(tow_seeds[:, -1].mean()),
      "mean_cl_tow_per_seed_mean": float(tow_seeds[:, forget_rows].mean()),
      "final_clu_mix_of_mean_matrices": float(cul_py(train_avg)[-1]),
      "acc_after_learning": float(test_avg[T - 1].mean()),
      "bwt_paper": cl_metrics.backward_transfer(R, "paper"),
      "task0_learned": float(test_avg[0, 0]),
      "task0_before_forgetting": float(test_avg[T - 1, 0]),
      "task0_final": float(test_avg[-1, 0]),
      "forgotten_final": float(test_avg[-1, 1:].mean()),
  }, (test_avg, train_avg)


COLUMNS = (("final CL-ToW, averaged matrices (tow.py)", "final_cl_tow_of_mean_matrices"),
           ("mean CL-ToW, averaged matrices (tow.py)", "mean_cl_tow_of_mean_matrices"),
           ("final CL-ToW, per-seed mean", "final_cl_tow_per_seed_mean"),
           ("mean CL-ToW, per-seed mean", "mean_cl_tow_per_seed_mean"),
           ("final CLU_mix (CUL.py)", "final_clu_mix_of_mean_matrices"),
           ("ACC after learning", "acc_after_learning"), ("BWT of learning", "bwt_paper"),
           ("task 0 learned", "task0_learned"), ("task 0 before forgetting", "task0_before_forgetting"),
           ("task 0 final", "task0_final"), ("forgotten, final", "forgotten_final"))


def reported(thesis: str, averaged: dict) -> dict:
  """The reported set: CL-ToW of ToW/<run>{test,train}.csv by tow.py's formula (checked equal
  to its ToW_scores file, the numbers the thesis reports), the kept and forgotten tasks' final
  test accuracy of the same inputs, whether those inputs are a final run's averaged files
  (`averaged`: label -> (test, train) of the final runs), and which run folders of 4tests/A4
  have that averaged test file."""
  folders = {}
  for path in sorted(glob.glob(os.path.join(thesis, "4tests", "A4", "**", "*ALL_TASK_ACCURACIES_AVERAGED.csv"),
                               recursive=True)):
    folders[os.path.relpath(os.path.dirname(path), thesis)] = read_matrix(path)
  out = {}
  for label, test_file, train_file, scores_file in REPORTED:
    test, train = (read_matrix(os.path.join(thesis, "ToW", f)) for f in (test_file, train_file))
    tow = tow_py(train, test)
    with open(os.path.join(thesis, "ToW", scores_file)) as f:
      scores = np.array([float(r[-1]) for r in list(csv.reader(f))[1:]])
    np.testing.assert_allclose(tow, scores, atol=1e-9, err_msg=scores_file)
    final_test, final_train = averaged[label]
    out[label] = {"files": {"test": f"ToW/{test_file}", "train": f"ToW/{train_file}", "scores": f"ToW/{scores_file}"},
                  "run_folders_with_these_inputs": [f for f, m in folders.items()
                                                    if m.shape == test.shape and np.allclose(m, test, atol=1e-6)],
                  "equals_final_run": bool(np.allclose(test, final_test, atol=1e-6) and
                                           np.allclose(train, final_train, atol=1e-6)),
                  "final_cl_tow_of_mean_matrices": float(tow[-1]),
                  "mean_cl_tow_of_mean_matrices": float(tow[T:STEPS].mean()),
                  "task0_before_forgetting": float(test[T - 1, 0]), "task0_final": float(test[-1, 0]),
                  "forgotten_final": float(test[-1, 1:].mean())}
  return out


def stem(files: dict) -> str:
  """The date-stamped prefix all files of a run share."""
  return files["hyperparameters"][:-len("HYPERPARAMETERS.csv")]


REPORTED_COLUMNS = (("final CL-ToW (its ToW_scores file)", "final_cl_tow_of_mean_matrices"),
                    ("mean CL-ToW", "mean_cl_tow_of_mean_matrices"),
                    ("task 0 before forgetting", "task0_before_forgetting"), ("task 0 final", "task0_final"),
                    ("forgotten, final", "forgotten_final"))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--thesis", required=True, help="checkout of the thesis' repository")
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "continual", "thesis_reference"))
  args = parser.parse_args()
  found, averaged = {}, {}
  for label, folder in RUNS:
    found[label], averaged[label] = recompute(os.path.join(args.thesis, "4tests", "A4", folder))
  said = reported(args.thesis, averaged)
  rows = [[label] + [f"{found[label][key]:.3f}" for _, key in COLUMNS] for label, _ in RUNS]
  reported_rows = [[label] + [f"{said[label][key]:.3f}" for _, key in REPORTED_COLUMNS]
                   + [f"{said[label]['files']['test']}, {said[label]['files']['train']} -> {said[label]['files']['scores']}",
                      ", ".join(said[label]["run_folders_with_these_inputs"]) or "none"] for label, *_ in REPORTED]
  repository = "DROP-TABLE-CS407/Machine-Unlearning-x-Continual-Learning"
  text = ("### The thesis' Split CIFAR-100 A4 runs: two reference sets, recomputed from its files\n\n"
          "**Final runs** (the thesis' final A4 run folders, 3 seeds each, its `average_over_n_runs`), "
          "computed by bench/continual_thesis_reference.py with the formulas of the thesis' ToW/tow.py "
          "and CUL/CUL.py. Test accuracies; task 0 is the one task A4 keeps.\n\n"
          + results.markdown_table(["run"] + [name for name, _ in COLUMNS], rows)
          + f"\nFiles (under 4tests/A4/ of {repository}):\n\n"
          + "".join(f"- {label}: {folder}/{stem(found[label]['files'])}{{ALL_TASK_ACCURACIES, "
                    "ALL_TASK_ACCURACIES_TRAIN, ALL_TASK_ACCURACIES_AVERAGED, "
                    "ALL_TRAIN_ACCURACIES_AVERAGED, HYPERPARAMETERS}.csv\n" for label, folder in RUNS)
          + "\n**Reported** (the CL-ToW the thesis reports: its ToW/ToW_scores_<run>.csv, commit e08e557 "
          "\"plotting files ToW/average\", ToW/ unchanged up to the repository's HEAD d02ed55; made by its "
          "ToW/tow.py from the seed-averaged matrices ToW/<run>test.csv and <run>train.csv; our tow.py formula "
          "on those inputs gives every ToW_scores value to 1e-9). The last column lists the run folders of "
          f"4tests/A4 ({len(glob.glob(os.path.join(args.thesis, '4tests', 'A4', '**', '*ALL_TASK_ACCURACIES_AVERAGED.csv'), recursive=True))} "
          "with an averaged test file) whose averaged test file equals the input: NegGEM's is "
          "neggemcracked (a NegGEM run with forget batch 1), NegAGEM's and RL-GEM's none.\n\n"
          + results.markdown_table(["run"] + [name for name, _ in REPORTED_COLUMNS]
                                   + ["files (under ToW/ at e08e557)", "run folder with these inputs"], reported_rows))
  io.write_text(args.out + ".md", text)
  io.write_csv(args.out + ".csv", [{"set": "final runs", "run": label, "source": f"4tests/A4/{folder}",
                                    **{k: found[label][k] for _, k in COLUMNS}} for label, folder in RUNS]
               + [{"set": "reported", "run": label, "source": said[label]["files"]["scores"],
                   **{k: said[label][k] for _, k in REPORTED_COLUMNS}} for label, *_ in REPORTED])
  io.write_json(args.out + ".json", {"final runs": {label: {"folder": f"4tests/A4/{folder}", **found[label]}
                                                    for label, folder in RUNS},
                                     "reported": said, "repository": repository, "commit_of_reported": "e08e557"})
  print(text)


if __name__ == "__main__":
  main()
