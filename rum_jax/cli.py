"""The command lines: flags -> one config -> `runtime.main` -> one command function.

  python train.py ...      rum-jax-train ...      python -m rum_jax train ...
  python unlearn.py ...    rum-jax-unlearn ...    python -m rum_jax unlearn ...
  python continual.py ...  rum-jax-continual ...  python -m rum_jax continual ...
  python evaluate.py ...   rum-jax-evaluate ...   python -m rum_jax evaluate ...
  rum-jax-list             python -m rum_jax list  (rum_jax.discovery: what there is to choose)
  python leaderboard.py .. rum-jax-leaderboard ..  python -m rum_jax leaderboard ..  (many work directories)

`--config=<file>[:<arg>]` and its `--config.<field>=<value>` overrides are read here, in a
flag set of their own (`load_config`), so every mistake in them (a field that does not exist,
a value of the wrong type, a config file that is not there) is one `error:` line naming the
fix, before absl parses the other flags. A `--config` path that does not exist from the
current directory but names a shipped config (`configs/digits.py`, `digits.py`, `digits`) is
that file, so an installed rum-jax runs its configs from any directory.
"""
import ast
import dataclasses
import difflib
import os
import re
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from rum_jax import checks


@dataclasses.dataclass(frozen=True)
class CommandLine:
  """One command line: its function in `rum_jax.commands`, default config and --workdir help."""
  function: str
  default_config: Optional[str]
  workdir_help: str
  default_workdir: Optional[str]


COMMAND_LINES = {
    "train": CommandLine("train", "configs/digits.py", "Where checkpoints and results go.", "runs/digits"),
    "unlearn": CommandLine("unlearn", "configs/digits.py", "Where models and results go.", "runs/digits_unlearn"),
    "continual": CommandLine("continual", "configs/continual_digits.py", "Where checkpoints and results go.",
                             "runs/continual_digits"),
    "evaluate": CommandLine("evaluate", None, "An unlearning work directory, one of its runs (methods/<name>), "
                            "or the study's work directory.", None),
}
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)(=.*)?$")
_CONFIG = re.compile(r"^--?config(=.*)?$")
# Sections whose fields are not fixed in the config file: a data set loader's options (e.g. the
# npz loader's `path`, TFDS's `name`), which the data package checks against the loader's
# arguments. An override of a field they lack adds it.
OPEN_SECTIONS = ("data.options",)


def shipped_configs_dir() -> str:
  """The folder of the configs that come with rum-jax (a clone's configs/, or the installed
  package rum_jax.configs)."""
  from rum_jax import configs  # pylint: disable=import-outside-toplevel
  return os.path.abspath(configs.__path__[0])


def resolve_config_path(path: str) -> str:
  """`path` if it exists, else the shipped config it names; ConfigError when neither exists."""
  if os.path.exists(path):
    return path
  head, name = os.path.split(path)
  shipped = shipped_configs_dir()
  if head in ("", "configs"):
    candidate = os.path.join(shipped, name if name.endswith(".py") else name + ".py")
    if os.path.exists(candidate):
      return candidate
  names = sorted(f[:-3] for f in os.listdir(shipped) if f.endswith(".py") and not f.startswith("_"))
  raise checks.ConfigError(
      f"the config file {path} does not exist (from {os.getcwd()}); give a config file's path, or one "
      f"of the shipped configs as --config=configs/<name>.py: {', '.join(names)} (rum-jax-list describes them)")


def split_argv(argv: Sequence[str]) -> Tuple[Optional[str], List[str], List[str]]:
  """(the --config value or None, the --config.* overrides as given, every other argument)."""
  config, overrides, rest = None, [], [argv[0]]
  args = list(argv[1:])
  while args:
    arg = args.pop(0)
    if _CONFIG.match(arg):
      config = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else "")
    elif _OVERRIDE.match(arg):
      if "=" not in arg and args and not args[0].startswith("-"):
        arg = f"{arg}={args.pop(0)}"  # --config.a.b value
      overrides.append(arg)
    else:
      rest.append(arg)
  return config, overrides, rest


def _missing_field(config: ml_collections.ConfigDict, path: str) -> Optional[str]:
  """The message for an override of a field the config lacks (None when it has it)."""
  node, walked = config, []
  for key in path.split("."):
    where = ".".join(walked)
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      return f"the config has no field {path}: config.{where} is a value ({node!r}), not a section"
    if key not in node:
      if where in OPEN_SECTIONS and key == path.split(".")[-1]:
        return None
      keys = list(node.keys())
      close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6) or [
          k for k in keys if len(k) > 1 and (key.startswith(k) or k.startswith(key))][:1]
      prefix = f"{where}." if where else ""
      hint = (f"did you mean {prefix}{close[0]}?" if close else
              f"{'config.' + where if where else 'the config'} has: {', '.join(keys)}")
      return f"the config has no field {path} ({hint})"
    node, walked = node[key], walked + [key]
  return None


