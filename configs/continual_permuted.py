"""Permuted digits: 20 tasks, each the 8x8 digits with one fixed pixel permutation (GEM's MNIST
Permutations at CPU size), every class in every task, the thesis' A4 protocol.

python continual.py --config=configs/continual_permuted.py --config.algorithm=neggem \
    --workdir=runs/permuted_neggem
python continual.py --config=configs/continual_permuted.py:rotated ...   # GEM's MNIST Rotations

Each task learns 250 of the 1,257 training images (a tenth of the thesis' 2,500 per CIFAR-100
task, as configs/continual_digits.py:thesis), so the thesis' 256 / 65 memories per task
scale to 26 / 7. Learning interferes: plain SGD forgets most earlier tasks, GEM much less
(results/continual/permuted_digits_layernorm.md), the regime of the thesis' CIFAR-100 runs, where the
methods differ in what forgetting does to the tasks they keep.

The thesis' settings (`continual_digits.thesis`), with two differences:
- no BatchNorm. `thesis_on_a_cpu` adds it to the MLP because gradient ascent diverged on
  split digits without it; on permuted tasks BatchNorm's running statistics follow the
  latest permutation and wipe the earlier tasks out in eval mode (GEM learning reached
  ACC 0.29 with it, 0.67 without, 2 seeds each), so the MLP is GEM's, without it. The
  A-GEM methods' forget batch is then the thesis' 1.
- each forget step's gradient is clipped to global norm <= 1 (config.continual.unlearn.
  <method>.clip_norm, the same for all seven runs). Without BatchNorm, gradient ascent on a
  ReLU MLP grows the weights multiplicatively, and NegAGEM and NegGrad+ a=0.5 / 0.95 made
  non-finite weights in 1-2 of 5 seeds; clipped, every step moves the weights by at most
  lr x 1. The effect on the runs that finished without it is in docs/continual.md.

Buffers are chosen by memorization as in the thesis: pass Feldman-Zhang memorization of the
digits train split, --config.continual.scores=<memorization.npz> (bench/continual_permuted.py
computes it with configs/digits_memorization.py). An MLP's training is equivariant to a
fixed permutation of its inputs, so an image's memorization is its permuted copy's too
(rotated tasks: an approximation). Without a file the one-run confidence proxy chooses, and
its 99% "most memorized" unlearn buffer holds the examples the model gets wrong (accuracy
0.29 against 0.95 on the task's training examples, measured), which the stop rule then
measures.
"""
from rum_jax.configs import continual_digits
from rum_jax.continual.methods import CONTINUAL_METHODS

VARIANTS = ("", "rotated")
# Largest global norm of a forget step's gradient, the same for every method (not in the thesis).
CLIP_NORM = 1.0


def get_config(arg: str = ""):
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/continual_permuted.py; valid choices: "
                     f"'' (permuted pixels, the default) or 'rotated' (--config=...:rotated)")
  c = continual_digits.get_config()
  continual_digits.thesis(c, memories=26, agem_memories=7)
  k = c.continual
  k.tasks = "rotated" if arg == "rotated" else "permuted"
  k.num_tasks = 20
  k.samples_per_task = 250
  for name in CONTINUAL_METHODS.names():
    k.unlearn[name].clip_norm = CLIP_NORM
  return c
