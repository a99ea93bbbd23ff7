"""config.continual, validated by the continual package that owns it."""
import ml_collections

from rum_jax import checks
from rum_jax.continual import buffers, methods, sequences
from rum_jax.memorization import proxies


def learn_choices() -> tuple:
  """config.continual.learn_algorithm's choices: "auto" and every learning algorithm."""
  return ("auto",) + tuple(methods.LEARN_ALGORITHMS.names())


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks config.continual (types, ranges, names) before any work starts."""
  checks.require("continual" in config, "config.continual is missing; start from configs/continual_digits.py")
  c = config.continual
  checks.require(c.algorithm in methods.METHODS, f"config.continual.algorithm {c.algorithm!r} is unknown; "
         f"valid choices: {', '.join(methods.METHODS.names())}")
  checks.require(c.learn_algorithm in learn_choices(), f"config.continual.learn_algorithm "
         f"{c.learn_algorithm!r} is unknown; valid choices: {', '.join(learn_choices())}")
  checks.require(isinstance(c.sequence, str) and c.sequence.strip() != "",
         f"config.continual.sequence must be a name ({', '.join(sequences.SEQUENCES.names())}) "
         f"or steps such as '0,1,2,-2,3'; got {c.sequence!r}")
  for key in ("epochs", "batch_size", "memories", "unlearn_memories", "agem_ref_size",
              "unlearn_batch_size", "unlearn_max_epochs"):
    checks.require(checks.is_int(c[key]) and c[key] > 0,
           f"config.continual.{key} must be a positive integer, got {c[key]!r}")
  checks.require(checks.is_int(c.classes_per_task) and c.classes_per_task >= 2,
         f"config.continual.classes_per_task must be an integer >= 2 (random labels need another "
         f"class of the task), got {c.classes_per_task!r}")
  checks.require(checks.is_int(c.num_tasks) and c.num_tasks >= 0,
         f"config.continual.num_tasks must be an integer >= 0 (0 = all classes), got {c.num_tasks!r}")
  for key in ("lr", "unlearn_lr", "eps"):
    checks.require(checks.is_number(c[key]) and c[key] > 0,
           f"config.continual.{key} must be a number > 0, got {c[key]!r}")
  for key in ("margin", "unlearn_margin", "clu_beta"):
    checks.require(checks.is_number(c[key]) and c[key] >= 0,
           f"config.continual.{key} must be a number >= 0, got {c[key]!r}")
  for key in ("learn_buffer_split", "unlearn_buffer_split", "alpha", "stop_above_chance"):
    checks.require(checks.is_number(c[key]) and 0 <= c[key] <= 1,
           f"config.continual.{key} must be a number in [0, 1], got {c[key]!r}")
  checks.require(checks.is_number(c.salun) and 0 <= c.salun < 1,
         f"config.continual.salun must be a fraction in [0, 1) (0 = off; 0.02..0.2 typical), "
         f"got {c.salun!r}")
  for key in ("learn_buffer_kind", "unlearn_buffer_kind"):
    checks.require(c[key] in buffers.BUFFER_KINDS, f"config.continual.{key} {c[key]!r} is unknown; "
           f"valid choices: {', '.join(buffers.BUFFER_KINDS)}")
  checks.require(isinstance(c.scores, str) and isinstance(c.score_key, str),
         "config.continual.scores and score_key must be strings")
  if not c.scores:
    checks.require(c.score_key in ("",) + proxies.PROXIES,
           f"config.continual.score_key {c.score_key!r} is not a one-run proxy (scores='' uses the "
           f"proxy recorded while each task is learned); valid choices: {', '.join(proxies.PROXIES)}")
  checks.require(isinstance(c.mia, bool), f"config.continual.mia must be True or False, got {c.mia!r}")


def learn_algorithm(config: ml_collections.ConfigDict) -> str:
  """config.continual.learn_algorithm, with "auto" resolved from the unlearning method."""
  c = config.continual
  if c.learn_algorithm == "auto":
    return methods.METHODS.get(c.algorithm).learn_algorithm
  return c.learn_algorithm
