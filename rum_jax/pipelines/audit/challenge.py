"""The challenge score's banks (Triantafillou et al. 2024): N models retrained without the forget
set (shared by every method) and, per method, N models unlearned from the original; each
method's score by name from `METRICS` (`forget_score`, `final_score`, the epsilons)."""
from typing import Any, Callable, Dict

import jax
import numpy as np
from absl import logging

from rum_jax.evaluation import confidence
from rum_jax.evaluation.metrics import BankOutputs, challenge as challenge_metrics
from rum_jax.pipelines.audit.banks import (ACCURACIES, RETRAINED, UNLEARNED, Bank, bank_seed, digest, replicate,
                                                run_method, split_outputs, training_spec, augment_spec)
from rum_jax.runfolder import RunFolder
from rum_jax.training import loop
from rum_jax.training.setup import Setup
from rum_jax.training.state import TrainState
from rum_jax.results import summarize
from rum_jax.unlearning import UNLEARNING_METHODS


def challenge_outputs(setup: Setup, states: TrainState, forget: np.ndarray, retain: np.ndarray) -> Dict[str, np.ndarray]:
  """What the challenge score needs from every model of a runner: the logit-scaled confidence
  of each forget example [S, |F|] and the forget, retain and test accuracies [S]."""
  out = split_outputs(setup, states, [forget] * setup.runner.num_models)
  conf = confidence.logit_scaled_confidence(out["train_logits"][:, forget], setup.dataset.train.y[forget])
  return {"forget_confidence": conf, **{k: out[k] for k in ACCURACIES}}


def _challenge_bank(directory: Any, spec: Dict[str, Any], setup: Setup, config, overwrite: bool,
                    name: str, run: Callable[[int], TrainState], forget: np.ndarray,
                    retain: np.ndarray) -> Dict[str, np.ndarray]:
  """A bank of num_models models on one forget set: `challenge_outputs` of every chunk `run(j)`."""
  bank = Bank(directory, spec, config.audit.num_models, setup.runner.num_models, name, overwrite)
  return bank.fill(lambda j: challenge_outputs(setup, run(j), forget, retain))


def challenge(config, workdir: Any, setups, forget: np.ndarray, retain: np.ndarray, original: TrainState,
               overwrite: bool) -> Dict[str, Any]:
  """Retrained bank once, an unlearned bank per method, and each method's `BankOutputs` and epsilons."""
  f = config.audit
  setup = setups(min(f.chunk_size, f.num_models))
  chunk = setup.runner.num_models
  base = {"training": training_spec(config), "forget": digest(forget), "seed": f.seed, "chunk_size": chunk,
          **augment_spec(config)}
  retrained = _challenge_bank(
      RunFolder.of(workdir).sub("retrained"), {"bank": "retrained", **base}, setup, config, overwrite, "retrained",
      lambda j: run_method(setup, None, "retrain", config.train, forget, retain, bank_seed(f.seed, RETRAINED, j),
                            f"retrained chunk {j + 1}"), forget, retain)
  replicated = replicate(original, chunk)
  original_digest = digest(*jax.tree.leaves(original.params))
  out = {"retrained": retrained, "methods": {}, "diverged": {}}
  for name in f.methods:
    method = UNLEARNING_METHODS.get(name)
    settings = method.settings_of(config, workdir)
    folder = method.folder_of(config)
    spec = {"bank": "unlearned", "method": name, "settings": settings.to_dict(), "original": original_digest, **base}
    try:
      bank = _challenge_bank(
          RunFolder.of(workdir).sub("unlearned", folder), spec, setup, config, overwrite, f"unlearned {folder}",
          lambda j: run_method(setup, replicated, name, settings, forget, retain, bank_seed(f.seed, UNLEARNED, j),
                                f"{folder} chunk {j + 1}"), forget, retain)
    except loop.NonFiniteLossError as e:  # a diverging method is reported, not fatal
      logging.warning("audit: %s diverged; it is left out: %s", folder, e)
      out["diverged"][folder] = str(e)
      continue
    # The scores themselves are `METRICS` entries, computed from these outputs by name.
    outputs = BankOutputs(unlearned=bank, retrained=retrained,
                          options={"centring": f.get("lira_centring", "mean")})
    out["methods"][folder] = {"bank": bank, "outputs": outputs, "epsilons": challenge_metrics.epsilons(outputs),
                              "forget_score_ci95": summarize(challenge_metrics.points(outputs))["ci95"]}
  return out
