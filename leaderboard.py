"""One leaderboard over many work directories (unlearning runs, studies, audits):

python leaderboard.py --workdirs=runs/rum_digits,runs/study_mnist1d --output=runs/leaderboard.md

reads every record (evaluation.csv, audit.csv) below the work directories
(`rum_jax.results.collect`) and writes the table of means ± 95% intervals over seeds, a row per
run (its settings, forget set and original models; the original and the retrain reference first
within each forget set), to --output (a .md file) and the records it read beside it (.csv).
A run found in several work directories is refused unless --pool pools its seeds (and says so).
Installed: rum-jax-leaderboard ..., or python -m rum_jax leaderboard ....
"""
from rum_jax import cli

if __name__ == "__main__":
  cli.main("leaderboard")
