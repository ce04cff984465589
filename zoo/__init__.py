"""zoo: a JAX functional model zoo.

Every architecture family lives in one module (``zoo.hopfield``, ``zoo.core``, ...) as Flax Linen modules used
through ``init`` / ``apply``. Submodules load lazily, so ``import zoo`` does not import jax::

    from zoo import hopfield
    layer = hopfield.HopfieldPooling(features=32)

``zoo.kernels`` (Pallas kernels), ``zoo.recipes`` (the trainer, data, sharding, the papers' training procedures)
and ``zoo.checkpoints`` (small pretrained weights) are subpackages of the same import root.
"""

import importlib

__version__ = "0.1.0"



def list_models() -> list[str]:
  """Every public model as ``'family.Class'``, the names configs and ``zoo.registry.build_model`` take."""
  from zoo import registry  # pylint: disable=g-import-not-at-top
  return registry.model_names()


def __getattr__(name):
  # PEP 562: `zoo.hopfield` imports zoo/hopfield.py on first access, so `import zoo` stays cheap and a new family
  # file needs no registration here.
  if name.startswith("_"):
    raise AttributeError(name)
  try:
    return importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"{__name__}.{name}":
      raise
    raise AttributeError(f"module 'zoo' has no attribute or submodule {name!r}") from None
