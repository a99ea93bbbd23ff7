"""The metric interface and registry: every number a table, a sweep or a study reports.

A metric is a `Metric(name, compute, needs, ...)` entry of `METRICS`, found by the name users
type in a config (`config.evaluation.metrics`, `config.sweep.select_by`,
`config.audit.metrics`). `compute(outputs)` returns one value per seed (a model bank
counts as one), from what the metric `needs`:

  'train', 'val', 'test'   the logits of every seed's model on that split (`ModelOutputs`)
  'reference'              the same of the model retrained without the forget set
  'banks'                  banks of unlearned and retrained models (`BankOutputs`)
  'shadow'                 shadow models for U-LiRA (`BankOutputs.shadow`)
  'matrices'               a continual run's per-task accuracies after every step of its task
                           sequence (`continual.SequenceOutputs`)

A metric asks its inputs for other metrics by name (`outputs.value('forget_accuracy')`,
`outputs.reference.value(...)`), computed once per inputs and reused, so ToW reuses the split
accuracies and ToW-MIA the SVC attack rather than computing them again.

Adding a metric is one file in this package (a `register(Metric(...))` call; the package
imports every module in it) plus its name in the config's list (docs/extending.md).
"""
import dataclasses
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

import numpy as np

from rum_jax.registry import Registry

LOGIT_INPUTS = frozenset({"train", "val", "test", "reference"})
BANK_INPUTS = frozenset({"banks", "shadow"})
SEQUENCE_INPUTS = frozenset({"matrices"})
INPUTS = LOGIT_INPUTS | BANK_INPUTS | SEQUENCE_INPUTS
UNITS = ("%", "")  # '%': a fraction in [0, 1] shown in percent; '': shown as it is


@dataclasses.dataclass(frozen=True)
class Metric:
  """One reported number.

  Attributes:
    name: the key in configs, records and files (e.g. 'tow').
    compute: outputs -> per-seed values [S] (floats).
    needs: which inputs it reads (module docstring); decides which pipeline computes it.
    display: the column header of tables.
    unit: '%' (a fraction, shown x100 with one decimal) or '' (shown with three decimals).
    higher_is_better: True, False, or None where neither is (e.g. an attack's efficacy,
      which should match retraining's); a sweep chooses by it.
    description: one line for docs and errors.
    pooled: computed once from every seed's inputs together (e.g. CL-ToW of the seed-averaged
      accuracy matrices, as the thesis reports it): one value per run, not per seed.
  """
  name: str
  compute: Callable[[Any], Sequence[float]]
  needs: FrozenSet[str]
  display: str
  unit: str = "%"
  higher_is_better: Optional[bool] = True
  description: str = ""
  pooled: bool = False

  def __post_init__(self):
    unknown = set(self.needs) - INPUTS
    if unknown or not self.needs:
      raise ValueError(f"metric {self.name!r} needs {sorted(self.needs)}; valid inputs: "
                       f"{', '.join(sorted(INPUTS))}")
    if self.unit not in UNITS:
      raise ValueError(f"metric {self.name!r} has unit {self.unit!r}; valid units: {UNITS}")

  @property
  def of_banks(self) -> bool:
    """Computed from banks of models (the audit pipeline), not from one run's logits."""
    return bool(set(self.needs) & BANK_INPUTS)

  @property
  def kind(self) -> str:
    """What it is computed from, so which pipeline computes it: 'banks' (the audit
    pipeline), 'sequence' (a continual run) or 'logits' (one run's models: the evaluation)."""
    return "banks" if self.of_banks else "sequence" if set(self.needs) & SEQUENCE_INPUTS else "logits"

  @property
  def scale(self) -> float:
    return 100.0 if self.unit == "%" else 1.0

  @property
  def digits(self) -> int:
    return 1 if self.unit == "%" else 3


METRICS: Registry[Metric] = Registry("metric")
# What an unlearning work directory's evaluation computes unless config.evaluation.metrics says
# otherwise (RUM's table: accuracies, the SVC attack's efficacy with ToW-MIA's feature, the loss
# attack, ToW, ToW-MIA).
DEFAULT_METRICS = ("forget_accuracy", "retain_accuracy", "val_accuracy", "test_accuracy", "mia_confidence",
                   "loss_mia_auc", "tow", "tow_mia")
# Of banks (config.audit.metrics): the challenge score and U-LiRA.
DEFAULT_BANK_METRICS = ("forget_score", "final_score", "ulira_auc", "ulira_balanced_accuracy",
                        "ulira_tpr_at_fpr_0.01", "ulira_tpr_at_fpr_0.001")


def register(metric: Metric) -> Metric:
  return METRICS.register(metric.name)(metric)


