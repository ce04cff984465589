"""Builds the config's named pieces: the model, the task, the optimizer and the procedure.

Names are resolved the big_vision way: a model is ``'family.Class'`` relative to ``zoo`` (``'hopfield.
HopfieldClassifier'``, see ``zoo.registry``); a task is a short name from a table or ``'module.Class'`` relative to
``zoo.recipes`` or ``zoo.recipes.procedures``; a procedure is ``'backprop'`` or ``'module.Class'`` relative to
``zoo.recipes.procedures``. The remaining fields of the config block become keyword arguments, checked against the
class's fields so that a typo is an error listing the valid names, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import flax.linen as nn
import optax

from zoo import registry
from zoo.recipes import tasks as tasks_lib

__all__ = ["make_model", "make_optimizer", "make_procedure", "make_task", "resolve", "resolve_procedure"]


def _to_dict(block) -> dict[str, Any]:
  if block is None:
    return {}
  if hasattr(block, "to_dict"):
    return block.to_dict()
  return dict(block)


def resolve(name: str, *, package: str | tuple[str, ...], table: dict[str, Any] | None = None, kind: str,
            valid=None):
  """Finds ``name`` in ``table`` or as ``'module.Attr'`` under ``package`` (the first of several that has it)."""
  if table and name in table:
    return table[name]
  module_name, _, attr = name.rpartition(".")
  obj = None
  for pkg in (package,) if isinstance(package, str) else package:
    if not module_name or obj is not None:
      break
    try:
      module = importlib.import_module(f"{pkg}.{module_name}")
    except ModuleNotFoundError as e:
      if not e.name or not f"{pkg}.{module_name}".startswith(e.name):
        raise  # a missing dependency inside the module is not a misspelled name
    else:
      obj = getattr(module, attr, None)
  if obj is None:
    options = valid() if valid else sorted(table or ())
    raise ValueError(f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(options)}.")
  return obj


def _fields(cls) -> list[str]:
  if dataclasses.is_dataclass(cls):
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]
  return [p for p in inspect.signature(cls).parameters if p != "self"]


def _construct(cls, kwargs: dict[str, Any], *, kind: str, name: str, **fixed):
  fields = _fields(cls)
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise ValueError(f"{kind} {name!r} has no field(s) {', '.join(unknown)}. Valid fields: {', '.join(fields)}.")
  return cls(**fixed, **kwargs)


def make_model(block) -> nn.Module:
  """``model`` config block -> Linen module. ``block.name`` is ``'family.Class'``; other fields are kwargs."""
  kwargs = _to_dict(block)
  name = kwargs.pop("name", None)
  if not name:
    raise ValueError("config.model.name is required, e.g. 'hopfield.HopfieldClassifier'. Valid models: "
                     + ", ".join(registry.model_names()))
  return registry.build_model(name, **kwargs)


def make_task(block):
  """``task`` config block -> task object (``zoo.recipes.tasks``)."""
  kwargs = _to_dict(block)
  name = kwargs.pop("name", "classification")
  # A paper's own task lives beside its procedure (``'forward_gnn.NodeClassification'``) or its data
  # (``'datasets.pde.RelativeL2'``).
  cls = resolve(name, package=("zoo.recipes", "zoo.recipes.procedures"), table=tasks_lib.TASKS, kind="task")
  return _construct(cls, kwargs, kind="task", name=name)


def make_optimizer(block, *, total_steps: int, seed: int = 0) -> optax.GradientTransformation:
  """``optimizer`` config block -> optax transformation.

  Fields: ``name`` (any optax alias: ``'adam'``, ``'adamw'``, ``'sgd'`` ...), ``learning_rate``, ``schedule``
  (``'constant'``, ``'cosine'``, ``'warmup_cosine'``), ``warmup_steps``, ``clip_norm`` (global-norm clipping
  before the update), ``grad_noise`` (``optax.add_noise`` eta, 0 = off), ``noise_seed`` (the noise's seed; default
  None: ``seed``, the run's ``config.seed``, so runs with different seeds draw different noise), and the alias's own
  keyword arguments under ``kwargs``.
  """
  cfg = _to_dict(block)
  name = cfg.pop("name", "adam")
  lr = cfg.pop("learning_rate", 1e-3)
  schedule = cfg.pop("schedule", "constant")
  warmup = cfg.pop("warmup_steps", 0)
  clip_norm = cfg.pop("clip_norm", None)
  grad_noise = cfg.pop("grad_noise", 0.0)
  noise_seed = cfg.pop("noise_seed", None)
  noise_seed = seed if noise_seed is None else noise_seed
  kwargs = cfg.pop("kwargs", {}) or {}
  if cfg:
    raise ValueError(f"optimizer has no field(s) {', '.join(sorted(cfg))}. Valid fields: name, learning_rate, "
                     "schedule, warmup_steps, clip_norm, grad_noise, noise_seed, kwargs.")
  if schedule == "constant":
    lr_fn = optax.constant_schedule(lr) if warmup == 0 else optax.linear_schedule(0.0, lr, warmup)
  elif schedule == "cosine":
    lr_fn = optax.cosine_decay_schedule(lr, max(total_steps, 1))
  elif schedule == "warmup_cosine":
    lr_fn = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
  else:
    raise ValueError(f"optimizer.schedule must be 'constant', 'cosine' or 'warmup_cosine'; got {schedule!r}.")
  alias = getattr(optax, name, None)
  if alias is None or not callable(alias):
    raise ValueError(f"optimizer.name {name!r} is not an optax optimizer (e.g. 'adam', 'adamw', 'sgd', 'lamb').")
  chain = []
  if clip_norm:
    chain.append(optax.clip_by_global_norm(clip_norm))
  if grad_noise:
    chain.append(optax.add_noise(grad_noise, 0.55, int(noise_seed)))  # gamma 0.55: "Adding Gradient Noise" (2015)
  chain.append(alias(learning_rate=lr_fn, **kwargs))
  return optax.chain(*chain) if len(chain) > 1 else chain[0]


PROCEDURES = {"backprop": "backprop.Backprop"}


def _procedure_names() -> list[str]:
  """Every procedure class a config can name: ``'backprop'`` and ``'<module>.<Class>'`` under procedures/."""
  import pkgutil  # pylint: disable=g-import-not-at-top
  from zoo.recipes import procedures  # pylint: disable=g-import-not-at-top
  names = set(PROCEDURES)
  for info in pkgutil.iter_modules(procedures.__path__):
    module = importlib.import_module(f"{procedures.__name__}.{info.name}")
    for attr in getattr(module, "__all__", ()):
      obj = getattr(module, attr)
      if inspect.isclass(obj) and callable(getattr(obj, "step", None)) and callable(getattr(obj, "init", None)):
        names.add(f"{info.name}.{attr}")
  return sorted(names)


def resolve_procedure(name: str):
  """``'backprop'`` or ``'module.Class'`` under ``zoo.recipes.procedures`` -> the procedure class."""
  return resolve(PROCEDURES.get(name, name), package="zoo.recipes.procedures", kind="procedure",
                 valid=_procedure_names)


def make_procedure(block, *, model, task, optimizer):
  """``procedure`` config block -> procedure (``init``/``step``/``evaluate``), given the built pieces."""
  kwargs = _to_dict(block)
  name = kwargs.pop("name", "backprop")
  cls = resolve_procedure(name)
  return _construct(cls, kwargs, kind="procedure", name=name, model=model, task=task, optimizer=optimizer)
