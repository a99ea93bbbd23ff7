"""config.continual, validated by the continual package that owns it.

Settings shared by every method sit in config.continual itself; those the thesis varies per
learning algorithm (learning rate, buffer sizes) sit in config.continual.learn.<algorithm>,
and those it varies per continual method in config.continual.unlearn.<method>, as
config.unlearn.<method> does for the one-shot methods: the keys every method has
(`UNLEARN_KEYS`: learning rate, batch, stop rule, SalUn, loss scale; optionally
`UNLEARN_OPTIONAL_KEYS`) and the method's own options (`methods.ContinualMethod.options`,
e.g. NegGrad+'s alpha). The sections of the chosen algorithm and method are read;
`method_sections` builds them from the registries for a config file.
"""
from typing import Any, Dict

import ml_collections

from rum_jax import checks
from rum_jax.continual import buffers, methods, programs, sequences, task_sets, unlearn_step
from rum_jax.continual import mia as continual_mia
from rum_jax.evaluation.metrics import check_names
from rum_jax.memorization import proxies

LEARN_KEYS = ("lr", "memories", "unlearn_memories")
UNLEARN_KEYS = ("lr", "batch_size", "stop_above_chance", "salun", "loss_scale")
UNLEARN_OPTIONAL_KEYS = ("salun_batch", "clip_norm")


def method_sections(**shared: Any) -> ml_collections.ConfigDict:
  """config.continual.unlearn: one section per registered continual method, the `shared`
  values (every key of UNLEARN_KEYS) and the method's own options' defaults."""
  return ml_collections.ConfigDict({name: {**shared, **methods.CONTINUAL_METHODS.get(name).defaults()}
                                    for name in methods.CONTINUAL_METHODS.names()})


def learn_sections(**shared: Any) -> ml_collections.ConfigDict:
  """config.continual.learn: one section per learning algorithm with the `shared` values."""
  return ml_collections.ConfigDict({name: dict(shared) for name in methods.LEARN_ALGORITHMS.names()})


def learn_choices() -> tuple:
  """config.continual.learn_algorithm's choices: "auto" and every learning algorithm."""
  return ("auto",) + tuple(methods.LEARN_ALGORITHMS.names())


def _require_choice(c: ml_collections.ConfigDict, key: str, registry) -> None:
  checks.require(c[key] in registry, f"config.continual.{key} {c[key]!r} is unknown; valid choices: "
                 f"{', '.join(registry.names())}")


def _section(c: ml_collections.ConfigDict, group: str, name: str, required: tuple, optional: tuple = ()):
  """(where, section) of config.continual.<group>.<name>, with exactly the `required` keys
  (plus any `optional` ones) and a learning rate lr > 0."""
  where = f"config.continual.{group}.{name}"
  checks.require(name in c[group], f"{where} is missing: every {group} section needs "
                 f"{', '.join(required)} (see configs/continual_digits.py)")
  s = c[group][name]
  missing = [k for k in required if k not in s]
  unknown = sorted(set(s.keys()) - set(required) - set(optional))
  checks.require(not missing and not unknown, f"{where} must have the keys {', '.join(required)}"
                 + (f" (and optionally {', '.join(optional)})" if optional else "")
                 + f"; missing {missing}, unknown {unknown}")
  checks.require(checks.is_number(s.lr) and s.lr > 0, f"{where}.lr must be a number > 0, got {s.lr!r}")
  return where, s


def _validate_learn_section(c: ml_collections.ConfigDict, algorithm: str) -> None:
  where, s = _section(c, "learn", algorithm, LEARN_KEYS)
  for key in ("memories", "unlearn_memories"):
    checks.require(checks.is_int(s[key]) and s[key] > 0,
                   f"{where}.{key} must be a positive integer, got {s[key]!r}")


