"""The command line of ``python -m zoo.recipes.train``: config names, ``--help``, ``--print_config``, overrides.

::

  python -m zoo.recipes.train --help                       # usage, every shipped config with its first line
  python -m zoo.recipes.train --config hopfield_digits --workdir /tmp/run   # a shipped config, by name
  python -m zoo.recipes.train --config my_experiment.py --workdir /tmp/run  # or any config file
  python -m zoo.recipes.train --config vit_digits --print_config            # the full config, model fields too
  python -m zoo.recipes.train --config vit_digits --workdir /tmp/run --config.model.dropout_rate=0.1

``--config`` takes a shipped config's name (``zoo.recipes.configs``, from any directory) or a path, optionally
followed by ``:ARG`` for a ``get_config(arg)`` that takes one. ``--config.KEY=VALUE`` overrides any key of the
config, including fields of the named model, task or procedure that the config file does not set (checked against
the class's fields when it is built: an unknown one is an error that lists the valid ones).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from collections.abc import Sequence

__all__ = ["config_names", "config_summaries", "main", "resolve_config", "usage"]

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def config_names() -> list[str]:
  """Names of the shipped configs (``recipes/configs/<name>.py``), sorted."""
  return sorted(f[:-3] for f in os.listdir(_CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))


def config_summaries() -> dict[str, str]:
  """``{name: first line of its docstring}`` for every shipped config (read with ``ast``; nothing is imported)."""
  out = {}
  for name in config_names():
    with open(os.path.join(_CONFIG_DIR, f"{name}.py")) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    out[name] = doc.strip().split("\n")[0].strip()
  return out


def _takes_argument(path: str) -> bool:
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "get_config":
      return bool(node.args.args or node.args.vararg)
  return False


def resolve_config(value: str) -> str:
  """``NAME[:ARG]`` or ``PATH[:ARG]`` -> ``ABSOLUTE_PATH[:ARG]``; a clear ``ValueError`` when neither exists."""
  path, sep, arg = value.partition(":")
  if not os.path.exists(path):
    name = os.path.basename(path)[:-3] if path.endswith(".py") else path
    shipped = os.path.join(_CONFIG_DIR, f"{name}.py")
    if os.sep in path.rstrip(os.sep) and not path.startswith(os.path.join("recipes", "configs")):
      shipped = ""  # an explicit path elsewhere that does not exist is not silently replaced by a shipped one
    if not shipped or not os.path.exists(shipped):
      raise ValueError(f"--config: {path!r} is neither a file nor a shipped config name. Shipped configs: "
                       f"{', '.join(config_names())}.")
    path = shipped
  path = os.path.abspath(path)
  if sep and not _takes_argument(path):
    raise ValueError(f"--config: {os.path.basename(path)}'s get_config() takes no argument, so ':{arg}' cannot be "
                     "passed to it; set fields with --config.KEY=VALUE instead.")
  return path + (sep + arg if sep else "")


def usage() -> str:
  """The ``--help`` text: the command, the flags, the configs with their first docstring lines, the keys."""
  from zoo.recipes.configs import base_config  # pylint: disable=g-import-not-at-top
  summaries = config_summaries()
  width = min(max(map(len, summaries)), 30) + 2
  keys = ", ".join(sorted(base_config().keys()))
  lines = [
      "usage: python -m zoo.recipes.train --config NAME|PATH[:ARG] --workdir DIR [--config.KEY=VALUE ...]",
      "",
      "Trains the config's model with its procedure; rerun with the same --workdir to resume.",
      "",
      "flags:",
      "  --config NAME|PATH     a shipped config's name (below) or a config file (get_config() -> ConfigDict)",
      "  --workdir DIR          checkpoints/, metrics.jsonl, tensorboard/, results.json",
      "  --config.KEY=VALUE     override a key, e.g. --config.steps=200 --config.model.dropout_rate=0.1",
      "  --print_config         print the resolved config (with the model's, task's and procedure's fields) and exit",
      "  --jax_distributed      multi-host: jax.distributed.initialize() (or --coordinator_address, --num_processes,",
      "                         --process_id); see docs/multihost.md",
      "  --helpfull             every absl flag",
      "",
      f"top-level config keys: {keys}",
      "(model, task and procedure take the fields of the class they name; optimizer: any optax alias)",
      "",
      "configs:",
  ]
  for name, line in summaries.items():
    text = f"  {name:<{width - 2}}  {line}"
    lines.append(text if len(text) <= 118 else text[:115] + "...")
  lines += ["", "Models: python -c 'import zoo; print(zoo.list_models())'. "
            "Datasets: python -c 'from zoo.recipes import data; print(data.names())'.", "Curves: "
            "tensorboard --logdir DIR, or python -m zoo.recipes.plot DIR [DIR ...]."]
  return "\n".join(lines)


def _config_value_index(argv: Sequence[str]) -> tuple[int, int] | None:
  """(index of the --config value in argv, 0 if it is '--config=V' or 1 if '--config V')."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return i, 0
    if a == "--config" and i + 1 < len(argv):
      return i + 1, 1
  return None


