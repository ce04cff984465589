"""Training (installed as ``zoo.recipes``): the one loop, the data layer, sharding, checkpointing, the papers'
training procedures, and ``configs/``.

The entry points: ``zoo.recipes.train.train_and_evaluate(config, workdir)`` and the CLI
``python -m zoo.recipes.train --config recipes/configs/<name>.py --workdir DIR``; for arrays already in memory,
``zoo.recipes.train.fit(model, data, ...)``.
"""

import importlib as _importlib


def __getattr__(name):
  # PEP 562, as zoo/__init__.py: `zoo.recipes.data` imports recipes/data.py on first access.
  if name.startswith("_"):
    raise AttributeError(name)
  try:
    return _importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"{__name__}.{name}":
      raise
    raise AttributeError(f"module 'zoo.recipes' has no attribute or submodule {name!r}") from None
