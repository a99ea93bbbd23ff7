"""The thesis presets against the thesis' own settings, written out from its code and the
settings files of its final A4 runs; forget batches and buffers of the thesis' shape."""
import jax
import numpy as np
import pytest

from rum_jax.configs import continual_cifar100_thesis, continual_digits, continual_mnist1d
from rum_jax.config_validation import validate
from rum_jax.continual import buffers, methods, updates
from rum_jax.continual import config as continual_config
from rum_jax.continual import task_sets
from rum_jax.data import cifar
from rum_jax.models import create_model
from rum_jax.training.state import Forward

# negGemGradA4.py and 4tests/A4/*/...HYPERPARAMETERS.csv, per method: stop accuracy on its
# 5-class tasks, unlearn batch, unlearn lr, SalUn fraction, learning lr, memories per task.
THESIS_A4 = {
    "neggem": (0.275, 2, 0.01, 0.02, 0.1, 256),
    "rl_gem": (0.275, 2, 0.01, 0.05, 0.1, 256),
    "alt_neggem": (0.35, 2, 0.01, 0.02, 0.1, 256),
    "neggrad_plus": (0.275, 8, 0.01, 0.5, 0.1, 256),
    "negagem": (0.3, 1, 0.003, 0.05, 0.03, 65),
    "rl_agem": (0.3, 1, 0.003, 0.02, 0.03, 65),
}


@pytest.mark.parametrize("method", sorted(THESIS_A4))
def test_cifar100_thesis_preset_has_the_thesis_settings(method):
  c = continual_cifar100_thesis.get_config()
  c.algorithm = method  # the documented command's --config.algorithm
  validate(c)
  stop, batch, unlearn_lr, salun, lr, memories = THESIS_A4[method]
  u, learn = continual_config.unlearn_section(c), continual_config.learn_section(c)
  k = c.continual
  assert 1 / k.classes_per_task + u.stop_above_chance == pytest.approx(stop)
  assert (u.batch_size, u.lr, u.salun, u.loss_scale) == (batch, unlearn_lr, salun, 1.0)
  assert (learn.lr, learn.memories, learn.unlearn_memories) == (lr, memories, memories)
  assert (k.epochs, k.batch_size, k.margin, k.unlearn_margin, k.unlearn_max_epochs) == (3, 10, 0.5, 0.5, 48)
  assert (k.learn_buffer_kind, k.learn_buffer_split, k.unlearn_buffer_kind, k.unlearn_buffer_split) == (
      "least", 0.2, "most", 0.99)
  assert (k.stop_mode, k.forget_batches, k.salun_batch, k.memory_batch_stats) == (
      "train", "paired", "first_batch", True)
  assert (c.data.name, c.model.name, c.model.kwargs.nf, k.sequence) == ("cifar100", "reduced_resnet18", 20, "A4")
  # Its one optimizer keeps the unlearning lr; its MIA protocol; ALT-NegGEM's mask batch.
  assert (k.lr_after_forget, k.mia_protocol) == ("unlearn", "thesis")
  assert u.get("salun_batch", k.salun_batch) == ("first_violating" if method == "alt_neggem" else "first_batch")
  if method == "neggrad_plus":
    assert u.alpha == 0.5


def test_cifar100_thesis_preset_keeps_the_whole_train_split():
  # val_per_class = 0 keeps all 500 train images of every class: 20 tasks of 5 classes have
  # 2,500 each (here 3 fake images per class: 15 per task).
  c = continual_cifar100_thesis.get_config()
  assert c.data.options.val_per_class == 0
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(100), 3)
  raw = cifar.RawCifar(rng.integers(0, 255, (300, 2, 2, 3), dtype=np.uint8), labels, np.arange(300),
                       rng.integers(0, 255, (100, 2, 2, 3), dtype=np.uint8), np.arange(100),
                       np.arange(100), tuple(map(str, range(100))))
  ds = cifar.build_dataset(cifar.CIFAR100, raw, split_seed=0, val_per_class=c.data.options.val_per_class)
  assert len(ds.train) == 300 and len(ds.val) == 0
  task_set = task_sets.build("split", ds, 20, c.continual.classes_per_task, 0, 1, 0)
  assert [len(p) for p in task_set.positions("train")[0]] == [15] * 20


@pytest.mark.parametrize("module", [continual_digits, continual_mnist1d])
def test_small_presets_validate_for_every_method(module):
  for method in methods.CONTINUAL_METHODS.names():
    c = module.get_config("thesis")
    c.algorithm = method
    validate(c)
    assert continual_config.unlearn_section(c).batch_size in (1, 2, 8)
  ours = module.get_config()
  assert (ours.continual.stop_mode, ours.continual.salun_batch) == ("eval", "buffers")


