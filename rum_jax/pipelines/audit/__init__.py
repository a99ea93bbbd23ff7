"""The audit: forgetting quality from banks of many models (evaluate.py with config.mode 'audit').

Two strong measures of how well a method forgets, each from hundreds of models trained as one
program per chunk (docs/audit.md has the protocols and what they cost):

* the NeurIPS 2023 unlearning challenge score (Triantafillou et al. 2024): one original model;
  N models retrained without the forget set F (cached, shared by every method) and, per method,
  N models unlearned from the original (different seeds); per forget example the privacy
  epsilon separating its logit-scaled confidences under the two banks, bucketed into points,
  averaged into the forgetting score F and discounted by the retain and test accuracy ratios;
* U-LiRA (Hayes et al. 2024): a shadow bank of K models, model k trained on a random half H_k
  of the train split, then a random forget subset F_k of its half (|F_k| = |F|) unlearned
  with the method. Every model is the target in turn: an example's confidence under it is
  scored by the likelihood ratio of Gaussians fitted over the other models that unlearned it
  and that never saw it. The same bank before unlearning gives LiRA (Carlini et al. 2022) on
  the trained models, compared with the SVC attack on the same models, and its halves give a
  Feldman-Zhang memorization estimate (subset ratio 0.5).

`run_audit(config, workdir)` trains the original model, picks the forget set from
config.forget and calls `evaluate_forget_set`, the function a study calls for each of its
forget sets. An audit work directory (file names: `runfolder.layout`) holds the config,
the one original model (train.py's layout, one seed), the scores a memorization forget set
(or RUM) reads (computed if absent), the forget set (train positions and ORIGINAL indices),
and banks, each a run folder of its own with its spec as config and one file per chunk:

  retrained/                  the N models retrained on D \\ F (forget-set confidences, accuracies)
  unlearned/<method>/         the N models unlearned from the original, the same layout
  shadow/trained/             the K shadow models: halves, logits, and their weights (to
                              unlearn from when a method is added later)
  shadow/<method>/            the same models after unlearning their forget subsets

and shadow/'s Feldman-Zhang memorization from the halves (the score-file format), then the
results: per method F, the final score, accuracies and U-LiRA, LiRA and the SVC (a record, a
table, and the tidy rows: one per model x metric of config.audit.metrics), every forget
example's epsilon per method, and figures of the epsilons and of the ROC curves.

Every bank resumes from its last finished chunk; raising N or K later adds chunks. A bank
made with other settings is refused (the differing fields listed) unless --overwrite.

References:
  Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the first
  NeurIPS unlearning competition", arXiv:2406.09073.
  Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a false sense
  of privacy", arXiv:2403.01218.
  Carlini et al. 2022, "Membership Inference Attacks From First Principles", arXiv:2112.03570.
  Feldman & Zhang 2020, "What Neural Networks Memorize and Why", arXiv:2008.03703.

The package: `banks` (seed streams, the resumable `Bank`), `challenge` (the retrained and
unlearned banks), `shadow` (the shadow banks, U-LiRA, LiRA, the SVC comparison), `report` (rows,
the record, tables, figures); the scores are `rum_jax.evaluation.metrics` entries, chosen by name
in config.audit.metrics.
"""
import time
from typing import Any, Dict, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax.pipelines import memorization, training, unlearning
from rum_jax.pipelines.audit.banks import Bank, split_outputs
from rum_jax.pipelines.audit.challenge import challenge, challenge_outputs
from rum_jax.pipelines.audit.report import write
from rum_jax.runfolder import RunFolder, check_config
from rum_jax.pipelines.audit.shadow import attacks, check_shadow_forget_size, shadow_forget_masks, svc_comparison
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import Setup
from rum_jax.training.state import TrainState

__all__ = ["Bank", "challenge_outputs", "check_shadow_forget_size", "evaluate_forget_set",
           "run_audit", "shadow_forget_masks", "svc_comparison"]


