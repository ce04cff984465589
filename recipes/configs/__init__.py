"""Experiment configs: one file per experiment, each with ``get_config()`` returning an ml_collections ConfigDict.

Every config starts from :func:`base_config`, which lists every key the trainer reads with its default; the trainer
rejects keys that are not here, so a typo in a config or an override is an error, not a silently ignored setting.
The ``model``, ``task`` and ``procedure`` blocks are open: their fields are the keyword arguments of the class they
name, checked when it is built.

Run one with::

    python -m zoo.recipes.train --config recipes/configs/<name>.py --workdir DIR [--config.steps=200 ...]

A config whose build is slow to compile takes an argument, ``get_config(arg=None)``: ``get_config('smoke')``
(``--config recipes/configs/<name>.py:smoke``) is the same run (model class, procedure, dataset, task) with tiny
sizes, for tests/recipes/test_configs.py's few-step smoke run; :func:`is_smoke` checks the argument.
"""

import ml_collections
from ml_collections import config_dict


def is_smoke(arg: str | None, config: str) -> bool:
  """``get_config(arg)``'s argument: ``None`` -> False (the full config), ``'smoke'`` -> True; else a ValueError."""
  if arg is None or arg == "":
    return False
  if arg == "smoke":
    return True
  raise ValueError(f"{config}: get_config's argument must be None or 'smoke' (tiny sizes for a smoke run); "
                   f"got {arg!r}.")


def base_config() -> ml_collections.ConfigDict:
  """The trainer's keys with their defaults."""
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({"name": ""})  # 'family.Class' under zoo + the class's fields
  c.data = ml_collections.ConfigDict({
      "name": "",                                        # a name from zoo.recipes.data.names()
      "batch_size": 128,                                 # global batch size (all processes)
      "eval_batch_size": 256,
      "train_split": "train",
      "eval_split": "test",                              # '' to skip evaluation
      "data_dir": config_dict.placeholder(str),          # None: the default cache / TFDS directory
      "kwargs": ml_collections.ConfigDict(),             # arguments of a generated dataset (part of its cache key)
      # The batch sampler (zoo.recipes.curriculum.make_sampler) + its fields; '' = shuffled epochs.
      "sampler": ml_collections.ConfigDict({"name": ""}),
  })
  c.task = ml_collections.ConfigDict({"name": "classification"})  # zoo.recipes.tasks + the task's fields
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam",                                    # any optax alias
      "learning_rate": 1e-3,
      "schedule": "constant",                            # 'constant' | 'cosine' | 'warmup_cosine'
      "warmup_steps": 0,
      "clip_norm": config_dict.placeholder(float),       # global-norm clipping; None = off
      "grad_noise": 0.0,                                 # optax.add_noise eta; 0 = off
      "noise_seed": config_dict.placeholder(int),        # None: config.seed
      "kwargs": ml_collections.ConfigDict(),             # the alias's own keyword arguments
  })
  c.procedure = ml_collections.ConfigDict({"name": "backprop"})  # how parameters are updated + its fields
  c.steps = 1000
  c.log_every = 50
  c.eval_every = 0              # 0: evaluate only at the end
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.seed = 0
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.progress_bar = True
  c.stop_on_nonfinite = True     # a NaN/inf training metric stops the run before a bad state is checkpointed
  c.allow_schedule_change = False  # a resume may change `steps` under a steps-dependent schedule (cosine ...)
  return c