def test_thesis_buffers_take_99_percent_most_and_20_percent_least_memorized():
  rng = np.random.default_rng(0)
  candidates = np.arange(1000, 3500)  # a task of 2,500 examples
  scores = rng.random(2500)
  ranked = candidates[np.argsort(scores)]
  unlearn = buffers.select_buffer(candidates, 256, "most", 0.99, scores, rng)
  learn = buffers.select_buffer(candidates, 256, "least", 0.2, scores, rng)
  # round(256 * 0.99) = 253 of the highest scores, then 3 others; round(256 * 0.2) = 51 lowest.
  assert set(unlearn[:253].tolist()) == set(ranked[-253:].tolist()) and len(set(unlearn.tolist())) == 256
  assert set(learn[:51].tolist()) == set(ranked[:51].tolist()) and len(set(learn.tolist())) == 256


def test_paired_forget_batches_take_b_of_each_buffer_and_cover_both_every_pass():
  learn = [np.arange(0, 8), np.arange(100, 106)]     # seed 1: a smaller learn buffer
  unlearn = [np.arange(50, 58), np.arange(150, 158)]
  rngs = [np.random.default_rng(s) for s in range(2)]
  plan = buffers.FORGET_BATCHES.get("paired")(learn, unlearn, 2, rngs, (8, 8))
  assert set(plan) == set(updates.FORGET_STREAMS)
  for name, buf in (("forget", unlearn), ("forget_learn", learn)):
    assert plan[name]["idx"].shape == (2, 4, 2)  # ceil(8 / 2) batches of 2
    assert np.all(plan[name]["weight"] == 1)
    for s in range(2):
      seen = plan[name]["idx"][s].ravel()
      assert set(seen.tolist()) == set(buf[s].tolist())  # every example, a smaller buffer cycled
  union = buffers.FORGET_BATCHES.get("union")(learn, unlearn, 2, rngs, (8, 8))
  assert set(union) == {"forget"} and union["forget"]["idx"].shape == (2, 8, 2)
  for s in range(2):
    everything = np.union1d(learn[s], unlearn[s])
    assert set(union["forget"]["idx"][s].ravel().tolist()) == set(everything.tolist())


def test_saliency_batches():
  learn, unlearn = [np.arange(0, 5)], [np.arange(10, 18)]
  plan = buffers.FORGET_BATCHES.get("paired")(learn, unlearn, 2, [np.random.default_rng(0)], (6, 8))
  first = buffers.SALIENCY_BATCHES.get("first_batch")(plan, learn, unlearn, (6, 8), None)
  for name in plan:
    np.testing.assert_array_equal(first[name]["idx"], plan[name]["idx"][:, :1])
  whole = buffers.SALIENCY_BATCHES.get("buffers")(plan, learn, unlearn, (6, 8), None)
  assert whole["forget"]["idx"].shape == (1, 1, 8) and whole["forget_learn"]["idx"].shape == (1, 1, 6)
  np.testing.assert_array_equal(whole["forget_learn"]["idx"][0, 0, :5], learn[0])
  np.testing.assert_array_equal(whole["forget_learn"]["weight"][0, 0], [1, 1, 1, 1, 1, 0])


def test_small_presets_use_an_mlp_whose_hidden_layers_batchnorm_makes_scale_free():
  # Why the CPU presets add BatchNorm: in train mode each hidden layer's output no longer
  # depends on the scale of its weights (BN(c z) = BN(z)), as in the thesis' conv net, so
  # gradient ascent cannot blow the activations up. Eval mode uses the running statistics.
  c = continual_mnist1d.get_config("thesis")
  assert c.model.name == "mlp" and c.model.kwargs.batch_norm
  model = create_model("mlp", 4, hidden=(6, 5), batch_norm=True)
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  forward = Forward(model)
  params = variables["params"]
  scaled = {**params, "Dense_0": jax.tree.map(lambda w: 7.0 * w, params["Dense_0"]),
            "Dense_1": jax.tree.map(lambda w: 0.2 * w, params["Dense_1"])}
  base, stats = forward(params, variables["batch_stats"], x, train=True)
  again, _ = forward(scaled, variables["batch_stats"], x, train=True)
  np.testing.assert_allclose(np.asarray(again), np.asarray(base), rtol=1e-3, atol=1e-4)
  # The running mean moved to 0.1 of the first layer's batch mean of pre-activations.
  pre = np.asarray(x) @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"])
  np.testing.assert_allclose(np.asarray(stats["BatchNorm_0"]["mean"]), 0.1 * pre.mean(0), rtol=1e-4, atol=1e-6)
  plain = create_model("mlp", 4, hidden=(6, 5))
  assert "batch_stats" not in plain.init(jax.random.PRNGKey(0), x)
