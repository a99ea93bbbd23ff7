"""Continual learning and unlearning of a task sequence, several seeds at once:

python continual.py --config=configs/continual_digits.py --config.algorithm=neggem \
    --config.sequence=A4 --workdir=runs/continual_digits
"""
from rum_jax import cli

if __name__ == "__main__":
  cli.main("continual")
