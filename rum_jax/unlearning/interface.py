"""The one interface every unlearning method has, its registry, and `unlearn`.

A `Method` is a registry entry of `UNLEARNING_METHODS`, keyed by the name users type. Every method,
the retrain reference and the RUM meta-method alike, runs through `unlearn(...)`, which
builds a `MethodContext` and calls `method.run(ctx, states)`; no caller knows which method
it runs. What a method reads from the config is its own too:

  settings_of(config, workdir)  the settings that decide its result (recorded in the run's
                                config); default config.unlearn.<name>
  folder_of(config)             its folder under methods/; default its name
  validate(unlearn)             checks config.unlearn for it; default: an SGD recipe (when
                                `sgd_recipe`) and the ranges of `checks`
  score_sources(config, workdir) the score files it reads, so the pipeline can compute a
                                missing default one first; default none

Kinds of `run` (rum_jax.unlearning.runners): training methods (losses the one engine runs
epoch after epoch: `phases` and `prepare`), one-shot weight edits (`apply`), training from
scratch (the retrain reference), and composites of other methods (RUM).

Streams, the named inputs of a step: "retain", "forget", and "train" = the retain and forget
sets shuffled together (random labels). A phase's FIRST stream sets the steps of an epoch
(one pass over it); its other streams are cycled to as many steps, so a small forget set is
revisited while the retain set is passed once (NegGrad+).
"""
import dataclasses
import math
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import ml_collections
import numpy as np

from rum_jax import checks
from rum_jax.registry import Registry
from rum_jax.training import engine, plans
from rum_jax.training.config import validate_recipe
from rum_jax.training.state import TrainState

STREAMS = ("retain", "forget", "train")
Positions = Union[np.ndarray, Sequence[np.ndarray]]
History = Dict[str, list]


