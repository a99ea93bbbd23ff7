"""Split MNIST-1D: 5 tasks of 2 classes, an MLP, on a CPU (~720 training signals per task).

python continual.py --config=configs/continual_mnist1d.py --config.algorithm=neggem
python continual.py --config=configs/continual_mnist1d.py:thesis --config.algorithm=negagem

Variants as configs/continual_digits.py: "" (ours) and "thesis" (the thesis' final A4 runs,
buffers scaled to the task size, an MLP with BatchNorm).
"""
from rum_jax.configs import continual_digits


def get_config(arg: str = ""):
  continual_digits.check_variant(arg, "configs/continual_mnist1d.py")
  c = continual_digits.get_config()
  c.data.name = "mnist1d"
  continual_digits.set_memories(c, memories=80, agem_memories=80)
  if arg == "thesis":
    # ~720 training signals per task, 0.29 of CIFAR-100's 2,500: the thesis' 256 and 65
    # memories scaled by that ratio.
    continual_digits.thesis_on_a_cpu(c, memories=74, agem_memories=19)
  return c
