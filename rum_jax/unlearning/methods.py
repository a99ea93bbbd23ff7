"""The unlearning methods of the RUM paper's study: each a loss and/or a gradient transform.

Registered in `interface.UNLEARNING_METHODS` under the names users type (`config.unlearn.method`),
each with the one `Method` interface (rum_jax/unlearning/interface.py):
  training methods  `phases(settings, ctx)` gives the losses the one training engine runs
                    every epoch (one phase for most methods; SCRUB: a max pass on the forget
                    set, then a min pass on the retain set); `prepare(ctx, states)` gives the
                    per-seed constants a step reads from `state.aux` (SCRUB's frozen teacher,
                    which examples get random labels, SalUn's saliency mask);
  one-shot methods  `apply(ctx, states)` edits the weights once (wfisher);
  retrain           training from scratch on the retain set with the original's settings.
`checks` gives the valid range of each method-specific setting (config validation); the
values themselves live in the config, `config.unlearn.<method>`. RUM, the meta-method over
these, is in rum_jax/unlearning/rum.py.
"""
import functools
from typing import Any, Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rum_jax.training import engine, plans
from rum_jax.training.engine import cross_entropy, weighted_mean
from rum_jax.training.state import TrainState
from rum_jax.unlearning import runners, saliency, woodfisher
from rum_jax.unlearning.interface import Check, Method, MethodContext, Phase, register


# ---------------------------------------------------------------------------------------
# Loss pieces.


def _stream_ce(forward, params, batch_stats, s, labels=None):
  """Train-mode logits of stream s, its weighted mean CE and accuracy, updated batch stats."""
  labels = s["y"] if labels is None else labels
  logits, batch_stats = forward(params, batch_stats, s["x"], train=True)
  ce = weighted_mean(cross_entropy(logits, labels), s["weight"])
  acc = weighted_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), s["weight"])
  return logits, batch_stats, ce, acc