def check_names(names: Sequence[str], where: str, banks: Optional[bool] = None,
                kind: Optional[str] = None) -> Tuple[str, ...]:
  """The registered metrics `names` (in order), or a ValueError naming the valid ones.

  banks: True/False restricts to metrics of banks / of one run's logits (None: any).
  kind: restricts to metrics of that `Metric.kind` ('logits', 'banks', 'sequence').
  """
  if kind is None and banks is not None:
    kind = "banks" if banks else "logits"
  valid = [n for n in METRICS.names() if kind is None or METRICS.get(n).kind == kind]
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ValueError(f"{where} has unknown metric(s) {unknown}; valid choices: {', '.join(valid)}")
  return tuple(names)


class _Values:
  """The memo of `value(name)`: each metric computed once per inputs."""

  def __post_init__(self):
    self._values: Dict[str, np.ndarray] = {}

  def value(self, name: str) -> np.ndarray:
    """Per-seed values [S] of metric `name` on these inputs (computed once)."""
    if name not in self._values:
      metric = METRICS.get(name)
      values = np.asarray(metric.compute(self), dtype=np.float64)
      expected = 1 if metric.pooled else self.num_seeds
      if values.shape != (expected,):
        raise ValueError(f"metric {name!r} returned shape {values.shape}; it must give "
                         + ("one value (pooled)" if metric.pooled else f"one value per seed ({self.num_seeds})"))
      self._values[name] = values
    return self._values[name]

  def prefill(self, name: str, values: Sequence[float]) -> None:
    """Values of `name` known already (read from a cache): not computed again."""
    self._values[name] = np.asarray(values, dtype=np.float64)

  def values(self, names: Sequence[str]) -> Dict[str, np.ndarray]:
    return {n: self.value(n) for n in names}


@dataclasses.dataclass
class ModelOutputs(_Values):
  """Every seed's logits of one model (a method's run, the retrain reference, the original).

  Attributes:
    logits: split ('train', 'val', 'test') -> [S, N_split, C].
    labels: split -> [N_split].
    forget: per seed, the train positions of its forget set.
    retain: per seed, the train positions of its retain set (None: the rest of the train split).
    reference: the retrain reference's outputs (for ToW, ToW-MIA); None when there is none.
    options: settings of the attacks: 'num_shadow' (SVC shadow members), 'seed' (seed s
      draws with seed + s).
  """
  logits: Mapping[str, np.ndarray]
  labels: Mapping[str, np.ndarray]
  forget: Sequence[np.ndarray]
  reference: Optional["ModelOutputs"] = None
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  retain: Optional[Sequence[np.ndarray]] = None

  def __post_init__(self):
    super().__post_init__()
    self.num_seeds = len(next(iter(self.logits.values())))
    if len(self.forget) < self.num_seeds:
      raise ValueError(f"the forget set has {len(self.forget)} rows but the logits {self.num_seeds} seeds")
    if self.retain is None and "train" in self.logits:
      num_train = self.logits["train"].shape[1]
      self.retain = [np.setdiff1d(np.arange(num_train), f) for f in self.forget[:self.num_seeds]]
    if self.reference is not None and self.reference.num_seeds != self.num_seeds:
      raise ValueError(f"the run has {self.num_seeds} seeds but its retrain reference {self.reference.num_seeds}")

  def need_reference(self, metric: str) -> "ModelOutputs":
    if self.reference is None:
      raise ValueError(f"metric {metric!r} compares with the retrain reference, and these outputs have none")
    return self.reference


@dataclasses.dataclass
class BankOutputs(_Values):
  """What the audit pipeline measured of one method's banks (one 'seed': the bank).

  Attributes:
    unlearned: arrays of the N models unlearned from the original: 'forget_confidence'
      [N, |F|], 'retain_accuracy', 'test_accuracy' [N].
    retrained: the same of the N models retrained without the forget set.
    shadow: U-LiRA's inputs, or None: 'confidence' [K, N_train] of the shadow models after
      unlearning, 'forget_mask' [K, N_train] (what each unlearned), 'held_out' [K, N_train]
      (what each never saw), 'pool' [N_train] bool (the examples scored).
    options: 'centring' of the Gaussians ('mean' or 'median'), 'fixed_variance'.
  """
  unlearned: Optional[Mapping[str, np.ndarray]] = None
  retrained: Optional[Mapping[str, np.ndarray]] = None
  shadow: Optional[Mapping[str, np.ndarray]] = None
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  num_seeds: int = 1

  def need(self, what: str, metric: str) -> Mapping[str, np.ndarray]:
    got = getattr(self, what)
    if got is None:
      raise ValueError(f"metric {metric!r} needs the {what} bank(s), which this run did not make")
    return got

  def cached(self, key: str, make: Callable[[], Any]) -> Any:
    """An intermediate several metrics share (the epsilons, the U-LiRA curve), made once."""
    store = self.__dict__.setdefault("_shared", {})
    if key not in store:
      store[key] = make()
    return store[key]


def compute(outputs: _Values, names: Sequence[str]) -> Dict[str, np.ndarray]:
  """{name: per-seed values} of every metric in `names` on `outputs`."""
  return outputs.values(check_names(names, "the metric list"))
