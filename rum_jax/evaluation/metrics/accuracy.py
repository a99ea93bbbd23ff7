"""Top-1 accuracy on the forget set, the retain set, validation and test (the one implementation).

  A_split = (1 / |split|) sum_{i in split} [argmax_c z_{i,c} = y_i],

per seed; the forget and retain sets are positions into the train split, seed by seed.
"""
import numpy as np

from rum_jax.evaluation.metrics.interface import Metric, ModelOutputs, register


def split_accuracy(outputs: ModelOutputs, split: str) -> np.ndarray:
  """Per-seed accuracy [S] on 'forget', 'retain' (train positions of each seed) or a split."""
  source = "train" if split in ("forget", "retain") else split
  correct = outputs.logits[source].argmax(-1) == np.asarray(outputs.labels[source])[None]
  if source == split:
    return correct.mean(-1)
  sets = outputs.forget if split == "forget" else outputs.retain
  return np.array([correct[s, np.asarray(sets[s])].mean() for s in range(outputs.num_seeds)])


for _split, _display in (("forget", "forget acc"), ("retain", "retain acc"), ("val", "val acc"),
                         ("test", "test acc")):
  register(Metric(f"{_split}_accuracy", lambda o, s=_split: split_accuracy(o, s),
                  needs=frozenset({"train" if _split in ("forget", "retain") else _split}), display=_display,
                  # Forget accuracy should match retraining's rather than be high or low.
                  higher_is_better=None if _split == "forget" else True,
                  description=f"top-1 accuracy on the {_split} {'set' if _split in ('forget', 'retain') else 'split'}"))
