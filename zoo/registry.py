"""Models by name: ``'family.Class'`` relative to ``zoo`` (as big_vision finds its models), with checked kwargs.

Used by the trainer (``config.model``) and by ``zoo.checkpoints.load``; a notebook can use it too::

    model = zoo.registry.build_model("hopfield.HopfieldClassifier", num_classes=10)
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import flax.linen as nn

__all__ = ["build_model", "model_names"]

_NOT_FAMILIES = frozenset({"layers", "registry"})
_NOT_MODEL_PACKAGES = frozenset({"kernels", "recipes", "checkpoints"})  # inside zoo/ in an installed wheel


def model_names() -> list[str]:
  """Every public model: ``'family.Name'`` for each Linen module in a family module's ``__all__``."""
  import zoo  # pylint: disable=g-import-not-at-top
  names = []

  def families():  # family modules at the top of zoo and one level down (zoo.analysis.neural_collapse ...)
    for info in pkgutil.iter_modules(zoo.__path__):
      if info.name.startswith("_") or info.name in _NOT_FAMILIES:
        continue
      if not info.ispkg:
        yield info.name
      elif info.name not in _NOT_MODEL_PACKAGES:
        package = importlib.import_module(f"zoo.{info.name}")
        yield from (f"{info.name}.{sub.name}" for sub in pkgutil.iter_modules(package.__path__)
                    if not sub.ispkg and not sub.name.startswith("_"))

  for name in families():
    try:
      module = importlib.import_module(f"zoo.{name}")
    except ImportError:  # a family whose optional dependency is missing still leaves the others listable
      continue
    for attr in getattr(module, "__all__", ()):
      obj = getattr(module, attr, None)
      if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
        names.append(f"{name}.{attr}")
  return sorted(names)


def _resolve(name: str):
  family, _, attr = name.rpartition(".")
  if family:
    try:
      module = importlib.import_module(f"zoo.{family}")
    except ModuleNotFoundError as e:
      if e.name != f"zoo.{family}":
        raise  # a dependency missing inside the family module is not a misspelled name
    else:
      obj = getattr(module, attr, None)
      if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return obj
  raise ValueError(f"Unknown model {name!r}. Valid models: {', '.join(model_names())}.")


def model_fields(cls) -> list[str]:
  """The keyword arguments a Linen module class takes (its dataclass fields, minus ``parent``/``name``)."""
  return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]


def _tuples(value):
  # Configs that went through JSON hold lists where the module declares tuples; modules must stay hashable.
  if isinstance(value, (list, tuple)):
    return tuple(_tuples(v) for v in value)
  return value


def build_model(name: str, **kwargs: Any) -> nn.Module:
  """The Linen module ``name`` (``'family.Class'``) built with ``kwargs``; unknown names/fields are errors."""
  cls = _resolve(name)
  fields = model_fields(cls)
  kwargs = {k: _tuples(v) for k, v in kwargs.items()}
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise ValueError(f"model {name!r} has no field(s) {', '.join(unknown)}. Valid fields: {', '.join(fields)}.")
  return cls(**kwargs)