def _validate_unlearn_section(c: ml_collections.ConfigDict, method: str) -> None:
  options = methods.CONTINUAL_METHODS.get(method).options
  where, s = _section(c, "unlearn", method, UNLEARN_KEYS, UNLEARN_OPTIONAL_KEYS + tuple(o.name for o in options))
  checks.require(checks.is_int(s.batch_size) and s.batch_size > 0,
                 f"{where}.batch_size must be a positive integer, got {s.batch_size!r}")
  checks.require(checks.is_number(s.stop_above_chance) and 0 <= s.stop_above_chance <= 1,
                 f"{where}.stop_above_chance must be a number in [0, 1] (forgetting stops at unlearn-"
                 f"buffer accuracy <= chance + this), got {s.stop_above_chance!r}")
  checks.require(checks.is_number(s.salun) and 0 <= s.salun < 1,
                 f"{where}.salun must be a fraction in [0, 1) (0 = off; 0.02..0.5 in the thesis), "
                 f"got {s.salun!r}")
  checks.require(checks.is_number(s.loss_scale) and s.loss_scale > 0,
                 f"{where}.loss_scale must be a number > 0 (1 in the thesis' final runs), got {s.loss_scale!r}")
  if "salun_batch" in s:
    checks.require(s.salun_batch in buffers.SALIENCY_BATCHES, f"{where}.salun_batch {s.salun_batch!r} "
                   f"is unknown; valid choices: {', '.join(buffers.SALIENCY_BATCHES.names())}")
  for o in options:
    if o.name in s:
      checks.require(checks.is_number(s[o.name]) and o.low <= s[o.name] <= o.high,
                     f"{where}.{o.name} must be a number in [{o.low:g}, {o.high:g}] ({o.about}), got {s[o.name]!r}")
  if "clip_norm" in s:
    checks.require(checks.is_number(s.clip_norm) and s.clip_norm >= 0,
                   f"{where}.clip_norm must be a number >= 0 (the largest global norm of a forget "
                   f"step's gradient; 0 = no clipping, the thesis), got {s.clip_norm!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks config.continual (types, ranges, names) before any work starts."""
  checks.require("continual" in config, "config.continual is missing; start from configs/continual_digits.py")
  c = config.continual
  _require_choice(c, "algorithm", methods.CONTINUAL_METHODS)
  checks.require(c.learn_algorithm in learn_choices(), f"config.continual.learn_algorithm "
         f"{c.learn_algorithm!r} is unknown; valid choices: {', '.join(learn_choices())}")
  checks.require(isinstance(c.sequence, str) and c.sequence.strip() != "",
         f"config.continual.sequence must be a name ({', '.join(sequences.SEQUENCES.names())}) "
         f"or steps such as '0,1,2,-2,3'; got {c.sequence!r}")
  for key in ("epochs", "batch_size", "agem_ref_size", "unlearn_max_epochs"):
    checks.require(checks.is_int(c[key]) and c[key] > 0,
           f"config.continual.{key} must be a positive integer, got {c[key]!r}")
  checks.require(checks.is_int(c.classes_per_task) and c.classes_per_task >= 2,
         f"config.continual.classes_per_task must be an integer >= 2 (random labels need another "
         f"class of the task), got {c.classes_per_task!r}")
  _require_choice(c, "tasks", task_sets.TASK_BUILDERS)
  checks.require(checks.is_int(c.samples_per_task) and c.samples_per_task >= 0,
         f"config.continual.samples_per_task must be an integer >= 0 (training examples per "
         f"permuted or rotated task; 0 = the whole train split), got {c.samples_per_task!r}")
  checks.require(checks.is_int(c.num_tasks) and c.num_tasks >= 0,
         f"config.continual.num_tasks must be an integer >= 0 (0 = all classes), got {c.num_tasks!r}")
  checks.require(checks.is_number(c.eps) and c.eps > 0,
         f"config.continual.eps must be a number > 0, got {c.eps!r}")
  for key in ("margin", "unlearn_margin", "clu_beta"):
    checks.require(checks.is_number(c[key]) and c[key] >= 0,
           f"config.continual.{key} must be a number >= 0, got {c[key]!r}")
  for key in ("learn_buffer_split", "unlearn_buffer_split"):
    checks.require(checks.is_number(c[key]) and 0 <= c[key] <= 1,
           f"config.continual.{key} must be a number in [0, 1], got {c[key]!r}")
  for key in ("learn_buffer_kind", "unlearn_buffer_kind"):
    checks.require(c[key] in buffers.BUFFER_KINDS, f"config.continual.{key} {c[key]!r} is unknown; "
           f"valid choices: {', '.join(buffers.BUFFER_KINDS)}")
  _require_choice(c, "forget_batches", buffers.FORGET_BATCHES)
  _require_choice(c, "salun_batch", buffers.SALIENCY_BATCHES)
  _require_choice(c, "stop_mode", unlearn_step.CHECK_MODES)
  _require_choice(c, "stop_set", unlearn_step.STOP_SETS)
  checks.require(isinstance(c.scores, str) and isinstance(c.score_key, str),
         "config.continual.scores and score_key must be strings")
  if not c.scores:
    checks.require(c.score_key in ("",) + proxies.PROXIES,
           f"config.continual.score_key {c.score_key!r} is not a one-run proxy (scores='' uses the "
           f"proxy recorded while each task is learned); valid choices: {', '.join(proxies.PROXIES)}")
  checks.require(c.lr_after_forget in programs.LR_AFTER_FORGET, f"config.continual.lr_after_forget "
                 f"{c.lr_after_forget!r} is unknown; valid choices: {', '.join(programs.LR_AFTER_FORGET)}")
  _require_choice(c, "mia_protocol", continual_mia.MIA_PROTOCOLS)
  checks.require(isinstance(c.get("metrics"), (tuple, list)) and len(c.metrics) > 0,
                 "config.continual.metrics must list the metrics a run records (e.g. DEFAULT_CONTINUAL_METRICS "
                 "of rum_jax/evaluation/metrics/continual.py)")
  try:
    check_names(list(c.metrics), "config.continual.metrics", kind="sequence")
  except ValueError as err:
    raise checks.ConfigError(str(err)) from None
  for key in ("mia", "memory_batch_stats"):
    checks.require(isinstance(c[key], bool), f"config.continual.{key} must be True or False, got {c[key]!r}")
  # Every section is checked (a typo in one not used now still fails early); the chosen
  # learning algorithm's and method's must exist.
  for group, registry, check, chosen in (
      ("learn", methods.LEARN_ALGORITHMS, _validate_learn_section, learn_algorithm(config)),
      ("unlearn", methods.CONTINUAL_METHODS, _validate_unlearn_section, c.algorithm)):
    checks.require(group in c and isinstance(c[group], ml_collections.ConfigDict),
                   f"config.continual.{group} is missing: one section per name of {registry.kind}s "
                   f"(see configs/continual_digits.py)")
    for name in c[group]:
      checks.require(name in registry, f"config.continual.{group}.{name} names no {registry.kind}; "
                     f"valid choices: {', '.join(registry.names())}")
      check(c, name)
    check(c, chosen)


def learn_algorithm(config: ml_collections.ConfigDict) -> str:
  """config.continual.learn_algorithm, with "auto" resolved from the unlearning method."""
  c = config.continual
  if c.learn_algorithm == "auto":
    return methods.CONTINUAL_METHODS.get(c.algorithm).learn_algorithm
  return c.learn_algorithm


def learn_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.continual.learn.<the learning algorithm>: lr, memories, unlearn_memories."""
  return config.continual.learn[learn_algorithm(config)]


def unlearn_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.continual.unlearn.<the method>: UNLEARN_KEYS, optionally its own salun_batch and
  clip_norm, and the method's options."""
  return config.continual.unlearn[config.continual.algorithm]


def learn_settings(config: ml_collections.ConfigDict) -> methods.LearnSettings:
  """What a learning step's projection is built from."""
  c = config.continual
  return methods.LearnSettings(c.margin, c.eps, c.agem_ref_size, c.memory_batch_stats)


def forget_settings(config: ml_collections.ConfigDict) -> methods.ForgetSettings:
  """What the chosen method's factory is built from: the shared settings, its section's
  SalUn switch and loss scale, and its options (their defaults where the section has none)."""
  c, u = config.continual, unlearn_section(config)
  options: Dict[str, Any] = {o.name: u.get(o.name, o.default)
                             for o in methods.CONTINUAL_METHODS.get(c.algorithm).options}
  return methods.ForgetSettings(c.unlearn_margin, c.eps, c.agem_ref_size, c.memory_batch_stats,
                                masked=u.salun > 0, loss_scale=float(u.loss_scale),
                                options=tuple(sorted(options.items())))
