"""Training (installed as ``zoo.recipes``): the one loop, the data layer, sharding, checkpointing, the papers'
training procedures, and ``configs/``.

The entry points: ``zoo.recipes.train.train_and_evaluate(config, workdir)`` and the CLI
``python -m zoo.recipes.train --config recipes/configs/<name>.py --workdir DIR``; for arrays already in memory,
``zoo.recipes.train.fit(model, data, ...)``.
"""

from zoo import lazy_submodules as _lazy_submodules

__getattr__ = _lazy_submodules(__name__)  # `zoo.recipes.data` imports recipes/data.py on first access
