"""Forgetting quality from banks of many models (evaluate.py with config.mode 'forgetting').

Two strong measures of how well a method forgets, each from hundreds of models trained as one
program per chunk (docs/forgetting.md has the protocols and what they cost):

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

`run_forgetting(config, workdir)` trains the original model, picks the forget set from
config.forget and calls `evaluate_forget_set`, the function a study calls for each of its
forget sets. A forgetting work directory:

  config.json                 the resolved config
  original/                   the one original model (train.py's layout, one seed)
  memorization/               scores a memorization forget set (or RUM) reads, computed if absent
  forget_set.npz / .json      the forget set (train positions and ORIGINAL indices)
  retrained/                  the N models retrained on D \\ F: config.json (what decides them)
                              and chunks/chunk_<j>.npz (forget-set confidences, accuracies)
  unlearned/<method>/         the N models unlearned from the original, the same layout
  shadow/trained/             the K shadow models: chunks/ (halves, logits), weights/ (to
                              unlearn from when a method is added later)
  shadow/<method>/            the same models after unlearning their forget subsets
  shadow/memorization.npz     Feldman-Zhang memorization from the halves (memorization.npz format)
  forgetting.json/.csv/.md    per method: F, the final score, accuracies, U-LiRA; LiRA and SVC
  epsilons.npz / .csv         every forget example's epsilon per method
  forgetting_epsilons.png     the distribution of the epsilons per method
  forgetting_roc.png          ROC curves of U-LiRA per method and of LiRA

Every bank resumes from its last finished chunk; raising N or K later adds chunks. A bank
made with other settings is refused (the differing fields listed) unless --overwrite.

References:
  Triantafillou et al. 2024, "Are we making progress in unlearning? Findings from the first
  NeurIPS unlearning competition", arXiv:2406.09073.
  Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a false sense
  of privacy", arXiv:2403.01218.
  Carlini et al. 2022, "Membership Inference Attacks From First Principles", arXiv:2112.03570.
  Feldman & Zhang 2020, "What Neural Networks Memorize and Why", arXiv:2008.03703.
"""
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from rum_jax import io, results, workdir as workdir_lib
from rum_jax.evaluation import forgetting as fq
from rum_jax.evaluation.mia import shadow_positions, svc_mia
from rum_jax.evaluation.tow import set_accuracies
from rum_jax.memorization.estimator import MemorizationStats, sample_subset_masks
from rum_jax.pipelines import training, unlearning
from rum_jax.training import loop
from rum_jax.training.config import TRAINING_SECTIONS, training_config
from rum_jax.training.setup import Setup, accuracies, make_tx, train_on
from rum_jax.training.state import TrainState
from rum_jax.unlearning import METHODS, unlearn
from rum_jax.unlearning.runners import augments

SHADOW_RATIO = 0.5  # each shadow model trains on a random half (LiRA's in/out split)
# Seed streams: the banks of one seed draw independent models.
RETRAINED, UNLEARNED, SHADOW, SHADOW_UNLEARNED, SHADOW_FORGET = range(1, 6)
TABLE_FILE = "forgetting.md"


def _seed(seed: int, stream: int, chunk: int) -> int:
  """The base seed of chunk `chunk` of a bank: distinct across streams and chunks."""
  return (seed * 8 + stream) * 1_000_003 + chunk


