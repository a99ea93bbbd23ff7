"""scrub: SCRUB's max passes on the forget set and min passes on the retain set against a frozen
teacher (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NeurIPS, arXiv:2302.09880)."""
from typing import Any, Dict

import jax
import jax.numpy as jnp

from rum_jax.training.engine import weighted_mean
from rum_jax.training.state import TrainState
from rum_jax.unlearning.interface import Check, MethodContext, Phase
from rum_jax.unlearning.methods.common import register_training, setting, stream_ce


def tempered_kl(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, temperature: float) -> jnp.ndarray:
  """Per-example KL_T = T^2 KL(softmax(t/T) || softmax(s/T)) = T^2 sum_c p_c (log p_c - log q_c).

  Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531),
  Sec. 2 (the T^2 keeps gradient scales comparable across T), used by SCRUB (Kurmanji et al.
  2023, Sec. 3).
  """
  log_p = jax.nn.log_softmax(teacher_logits / temperature)
  log_q = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


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
  kl = weighted_mean(tempered_kl(logits, _teacher_logits(forward, state, f["x"]), setting(state, "temperature")),
                     f["weight"])
  return -kl, (batch_stats, {"loss": -kl, "forget_kl": kl})


def scrub_min_loss(forward, params, state, batch, rng):
  """SCRUB's min step on a retain batch: gamma CE + beta KL_T(teacher || student) (Kurmanji et al.
  2023, Sec. 3); T, gamma, beta: aux["hp"]."""
  del rng
  r = batch["retain"]
  logits, batch_stats, ce, acc = stream_ce(forward, params, state.batch_stats, r)
  kl = weighted_mean(tempered_kl(logits, _teacher_logits(forward, state, r["x"]), setting(state, "temperature")),
                     r["weight"])
  loss = setting(state, "gamma") * ce + setting(state, "beta") * kl
  return loss, (batch_stats, {"loss": loss, "retain_ce": ce, "retain_kl": kl, "accuracy": acc})


def _teacher(ctx: MethodContext, states: TrainState) -> Dict[str, Any]:
  del ctx
  return {"teacher": {"params": states.params, "batch_stats": states.batch_stats}}


register_training(
    "scrub",
    about="max-KL passes on the forget set, min passes (CE + KL to the teacher) on the retain set "
          "(Kurmanji et al. 2023)",
    checks=(Check("msteps", integer=True), Check("temperature", low_open=True), Check("gamma"), Check("beta")),
    swept=("lr", "temperature", "gamma", "beta"),
    phases=lambda s, ctx: [
        Phase("max", ("forget",), scrub_max_loss, active_epochs=s.msteps),
        Phase("min", ("retain",), scrub_min_loss)],
    prepare=_teacher)
