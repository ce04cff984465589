"""Small pretrained models shipped with zoo (installed as ``zoo.checkpoints``)::

    from zoo import checkpoints
    model, variables = checkpoints.load("hopfield_digits")
    logits = model.apply(variables, images)          # images: [batch, 8, 8, 1] in [0, 1]

Each shipped checkpoint is a directory ``checkpoints/<name>/`` holding

* ``variables/``: the model's variables, saved with Orbax;
* ``meta.json``: the model's name and fields (rebuilt with ``zoo.registry.build_model``), the dataset and split it
  was evaluated on, the metrics recorded there, and the command that produced it.

``zoo.recipes.export`` writes such a directory from a training run's work directory.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["available", "load", "load_meta", "names", "path"]

_ROOT = os.path.dirname(os.path.abspath(__file__))


def available() -> list[str]:
  """Names of the shipped checkpoints."""
  return sorted(d for d in os.listdir(_ROOT) if os.path.isfile(os.path.join(_ROOT, d, "meta.json")))


names = available  # the same list under the name zoo.list_models / zoo.recipes.data.names use


def path(name: str) -> str:
  """The directory of shipped checkpoint ``name`` (a bare name from :func:`available`, never a path)."""
  if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
      or os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
    raise ValueError(f"Checkpoint names are bare names, not paths; got {name!r}. Available: "
                     f"{', '.join(available()) or 'none'}. (To load a model exported elsewhere, restore its "
                     "variables/ directory with orbax.checkpoint.StandardCheckpointer.)")
  where = os.path.join(_ROOT, name)
  if not os.path.isfile(os.path.join(where, "meta.json")):
    raise ValueError(f"Unknown checkpoint {name!r}. Available: {', '.join(available()) or 'none'}.")
  return where


def load_meta(name: str) -> dict[str, Any]:
  """``meta.json`` of checkpoint ``name``: model config, dataset, recorded metrics, provenance."""
  with open(os.path.join(path(name), "meta.json")) as f:
    return json.load(f)


def load(name: str):
  """Returns ``(module, variables)`` of shipped checkpoint ``name``, ready for ``module.apply(variables, x)``."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from zoo import registry  # pylint: disable=g-import-not-at-top
  meta = load_meta(name)
  model_cfg = dict(meta["model"])
  module = registry.build_model(model_cfg.pop("name"), **model_cfg)
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(path(name), "variables"))
  return module, variables
