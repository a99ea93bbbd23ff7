"""The thesis' Split CIFAR-100 A4 numbers, recomputed from its own result files.

python bench/continual_thesis_reference.py --thesis=/path/to/Machine-Unlearning-x-Continual-Learning

reads 4tests/A4/<run>/Results<date>...ALL_TASK_ACCURACIES*.csv and ALL_*_ACCURACIES_AVERAGED.csv
of a checkout of DROP-TABLE-CS407/Machine-Unlearning-x-Continual-Learning (no file of it is
kept here) and writes results/continual/thesis_reference.md / .csv / .json.

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


def recompute(folder: str) -> dict:
  """Every reference number of one run folder, with the files it came from."""
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
  }


COLUMNS = (("final CL-ToW, averaged matrices (tow.py)", "final_cl_tow_of_mean_matrices"),
           ("mean CL-ToW, averaged matrices (tow.py)", "mean_cl_tow_of_mean_matrices"),
           ("final CL-ToW, per-seed mean", "final_cl_tow_per_seed_mean"),
           ("mean CL-ToW, per-seed mean", "mean_cl_tow_per_seed_mean"),
           ("final CLU_mix (CUL.py)", "final_clu_mix_of_mean_matrices"),
           ("ACC after learning", "acc_after_learning"), ("BWT of learning", "bwt_paper"),
           ("task 0 learned", "task0_learned"), ("task 0 before forgetting", "task0_before_forgetting"),
           ("task 0 final", "task0_final"), ("forgotten, final", "forgotten_final"))


def stem(files: dict) -> str:
  """The date-stamped prefix all files of a run share."""
  return files["hyperparameters"][:-len("HYPERPARAMETERS.csv")]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--thesis", required=True, help="checkout of the thesis' repository")
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "continual", "thesis_reference"))
  args = parser.parse_args()
  found = {label: recompute(os.path.join(args.thesis, "4tests", "A4", folder)) for label, folder in RUNS}
  rows = [[label] + [f"{found[label][key]:.3f}" for _, key in COLUMNS] for label, _ in RUNS]
  text = ("### The thesis' Split CIFAR-100 A4 runs, recomputed from its result files\n\n"
          "3 seeds per run (the thesis' `average_over_n_runs`); computed by "
          "bench/continual_thesis_reference.py with the formulas of the thesis' ToW/tow.py "
          "and CUL/CUL.py. Test accuracies; task 0 is the one task A4 keeps.\n\n"
          + results.markdown_table(["run"] + [name for name, _ in COLUMNS], rows)
          + "\nFiles (under 4tests/A4/ of DROP-TABLE-CS407/Machine-Unlearning-x-Continual-Learning):\n\n"
          + "".join(f"- {label}: {folder}/{stem(found[label]['files'])}{{ALL_TASK_ACCURACIES, "
                    "ALL_TASK_ACCURACIES_TRAIN, ALL_TASK_ACCURACIES_AVERAGED, "
                    "ALL_TRAIN_ACCURACIES_AVERAGED, HYPERPARAMETERS}.csv\n" for label, folder in RUNS))
  io.write_text(args.out + ".md", text)
  io.write_csv(args.out + ".csv", [{"run": label, "folder": folder, **{k: found[label][k] for _, k in COLUMNS}}
                                   for label, folder in RUNS])
  io.write_json(args.out + ".json", {label: {"folder": folder, **found[label]} for label, folder in RUNS})
  print(text)


if __name__ == "__main__":
  main()
