"""The interface of continual methods and learning algorithms: the registries `CONTINUAL_METHODS`
and `LEARN_ALGORITHMS`, and the pieces of `updates.py` a method is built from.

A continual method is one `ContinualMethod` entry, found by the name users type
(`config.continual.algorithm`). Its interface is a factory, as optax's transforms are:

  method.forgetting(settings: ForgetSettings) -> Forgetting(objective, update)

  objective(forward, params, state, batch, rng) -> (loss, aux)
      the loss whose gradient on a forget batch is the method's forget direction: the SalUn
      mask ranks weights by it, ALT-NegGEM's mask batch is the first whose gradient violates
      a GEM constraint;
  update(state, batch, *, forward, tx) -> (state, metrics)
      one forget batch's optimizer updates (each an `engine.train_step` with a loss and a
      gradient transform of `updates.py`), e.g. NegGEM's projected ascent step, then its
      projected random-label step.

Its settings are the shared ones of config.continual (margins, A-GEM's reference batch, the
SalUn switch, the loss scale: `ForgetSettings`) and its own `options`, which sit with the
shared per-method settings in config.continual.unlearn.<name> (NegGrad+'s `alpha`).
`thesis` holds its settings in the thesis' final A4 runs, which the configs' thesis preset
applies (4tests/A4/*/...HYPERPARAMETERS.csv of DROP-TABLE-CS407/Machine-Unlearning-x-
Continual-Learning, and negGemGradA4.py: unlearn batch, unlearn lr, stop accuracy 0.275 / 0.3 /
0.35 on 5-class tasks = chance + 0.075 / 0.1 / 0.15, SalUn fraction; its runs predate the later
x5 loss scale: scale 1). `constraint` names what its projected updates must satisfy (the
contract test checks it on every method): 'gem' (<g~, g_k> >= 0 for every retained task k),
'gem_with_forget' (also <g~, g_f> >= 0 for its own forget gradient), 'agem' (<g~, g_ref> >= 0)
or '' (none).

A method is one file of this package holding one `register(ContinualMethod(...))`
(docs/extending.md); configs build their per-method sections from the registry.
"""
import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from rum_jax.continual import updates
from rum_jax.registry import Registry
from rum_jax.training import engine

Update = updates.Update


@dataclasses.dataclass(frozen=True)
class LearnSettings:
  """What a learning step's projection is built from (hashable: programs are cached by it).

  margin / eps: GEM's memory strength and QP ridge; ref_size: A-GEM's reference batch;
  memory_batch_stats: the train-mode passes over the memories also move BatchNorm's running
  statistics (GEM's code), before the update's own batch.
  """
  margin: float = 0.5
  eps: float = 1e-3
  ref_size: int = 256
  memory_batch_stats: bool = True


@dataclasses.dataclass(frozen=True)
class ForgetSettings(LearnSettings):
  """What a continual method's factory is built from (hashable).

  masked: apply the SalUn mask to the objective's gradient; loss_scale: s of the forget
  loss; options: the method's own settings as sorted (name, value) pairs (`option`).
  """
  masked: bool = False
  loss_scale: float = 1.0
  options: Tuple[Tuple[str, Any], ...] = ()

  def option(self, name: str) -> Any:
    return dict(self.options)[name]


class Forgetting(NamedTuple):
  """What a continual method's factory returns (module docstring)."""
  objective: engine.LossFn
  update: Callable[..., Tuple[Any, engine.Metrics]]


@dataclasses.dataclass(frozen=True)
class Option:
  """A method's own numeric setting: its default and valid range [low, high]."""
  name: str
  default: float
  low: float
  high: float
  about: str


@dataclasses.dataclass(frozen=True)
class ContinualMethod:
  """A continual unlearning method (module docstring).

  learn_algorithm: how tasks are learned when config `learn_algorithm` is "auto".
  """
  name: str
  forgetting: Callable[[ForgetSettings], Forgetting]
  learn_algorithm: str
  constraint: str
  about: str
  options: Tuple[Option, ...] = ()
  thesis: Optional[Mapping[str, Any]] = None

  def defaults(self) -> dict:
    """Its own options' defaults (what a config section of it holds besides the shared keys)."""
    return {o.name: o.default for o in self.options}