def evaluate_forget_set(config: ml_collections.ConfigDict, workdir: Any, forget: Sequence[int],
                        original: Optional[TrainState] = None, shadow_dir: Optional[Any] = None,
                        overwrite: bool = False) -> Dict[str, Any]:
  """The challenge score and U-LiRA of every method of config.audit.methods on one forget set.

  What a study calls for each of its forget sets (docs/audit.md): the banks live in
  `workdir` (layout in the module docstring) and resume there.

  Args:
    config: a validated config with data, model, train, unlearn and audit sections.
    workdir: where the retrained and unlearned banks and the results go.
    forget: train-split positions of the forget set.
    original: the original model, a host TrainState with a leading axis of 1 (e.g. seed 0 of
      a train.py run); None: trained in <workdir>/original with config.train.
    shadow_dir: the shadow bank's folder (default <workdir>/shadow). The shadow models and
      their forget subsets depend on the forget set's size only, so forget sets of one size
      (a study's) can share one shadow bank; each one's U-LiRA is read on its own examples.
    overwrite: discard banks made with other settings instead of refusing them.

  Returns:
    The audit record (also written to the work directory).
  """
  f = config.audit
  cache: Dict[int, Setup] = {}

  def setups(num_models: int) -> Setup:  # one runner per chunk size, its programs compiled once
    if num_models not in cache:
      cache[num_models] = Setup.create(config, num_models=num_models)
    return cache[num_models]

  dataset = setups(min(f.chunk_size, f.num_models)).dataset
  n = len(dataset.train)
  forget = np.asarray(forget, np.int64)
  if forget.ndim != 1 or not len(forget) or len(np.unique(forget)) != len(forget) or forget.min() < 0 \
      or forget.max() >= n or len(forget) == n:
    raise ValueError(f"the forget set must hold distinct train positions in [0, {n}) and leave a retain set; got "
                     f"{len(forget)} positions")
  forget = np.sort(forget)
  if f.shadow_models:
    check_shadow_forget_size(len(forget), n)  # before any training
  folder = RunFolder.of(workdir).open()
  if original is None:
    one = training_config(config)
    one.num_seeds = 1
    original = training.load_or_train(one, folder.original(), setups(1))[1]
  original = jax.tree.map(lambda a: np.asarray(a)[:1], original)
  retain = np.setdiff1d(np.arange(n), forget)
  outputs = split_outputs(setups(1), original, [forget])
  original_acc = {k: float(outputs[k][0]) for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")}
  banks = challenge(config, folder, setups, forget, retain, original, overwrite)
  shadow = (attacks(config, folder, shadow_dir or folder.sub("shadow"), setups, forget, overwrite,
                    {name: m["outputs"] for name, m in banks["methods"].items()}) if f.shadow_models else None)
  return write(config, folder, forget, dataset, original_acc, banks, shadow)


def run_audit(config: ml_collections.ConfigDict, workdir: Any, overwrite: bool = False) -> str:
  """evaluate.py with an audit config: original model, forget set, banks, scores; returns the table.

  Args:
    config: a validated config with config.mode == 'audit' (configs/audit_*.py).
    workdir: the work directory (layout in the module docstring).
    overwrite: discard results made with another config instead of refusing them.
  """
  t0 = time.time()
  one = ml_collections.ConfigDict(config.to_dict())
  one.num_seeds = 1
  setup = Setup.create(one)
  n = len(setup.dataset.train)
  unlearning.check_forget_size(one, n)  # before anything is written
  if config.audit.shadow_models:
    check_shadow_forget_size(config.forget.size, n)
  # Training and forget-set settings decide everything; each bank checks the rest itself.
  folder = RunFolder.of(workdir)
  check_config(folder, config, overwrite, clear=(), sections=TRAINING_SECTIONS + ("forget",), ignore=("num_seeds",),
               results=("audit",)).apply()
  for method in config.audit.methods:  # score files a forget set or a method reads
    with_method = ml_collections.ConfigDict(one.to_dict())
    with_method.unlearn.method = method
    memorization.ensure_scores(with_method, folder)
  original = training.load_or_train(training_config(one), folder.original(), setup)[1]
  forgets, report = unlearning.build_forget_set(one, folder, setup, original)
  forget = forgets[0]
  train = setup.dataset.train
  folder.write("forget_set", {"forget_positions": forget, "forget_index": train.index[forget]})
  folder.write("forget_set_info", {**{k: v for k, v in report.items() if k != "entanglement_per_group"},
                                   "forget_positions": forget.tolist(), "forget_index": train.index[forget].tolist()})
  evaluate_forget_set(config, folder, forget, original, overwrite=overwrite)
  logging.info("audit: done in %.1f min (this invocation)", (time.time() - t0) / 60)
  return folder.read("audit_table")
