"""Every experiment config in recipes/configs/ builds and trains a couple of steps through the CLI's entry point.

A config whose ``get_config`` takes an argument is run as ``get_config('smoke')``: the same model class, procedure,
dataset and task with tiny sizes, so that the smoke run compiles small graphs (``--config <file>:smoke``).
"""

import importlib.util
import inspect
import pathlib

import pytest

from zoo.recipes import train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.py") if p.name != "__init__.py")


def load_config(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if inspect.signature(module.get_config).parameters:
    smoke, full = module.get_config("smoke"), module.get_config()
    # Only sizes shrink: the smoke run builds the same classes on the same data as the full config.
    for key in ("model.name", "procedure.name", "task.name", "data.name", "data.train_split", "data.eval_split"):
      block, field = key.split(".")
      assert smoke[block].get(field) == full[block].get(field), f"{path.stem}: the smoke config changes {key}"
    with pytest.raises(ValueError, match="smoke"):
      module.get_config("no_such_variant")
    return smoke
  return module.get_config()


def test_there_are_configs():
  assert CONFIGS, "no configs found"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_two_steps(path, tmp_path):
  config = load_config(path)
  assert path.read_text().lstrip().startswith(('"""', 'r"""')), \
      "a config's docstring gives the command, the expected result and the run time"
  config.steps = 2
  config.log_every = 1
  config.eval_every = 0
  config.checkpoint_every = 0
  config.progress_bar = False
  results = train.train_and_evaluate(config, str(tmp_path))
  assert all(v == v for v in results.values()), f"NaN metric in {results}"  # NaN != NaN
