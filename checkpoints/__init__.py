"""Small pretrained models shipped with zoo (installed as ``zoo.checkpoints``)::

    from zoo import checkpoints
    model, variables = checkpoints.load("hopfield_digits")
    logits = model.apply(variables, images)          # images: [batch, 8, 8, 1] in [0, 1]

Each shipped checkpoint is a directory ``checkpoints/<name>/`` holding

* ``variables/``: the model's variables, saved with Orbax;
* ``meta.json``: the model's name and fields (rebuilt with ``zoo.registry.build_model``), the dataset and split it
  was evaluated on, the metrics recorded there, the evaluation batch size, and the command that produced it.

:func:`evaluate` recomputes the recorded metrics from the shipped variables, as the training run computed them: the
task's per-example metrics of ``model.apply(variables, task.inputs(batch))``, averaged over the split in the run's
evaluation batches (the last one padded, the padding excluded). Batches matter for metrics that compare the examples
of a batch (in-batch negatives, pairwise losses). A procedure whose evaluation is not the task's (e.g. a retrieval
over a batch) names its own function in ``meta["evaluate"]`` (``"module:attribute"``, called as
``fn(model, task, variables, batch) -> {metric: per-example values}``).

``zoo.recipes.export`` writes such a directory from a training run's work directory.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["available", "evaluate", "load", "load_meta", "names", "path"]

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


def evaluate(name: str, batch_size: int | None = None) -> dict[str, float]:
  """Recomputes checkpoint ``name``'s recorded metrics on its evaluation split (see the module docstring).

  ``batch_size`` defaults to the run's evaluation batch size (``meta["eval_batch_size"]``; the whole split in one
  batch for checkpoints that predate it). Returns ``{metric: mean over the split}``.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from zoo.recipes import builders  # pylint: disable=g-import-not-at-top
  from zoo.recipes import data  # pylint: disable=g-import-not-at-top
  model, variables = load(name)
  meta = load_meta(name)
  task = builders.make_task(meta["task"])
  dataset = meta["dataset"]
  sources, _ = data.load(dataset["name"], splits=[dataset["split"]], **dataset["kwargs"])
  source = sources[dataset["split"]]
  if meta.get("evaluate"):
    module, _, attribute = meta["evaluate"].partition(":")
    fn = importlib.import_module(module)
    for part in attribute.split("."):
      fn = getattr(fn, part)
  else:
    fn = lambda model, task, variables, batch: task.metrics(model.apply(variables, task.inputs(batch)), batch)
  if batch_size is None:
    batch_size = int(meta.get("eval_batch_size") or len(source))

  @jax.jit
  def sums(variables, batch, weight):
    metrics = fn(model, task, variables, batch)
    return {k: (v.astype(np.float32) * weight).sum() for k, v in metrics.items()}

  totals, count = {}, 0.0
  for batch, weight in data.eval_batches(source, batch_size):
    for k, v in jax.device_get(sums(variables, batch, weight)).items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += float(weight.sum())
  return {k: v / max(count, 1.0) for k, v in totals.items()}
