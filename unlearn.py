"""Unlearns a forget set from the original models and compares with retraining:

python unlearn.py --config=configs/digits.py --config.unlearn.method=salun \
    --config.forget.kind=memorization --config.forget.level=high --config.forget.size=150 \
    --workdir=runs/digits_unlearn

Every method runs the same pipeline (scores if a forget set or method needs them and they are
absent, original, forget set, retrain reference, the method, evaluation); RUM is one of them:
python unlearn.py --config=configs/rum_digits.py --workdir=runs/rum_digits
"""
from rum_jax import cli

if __name__ == "__main__":
  cli.main("unlearn")
