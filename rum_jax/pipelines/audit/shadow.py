"""U-LiRA and LiRA from a shadow bank (Hayes et al. 2024; Carlini et al. 2022): K models, each
trained on a random half of the train split, and per method the same models after unlearning a
random forget subset of their half; the SVC attack beside LiRA on the same models; and the
halves' Feldman-Zhang memorization estimate."""
import time
from typing import Any, Dict, List

import jax
import numpy as np
from absl import logging

from rum_jax.evaluation import confidence, lira
from rum_jax.evaluation.metrics import BankOutputs, ulira as ulira_metrics
from rum_jax.evaluation.metrics.ulira import attack
from rum_jax.evaluation.mia import shadow_positions, svc_mia
from rum_jax.memorization.estimator import MemorizationStats, sample_subset_masks
from rum_jax.runfolder import RunFolder
from rum_jax.pipelines.audit.banks import (ACCURACIES, SHADOW, SHADOW_FORGET, SHADOW_RATIO, SHADOW_UNLEARNED,
                                                Bank, bank_seed, run_method, split_outputs, training_spec, augment_spec)
from rum_jax.training import loop
from rum_jax.training.setup import Setup, make_tx, train_on
from rum_jax.training.state import TrainState
from rum_jax.unlearning import UNLEARNING_METHODS


def shadow_forget_masks(seed: int, halves: np.ndarray, size: int, first_model: int = 0) -> np.ndarray:
  """Each shadow model's forget subset: `size` examples drawn uniformly from its half.

  Model k's subset depends only on (seed, k, size), like its half (`sample_subset_masks`).

  Args:
    seed: audit.seed.
    halves: bool [K, N], the halves of models first_model..first_model+K-1.
    size: |F_k|, at most each half's size - 1 (a shadow model keeps a retain set).
    first_model: index of the first model.

  Returns:
    bool [K, N], True at the examples model k unlearns.
  """
  masks = np.zeros_like(halves, dtype=bool)
  for row, k in enumerate(range(first_model, first_model + len(halves))):
    half = np.flatnonzero(halves[row])
    if not 0 < size < len(half):
      raise ValueError(f"a forget subset of {size} examples does not fit in a shadow half of {len(half)}: "
                       f"use a forget set of at most {len(half) - 1} examples")
    rng = np.random.default_rng([seed, k, SHADOW_FORGET])
    masks[row, rng.choice(half, size=size, replace=False)] = True
  return masks


def check_shadow_forget_size(forget_size: int, num_train: int) -> None:
  """A shadow model forgets |F| examples of its half and must keep some: |F| < round(N / 2)."""
  half = int(round(SHADOW_RATIO * num_train))
  if not 0 < forget_size < half:
    raise ValueError(f"the forget set has {forget_size} examples, but a shadow model (U-LiRA) trains on half of "
                     f"the {num_train} train examples ({half}) and unlearns a forget subset of the same size "
                     f"from it: use a forget set of at most {half - 1} examples, or audit.shadow_models=0 "
                     f"to skip the attacks")