def _field_value(config: ml_collections.ConfigDict, path: str) -> Any:
  node = config
  for key in path.split("."):
    node = node[key]
  return node


def _type_message(config: ml_collections.ConfigDict, override: str) -> str:
  """A value that does not parse as its field's type: what the field holds, what was given."""
  match = _OVERRIDE.match(override)
  path, value = match.group(2), match.group(3)
  current = _field_value(config, path)
  kinds = {bool: "True or False", int: "an integer", float: "a number", tuple: "a tuple such as (1, 2)",
           str: "a string"}
  kind = next((k for t, k in kinds.items() if type(current) is t), type(current).__name__)  # pylint: disable=unidiomatic-typecheck
  return (f"config.{path} takes {kind} (it is {current!r} now), got {(value or '=')[1:]!r}: "
          f"e.g. --config.{path}={current!r}")


def _new_open_fields(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> dict:
  """{path: value} of the overrides that add a field to an open section (`OPEN_SECTIONS`); a
  value is read as a Python literal where it is one (0.1, True, (1, 2)), else as a string."""
  fields = {}
  for override in overrides:
    no, path, value = _OVERRIDE.match(override).groups()
    if path.rpartition(".")[0] in OPEN_SECTIONS and path.rpartition(".")[2] not in _field_value(
        config, path.rpartition(".")[0]):
      text = (value or "=")[1:]
      try:
        fields[path] = False if no else True if value is None else ast.literal_eval(text)
      except (ValueError, SyntaxError):
        fields[path] = text
  return fields


def _split_commas(config: ml_collections.ConfigDict, base: ml_collections.ConfigDict,
                  overrides: Sequence[str]) -> None:
  """A list field given as `a,b` (as the sweep flags take values) is the tuple ('a', 'b'), not
  the one string 'a,b' that ml_collections makes of it."""
  for override in overrides:
    path = _OVERRIDE.match(override).group(2)
    value = _field_value(config, path)
    if (isinstance(_field_value(base, path), tuple) and len(value) == 1 and isinstance(value[0], str)
        and "," in value[0]):
      section, _, key = path.rpartition(".")
      (_field_value(config, section) if section else config)[key] = tuple(
          v.strip() for v in value[0].split(","))


def _load_base(value: str) -> ml_collections.ConfigDict:
  """The config a --config value names, without overrides (a file that fails to load: ConfigError)."""
  argv = ["rum_jax", f"--config={value}"]
  try:
    own = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", value, flag_values=own, sys_argv=argv)
    own(argv)
    config = holder.value
    config.get("mode")  # a file that failed to load raises its error on first use
  except Exception as err:  # pylint: disable=broad-except  (any error of the user's file is one line)
    last = [line for line in str(err).splitlines() if line.strip()]
    raise checks.ConfigError(f"the config file {value} fails to load: {type(err).__name__}: "
                             f"{last[-1].strip() if last else ''}") from err
  return config


def load_config(argv: Sequence[str], default: Optional[str]) -> Tuple[Optional[ml_collections.ConfigDict],
                                                                      List[str]]:
  """(the config that --config and its overrides describe, the other arguments).

  Every mistake is a ConfigError whose message says what to fix; None when neither --config
  nor `default` names a config (evaluate.py on finished runs).
  """
  given, overrides, rest = split_argv(argv)
  value = given if given is not None else default
  if value is None:
    if overrides:
      raise checks.ConfigError(f"{overrides[0]} overrides a config, but no --config was given: add "
                               "--config=<file> (e.g. --config=configs/study_digits.py)")
    return None, rest
  path, colon, arg = value.partition(":")
  value = resolve_config_path(path) + colon + arg
  base = _load_base(value)
  for override in overrides:
    message = _missing_field(base, _OVERRIDE.match(override).group(2))
    if message:
      raise checks.ConfigError(message)
  added = _new_open_fields(base, overrides)
  overrides = [o for o in overrides if _OVERRIDE.match(o).group(2) not in added]
  own = flags.FlagValues()
  argv = [argv[0], f"--config={value}", *overrides]
  try:
    holder = config_flags.DEFINE_config_file("config", value, flag_values=own, sys_argv=argv)
    own(argv)
    config = holder.value
    with config.unlocked():
      for path, field in added.items():
        section, _, key = path.rpartition(".")
        _field_value(config, section)[key] = field
    _split_commas(config, base, overrides)
    return config, rest
  except flags.IllegalFlagValueError as err:
    # The override absl names (the last of several of one field may be the bad one).
    bad = next((o for o in overrides if f"flag {o}:" in str(err)), None) or next(
        (o for o in reversed(overrides) if o.split("=", 1)[0] in str(err)), None)
    raise checks.ConfigError(_type_message(base, bad) if bad else " ".join(str(err).split())) from err
  except (flags.Error, ValueError, TypeError, KeyError, AttributeError) as err:
    raise checks.ConfigError(" ".join(str(err).split())) from err


def _fail(message: str) -> None:
  sys.stderr.write(f"error: {message}\n")
  sys.exit(1)


def _parse_flags(args: List[str]) -> List[str]:
  """absl's flag parsing, a bad flag failing in one line (app.run's flags_parser)."""
  try:
    return flags.FLAGS(args)
  except flags.Error as err:
    _fail(f"{' '.join(str(err).split())} (--helpfull lists the flags)")


def leaderboard_main(argv: Sequence[str]) -> None:
  """leaderboard.py --workdirs=a,b [--output=leaderboard.md] [--metrics=tow,...] [--pool]."""
  main_module = sys.argv[0]
  workdirs = flags.DEFINE_list("workdirs", None, "Work directories (or folders of them, or record files), "
                               "comma-separated.", required=True, module_name=main_module)
  output = flags.DEFINE_string("output", "leaderboard.md", "The markdown file to write (a name ending in .md); "
                               "the records it was made from are written beside it, the same name ending in .csv.",
                               module_name=main_module)
  metrics = flags.DEFINE_list("metrics", [], "Metrics to show, by name (default: every metric recorded).",
                              module_name=main_module)
  pool = flags.DEFINE_bool("pool", False, "Pool the seeds of runs of one recipe (settings, forget set, original "
                           "models) found in several work directories into one row; the table says what it "
                           "pooled. Without it such runs are refused.", module_name=main_module)

  def run(_):
    from rum_jax import commands, runtime  # pylint: disable=import-outside-toplevel
    runtime.main(lambda: print(commands.leaderboard(workdirs.value, output.value, metrics.value, pool.value)))

  app.run(run, argv=list(argv), flags_parser=_parse_flags)


def main(command: str, argv: Optional[Sequence[str]] = None) -> None:
  """Runs command line `command` ("train", "unlearn", "continual", "evaluate", "list" or "leaderboard")."""
  argv = list(sys.argv if argv is None else argv)
  # The library is imported once the flags are read, so a mistake in them is reported at once.
  if command == "list":
    from rum_jax import discovery  # pylint: disable=import-outside-toplevel
    discovery.main(argv)
    return
  if command == "leaderboard":
    leaderboard_main(argv)
    return
  line = COMMAND_LINES[command]
  argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
  help_only = any(a in ("--help", "-h", "--helpshort", "--helpfull", "-?") for a in argv)
  try:
    config, rest = load_config(argv, None if help_only else line.default_config)
  except checks.ConfigError as err:
    _fail(" ".join(str(err).split()))
  main_module = sys.argv[0]  # what --help lists the flags of
  flags.DEFINE_string("config", line.default_config, "Config file (a path, or a shipped config: "
                      "configs/<name>.py); override its fields with --config.<field>=<value>.",
                      module_name=main_module)
  workdir = flags.DEFINE_string("workdir", line.default_workdir, line.workdir_help,
                                required=line.default_workdir is None, module_name=main_module)
  overwrite = flags.DEFINE_bool("overwrite", False, "Discard results in --workdir made with another config.",
                                module_name=main_module)
  output = (flags.DEFINE_string("output", None, "Where the evaluation of finished runs goes (default: --workdir "
                                "itself); for a work directory you may only read, e.g. a colleague's.",
                                module_name=main_module) if command == "evaluate" else None)

  def run(_):
    from rum_jax import commands, runtime  # pylint: disable=import-outside-toplevel
    function = getattr(commands, line.function)
    if command == "evaluate":  # evaluate(workdir, config=None): the config is optional
      runtime.main(lambda: function(workdir.value, config, overwrite=overwrite.value, output=output.value))
    else:
      runtime.main(lambda: function(config, workdir.value, overwrite=overwrite.value))

  app.run(run, argv=rest, flags_parser=_parse_flags)


def command_line(command: str) -> Callable[[], None]:
  """The console-script entry point of `command` (pyproject.toml's [project.scripts])."""
  return lambda: main(command)


train = command_line("train")
unlearn = command_line("unlearn")
continual = command_line("continual")
evaluate = command_line("evaluate")
list_all = command_line("list")
leaderboard = command_line("leaderboard")
