"""RUM's CIFAR settings: crop + flip for original training only, the per-epoch cosine schedule.

config.data.augment decides the models trained from scratch on the train split (the original
models); config.unlearn.augment every unlearning method and the retrain reference. Each is
checked by what it changes: toggling one changes exactly the runs it owns. The schedule is
checked against torch's CosineAnnealingLR stepped once per epoch, as RUM's main_train.py
does.
"""
import dataclasses

import jax
import numpy as np
import pytest

from rum_jax.configs import cifar10_memorization_fast, cifar10_resnet18, cifar100_resnet18, default, study_cifar10
from rum_jax.config_validation import validate
from rum_jax.data import normalize
from rum_jax.data.base import Dataset, Split
from rum_jax.models import create_model
from rum_jax.training import optim
from rum_jax.training.parallel import ModelRunner
from rum_jax.training.setup import Setup, crop_flip, train_on
from rum_jax.training.state import Forward
from rum_jax.unlearning import unlearn


def _images(n=64, size=8, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  y = (np.arange(n) % classes).astype(np.int32)
  x = (rng.normal(size=(classes, size, size, 3))[y] + 0.5 * rng.normal(size=(n, size, size, 3))).astype(np.float32)
  split = Split(x, y, np.arange(n, dtype=np.int64))
  return Dataset("images", split, split.subset(np.arange(8)), split.subset(np.arange(8)), classes,
                 tuple("abcd"), pad_value=(-1.0, -2.0, -3.0))


@pytest.fixture(scope="module")
def setups():
  """One Setup per (data.augment, unlearn.augment), sharing one runner and its programs."""
  config = default.get_config()
  config.model.kwargs.hidden = (16,)
  config.train.epochs = 1
  config.train.batch_size = 16
  config.unlearn.finetune.epochs = 1
  config.unlearn.finetune.batch_size = 16
  dataset = _images()
  model = create_model("mlp", dataset.num_classes, hidden=(16,))
  base = Setup(config, dataset, model, Forward(model), ModelRunner(2))
  out = {}
  for data_aug in (False, True):
    for unlearn_aug in (False, True):
      c = config.copy_and_resolve_references()
      c.data.augment, c.unlearn.augment = data_aug, unlearn_aug
      out[data_aug, unlearn_aug] = dataclasses.replace(base, config=c)
  return out


def _params(states):
  return np.concatenate([np.ravel(l) for l in jax.tree.leaves(states.params)])


def test_original_training_follows_data_augment_only(setups):
  trained = {k: _params(train_on(s, [np.arange(64)] * 2, s.config.train, 0, None)[0]) for k, s in setups.items()}
  np.testing.assert_array_equal(trained[False, False], trained[False, True])
  np.testing.assert_array_equal(trained[True, False], trained[True, True])
  assert not np.allclose(trained[False, False], trained[True, False])


def test_unlearning_and_the_retrain_reference_follow_unlearn_augment_only(setups):
  forget, retain = np.arange(8), np.arange(8, 64)
  original, _ = train_on(setups[False, False], [np.arange(64)] * 2, setups[False, False].config.train, 0, None)
  for method in ("retrain", "finetune"):
    out = {}
    for key, s in setups.items():
      settings = s.config.train if method == "retrain" else s.config.unlearn.finetune
      out[key] = _params(unlearn(s, original, method, settings, forget, retain)[0])
    np.testing.assert_array_equal(out[False, False], out[True, False])
    np.testing.assert_array_equal(out[False, True], out[True, True])
    assert not np.allclose(out[False, False], out[False, True]), method


def test_crop_flip_pads_with_the_data_sets_black_pixel():
  x = np.ones((16, 8, 8, 3), np.float32)
  out = np.asarray(crop_flip((-1.0, -2.0, -3.0))(jax.random.PRNGKey(0), x))
  for c, pad in enumerate((-1.0, -2.0, -3.0)):
    values = set(np.unique(out[..., c]).tolist())
    assert values == {1.0, pad}  # the image, and its padding (some crop is off-centre)
  # The black pixel is a raw 0 after normalisation: (0 - mu) / sigma.
  mean, std = 255 * np.array([0.4914, 0.4822, 0.4465]), 255 * np.array([0.2470, 0.2435, 0.2616])
  np.testing.assert_allclose(normalize.black_pixel(mean, std),
                             normalize.standardize(np.zeros((1, 3)), mean, std)[0], rtol=1e-6)
  np.testing.assert_allclose(normalize.black_pixel(mean, std)[0], -0.4914 / 0.2470, rtol=1e-6)


@pytest.mark.parametrize("module", [cifar10_resnet18, cifar100_resnet18, study_cifar10])
def test_rum_cifar_configs_train_with_crop_flip_and_unlearn_without(module):
  config = module.get_config()
  validate(config)
  # RUM: main_train.py's default transform (RandomCrop(32, 4) + flip); --no_aug when unlearning.
  assert config.data.augment is True and config.unlearn.augment is False


def test_the_fast_memorization_config_augments_as_airbench_trains():
  config = cifar10_memorization_fast.get_config()
  validate(config)
  assert config.data.augment is True


def test_epoch_cosine_is_torchs_cosine_annealing_stepped_per_epoch():
  epochs, steps_per_epoch, lr = 5, 3, 0.1
  # torch.optim.lr_scheduler.CosineAnnealingLR's closed form (its documentation), eta_min 0,
  # T_cur = the epochs done: the rate is constant within an epoch.
  expected = [0.5 * lr * (1 + np.cos(np.pi * (t // steps_per_epoch) / epochs))
              for t in range(epochs * steps_per_epoch)]
  schedule = optim.make_schedule("epoch_cosine", lr, epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch)
  got = [float(schedule(t)) for t in range(epochs * steps_per_epoch)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[:3] == pytest.approx([lr] * 3) and got[3] < 0.99 * lr  # the first epoch at the full rate
  assert float(schedule(epochs * steps_per_epoch)) == pytest.approx(0.0, abs=1e-9)  # past the end: 0


def test_rum_cifar_configs_use_the_per_epoch_cosine():
  assert cifar10_resnet18.get_config().train.schedule == "epoch_cosine"