def _flatten_weights(states: TrainState) -> Dict[str, np.ndarray]:
  return {f"w{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves((states.params, states.batch_stats)))}


def _restore_weights(setup: Setup, weights: Dict[str, np.ndarray], train_cfg) -> TrainState:
  """States with the saved weights of a chunk (a fresh optimizer state: unlearning makes its own).

  Weights are saved without padding models (chunks written before were padded to the devices
  of their run: their first chunk_size rows are the models), so any device count reads them."""
  template = setup.runner.unpad(setup.init_states(make_tx(train_cfg, 1), 0))
  leaves = [weights[f"w{i}"][:setup.runner.num_models] for i in range(len(weights))]
  params, batch_stats = jax.tree.unflatten(jax.tree.structure((template.params, template.batch_stats)), leaves)
  return template.replace(params=params, batch_stats=batch_stats)


def shadow_banks(config, workdir: Any, shadow_dir: Any, setups, forget_size: int, overwrite: bool) -> Dict[str, Any]:
  """The trained shadow bank and, for every method, the same models after unlearning."""
  f = config.audit
  setup = setups(min(f.chunk_size, f.shadow_models))
  chunk, n = setup.runner.num_models, len(setup.dataset.train)
  base = {"training": training_spec(config), "seed": f.seed, "chunk_size": chunk, "ratio": SHADOW_RATIO}
  shadow = RunFolder.of(shadow_dir)
  trained = Bank(shadow.sub("trained"), {"bank": "shadow", **base}, f.shadow_models, chunk,
                 "shadow trained", overwrite)
  banks, settings = {}, {}
  for name in f.methods:
    method = UNLEARNING_METHODS.get(name)
    settings[name] = method.settings_of(config, workdir)
    spec = {"bank": "shadow_unlearned", "method": name, "settings": settings[name].to_dict(),
            "forget_size": forget_size, **base, **augment_spec(config)}
    banks[name] = Bank(shadow.child(method.folder_of(config)), spec, f.shadow_models, chunk,
                       f"shadow {method.folder_of(config)}", overwrite)
  diverged: Dict[str, str] = {}
  for j in range(trained.num_chunks):
    halves = sample_subset_masks(f.seed, chunk, n, SHADOW_RATIO, first_model=j * chunk)
    states = None
    if not (trained.done(j) and trained.done(j, "weights")):
      t0 = time.time()
      states, _ = train_on(setup, [np.flatnonzero(h) for h in halves], config.train, bank_seed(f.seed, SHADOW, j), None,
                           name=f"shadow chunk {j + 1}/{trained.num_chunks}")
      # Scored as 'forget' / 'retain': the examples it never saw and its half.
      out = split_outputs(setup, states, [np.flatnonzero(~h) for h in halves], [np.flatnonzero(h) for h in halves])
      trained.folder.write("weights", _flatten_weights(states), index=j)
      trained.save(j, time.time() - t0, in_mask=halves, train_logits=out["train_logits"].astype(np.float32),
                   test_logits=out["test_logits"].astype(np.float32), heldout_accuracy=out["forget_accuracy"],
                   retain_accuracy=out["retain_accuracy"], test_accuracy=out["test_accuracy"])
    masks = shadow_forget_masks(f.seed, halves, forget_size, first_model=j * chunk)
    forget = [np.flatnonzero(m) for m in masks]
    retain = [np.flatnonzero(h & ~m) for h, m in zip(halves, masks)]
    for name, bank in banks.items():
      if bank.done(j) or name in diverged:
        continue
      if states is None:
        states = _restore_weights(setup, trained.folder.read("weights", index=j), config.train)
      t0 = time.time()
      try:
        unlearned = run_method(setup, states, name, settings[name], forget, retain,
                                bank_seed(f.seed, SHADOW_UNLEARNED, j), f"shadow {name} chunk {j + 1}")
      except loop.NonFiniteLossError as e:
        logging.warning("audit: shadow %s diverged; its attacks are left out: %s", name, e)
        diverged[name] = str(e)
        continue
      out = split_outputs(setup, unlearned, forget, retain)
      bank.save(j, time.time() - t0, forget_mask=masks,
                confidence=confidence.logit_scaled_confidence(out["train_logits"], setup.dataset.train.y),
                **{k: out[k] for k in ACCURACIES})
  return {"trained": trained.arrays(), "methods": {UNLEARNING_METHODS.get(m).folder_of(config): b.arrays()
                                                   for m, b in banks.items() if m not in diverged},
          "diverged": diverged}


def svc_comparison(train_logits: np.ndarray, test_logits: np.ndarray, train_labels: np.ndarray,
                   test_labels: np.ndarray, in_mask: np.ndarray, lira: np.ndarray, targets: int) -> Dict[str, Any]:
  """The SVC attack (`mia.svc_mia`) and LiRA on the same trained models and examples.

  For each of the first `targets` models: the SVC is fitted on a sample of the model's own
  training examples (members) and the test split (non-members), as in RUM and SalUn, and
  predicts the membership of its OTHER training examples and of the train examples it never
  saw; its balanced accuracy is (TPR + TNR) / 2 of those predictions. LiRA's is that of the
  likelihood-ratio test at equal priors (member where the score > 0, no threshold tuned) on
  the same pairs, so neither attack picks its threshold on the pairs it is judged on.

  Args:
    train_logits, test_logits: [K, N, C], [K, T, C] logits of the trained shadow models.
    train_labels, test_labels: [N], [T].
    in_mask: bool [K, N], each model's half.
    lira: [K, N] `leave_one_out_scores` of LiRA on these models.
    targets: how many models to attack.
  """
  per_feature: Dict[str, List[float]] = {}
  lira_balanced = []
  for k in range(targets):
    members, nonmembers = np.flatnonzero(in_mask[k]), np.flatnonzero(~in_mask[k])
    shadow, _ = shadow_positions(len(members), len(test_labels), seed=k)  # the SVC's own members
    judged = np.delete(members, shadow)
    attack = {}
    for what, positions in (("members", judged), ("nonmembers", nonmembers)):
      attack[what] = svc_mia(train_logits[k, members], train_labels[members], test_logits[k], test_labels,
                             train_logits[k, positions], train_labels[positions], seed=k)
    for feature in attack["members"]:  # efficacy = the fraction predicted non-member
      per_feature.setdefault(feature, []).append(
          ((1 - attack["members"][feature]) + attack["nonmembers"][feature]) / 2)
    m, o = lira[k, judged], lira[k, nonmembers]
    lira_balanced.append(((m[np.isfinite(m)] > 0).mean() + (o[np.isfinite(o)] <= 0).mean()) / 2)
  svc = {feature: float(np.mean(v)) for feature, v in per_feature.items()}
  best = max(svc, key=svc.get)
  return {"targets": targets, "svc_balanced_accuracy": svc, "svc_best_feature": best,
          "lira_balanced_accuracy": float(np.mean(lira_balanced)),
          "lira_beats_svc": bool(np.mean(lira_balanced) > svc[best])}


def attacks(config, workdir: Any, shadow_dir: Any, setups, forget: np.ndarray, overwrite: bool,
            outputs: Dict[str, BankOutputs]) -> Dict[str, Any]:
  """U-LiRA per method, LiRA and U-LiRA without unlearning on the trained bank, SVC, memorization.

  outputs: folder -> the method's `BankOutputs` (of its challenge banks), which get the shadow
  inputs (a method without one gets new outputs); "original" in the result is those of the
  trained models as if unlearned."""
  f = config.audit
  bank = shadow_banks(config, workdir, shadow_dir, setups, len(forget), overwrite)
  ds = setups(min(f.chunk_size, f.shadow_models)).dataset
  trained = bank["trained"]
  halves = trained["in_mask"]
  held_out = ~halves
  unlearned_masks = shadow_forget_masks(f.seed, halves, len(forget))
  # U-LiRA over the forget set's examples, and over every train example.
  pools = {"forget_set": np.isin(np.arange(len(ds.train)), forget), "all": np.ones(len(ds.train), bool)}
  conf = confidence.logit_scaled_confidence(trained["train_logits"], ds.train.y)
  centring = f.get("lira_centring", "mean")
  lira_scores = lira.leave_one_out_scores(conf, halves, held_out, centring=centring)
  # The original as if it were unlearned: trained models, their forget subsets scored as members.
  untouched = BankOutputs(shadow={"confidence": conf, "forget_mask": unlearned_masks, "held_out": held_out,
                                  "pool": pools["forget_set"]}, options={"centring": centring})
  out = {"lira": {p: attack(lira_scores, halves, held_out, pool) for p, pool in pools.items()},
         "no_unlearning": {p: ulira_metrics.ulira(untouched, pool) for p, pool in pools.items()},
         "methods": {}, "diverged": bank["diverged"], "seconds": {"trained": trained["seconds"]},
         "shadow_accuracy": {k: float(trained[f"{k}_accuracy"].mean()) for k in ("retain", "heldout", "test")}}
  out["original"] = untouched
  for folder, arrays in bank["methods"].items():
    method = outputs.setdefault(folder, BankOutputs(options={"centring": centring}))
    method.shadow = {"confidence": arrays["confidence"], "forget_mask": arrays["forget_mask"],
                     "held_out": held_out, "pool": pools["forget_set"]}
    out["methods"][folder] = {p: ulira_metrics.ulira(method, pool) for p, pool in pools.items()}
    out["seconds"][folder] = arrays["seconds"]
  targets = min(f.svc_targets, len(halves))
  if targets:
    out["svc"] = svc_comparison(trained["train_logits"], trained["test_logits"], ds.train.y, ds.test.y, halves,
                                lira_scores, targets)
  correct_train = trained["train_logits"].argmax(-1) == ds.train.y[None]
  correct_test = trained["test_logits"].argmax(-1) == ds.test.y[None]
  estimate = MemorizationStats.from_arrays(halves, correct_train).estimate()
  # The layout of train.py's score file (pipelines/memorization.py), so unlearn.py reads it.
  shadow = RunFolder.of(shadow_dir)
  shadow.write("scores", {"index": ds.train.index, "labels": ds.train.y, **estimate, "num_models": len(halves),
                          "in_mask": halves, "correct_train": correct_train, "correct_test": correct_test})
  out["memorization"] = {"file": RunFolder.of(workdir).relative(shadow.file("scores")),
                         "ratio": SHADOW_RATIO, "num_models": len(halves),
                         "mean": float(np.nanmean(estimate["memorization"])),
                         "undefined": int(np.isnan(estimate["memorization"]).sum())}
  return out