def tempered_kl(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, temperature: float) -> jnp.ndarray:
  """Per-example KL_T = T^2 KL(softmax(t/T) || softmax(s/T)) = T^2 sum_c p_c (log p_c - log q_c).

  Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531),
  Sec. 2 (the T^2 keeps gradient scales comparable across T), used by SCRUB (Kurmanji et al.
  2023, "Towards Unbounded Machine Unlearning", NeurIPS, arXiv:2302.09880, Sec. 3).
  """
  log_p = jax.nn.log_softmax(teacher_logits / temperature)
  log_q = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def random_relabel(rng: jnp.ndarray, labels: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  """y' = (y + U{1, ..., C-1}) mod C: uniform over the C - 1 WRONG classes, for any C >= 2.

  RUM's random labels (`np.random.randint(0, num_classes)`, CIFAR-10/SVHN only) may redraw
  the true label; the random-label baseline (Golatkar et al. 2020, as SalUn states it: y' != y) relabels
  with a wrong class, which a shift by 1..C-1 modulo C gives exactly.
  """
  shift = jax.random.randint(rng, labels.shape, 1, num_classes)
  return (labels + shift) % num_classes


def _hp(state: TrainState, key: str) -> jnp.ndarray:
  """A swept setting of this model (`Method.swept`): carried in the state, so one compiled step
  serves every setting of a sweep."""
  return state.aux["hp"][key]


@functools.lru_cache(maxsize=None)  # one function per (epochs, steps): compiled programs are shared
def l1_sparse_loss(epochs: int, steps_per_epoch: int) -> engine.LossFn:
  """CE(retain) + a_t ||theta||_1 with a_t = alpha (1 - e / E), e = the current epoch (0-based).

  Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS,
  arXiv:2304.04934), the l1-sparse unlearning objective and its linearly decaying schedule; the
  L1 norm is over all parameters, as the original `l1_regularization`. alpha: aux["hp"]["alpha"].
  """
  def loss_fn(forward, params, state, batch, rng):
    del rng
    _, batch_stats, ce, acc = _stream_ce(forward, params, state.batch_stats, batch["retain"])
    coefficient = _hp(state, "alpha") * (1.0 - (state.step // steps_per_epoch) / epochs)
    l1 = sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))
    loss = ce + coefficient * l1
    return loss, (batch_stats, {"loss": loss, "retain_ce": ce, "accuracy": acc,
                                "l1_coefficient": coefficient})
  return loss_fn


def neggrad_loss(forward, params, state, batch, rng):
  """-CE(forget): gradient ascent on the forget set (Golatkar et al. 2020; 'GA' in RUM)."""
  del rng
  _, batch_stats, ce, acc = _stream_ce(forward, params, state.batch_stats, batch["forget"])
  return -ce, (batch_stats, {"loss": -ce, "forget_ce": ce, "forget_accuracy": acc})


def neggrad_plus_loss(forward, params, state, batch, rng):
  """alpha CE(retain batch) - (1 - alpha) CE(forget batch) (NegGrad+, a baseline of Kurmanji et al.
  2023); alpha: aux["hp"]["alpha"]."""
  del rng
  alpha = _hp(state, "alpha")
  _, batch_stats, ce_r, acc = _stream_ce(forward, params, state.batch_stats, batch["retain"])
  _, batch_stats, ce_f, acc_f = _stream_ce(forward, params, batch_stats, batch["forget"])
  loss = alpha * ce_r - (1.0 - alpha) * ce_f
  return loss, (batch_stats, {"loss": loss, "retain_ce": ce_r, "forget_ce": ce_f,
                              "accuracy": acc, "forget_accuracy": acc_f})


def _teacher_logits(forward, state: TrainState, x: jnp.ndarray) -> jnp.ndarray:
  teacher = state.aux["teacher"]
  logits, _ = forward(teacher["params"], teacher["batch_stats"], x, train=False)
  return jax.lax.stop_gradient(logits)


def scrub_max_loss(forward, params, state, batch, rng):
  """SCRUB's max step: minimise -KL_T(teacher || student) on a forget batch (Kurmanji et al. 2023,
  Sec. 3); T: aux["hp"]["temperature"]."""
  del rng
  f = batch["forget"]
  logits, batch_stats = forward(params, state.batch_stats, f["x"], train=True)
  kl = weighted_mean(tempered_kl(logits, _teacher_logits(forward, state, f["x"]), _hp(state, "temperature")),
                     f["weight"])
  return -kl, (batch_stats, {"loss": -kl, "forget_kl": kl})


def scrub_min_loss(forward, params, state, batch, rng):
  """SCRUB's min step on a retain batch: gamma CE + beta KL_T(teacher || student) (Kurmanji et al.
  2023, Sec. 3); T, gamma, beta: aux["hp"]."""
  del rng
  r = batch["retain"]
  logits, batch_stats, ce, acc = _stream_ce(forward, params, state.batch_stats, r)
  kl = weighted_mean(tempered_kl(logits, _teacher_logits(forward, state, r["x"]), _hp(state, "temperature")),
                     r["weight"])
  loss = _hp(state, "gamma") * ce + _hp(state, "beta") * kl
  return loss, (batch_stats, {"loss": loss, "retain_ce": ce, "retain_kl": kl, "accuracy": acc})


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
    _, batch_stats, ce, acc = _stream_ce(forward, params, state.batch_stats, b, labels)
    return ce, (batch_stats, {"loss": ce, "accuracy": acc})
  return loss_fn


def apply_saliency_mask(forward, grads, state, batch, rng):
  """g <- m_S * g (SalUn, Sec. 4: only salient weights learn), before the optimizer adds weight decay."""
  del forward, batch, rng
  return jax.tree.map(jnp.multiply, grads, state.aux["saliency_mask"])


# ---------------------------------------------------------------------------------------
# Per-seed constants.


def _teacher(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  del ctx
  return {"teacher": {"params": states.params, "batch_stats": states.batch_stats}}


def _forget_mask(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  del states
  mask = np.zeros((len(ctx.forget), len(ctx.setup.dataset.train)), bool)
  for s, f in enumerate(ctx.forget):
    mask[s, f] = True
  return {"forget_mask": mask}


def _saliency_program(runner, forward):
  return runner.map(functools.partial(saliency.saliency_magnitudes, forward=forward), n_seeded=2)


def forget_saliency(ctx: MethodContext, states: TrainState) -> np.ndarray:
  """|grad of the forget CE| per padded seed [S, P], read from ctx.saliency_path or computed (and
  saved there without the padding seeds, so the file serves any number of devices)."""
  runner = ctx.setup.runner
  n = runner.num_models
  params = runner.unpad(states.params)
  cached = saliency.load_saliency(ctx.saliency_path, ctx.forget[:n], params) if ctx.saliency_path else None
  if cached is not None:
    return runner.pad(cached)
  program = runner.compiled(_saliency_program, ctx.setup.forward)
  plan = ctx.chunk_plan(ctx.forget, ctx.settings.batch_size, "saliency")
  magnitudes = runner.to_host(program(runner.shard(states), runner.shard(plan), ctx.setup.train_data()))
  if ctx.saliency_path:
    saliency.save_saliency(ctx.saliency_path, magnitudes, ctx.forget[:n], params)
  return runner.pad(magnitudes)


def _salun_aux(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  mask = saliency.masks_like(forget_saliency(ctx, states), ctx.value("mask_ratio"), states.params)
  return {**_forget_mask(ctx, states), "saliency_mask": mask}


def _wfisher_program(runner, forward):
  """(states, forget/retain/sample chunk plans, alpha, damping per model, data) -> updated states."""
  return runner.map(lambda state, f, r, smp, alpha, damping, data: woodfisher.wfisher_update(
      state, f, r, smp, data, forward=forward, alpha=alpha, damping=damping), n_seeded=6)


def _wfisher_apply(ctx: MethodContext, states: TrainState) -> TrainState:
  s = ctx.settings
  runner = ctx.setup.runner
  samples = []
  for i, r in enumerate(ctx.retain):  # the n retain examples whose gradients form the Fisher
    rng = plans.epoch_rng(ctx.base_seed, ctx.seed_of(i), 0, "fisher")
    samples.append(np.sort(rng.choice(r, size=min(s.num_samples, len(r)), replace=False)))
  chunk = functools.partial(ctx.chunk_plan, chunk_size=s.chunk_size)
  update = runner.compiled(_wfisher_program, ctx.setup.forward)
  out = update(runner.shard(states), runner.shard(chunk(ctx.forget, what="forget")),
               runner.shard(chunk(ctx.retain, what="retain")), runner.shard(chunk(samples, what="samples")),
               runner.shard(ctx.value("alpha")), runner.shard(ctx.value("damping")), ctx.setup.train_data())
  return runner.to_host(out, keep_padding=True)


# ---------------------------------------------------------------------------------------
# The registry.


def _training(name: str, **kwargs) -> Method:
  return register(Method(name, runners.training_method(name), **kwargs))


register(Method("retrain", runners.retrain_run, sgd_recipe=False, from_scratch=True,
                about="train from scratch on the retain set with config.train (the reference)",
                custom_settings=lambda config, workdir: config.train,
                custom_validate=lambda unlearn: None))  # trains like the original: config.train

_finetune_loss = functools.partial(engine.supervised_loss, stream="retain")

_training("finetune", about="cross-entropy on the retain set (Warnecke et al. 2023)", swept=("lr",),
          phases=lambda s, ctx: [Phase("finetune", ("retain",), _finetune_loss)])

_training("l1_sparse", about="CE(retain) + a_t |theta|_1, a_t decaying linearly to 0 (Jia et al. 2023)",
          checks=(Check("alpha"),), swept=("lr", "alpha"), phases=lambda s, ctx: [
    Phase("l1_sparse", ("retain",), l1_sparse_loss(s.epochs, ctx.steps_per_epoch("retain")))])

_training("neggrad", about="gradient ascent on the forget set (Golatkar et al. 2020)", swept=("lr",),
          phases=lambda s, ctx: [Phase("neggrad", ("forget",), neggrad_loss)])

class _OptionalCheck(Check):
  """A setting older configs may lack (its absence means its default, 0)."""

  def __call__(self, settings: ml_collections.ConfigDict, prefix: str) -> None:
    if self.key in settings:
      super().__call__(settings, prefix)


# forget_passes: passes over the forget set per epoch (0 = one retain pass, the forget stream
# cycled to its length, as RUM's code); runners.forget_dose_steps says why it matters.
_training("neggrad_plus", about="a CE(retain) - (1 - a) CE(forget) (Kurmanji et al. 2023)",
          checks=(Check("alpha", 0.0, 1.0), _OptionalCheck("forget_passes", integer=True)),
          swept=("lr", "alpha"), phases=lambda s, ctx: [Phase("neggrad_plus", ("retain", "forget"), neggrad_plus_loss)])

_training(
    "scrub",
    about="max-KL passes on the forget set, min passes (CE + KL to the teacher) on the retain set "
          "(Kurmanji et al. 2023)",
    checks=(Check("msteps", integer=True), Check("temperature", low_open=True), Check("gamma"), Check("beta")),
    swept=("lr", "temperature", "gamma", "beta"),
    phases=lambda s, ctx: [
        Phase("max", ("forget",), scrub_max_loss, active_epochs=s.msteps),
        Phase("min", ("retain",), scrub_min_loss)],
    prepare=_teacher)

register(Method(
    "wfisher", runners.one_shot_method("wfisher"), sgd_recipe=False,
    about="one-shot WoodFisher step theta += a F^-1 (grad forget - grad retain) (Izzo et al. 2021)",
    checks=(Check("alpha", low_open=True), Check("damping", low_open=True),
            Check("num_samples", 1, integer=True), Check("chunk_size", 1, integer=True)),
    swept=("alpha", "damping"), apply=_wfisher_apply))

_training("random_label", about="CE on retain + forget relabelled at random (Graves et al. 2021)",
          swept=("lr",), prepare=_forget_mask, phases=lambda s, ctx: [
    Phase("random_label", ("train",), random_label_loss(ctx.num_classes))])

_training("salun", about="random labels, gradients masked to the most salient weights (Fan et al. 2024)",
          checks=(Check("mask_ratio", 0.0, 1.0, low_open=True),), swept=("lr", "mask_ratio"),
          prepare=_salun_aux, phases=lambda s, ctx: [Phase("salun", ("train",), random_label_loss(ctx.num_classes),
                                                             grad_transform=apply_saliency_mask)])
