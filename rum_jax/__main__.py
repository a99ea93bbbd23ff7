"""python -m rum_jax <command> [flags]: the command lines of an installed rum-jax (rum_jax.cli).

  python -m rum_jax train|unlearn|continual|evaluate --config=configs/<name>.py --workdir=<dir>
  python -m rum_jax list     what there is to choose: methods, data sets, models, configs, ...
  python -m rum_jax leaderboard --workdirs=a,b --output=leaderboard.md   one table over many runs
"""
import sys

from rum_jax import cli

COMMANDS = ("train", "unlearn", "continual", "evaluate", "list", "leaderboard")


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    sys.stderr.write(f"error: name a command: python -m rum_jax {{{'|'.join(COMMANDS)}}} [flags] "
                     "(e.g. python -m rum_jax unlearn --config=configs/rum_digits.py --workdir=runs/rum)\n")
    sys.exit(2)
  command = sys.argv[1]
  cli.main(command, [f"rum_jax {command}"] + sys.argv[2:])


if __name__ == "__main__":
  main()
