"""One leaderboard over many work directories (unlearning runs, studies, forgetting banks):

python leaderboard.py --workdirs=runs/rum_digits,runs/study_mnist1d --output=runs/leaderboard.md

reads every record (evaluation.csv, forgetting.csv) below the work directories
(`rum_jax.results.collect`), and writes the table of means ± 95% intervals over seeds per data
set, model, forget set and method, the original and the retrain reference first, to --output
and the concatenated records beside it (.csv).
"""
from absl import app, flags

from rum_jax import commands, runtime

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Work directories (or record files), comma-separated.",
                              required=True)
_OUTPUT = flags.DEFINE_string("output", "leaderboard.md", "The markdown file to write.")
_METRICS = flags.DEFINE_list("metrics", [], "Metrics to show, by name (default: every metric recorded).")


def main(argv):
  del argv
  runtime.main(lambda: print(commands.leaderboard(_WORKDIRS.value, _OUTPUT.value, _METRICS.value)))


if __name__ == "__main__":
  app.run(main)
