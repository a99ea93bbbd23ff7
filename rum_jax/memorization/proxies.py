"""Cheap memorization proxies from ONE training run (Zhao & Triantafillou 2024).

"Scalability of memorization-based machine unlearning", NeurIPS 2024 FITML workshop
(arXiv:2410.16516): instead of training thousands of models (`estimator`), track
"learning events" of every example while the original model trains. At each training step
that sees example i (train mode, logits computed before the step's update), with
p = softmax(logits) and y the label, record

  true-class confidence  p_y
  max confidence         max_c p_c
  negative entropy       sum_c p_c log p_c
  binary accuracy        [argmax_c p_c = y]

and average each over every step that saw i. Examples the model fits early and confidently
are typical; memorized (atypical, mislabelled) ones are fitted late and unconfidently, so high
confidence means LOW memorization. `ProxyAccumulator.finalize` orients every proxy so that
HIGH = MORE MEMORIZED (in parentheses: the name RUM's `--mem_proxy` flag uses):

  'confidence'       (confidence) = 1 - mean p_y
  'max_confidence'   (max_conf)   = 1 - mean max_c p_c
  'entropy'          (entropy)    = -mean sum_c p_c log p_c   (the mean entropy)
  'binary_accuracy'  (bi_acc)     = 1 - mean accuracy

The held-out retraining proxy (ho_ret, same paper): fine-tune a copy of the trained model on
held-out data; an example the first model memorized is predicted differently afterwards, so
its score is `symmetric_kl` between the two models' predictions (already high = memorized).
"""
import os
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rum_jax import io

# Raw per-step events, and the oriented proxy each becomes: event -> (proxy name, offset)
# with proxy = offset - mean(event) (every event grows with confidence, so all flip sign).
EVENTS = ("true_class_confidence", "max_confidence", "negative_entropy", "accuracy")
_ORIENTATION = {
    "true_class_confidence": ("confidence", 1.0),
    "max_confidence": ("max_confidence", 1.0),
    "negative_entropy": ("entropy", 0.0),
    "accuracy": ("binary_accuracy", 1.0),
}
PROXIES = tuple(name for name, _ in _ORIENTATION.values())