def _digest(*arrays: np.ndarray) -> str:
  """A short hash of arrays (a forget set, an original model's weights) for a bank's config."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(str((a.dtype, a.shape)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _augment_spec(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """config.unlearn.augment, which decides the retrained and unlearned models of every bank;
  recorded only when on, so the banks made before it was recorded (all without) still match."""
  return {"unlearn_augment": True} if augments(config) else {}


def _training_spec(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """What decides a trained model, without the seed count (banks have their own)."""
  spec = training_config(config).to_dict()
  spec.pop("num_seeds")
  return spec


class Bank:
  """A bank of models in chunks of `chunk_size`, each chunk one compiled program.

  `<directory>/config.json` holds what decides the models (`spec`); a directory made with
  another spec is refused unless `overwrite` (then its chunks are deleted). A chunk counts as
  done once `chunks/chunk_<j>.npz` is written (atomically), so a killed run recomputes only
  the chunk it was in. The number of models is not part of the spec: more chunks can be added.
  """

  def __init__(self, directory: str, spec: Dict[str, Any], num_models: int, chunk_size: int, name: str,
               overwrite: bool = False):
    workdir_lib.prepare(directory, ml_collections.ConfigDict(spec), overwrite, clear=("chunks", "weights"))
    self.directory, self.name, self.chunk_size = directory, name, chunk_size
    self.num_chunks = math.ceil(num_models / chunk_size)
    self.num_models = self.num_chunks * chunk_size
    if self.num_models != num_models:
      logging.info("[%s] rounding %d models up to %d (whole chunks of %d)", name, num_models,
                   self.num_models, chunk_size)
    self._seconds, self._computed = 0.0, 0

  def path(self, j: int, kind: str = "chunks") -> str:
    return os.path.join(self.directory, kind, f"chunk_{j:05d}.npz")

  def done(self, j: int) -> bool:
    return os.path.exists(self.path(j))

  def missing(self) -> List[int]:
    return [j for j in range(self.num_chunks) if not self.done(j)]

  def save(self, j: int, seconds: float, **arrays: np.ndarray) -> None:
    """Writes chunk j, computed in `seconds` (it counts from now on), and logs models done,
    models/s and the ETA of this bank's remaining chunks."""
    io.write_npz(self.path(j), seconds=seconds, **arrays)
    self._computed += 1
    self._seconds += seconds
    left = len(self.missing())
    logging.info("[%s] %d/%d models (%.2f models/s), this run %.0fs, eta %.0fs", self.name,
                 (self.num_chunks - left) * self.chunk_size, self.num_models,
                 self._computed * self.chunk_size / max(self._seconds, 1e-9), self._seconds,
                 self._seconds / self._computed * left)

  def arrays(self) -> Dict[str, np.ndarray]:
    """Every chunk's arrays concatenated over models, and `seconds`: the bank's total compute time."""
    chunks = [dict(np.load(self.path(j))) for j in range(self.num_chunks)]
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0] if k != "seconds"}
    out["seconds"] = float(sum(c["seconds"] for c in chunks))
    return out

  def fill(self, compute: Callable[[int], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Computes every missing chunk (`compute(j)` -> its arrays), then returns `arrays()`."""
    for j in self.missing():
      t0 = time.time()
      arrays = compute(j)
      self.save(j, time.time() - t0, **arrays)
    return self.arrays()


def _replicate(states: TrainState, count: int) -> TrainState:
  """`count` copies of a one-model state (leading axis 1)."""
  return jax.tree.map(lambda a: np.repeat(np.asarray(a)[:1], count, axis=0), states)


def _split_outputs(setup: Setup, states: TrainState, forget: Sequence[np.ndarray],
                   retain: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
  """Per model: accuracies on its forget set, retain set and the test split, and the train
  and test logits [S, N, C]."""
  logits, acc = accuracies(setup, states, setup.config.train.eval_batch_size)
  out = set_accuracies(logits["train"], setup.dataset.train.y,
                       {"forget_accuracy": forget, "retain_accuracy": retain})
  out.update(test_accuracy=acc["test"], train_logits=logits["train"], test_logits=logits["test"])
  return out


def _run_method(setup: Setup, states: Optional[TrainState], method: str, settings, forget, retain,
                base_seed: int, label: str) -> TrainState:
  """Any registered method on every model of the runner at once (no checkpoints: the chunk is
  the unit of resumption)."""
  return unlearn(setup, states, method, settings, forget, retain, base_seed=base_seed, name=label)[0]


# ---------------------------------------------------------------------------------------
# The challenge score: retrained and unlearned banks.


def challenge_outputs(setup: Setup, states: TrainState, forget: np.ndarray, retain: np.ndarray) -> Dict[str, np.ndarray]:
  """What the challenge score needs from every model of a runner: the logit-scaled confidence
  of each forget example [S, |F|] and the forget, retain and test accuracies [S]."""
  num_seeds = setup.runner.num_seeds
  out = _split_outputs(setup, states, [forget] * num_seeds, [retain] * num_seeds)
  conf = fq.logit_scaled_confidence(out["train_logits"][:, forget], setup.dataset.train.y[forget])
  return {"forget_confidence": conf, **{k: out[k] for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")}}


def _challenge_bank(directory: str, spec: Dict[str, Any], setup: Setup, config, overwrite: bool,
                    name: str, run: Callable[[int], TrainState], forget: np.ndarray,
                    retain: np.ndarray) -> Dict[str, np.ndarray]:
  """A bank of num_models models on one forget set: `challenge_outputs` of every chunk `run(j)`."""
  bank = Bank(directory, spec, config.forgetting.num_models, setup.runner.num_seeds, name, overwrite)
  return bank.fill(lambda j: challenge_outputs(setup, run(j), forget, retain))


def _challenge(config, workdir: str, setups, forget: np.ndarray, retain: np.ndarray, original: TrainState,
               overwrite: bool) -> Dict[str, Any]:
  """Retrained bank once, an unlearned bank per method, and each method's epsilons and scores."""
  f = config.forgetting
  setup = setups(min(f.chunk_size, f.num_models))
  chunk = setup.runner.num_seeds
  base = {"training": _training_spec(config), "forget": _digest(forget), "seed": f.seed, "chunk_size": chunk,
          **_augment_spec(config)}
  retrained = _challenge_bank(
      os.path.join(workdir, "retrained"), {"bank": "retrained", **base}, setup, config, overwrite, "retrained",
      lambda j: _run_method(setup, None, "retrain", config.train, forget, retain, _seed(f.seed, RETRAINED, j),
                            f"retrained chunk {j + 1}"), forget, retain)
  replicated = _replicate(original, chunk)
  original_digest = _digest(*jax.tree.leaves(original.params))
  out = {"retrained": retrained, "methods": {}, "diverged": {}}
  for name in f.methods:
    method = METHODS.get(name)
    settings = method.settings_of(config, workdir)
    folder = method.folder_of(config)
    spec = {"bank": "unlearned", "method": name, "settings": settings.to_dict(), "original": original_digest, **base}
    try:
      bank = _challenge_bank(
          os.path.join(workdir, "unlearned", folder), spec, setup, config, overwrite, f"unlearned {folder}",
          lambda j: _run_method(setup, replicated, name, settings, forget, retain, _seed(f.seed, UNLEARNED, j),
                                f"{folder} chunk {j + 1}"), forget, retain)
    except loop.NonFiniteLossError as e:  # a diverging method is reported, not fatal
      logging.warning("forgetting: %s diverged; it is left out: %s", folder, e)
      out["diverged"][folder] = str(e)
      continue
    eps = fq.challenge_epsilons(bank["forget_confidence"], retrained["forget_confidence"])
    points = fq.epsilon_points(eps, len(bank["forget_confidence"]))
    score, half = results.mean_ci(points)
    out["methods"][folder] = {
        "bank": bank, "epsilons": eps, "forget_score": score, "forget_score_ci95": half,
        "final_score": fq.challenge_score(score, bank["retain_accuracy"], retrained["retain_accuracy"],
                                          bank["test_accuracy"], retrained["test_accuracy"])}
  return out


# ---------------------------------------------------------------------------------------
# U-LiRA and LiRA: the shadow bank.


def shadow_forget_masks(seed: int, halves: np.ndarray, size: int, first_model: int = 0) -> np.ndarray:
  """Each shadow model's forget subset: `size` examples drawn uniformly from its half.

  Model k's subset depends only on (seed, k, size), like its half (`sample_subset_masks`).

  Args:
    seed: forgetting.seed.
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
                     f"from it: use a forget set of at most {half - 1} examples, or forgetting.shadow_models=0 "
                     f"to skip the attacks")


def _flatten_weights(states: TrainState) -> Dict[str, np.ndarray]:
  return {f"w{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves((states.params, states.batch_stats)))}


def _restore_weights(setup: Setup, path: str, train_cfg) -> TrainState:
  """States with the saved weights of a chunk (a fresh optimizer state: unlearning makes its own).

  Weights are saved without padding models (chunks written before were padded to the devices
  of their run: their first chunk_size rows are the models), so any device count reads them."""
  template = setup.runner.unpad(setup.init_states(make_tx(train_cfg, 1), 0))
  with np.load(path) as data:
    leaves = [data[f"w{i}"][:setup.runner.num_seeds] for i in range(len(data.files))]
  params, batch_stats = jax.tree.unflatten(jax.tree.structure((template.params, template.batch_stats)), leaves)
  return template.replace(params=params, batch_stats=batch_stats)


def _shadow(config, workdir: str, shadow_dir: str, setups, forget_size: int, overwrite: bool) -> Dict[str, Any]:
  """The trained shadow bank and, for every method, the same models after unlearning."""
  f = config.forgetting
  setup = setups(min(f.chunk_size, f.shadow_models))
  chunk, n = setup.runner.num_seeds, len(setup.dataset.train)
  base = {"training": _training_spec(config), "seed": f.seed, "chunk_size": chunk, "ratio": SHADOW_RATIO}
  trained = Bank(os.path.join(shadow_dir, "trained"), {"bank": "shadow", **base}, f.shadow_models, chunk,
                 "shadow trained", overwrite)
  banks, settings = {}, {}
  for name in f.methods:
    method = METHODS.get(name)
    settings[name] = method.settings_of(config, workdir)
    spec = {"bank": "shadow_unlearned", "method": name, "settings": settings[name].to_dict(),
            "forget_size": forget_size, **base, **_augment_spec(config)}
    banks[name] = Bank(os.path.join(shadow_dir, method.folder_of(config)), spec, f.shadow_models, chunk,
                       f"shadow {method.folder_of(config)}", overwrite)
  diverged: Dict[str, str] = {}
  for j in range(trained.num_chunks):
    halves = sample_subset_masks(f.seed, chunk, n, SHADOW_RATIO, first_model=j * chunk)
    states = None
    if not (trained.done(j) and os.path.exists(trained.path(j, "weights"))):
      t0 = time.time()
      states, _ = train_on(setup, [np.flatnonzero(h) for h in halves], config.train, _seed(f.seed, SHADOW, j), None,
                           name=f"shadow chunk {j + 1}/{trained.num_chunks}")
      # Scored as 'forget' / 'retain': the examples it never saw and its half.
      out = _split_outputs(setup, states, [np.flatnonzero(~h) for h in halves], [np.flatnonzero(h) for h in halves])
      io.write_npz(trained.path(j, "weights"), **_flatten_weights(states))
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
        states = _restore_weights(setup, trained.path(j, "weights"), config.train)
      t0 = time.time()
      try:
        unlearned = _run_method(setup, states, name, settings[name], forget, retain,
                                _seed(f.seed, SHADOW_UNLEARNED, j), f"shadow {name} chunk {j + 1}")
      except loop.NonFiniteLossError as e:
        logging.warning("forgetting: shadow %s diverged; its attacks are left out: %s", name, e)
        diverged[name] = str(e)
        continue
      out = _split_outputs(setup, unlearned, forget, retain)
      bank.save(j, time.time() - t0, forget_mask=masks,
                confidence=fq.logit_scaled_confidence(out["train_logits"], setup.dataset.train.y),
                **{k: out[k] for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")})
  return {"trained": trained.arrays(), "methods": {METHODS.get(m).folder_of(config): b.arrays()
                                                   for m, b in banks.items() if m not in diverged},
          "diverged": diverged}


def _attack(scores: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray, pool: np.ndarray) -> Dict[str, Any]:
  """attack_metrics of the scored (model, example) pairs of the pool's examples, with counts."""
  scored = np.isfinite(scores) & pool[None]
  members, nonmembers = scores[scored & in_mask], scores[scored & out_mask]
  if not (members.size and nonmembers.size):
    raise ValueError(f"the attack has {members.size} member and {nonmembers.size} non-member pairs to score: "
                     "too few shadow models for every example to be unlearned (or held out) by one of them; "
                     "raise forgetting.shadow_models")
  metrics = fq.attack_metrics(members, nonmembers)
  metrics.update(members=int(members.size), nonmembers=int(nonmembers.size),
                 examples=int((scored & (in_mask | out_mask)).any(0).sum()))
  return metrics


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


def _attacks(config, workdir: str, shadow_dir: str, setups, forget: np.ndarray, overwrite: bool) -> Dict[str, Any]:
  """U-LiRA per method, LiRA and U-LiRA without unlearning on the trained bank, SVC, memorization."""
  f = config.forgetting
  bank = _shadow(config, workdir, shadow_dir, setups, len(forget), overwrite)
  ds = setups(min(f.chunk_size, f.shadow_models)).dataset
  trained = bank["trained"]
  halves = trained["in_mask"]
  held_out = ~halves
  unlearned_masks = shadow_forget_masks(f.seed, halves, len(forget))
  # U-LiRA over the forget set's examples, and over every train example.
  pools = {"forget_set": np.isin(np.arange(len(ds.train)), forget), "all": np.ones(len(ds.train), bool)}
  conf = fq.logit_scaled_confidence(trained["train_logits"], ds.train.y)
  lira_scores = fq.leave_one_out_scores(conf, halves, held_out)
  # The original as if it were unlearned: trained models, their forget subsets scored as members.
  untouched = fq.leave_one_out_scores(conf, unlearned_masks, held_out)
  out = {"lira": {p: _attack(lira_scores, halves, held_out, pool) for p, pool in pools.items()},
         "no_unlearning": {p: _attack(untouched, unlearned_masks, held_out, pool) for p, pool in pools.items()},
         "methods": {}, "diverged": bank["diverged"], "seconds": {"trained": trained["seconds"]},
         "shadow_accuracy": {k: float(trained[f"{k}_accuracy"].mean()) for k in ("retain", "heldout", "test")}}
  for folder, arrays in bank["methods"].items():
    scores = fq.leave_one_out_scores(arrays["confidence"], arrays["forget_mask"], held_out)
    out["methods"][folder] = {p: _attack(scores, arrays["forget_mask"], held_out, pool) for p, pool in pools.items()}
    out["seconds"][folder] = arrays["seconds"]
  targets = min(f.svc_targets, len(halves))
  if targets:
    out["svc"] = svc_comparison(trained["train_logits"], trained["test_logits"], ds.train.y, ds.test.y, halves,
                                lira_scores, targets)
  correct_train = trained["train_logits"].argmax(-1) == ds.train.y[None]
  correct_test = trained["test_logits"].argmax(-1) == ds.test.y[None]
  estimate = MemorizationStats.from_arrays(halves, correct_train).estimate()
  # The layout of train.py's memorization.npz (pipelines/memorization.py), so unlearn.py reads it.
  io.write_npz(os.path.join(shadow_dir, workdir_lib.SCORES_FILE), index=ds.train.index, labels=ds.train.y,
               **estimate, num_models=len(halves), in_mask=halves, correct_train=correct_train,
               correct_test=correct_test)
  out["memorization"] = {"file": os.path.relpath(os.path.join(shadow_dir, workdir_lib.SCORES_FILE), workdir),
                         "ratio": SHADOW_RATIO, "num_models": len(halves),
                         "mean": float(np.nanmean(estimate["memorization"])),
                         "undefined": int(np.isnan(estimate["memorization"]).sum())}
  return out


# ---------------------------------------------------------------------------------------
# Results.


def _mean(values: np.ndarray) -> float:
  return float(np.mean(values))


def _row(name: str, accuracy: Dict[str, float], challenge: Optional[Dict[str, Any]],
         ulira: Optional[Dict[str, Any]], seconds: Optional[float]) -> Dict[str, Any]:
  row = {"model": name, **{f"{k}_accuracy": v for k, v in accuracy.items()}}
  if challenge is not None:
    row.update(forget_score=challenge["forget_score"], forget_score_ci95=challenge["forget_score_ci95"],
               final_score=challenge["final_score"])
  if ulira is not None:
    row.update({f"ulira_{k}": ulira["forget_set"][k] for k in ("auc", "balanced_accuracy", "tpr_at_fpr_0.01",
                                                                "tpr_at_fpr_0.001")})
  if seconds is not None:
    row["seconds"] = seconds
  return row


def _accuracies(bank: Dict[str, np.ndarray]) -> Dict[str, float]:
  return {k: _mean(bank[f"{k}_accuracy"]) for k in ("forget", "retain", "test")}


def _cells(row: Dict[str, Any]) -> List[str]:
  def pct(key, digits=1):
    return f"{100 * row[key]:.{digits}f}" if key in row else ""
  score = (results.cell({"mean": row["forget_score"], "ci95": row["forget_score_ci95"]}, scale=1.0, digits=3)
           if "forget_score" in row else "")
  return [row["model"], score, f"{row['final_score']:.3f}" if "final_score" in row else "",
          pct("forget_accuracy"), pct("retain_accuracy"), pct("test_accuracy"),
          f"{row['ulira_auc']:.3f}" if "ulira_auc" in row else "", pct("ulira_balanced_accuracy"),
          pct("ulira_tpr_at_fpr_0.01"), pct("ulira_tpr_at_fpr_0.001"),
          f"{row['seconds']:.0f}" if "seconds" in row else ""]


def _markdown(config, rows: List[Dict[str, Any]], record: Dict[str, Any]) -> str:
  f = config.forgetting
  header = ["model", "forget score F", "final score", "forget acc", "retain acc", "test acc", "U-LiRA AUC",
            "U-LiRA bal. acc", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "seconds"]
  lines = [f"# Forgetting quality on {config.data.name}", "",
           f"Forget set: {record['forget_size']} of {record['num_train']} train examples ({config.forget.kind}"
           + (f", {config.forget.level}" if config.forget.kind in ("memorization", "proxy") else "") + "). "
           f"Challenge score (Triantafillou et al. 2024) from {record['num_models']} retrained and "
           f"{record['num_models']} unlearned models per method (F: mean points over the forget examples "
           "± 95% interval over them; final = F x retain and test accuracy ratios to retraining); "
           f"U-LiRA (Hayes et al. 2024) on the forget set's examples from {record['shadow_models']} shadow "
           "models, each the target in turn. Accuracies and TPRs in percent, means over each bank; "
           "seconds: compute time of the method's banks.", "",
           results.markdown_table(header, [_cells(r) for r in rows])]
  attacks = record.get("attacks")
  if attacks:
    lira = attacks["lira"]["all"]
    lines += ["## LiRA on the trained shadow models (no unlearning)", "",
              f"Every train example, members = the model's half: AUC {lira['auc']:.3f}, balanced accuracy "
              f"{100 * lira['balanced_accuracy']:.1f}%, TPR {100 * lira['tpr_at_fpr_0.01']:.1f}% at 1% FPR and "
              f"{100 * lira['tpr_at_fpr_0.001']:.1f}% at 0.1% FPR."]
    if "svc" in attacks:
      svc = attacks["svc"]
      lines += ["", f"Against the SVC attack on the same {svc['targets']} models and examples (balanced "
                "accuracy, no threshold tuned on the judged pairs): LiRA "
                f"{100 * svc['lira_balanced_accuracy']:.1f}%, SVC "
                + ", ".join(f"{k} {100 * v:.1f}%" for k, v in svc["svc_balanced_accuracy"].items())
                + f": LiRA {'beats' if svc['lira_beats_svc'] else 'does NOT beat'} the best SVC feature "
                f"({svc['svc_best_feature']})."]
    mem = attacks["memorization"]
    lines += ["", f"Feldman-Zhang memorization from the {mem['num_models']} halves (ratio {mem['ratio']}): mean "
              f"{mem['mean']:.3f}, written to `{mem['file']}` (in the work directory)."]
  diverged = sorted(set(record["challenge_diverged"]) | set(attacks.get("diverged", {}) if attacks else ()))
  if diverged:
    lines += ["", "Left out because a bank diverged (NaN/inf): " + ", ".join(diverged) + "."]
  lines += ["", f"Computed in {record['seconds'] / 60:.1f} min of model compute ({f.chunk_size} models per "
            "program).", "", "![epsilons](forgetting_epsilons.png)", "", "![roc](forgetting_roc.png)", ""]
  return "\n".join(lines)


def _plot_epsilons(epsilons: Dict[str, np.ndarray], num_models: int, path: str, title: str) -> None:
  """Per method, a histogram of the forget examples' epsilons over the challenge's point buckets."""
  plt = io.pyplot()
  top = math.ceil(math.log(num_models - 1)) if num_models > 2 else 0.5  # the last bucket's end
  bins = np.append(np.arange(0, top + 0.25, 0.5), top + 0.5)
  cols = min(max(len(epsilons), 1), 4)
  rows = math.ceil(max(len(epsilons), 1) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(max(3.2 * cols, 5.5), 2.8 * rows + 0.4), squeeze=False,
                           sharey=True)
  for ax, (name, eps) in zip(axes.ravel(), epsilons.items()):
    ax.hist(np.minimum(eps, top + 0.25), bins=bins)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(f"epsilon (last bar: > {top}, 0 points)", fontsize=8)
  for ax in axes.ravel()[len(epsilons):]:
    ax.axis("off")
  for ax in axes[:, 0]:
    ax.set_ylabel("forget examples")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  io.save_figure(fig, path)


def _plot_roc(curves: Dict[str, Dict[str, Any]], anchors: Sequence[str], path: str, title: str) -> None:
  """ROC curves on log-log axes (the low-FPR regime, Carlini et al. 2022); the `anchors`
  (no unlearning, LiRA) dashed in grey tones, the methods in colour."""
  plt = io.pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  methods = [name for name in curves if name not in anchors]
  colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
  styles = iter([("k", "--"), ("0.5", "-.")])
  for name, m in curves.items():
    colour, style = next(styles) if name in anchors else (colours(methods.index(name) % colours.N), "-")
    ax.plot(np.maximum(m["fpr"], 1e-4), np.maximum(m["tpr"], 1e-4), color=colour, linestyle=style,
            label=f"{name} (AUC {m['auc']:.3f})")
  ax.plot([1e-4, 1], [1e-4, 1], "k:", linewidth=1, label="chance")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(1e-3, 1)
  ax.set_ylim(1e-3, 1)
  ax.set_xlabel("false positive rate")
  ax.set_ylabel("true positive rate")
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  io.save_figure(fig, path)


def _write(config, workdir: str, forget: np.ndarray, dataset, original_acc: Dict[str, float],
           challenge: Dict[str, Any], attacks: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """forgetting.json/.csv/.md, epsilons.npz/.csv and the two figures (also in results_dir)."""
  f = config.forgetting
  retrained = challenge["retrained"]
  methods = challenge["methods"]
  num_models = len(retrained["retain_accuracy"])
  rows = [_row("original (no unlearning)", original_acc, None, attacks["no_unlearning"] if attacks else None, None),
          _row("retrain (reference bank)", _accuracies(retrained), None, None, retrained["seconds"])]
  for folder, m in methods.items():
    ulira = attacks["methods"].get(folder) if attacks else None
    seconds = m["bank"]["seconds"] + (attacks["seconds"].get(folder, 0.0) if attacks else 0.0)
    rows.append(_row(folder, _accuracies(m["bank"]), m, ulira, seconds))
  strip = lambda metrics: {k: v for k, v in metrics.items() if k not in ("fpr", "tpr", "thresholds")}  # noqa: E731
  seconds = retrained["seconds"] + sum(m["bank"]["seconds"] for m in methods.values())
  if attacks:
    seconds += sum(attacks["seconds"].values())
  record = {
      "data": config.data.name, "num_train": len(dataset.train), "forget_size": len(forget),
      "num_models": num_models, "shadow_models": f.shadow_models if attacks else 0,
      "methods": list(methods), "rows": rows, "seconds": seconds, "challenge_diverged": challenge["diverged"],
      "epsilons": {k: {"median": float(np.median(m["epsilons"])), "mean": float(np.mean(m["epsilons"]))}
                   for k, m in methods.items()},
  }
  if attacks:
    record["attacks"] = {
        "lira": {p: strip(v) for p, v in attacks["lira"].items()},
        "no_unlearning": {p: strip(v) for p, v in attacks["no_unlearning"].items()},
        "methods": {k: {p: strip(v) for p, v in pools.items()} for k, pools in attacks["methods"].items()},
        **{k: attacks[k] for k in ("svc", "memorization", "diverged", "seconds", "shadow_accuracy") if k in attacks}}
  positions = {"position": forget, "index": dataset.train.index[forget]}
  io.write_npz(os.path.join(workdir, "epsilons.npz"), **positions, **{k: m["epsilons"] for k, m in methods.items()})
  io.write_csv(os.path.join(workdir, "epsilons.csv"),
               [{"position": int(p), "index": int(i), **{k: float(m["epsilons"][e]) for k, m in methods.items()}}
                for e, (p, i) in enumerate(zip(*positions.values()))])
  text = _markdown(config, rows, record)
  curves = {}
  anchors = ("original (no unlearning)", "LiRA, trained models, all examples")
  if attacks:
    curves[anchors[0]] = attacks["no_unlearning"]["forget_set"]
    curves.update({k: v["forget_set"] for k, v in attacks["methods"].items()})
    curves[anchors[1]] = attacks["lira"]["all"]
  for directory in [workdir] + ([f.results_dir] if f.results_dir else []):
    io.write_json(os.path.join(directory, "forgetting.json"), record)
    io.write_csv(os.path.join(directory, "forgetting.csv"), rows)
    io.write_text(os.path.join(directory, TABLE_FILE), text)
    _plot_epsilons({k: m["epsilons"] for k, m in methods.items()}, num_models,
                   os.path.join(directory, "forgetting_epsilons.png"),
                   f"{config.data.name}: challenge epsilons of {len(forget)} forget examples, {num_models} models")
    if curves:
      _plot_roc(curves, anchors, os.path.join(directory, "forgetting_roc.png"),
                f"{config.data.name}: U-LiRA on the forget set, {f.shadow_models} shadow models")
  logging.info("forgetting quality written to %s:\n%s", os.path.join(workdir, TABLE_FILE), text)
  return record


# ---------------------------------------------------------------------------------------
# Entry points.


def evaluate_forget_set(config: ml_collections.ConfigDict, workdir: str, forget: Sequence[int],
                        original: Optional[TrainState] = None, shadow_dir: Optional[str] = None,
                        overwrite: bool = False) -> Dict[str, Any]:
  """The challenge score and U-LiRA of every method of config.forgetting.methods on one forget set.

  What a study calls for each of its forget sets (docs/forgetting.md): the banks live in
  `workdir` (layout in the module docstring) and resume there.

  Args:
    config: a validated config with data, model, train, unlearn and forgetting sections.
    workdir: where the retrained and unlearned banks and the results go.
    forget: train-split positions of the forget set.
    original: the original model, a host TrainState with a leading axis of 1 (e.g. seed 0 of
      a train.py run); None: trained in <workdir>/original with config.train.
    shadow_dir: the shadow bank's folder (default <workdir>/shadow). The shadow models and
      their forget subsets depend on the forget set's size only, so forget sets of one size
      (a study's) can share one shadow bank; each one's U-LiRA is read on its own examples.
    overwrite: discard banks made with other settings instead of refusing them.

  Returns:
    The record also written to <workdir>/forgetting.json.
  """
  f = config.forgetting
  cache: Dict[int, Setup] = {}

  def setups(num_seeds: int) -> Setup:  # one runner per chunk size, its programs compiled once
    if num_seeds not in cache:
      cache[num_seeds] = Setup.create(config, num_seeds=num_seeds)
    return cache[num_seeds]

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
  os.makedirs(workdir, exist_ok=True)
  if original is None:
    one = training_config(config)
    one.num_seeds = 1
    original = training.load_or_train(one, workdir_lib.original_dir(workdir), setups(1))[1]
  original = jax.tree.map(lambda a: np.asarray(a)[:1], original)
  logits, acc = accuracies(setups(1), original, config.train.eval_batch_size)
  retain = np.setdiff1d(np.arange(n), forget)
  original_acc = {k: float(v[0]) for k, v in set_accuracies(logits["train"], dataset.train.y,
                                                            {"forget": [forget], "retain": [retain]}).items()}
  original_acc["test"] = float(acc["test"][0])
  challenge = _challenge(config, workdir, setups, forget, retain, original, overwrite)
  attacks = (_attacks(config, workdir, shadow_dir or os.path.join(workdir, "shadow"), setups, forget, overwrite)
             if f.shadow_models else None)
  return _write(config, workdir, forget, dataset, original_acc, challenge, attacks)


def run_forgetting(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> str:
  """evaluate.py with a forgetting config: original model, forget set, banks, scores; returns the table.

  Args:
    config: a validated config with config.mode == 'forgetting' (configs/forgetting_*.py).
    workdir: the work directory (layout in the module docstring).
    overwrite: discard results made with another config instead of refusing them.
  """
  t0 = time.time()
  one = ml_collections.ConfigDict(config.to_dict())
  one.num_seeds = 1
  setup = Setup.create(one)
  n = len(setup.dataset.train)
  unlearning.check_forget_size(one, n)  # before anything is written
  if config.forgetting.shadow_models:
    check_shadow_forget_size(config.forget.size, n)
  # Training and forget-set settings decide everything; each bank checks the rest itself.
  workdir_lib.prepare(workdir, config, overwrite, clear=(), sections=TRAINING_SECTIONS + ("forget",),
                      ignore=("num_seeds",))
  for method in config.forgetting.methods:  # score files a forget set or a method reads
    with_method = ml_collections.ConfigDict(one.to_dict())
    with_method.unlearn.method = method
    unlearning.ensure_scores(with_method, workdir)
  original = training.load_or_train(training_config(one), workdir_lib.original_dir(workdir), setup)[1]
  forgets, report = unlearning.build_forget_set(one, workdir, setup, original)
  forget = forgets[0]
  train = setup.dataset.train
  io.write_npz(os.path.join(workdir, "forget_set.npz"), forget_positions=forget, forget_index=train.index[forget])
  io.write_json(os.path.join(workdir, "forget_set.json"),
                {**{k: v for k, v in report.items() if k != "entanglement_per_group"},
                 "forget_positions": forget.tolist(), "forget_index": train.index[forget].tolist()})
  evaluate_forget_set(config, workdir, forget, original, overwrite=overwrite)
  logging.info("forgetting: done in %.1f min (this invocation)", (time.time() - t0) / 60)
  with open(os.path.join(workdir, TABLE_FILE)) as fh:
    return fh.read()