def prepare_argv(argv: Sequence[str]) -> list[str]:
  """Rewrites ``--config NAME`` to the config's absolute path; ``--help``/``-h`` prints :func:`usage` and exits 0."""
  argv = list(argv)
  if any(a in ("--help", "-h", "-?", "--help=true") for a in argv[1:]):
    print(usage())
    raise SystemExit(0)
  found = _config_value_index(argv)
  if found is not None:
    i, separate = found
    value = argv[i] if separate else argv[i][len("--config="):]
    try:
      resolved = resolve_config(value)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      raise SystemExit(2) from None
    argv[i] = resolved if separate else f"--config={resolved}"
  return argv


def _block_fields(config, block: str) -> dict[str, object]:
  """The fields (with defaults) of the class the config's ``model``/``task``/``procedure`` block names."""
  from zoo import registry  # pylint: disable=g-import-not-at-top
  from zoo.recipes import builders, tasks  # pylint: disable=g-import-not-at-top
  name = config[block].get("name", "")
  if block == "model":
    cls = registry._resolve(name)  # pylint: disable=protected-access
  elif block == "task":
    cls = builders.resolve(name or "classification", package=("zoo.recipes", "zoo.recipes.procedures"),
                           table=tasks.TASKS, kind="task")
  else:
    cls = builders.resolve_procedure(name or "backprop")
  if not dataclasses.is_dataclass(cls):
    return {}
  skip = {"parent", "name"} | ({"model", "task", "optimizer"} if block == "procedure" else set())
  return {f.name: (f.default if f.default is not dataclasses.MISSING else
                   "<required>" if f.default_factory is dataclasses.MISSING else f.default_factory())
          for f in dataclasses.fields(cls) if f.init and f.name not in skip}


def print_config(config) -> None:
  """Prints the validated config, each open block completed with its class's remaining fields and defaults."""
  from zoo.recipes import train  # pylint: disable=g-import-not-at-top
  config = train.validate_config(config)
  print(config)
  for block in ("model", "task", "procedure"):
    fields = _block_fields(config, block)
    unknown = sorted(set(config[block]) - set(fields) - {"name"})
    if fields and unknown:
      raise ValueError(f"config.{block} ({config[block].get('name')!r}) has no field(s) {', '.join(unknown)}. "
                       f"Valid fields: {', '.join(fields)}.")
    unset = {k: v for k, v in fields.items() if k not in config[block]}
    if unset:
      print(f"# {block} fields not set by the config (defaults; override with --config.{block}.FIELD=VALUE):")
      for k, v in unset.items():
        print(f"#   {k} = {v!r}")


def main() -> None:
  """Entry point of ``python -m zoo.recipes.train``."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from zoo.recipes import train  # pylint: disable=g-import-not-at-top
  argv = prepare_argv(sys.argv)
  # New attributes are accepted so that any field of the named model/task/procedure can be set; unknown keys are
  # still errors: top-level ones in train.validate_config, block fields when the class is built.
  config_flags.DEFINE_config_file("config", None, "A shipped config's name or a config file path.",
                                  lock_config=False, accept_new_attributes=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics; rerun with it to resume.")
  flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.")
  flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (multi-host, auto-detected).")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for jax.distributed.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, for jax.distributed.")
  flags.DEFINE_integer("process_id", None, "This process's index, for jax.distributed.")
  flags.mark_flag_as_required("config")

  def run(_):
    f = flags.FLAGS
    if f.print_config:
      print_config(f.config)
      return
    if not f.workdir:
      raise app.UsageError("--workdir is required (checkpoints and metrics go there; rerun with it to resume).")
    if f.jax_distributed or f.coordinator_address:
      kwargs = {}
      if f.coordinator_address:
        kwargs = dict(coordinator_address=f.coordinator_address, num_processes=f.num_processes,
                      process_id=f.process_id)
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize(**kwargs)
    if not f["verbosity"].present:
      # absl.app shows every library's INFO log (Orbax logs each save at length); the run's own progress is the
      # bar, metrics.jsonl and the lines it prints. Pass -v 0 to see INFO logs again.
      from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
      absl_logging.set_verbosity(absl_logging.WARNING)
    train.train_and_evaluate(f.config, f.workdir)

  app.run(run, argv=argv)