def batch_learning_events(logits: jnp.ndarray, labels: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """Per-example learning events of one batch (jittable).

  Args:
    logits: [B, C] logits of the batch, computed in train mode before the update.
    labels: [B] integer labels.

  Returns:
    dict with float32 [B] arrays 'true_class_confidence' p_y, 'max_confidence' max_c p_c,
    'negative_entropy' sum_c p_c log p_c (<= 0; 0 log 0 = 0), 'accuracy' [argmax p = y].
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return dict(
      true_class_confidence=jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0],
      max_confidence=jnp.max(probs, axis=-1),
      # entr(p) = -p log p with entr(0) = 0, so classes with zero probability add nothing.
      negative_entropy=-jnp.sum(jax.scipy.special.entr(probs), axis=-1),
      accuracy=(jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32),
  )


class ProxyAccumulator(NamedTuple):
  """Running weighted sums of the learning events of every training example (a pytree).

  Pure-functional and jittable, so it can live in the train state and be updated inside the
  jitted train step: `acc = acc.update(batch["index"], events, batch["weight"])`.

  Attributes:
    sums: event name -> float32 [N], sum over steps of weight * event.
    weight: float32 [N], sum over steps of weight (how often i was seen).
  """
  sums: Dict[str, jnp.ndarray]
  weight: jnp.ndarray

  @classmethod
  def init(cls, num_examples: int) -> "ProxyAccumulator":
    """Zero sums for examples at positions 0..num_examples-1."""
    zeros = jnp.zeros(num_examples, jnp.float32)
    return cls({name: zeros for name in EVENTS}, zeros)

  def update(self, example_index: jnp.ndarray, events: Dict[str, jnp.ndarray],
             weight: Optional[jnp.ndarray] = None) -> "ProxyAccumulator":
    """Adds one batch: sums[e][i] += w * event, weight[i] += w (repeated indices add up).

    Args:
      example_index: int [B], position of each batch example in [0, N). Out-of-range
        positions are dropped by the scatter, not reported (jit cannot raise).
      events: `batch_learning_events` of the batch.
      weight: [B] weights (0 for padding); None means all ones.
    """
    if weight is None:
      weight = jnp.ones(example_index.shape, jnp.float32)
    weight = weight.astype(jnp.float32)
    sums = {name: self.sums[name].at[example_index].add(weight * events[name])
            for name in EVENTS}
    return ProxyAccumulator(sums, self.weight.at[example_index].add(weight))

  def finalize(self) -> Dict[str, jnp.ndarray]:
    """Oriented proxies (module docstring), float32 [N] each; nan where never seen."""
    seen = self.weight > 0
    denominator = jnp.where(seen, self.weight, 1.0)
    out = {}
    for event, (name, offset) in _ORIENTATION.items():
      out[name] = jnp.where(seen, offset - self.sums[event] / denominator, jnp.nan)
    return out


def event_metrics(logits: jnp.ndarray, labels: jnp.ndarray, batch: Dict[str, jnp.ndarray]) -> Dict[str, jnp.ndarray]:
  """The per-step metrics a loss returns so that `EventSums` can accumulate learning events.

  "pos" and "event_weight" are the batch's train positions and 0/1 weights; "event/<e>" the
  events of `batch_learning_events` (no gradient flows through them).
  """
  events = jax.tree.map(jax.lax.stop_gradient, batch_learning_events(logits, labels))
  return {"pos": batch["pos"], "event_weight": batch["weight"], **{f"event/{k}": v for k, v in events.items()}}


class EventSums:
  """Host sums of learning events per seed, fed the per-step metrics of every epoch.

  Pass it as `on_epoch` to `training.loop.fit` with a loss that adds `event_metrics`. With a
  `directory`, the sums after every epoch are saved there (the previous snapshot removed),
  so a resumed run restores them with `restore(epochs_done)` and matches an uninterrupted one.
  num_seeds is the number of real seeds: `fit` hands over metrics without padding seeds.
  """

  def __init__(self, num_seeds: int, n: int, directory: Optional[str] = None):
    self.directory = directory
    self.sums = {e: np.zeros((num_seeds, n)) for e in EVENTS}
    self.weight = np.zeros((num_seeds, n))

  def _path(self, epoch: int) -> str:
    return os.path.join(self.directory, f"events_{epoch:05d}.npz")

  def restore(self, epoch: int) -> None:
    """The sums after `epoch` epochs (none: zeros), from the snapshot saved then."""
    if epoch == 0:
      return
    data = np.load(self._path(epoch))
    self.weight = data["weight"]
    self.sums = {e: data[e] for e in EVENTS}

  def __call__(self, epoch: int, metrics: Dict[str, np.ndarray]) -> None:
    pos, w = metrics["pos"], metrics["event_weight"]  # [S, steps, B]
    if pos.shape[0] != self.weight.shape[0]:
      raise ValueError(f"learning events of {pos.shape[0]} seeds, expected {self.weight.shape[0]}")
    for s in range(self.weight.shape[0]):
      np.add.at(self.weight[s], pos[s].ravel(), w[s].ravel())
      for e in EVENTS:
        np.add.at(self.sums[e][s], pos[s].ravel(), (w[s] * metrics[f"event/{e}"][s]).ravel())
    if self.directory is not None:
      io.write_npz(self._path(epoch + 1), weight=self.weight, **self.sums)
      io.remove(self._path(epoch - 1))

  def proxies(self) -> Dict[str, np.ndarray]:
    """Oriented proxies per seed [S, N] (high = more memorized; NaN where never seen)."""
    acc = ProxyAccumulator({e: jnp.asarray(v) for e, v in self.sums.items()}, jnp.asarray(self.weight))
    return {k: np.asarray(v) for k, v in acc.finalize().items()}


def symmetric_kl(p_logits: jnp.ndarray, q_logits: jnp.ndarray) -> jnp.ndarray:
  """KL(p || q) + KL(q || p) per example, for the held-out retraining proxy.

  With p = softmax(p_logits), q = softmax(q_logits) (finite logits):
    KL(p || q) + KL(q || p) = sum_c (p_c - q_c)(log p_c - log q_c),
  computed from log_softmax so tiny probabilities keep their exact logs.

  Args:
    p_logits, q_logits: [N, C] logits of the original and the held-out-fine-tuned model.

  Returns:
    float32 [N], >= 0, high = the example's prediction moved more = more memorized.
  """
  log_p = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  return jnp.sum((jnp.exp(log_p) - jnp.exp(log_q)) * (log_p - log_q), axis=-1)
