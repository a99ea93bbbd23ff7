"""Trains models: python train.py --config=configs/digits.py --workdir=runs/digits

config.mode selects ordinary training (`train`), the Feldman-Zhang memorization estimate
(`memorization`, e.g. configs/digits_memorization.py) or the one-run proxies (`proxies`).
"""
from rum_jax import cli

if __name__ == "__main__":
  cli.main("train")