CONTINUAL_METHODS: Registry[ContinualMethod] = Registry("continual unlearning method")


def register(method: ContinualMethod) -> ContinualMethod:
  """Adds `method` to CONTINUAL_METHODS under its name."""
  return CONTINUAL_METHODS.register(method.name)(method)


def with_memories(loss_fn: engine.LossFn, settings: LearnSettings) -> engine.LossFn:
  return updates.with_memory_batch_stats(loss_fn) if settings.memory_batch_stats else loss_fn


# ---------------------------------------------------------------------------------------
# Learning algorithms.


@dataclasses.dataclass(frozen=True)
class LearnAlgorithm:
  """How a task is learned (config.continual.learn_algorithm).

  transform: factory of the grad_transform of its steps; uses_memories: whether those steps
  compute memory gradients (and so, with memory_batch_stats, move BatchNorm statistics).
  """
  name: str
  transform: Callable[[LearnSettings], engine.GradTransform]
  uses_memories: bool


LEARN_ALGORITHMS: Registry[LearnAlgorithm] = Registry("learning algorithm")
for _algorithm in (
    LearnAlgorithm("sgd", lambda p: updates.identity, uses_memories=False),
    LearnAlgorithm("gem", lambda p: updates.gem_transform(p.margin, p.eps), uses_memories=True),
    LearnAlgorithm("agem", lambda p: updates.agem_transform(p.ref_size), uses_memories=True),
):
  LEARN_ALGORITHMS.register(_algorithm.name)(_algorithm)


def learn_update(algorithm: str, settings: LearnSettings) -> Update:
  """(loss_fn, grad_transform) of a learning step of `algorithm` (an entry of LEARN_ALGORITHMS)."""
  entry = LEARN_ALGORITHMS.get(algorithm)
  loss_fn = with_memories(updates.learn_loss, settings) if entry.uses_memories else updates.learn_loss
  return loss_fn, entry.transform(settings)


# ---------------------------------------------------------------------------------------
# Continual methods, as pairs (objective, projection) of `updates.py` applied to every batch.

Objective = Callable[[ForgetSettings], engine.LossFn]
Projection = Callable[[ForgetSettings], engine.GradTransform]


def negative(s: ForgetSettings) -> engine.LossFn:
  return functools.partial(updates.negative_loss, scale=s.loss_scale)


def random_labels(s: ForgetSettings) -> engine.LossFn:
  return functools.partial(updates.random_label_loss, scale=s.loss_scale)


def gem(s: ForgetSettings) -> engine.GradTransform:
  return updates.gem_transform(s.margin, s.eps, s.masked)


def gem_with_forget(s: ForgetSettings) -> engine.GradTransform:
  return updates.gem_transform(s.margin, s.eps, s.masked, with_forget=True)


def agem(s: ForgetSettings) -> engine.GradTransform:
  return updates.agem_transform(s.ref_size, s.masked)


def neggrad_plus(s: ForgetSettings) -> engine.GradTransform:
  return updates.neggrad_plus_transform(s.option("alpha"), s.masked)


def apply_updates(state, batch, *, forward, tx, steps: Tuple[Update, ...]):
  """Each (loss_fn, grad_transform) of `steps` as one optimizer update, in order; metrics
  update<i>_<name>, among them the global norm of update i's change of the weights
  ("step_norm": lr x clip_norm when a clipped SGD step was clipped)."""
  metrics = {}
  for i, (loss_fn, transform) in enumerate(steps):
    new, m = engine.train_step(state, batch, forward=forward, tx=tx, loss_fn=loss_fn, grad_transform=transform)
    m["step_norm"] = optax.global_norm(jax.tree.map(jnp.subtract, new.params, state.params))
    metrics.update({f"update{i}_{k}": v for k, v in m.items()})
    state = new
  return state, metrics


def chain(*pairs: Tuple[Objective, Projection]) -> Callable[[ForgetSettings], Forgetting]:
  """The factory of a method whose batches get one update per (objective, projection) pair,
  in order; its objective is the first pair's."""
  def make(s: ForgetSettings) -> Forgetting:
    steps = tuple((with_memories(objective(s), s), projection(s)) for objective, projection in pairs)
    return Forgetting(pairs[0][0](s), functools.partial(apply_updates, steps=steps))
  return make
