"""RUM on digits, the whole pipeline in one command (a few minutes on 2 CPU cores):

python unlearn.py --config=configs/rum_digits.py --workdir=runs/rum_digits

trains the original MLPs (3 seeds), computes Feldman-Zhang memorization (256 subset models)
into <workdir>/memorization if absent, picks a `mix` forget set (n/3 low, mid and high
memorization), runs RUM (low -> mid -> high, each with its own method) and evaluates it
against retraining: <workdir>/evaluation.md and evaluation.png. The plan is configs/default.py's,
searched on digits' validation mix sets (results/digits/study.md).
"""
from rum_jax.configs import default


def get_config():
  c = default.get_config()
  c.forget.kind = "memorization"
  c.forget.level = "mix"
  c.forget.size = 150
  c.unlearn.method = "rum"
  return c
