"""Evaluates unlearning runs (accuracies, SVC and loss MIA, ToW, ToW-MIA) or runs a study:

python evaluate.py --workdir=runs/digits_unlearn             # every finished run in it
python evaluate.py --workdir=runs/digits_unlearn/methods/salun  # one run
python evaluate.py --config=configs/study_mnist1d.py --workdir=runs/study_mnist1d  # the RUM study
"""
from rum_jax import cli

if __name__ == "__main__":
  cli.main("evaluate")
