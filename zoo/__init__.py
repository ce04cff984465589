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


def lazy_submodules(package: str):
  """A PEP 562 module ``__getattr__`` for ``package``: ``package.x`` imports ``package/x.py`` on first access.

  So ``import zoo`` stays cheap and a new family file needs no registration; ``zoo.recipes`` uses it too.
  """

  def __getattr__(name):
    if name.startswith("_"):
      raise AttributeError(name)
    try:
      return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"{package}.{name}":
        raise
      raise AttributeError(f"module {package!r} has no attribute or submodule {name!r}") from None

  return __getattr__


__getattr__ = lazy_submodules(__name__)
