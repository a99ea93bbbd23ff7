"""What several unlearning methods share: a stream's cross-entropy, a swept setting, random
labels, and the registration of a training method."""
import functools
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from rum_jax.training import engine
from rum_jax.training.engine import cross_entropy, weighted_mean
from rum_jax.training.state import TrainState
from rum_jax.unlearning import runners
from rum_jax.unlearning.interface import Method, MethodContext, register


def stream_ce(forward, params, batch_stats, s, labels=None):
  """Train-mode logits of stream s, its weighted mean CE and accuracy, updated batch stats."""
  labels = s["y"] if labels is None else labels
  logits, batch_stats = forward(params, batch_stats, s["x"], train=True)
  ce = weighted_mean(cross_entropy(logits, labels), s["weight"])
  acc = weighted_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), s["weight"])
  return logits, batch_stats, ce, acc


def setting(state: TrainState, key: str) -> jnp.ndarray:
  """A swept setting of this model (`Method.swept`): carried in the state, so one compiled step
  serves every setting of a sweep."""
  return state.aux["hp"][key]


def register_training(name: str, **kwargs) -> Method:
  """Registers the training method `name` (its `run` is the one engine's: `runners.train_run`)."""
  return register(Method(name, runners.training_method(name), **kwargs))


def random_relabel(rng: jnp.ndarray, labels: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  """y' = (y + U{1, ..., C-1}) mod C: uniform over the C - 1 WRONG classes, for any C >= 2.

  RUM's random labels (`np.random.randint(0, num_classes)`, CIFAR-10/SVHN only) may redraw
  the true label; the random-label baseline (Golatkar et al. 2020, as SalUn states it: y' != y) relabels
  with a wrong class, which a shift by 1..C-1 modulo C gives exactly.
  """
  shift = jax.random.randint(rng, labels.shape, 1, num_classes)
  return (labels + shift) % num_classes


@functools.lru_cache(maxsize=None)  # one function per class count: compiled programs are shared
def random_label_loss(num_classes: int) -> engine.LossFn:
  """CE on the "train" stream with every forget example relabelled by `random_relabel`.

  Drawn anew at every step from the step's key, i.e. anew every epoch for each forget
  example; retain examples keep their labels. `state.aux["forget_mask"]` [N] marks the
  forget positions.
  """
  if num_classes < 2:
    raise ValueError(f"random labels need at least 2 classes; the data set has {num_classes}")

  def loss_fn(forward, params, state, batch, rng):
    b = batch["train"]
    is_forget = state.aux["forget_mask"][b["pos"]]
    labels = jnp.where(is_forget, random_relabel(rng, b["y"], num_classes), b["y"])
    _, batch_stats, ce, acc = stream_ce(forward, params, state.batch_stats, b, labels)
    return ce, (batch_stats, {"loss": ce, "accuracy": acc})
  return loss_fn


def forget_mask(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  """aux["forget_mask"]: which train positions each model forgets, bool [S, N] (random labels)."""
  del states
  mask = np.zeros((len(ctx.forget), len(ctx.setup.dataset.train)), bool)
  for s, f in enumerate(ctx.forget):
    mask[s, f] = True
  return {"forget_mask": mask}
