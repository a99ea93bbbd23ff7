"""Contract tests over the method registry: every unlearning method (RUM included) runs one epoch
on a tiny set and returns finite models of the shapes it was given."""
import jax
import ml_collections
import numpy as np
import pytest

from rum_jax.configs import default
from rum_jax.training.setup import Setup
from rum_jax.unlearning import UNLEARNING_METHODS, unlearn


def _config():
  c = default.get_config()
  c.num_seeds = 2
  c.model.kwargs.hidden = (8,)
  c.train.update(epochs=1, batch_size=256)
  for name in UNLEARNING_METHODS.names():
    if name in c.unlearn and "epochs" in c.unlearn[name]:
      c.unlearn[name].update(epochs=1, batch_size=256)
  c.unlearn.scrub.msteps = 1
  c.unlearn.wfisher.update(num_samples=32, chunk_size=16)
  c.unlearn.rum.refine = "shuffle"  # random thirds: no score file needed
  return c


@pytest.fixture(scope="module")
def tiny():
  config = _config()
  setup = Setup.create(config)
  n = len(setup.dataset.train)
  rng = np.random.default_rng(0)
  forget = [np.sort(rng.choice(n, 30, replace=False)) for _ in range(config.num_seeds)]
  retain = [np.setdiff1d(np.arange(n), f) for f in forget]
  original, _ = unlearn(setup, None, "retrain", config.train, forget, retain, name="original")
  return config, setup, forget, retain, original


@pytest.mark.parametrize("name", UNLEARNING_METHODS.names())
def test_every_method_runs_one_epoch(tiny, name, tmp_path):
  config, setup, forget, retain, original = tiny
  method = UNLEARNING_METHODS.get(name)
  config = ml_collections.ConfigDict(config.to_dict())
  config.unlearn.method = name
  settings = method.settings_of(config, str(tmp_path))
  states, _ = unlearn(setup, original, name, settings, forget, retain, base_seed=1,
                      saliency_path=str(tmp_path / "saliency.npz"), name=name)
  before, after = jax.tree.leaves(original.params), jax.tree.leaves(states.params)
  assert [a.shape for a in after] == [b.shape for b in before]
  assert all(np.all(np.isfinite(np.asarray(a))) for a in after)
  if name != "rum":  # RUM's plan may skip a step ('none'), never all of them here
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(after, before)), "nothing changed"