@dataclasses.dataclass
class Report:
  """What a method's run leaves for the pipeline to write into the run's folder (a library
  module writes no reports): `tables[stem] = (JSON object, CSV rows)` for <stem>.json and
  <stem>.csv, `histories[folder] = (title, history)` for <folder>/history.csv and curves.png.
  RUM reports its steps this way."""
  tables: Dict[str, Tuple[Any, List[Dict[str, Any]]]] = dataclasses.field(default_factory=dict)
  histories: Dict[str, Tuple[str, History]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MethodContext:
  """What a method needs to run on every model of the runner at once.

  setup: data, model and seed runner (`training.setup.Setup`).
  settings: the method's settings (its `settings_of`); those of `Method.swept` are defaults
    that `per_model` may override.
  forget / retain: one array of train-split positions per (padded) model.
  base_seed: seeds the batch order, random labels and samples.
  run_dir: the run's folder (checkpoints go in run_dir/checkpoints); None: no checkpoints.
  saliency_path: where SalUn caches |grad| of the forget loss (None: not cached).
  label: the name shown in progress logs.
  seed_ids: the seed of every (padded) model: its batch order and keys are those of that
    seed (a sweep of G settings x S seeds runs G models of each seed); None: model m is seed m.
  per_model: the value of every swept setting for every (padded) model, float [P].
  report: where the run leaves tables and histories for the pipeline (None: not kept).
  """
  setup: Any
  settings: Optional[ml_collections.ConfigDict]
  forget: List[np.ndarray]
  retain: List[np.ndarray]
  base_seed: int = 0
  run_dir: Optional[str] = None
  saliency_path: Optional[str] = None
  label: str = ""
  seed_ids: Optional[Tuple[int, ...]] = None
  per_model: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  report: Optional[Report] = None

  def seed_of(self, model: int) -> int:
    """The seed whose batch order, keys and samples model `model` uses."""
    return model if self.seed_ids is None else self.seed_ids[model]

  def value(self, key: str) -> np.ndarray:
    """A swept setting's value for every model (float32 [P]), e.g. for a state's aux["hp"]."""
    return np.asarray(self.per_model[key], np.float32)

  @property
  def num_classes(self) -> int:
    return self.setup.dataset.num_classes

  @property
  def checkpoint_dir(self) -> Optional[str]:
    return os.path.join(self.run_dir, "checkpoints") if self.run_dir else None

  def positions(self, stream: str) -> List[np.ndarray]:
    if stream == "retain":
      return self.retain
    if stream == "forget":
      return self.forget
    if stream == "train":
      return [np.concatenate([r, f]) for r, f in zip(self.retain, self.forget)]
    raise ValueError(f"unknown stream {stream!r}; valid choices: {', '.join(STREAMS)}")

  def steps_per_epoch(self, stream: str) -> int:
    return math.ceil(max(len(p) for p in self.positions(stream)) / self.settings.batch_size)

  def chunk_plan(self, positions: Sequence[np.ndarray], chunk_size: int, what: str) -> Dict[str, np.ndarray]:
    """Every model's positions cut into chunks [P, C, B] (for set-wide gradients)."""
    rngs = [plans.epoch_rng(self.base_seed, self.seed_of(m), 0, what) for m in range(len(positions))]
    return plans.stream_plan(positions, chunk_size, rngs)


@dataclasses.dataclass(frozen=True)
class Phase:
  """One loss the engine runs over its streams every epoch (or only while epoch < active_epochs)."""
  name: str
  streams: Tuple[str, ...]
  loss_fn: engine.LossFn
  grad_transform: Optional[engine.GradTransform] = None
  active_epochs: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Check:
  """A numeric setting's valid range: low <= value <= high (low < value if low_open)."""
  key: str
  low: float = 0.0
  high: float = math.inf
  integer: bool = False
  low_open: bool = False

  def __call__(self, settings: ml_collections.ConfigDict, prefix: str) -> None:
    checks.require(self.key in settings, f"config.{prefix}.{self.key} is missing")
    value = settings[self.key]
    if not self.integer:
      checks.number(value, f"{prefix}.{self.key}", self.low, self.high, self.low_open)
    else:
      checks.require(checks.is_int(value) and self.low <= value <= self.high,
                     f"config.{prefix}.{self.key} must be an integer in [{self.low:g}, {self.high:g}], got {value!r}")


class ScoreSource(NamedTuple):
  """A score file a run reads: its path, the array in it ('' = memorization), and whether it
  holds one-run proxies (computed by train.py's proxies mode) rather than memorization."""
  path: str
  key: str
  proxies: bool


RunFn = Callable[[MethodContext, Optional[TrainState]], Tuple[TrainState, History]]


@dataclasses.dataclass(frozen=True)
class Method:
  """An unlearning method: how it runs and what it reads from the config (module docstring).

  sgd_recipe: its settings include an SGD recipe (epochs, batch_size, lr, momentum,
    weight_decay) to validate.
  swept: the numeric settings that may differ between the models of one program (read from
    `state.aux["hp"]` and, for "lr", the optimizer state), so a grid of settings x seeds is one
    compiled program; the others (epochs, batch sizes, ...) set shapes and loop lengths.
  from_scratch: it ignores the given models (the retrain reference): not a step of RUM or
    a method of a study.
  composite: it runs other methods (RUM): not a step of RUM either.
  about: one line for the listing of methods (`rum_jax.discovery`): its rule and paper.
  phases / prepare: of training methods (`runners.train_run`); apply: of one-shot ones.
  """
  name: str
  run: RunFn
  checks: Tuple[Check, ...] = ()
  sgd_recipe: bool = True
  swept: Tuple[str, ...] = ()
  from_scratch: bool = False
  composite: bool = False
  phases: Optional[Callable[[ml_collections.ConfigDict, MethodContext], List[Phase]]] = None
  prepare: Optional[Callable[[MethodContext, TrainState], Dict[str, Any]]] = None
  apply: Optional[Callable[[MethodContext, TrainState], TrainState]] = None
  custom_settings: Optional[Callable[[ml_collections.ConfigDict, str], ml_collections.ConfigDict]] = None
  custom_folder: Optional[Callable[[ml_collections.ConfigDict], str]] = None
  custom_validate: Optional[Callable[[ml_collections.ConfigDict], None]] = None
  custom_sources: Optional[Callable[[ml_collections.ConfigDict, str], List[ScoreSource]]] = None
  about: str = ""

  def settings_of(self, config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """The settings that decide this method's result."""
    if self.custom_settings is not None:
      return self.custom_settings(config, workdir)
    return config.unlearn[self.name]

  def folder_of(self, config: ml_collections.ConfigDict) -> str:
    """Its folder name under methods/: its own rule (RUM's plan name), else
    config.unlearn.folder if given (two runs of one method in a work directory), else its name."""
    if self.custom_folder is not None:
      return self.custom_folder(config)
    return config.unlearn.get("folder", "") or self.name

  def validate(self, unlearn: ml_collections.ConfigDict) -> None:
    """Raises checks.ConfigError if config.unlearn is wrong for this method."""
    if self.custom_validate is not None:
      self.custom_validate(unlearn)
      return
    validate_settings(self, unlearn[self.name], f"unlearn.{self.name}")

  def score_sources(self, config: ml_collections.ConfigDict, workdir: str) -> List[ScoreSource]:
    """The score files this method reads (beyond the forget set's)."""
    return self.custom_sources(config, workdir) if self.custom_sources is not None else []

  @property
  def is_step_method(self) -> bool:
    """Unlearns from given models by itself (a step of RUM, a method of a study)."""
    return not (self.from_scratch or self.composite)


UNLEARNING_METHODS: Registry[Method] = Registry("unlearning method")


def register(method: Method) -> Method:
  """Adds `method` to UNLEARNING_METHODS under its name."""
  return UNLEARNING_METHODS.register(method.name)(method)


def step_methods() -> List[str]:
  """Names of the methods that unlearn from given models by themselves, sorted."""
  return [m for m in UNLEARNING_METHODS.names() if UNLEARNING_METHODS.get(m).is_step_method]


def validate_settings(method: Method, settings: ml_collections.ConfigDict, prefix: str) -> None:
  """One method's settings at config.<prefix>: its SGD recipe, then the ranges of its checks."""
  if method.sgd_recipe:
    validate_recipe(settings, prefix)
  for check in method.checks:
    check(settings, prefix)


# ---------------------------------------------------------------------------------------
# unlearn(): any method, all seeds.


def per_seed(positions: Positions, runner: Any, what: str) -> List[np.ndarray]:
  """One int64 array per padded seed, from one shared array or one array per seed."""
  if (isinstance(positions, np.ndarray) and positions.ndim == 1) or np.ndim(positions[0]) == 0:
    positions = [positions] * runner.num_models
  out = [np.asarray(p, np.int64) for p in positions]
  if len(out) == runner.num_models:
    out += [out[0]] * (runner.padded_models - runner.num_models)
  if len(out) != runner.padded_models:
    raise ValueError(f"{what} positions: got {len(out)} arrays for {runner.num_models} seeds")
  return out


def check_sets(forget: List[np.ndarray], retain: List[np.ndarray], num_train: int) -> None:
  """Per seed: non-empty, distinct, in-range and disjoint forget and retain positions."""
  for s, (f, r) in enumerate(zip(forget, retain)):
    for name, p in (("forget", f), ("retain", r)):
      if p.ndim != 1:
        raise ValueError(f"the {name} set of seed {s} must be a 1-D array of positions; got shape {p.shape}")
      if not len(p):
        raise ValueError(f"the {name} set of seed {s} is empty; an unlearning run needs a "
                         f"non-empty forget set and a non-empty retain set")
      if p.min() < 0 or p.max() >= num_train or len(np.unique(p)) != len(p):
        raise ValueError(f"the {name} set of seed {s} must hold distinct train-split positions "
                         f"in [0, {num_train})")
    if np.intersect1d(f, r).size:
      raise ValueError(f"forget and retain sets of seed {s} overlap at "
                       f"{np.intersect1d(f, r)[:5].tolist()}...; the retain set excludes the forget set")


def swept_values(method: Method, settings: Optional[ml_collections.ConfigDict], runner: Any,
                 per_model: Optional[Dict[str, Sequence[float]]]) -> Dict[str, np.ndarray]:
  """Every swept setting of `method` for every padded model: per_model's values (one per real
  model; padding models copy model 0's), else the setting's one value."""
  per_model = dict(per_model or {})
  unknown = sorted(set(per_model) - set(method.swept))
  if unknown:
    raise ValueError(f"{method.name} cannot vary {unknown} between the models of one program; it can vary: "
                     f"{', '.join(method.swept) or 'nothing'}")
  out = {}
  for key in method.swept:
    values = np.asarray(per_model[key] if key in per_model else [settings[key]] * runner.num_models, np.float64)
    if values.shape != (runner.num_models,):
      raise ValueError(f"per-model {key}: got {values.shape[0] if values.ndim else 1} values for "
                       f"{runner.num_models} models")
    out[key] = runner.pad(values)
  return out


def context(setup: Any, method_name: str, settings: Optional[ml_collections.ConfigDict],
            forget_positions: Positions, retain_positions: Positions, *, base_seed: int = 0,
            run_dir: Optional[str] = None, saliency_path: Optional[str] = None,
            name: Optional[str] = None, seed_ids: Optional[Sequence[int]] = None,
            per_model: Optional[Dict[str, Sequence[float]]] = None,
            report: Optional[Report] = None) -> MethodContext:
  """The checked MethodContext of one call of `unlearn`."""
  runner = setup.runner
  if seed_ids is not None:
    seed_ids = tuple(int(s) for s in runner.pad(np.asarray(seed_ids)))
  ctx = MethodContext(setup, settings, per_seed(forget_positions, runner, "forget"),
                      per_seed(retain_positions, runner, "retain"), base_seed, run_dir, saliency_path,
                      name or method_name, seed_ids,
                      swept_values(UNLEARNING_METHODS.get(method_name), settings, runner, per_model), report)
  check_sets(ctx.forget, ctx.retain, len(setup.dataset.train))
  return ctx


def unlearn(setup: Any, states: Optional[TrainState], method_name: str,
            settings: Optional[ml_collections.ConfigDict], forget_positions: Positions,
            retain_positions: Positions, *, base_seed: int = 0, run_dir: Optional[str] = None,
            saliency_path: Optional[str] = None, name: Optional[str] = None,
            seed_ids: Optional[Sequence[int]] = None,
            per_model: Optional[Dict[str, Sequence[float]]] = None,
            report: Optional[Report] = None) -> Tuple[TrainState, History]:
  """Unlearns the forget set from every seed's model at once with any registered method.

  Args:
    setup: data, model and seed runner (`training.setup.Setup`).
    states: host per-seed states to start from (leading axis num_seeds or padded_models);
      ignored by methods that train from scratch (`retrain`).
    method_name: a name in `UNLEARNING_METHODS` (an unknown one lists the valid names).
    settings: the method's settings (its `settings_of`); for `retrain` the training
      settings (None: `setup.config.train`).
    forget_positions / retain_positions: train-split positions, one array shared by all seeds
      or one per seed; disjoint and non-empty.
    base_seed: seeds the batch order, random labels and the Fisher sample.
    run_dir: resume from / checkpoint into this folder (None: no checkpoints).
    saliency_path: SalUn's cache of forget-loss gradient magnitudes (None: not cached).
    name: for the progress log (default: the method name).
    seed_ids: the seed of every model (batch order, keys): a sweep runs several models of
      one seed; None: model m is seed m.
    per_model: values of the method's `swept` settings, one per model (the others take the
      value in `settings`): a grid of settings x seeds as one program.
    report: collects the tables and histories the run leaves for the pipeline to write (RUM's
      steps); None: not kept.

  Returns:
    (host states of the runner's num_seeds models with `aux` emptied, history: metric ->
    per-epoch lists of per-seed means; empty for one-shot methods).

  Raises:
    training.loop.NonFiniteLossError: the method diverged; the last good epoch stays in run_dir.
  """
  method = UNLEARNING_METHODS.get(method_name)
  ctx = context(setup, method_name, settings, forget_positions, retain_positions, base_seed=base_seed,
                run_dir=run_dir, saliency_path=saliency_path, name=name, seed_ids=seed_ids, per_model=per_model,
                report=report)
  return method.run(ctx, states)
