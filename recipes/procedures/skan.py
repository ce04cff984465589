"""S-KAN's three-phase training schedule as a procedure: full training, selective training, pruning.

Paper: Zhuoqin Yang, Jiansong Zhang, Xiaoling Luo, Zheng Lu, Linlin Shen, "Activation Space Selectable
Kolmogorov-Arnold Networks" (2024), arXiv:2408.08338. The layers are ``zoo.kan.SelectableKANLayer`` (and the stacks
``SKAN``, ``SConvKAN``); every layer mixes its candidate activation spaces per input node with
``softmax(selection_logits)`` over the spaces its ``'selection'`` mask keeps.

:class:`ThreePhaseSelection` is the backprop procedure plus the schedule, expressed as state the step reads (so the
one loop of ``zoo.recipes.train`` runs it unchanged, resumes mid-schedule, and the CLI trains it):

1. steps ``[0, full_steps)``: every space on;
2. at step ``full_steps`` each node keeps its ``top_k`` spaces by selection logit, and training continues;
3. at step ``full_steps + selective_steps`` each node keeps its single best space (the argmax), and training
   continues to the config's ``steps`` (fine-tuning).

Masked spaces get zero weight and zero gradient; the optimizer state carries over between phases. A config selects
it with ``procedure.name = 'skan.ThreePhaseSelection'`` and the fields below; :func:`train_skan` runs it on arrays.

Public names: :class:`ThreePhaseSelection`, :func:`narrow_masks`, :func:`train_skan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from zoo.recipes.procedures import backprop
from zoo.recipes import train as train_lib

__all__ = ["ThreePhaseSelection", "narrow_masks", "train_skan"]


def narrow_masks(params, selection, keep: int):
  """Each node keeps its ``keep`` best spaces (by logit) among those its mask keeps.

  Args:
    params: the model's ``'params'``; every ``.../selection_logits [i, spaces]`` pairs with ``selection``'s
      ``.../mask`` of the same scope.
    selection: the ``'selection'`` collection.
    keep: spaces to keep per node (1: the argmax).

  Returns:
    The new ``'selection'`` collection.
  """
  flat_p = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  flat_s = flax.traverse_util.flatten_dict(flax.core.unfreeze(selection))
  out = {}
  for path, mask in flat_s.items():
    logits = flat_p[path[:-1] + ("selection_logits",)]
    k = min(keep, mask.shape[-1])
    masked = jnp.where(mask > 0, logits, -jnp.inf)
    _, top = jax.lax.top_k(masked, k)                                    # [i, k]
    new = jnp.zeros_like(mask).at[jnp.arange(mask.shape[0])[:, None], top].set(1.0)
    out[path] = new * (mask > 0)
  return flax.traverse_util.unflatten_dict(out)


@dataclasses.dataclass(frozen=True)
class ThreePhaseSelection(backprop.Backprop):
  """Backprop with S-KAN's schedule (module docstring).

  Attributes:
    full_steps: length of phase 1 (all spaces).
    selective_steps: length of phase 2 (``top_k`` spaces per node); phase 3 runs from
      ``full_steps + selective_steps`` to the end of training.
    top_k: spaces kept per node in phase 2.
  """
  full_steps: int = 1000
  selective_steps: int = 1000
  top_k: int = 2

  def step(self, state: backprop.TrainState, batch):
    if "selection" not in state.model_state:
      raise ValueError("ThreePhaseSelection: the model has no 'selection' collection; use a zoo.kan selectable "
                       "model (SelectableKANLayer, SKAN, SConvKAN).")
    sel = state.model_state["selection"]
    t = state.step
    selective = narrow_masks(state.params, sel, self.top_k)
    pruned = narrow_masks(state.params, sel, 1)
    pick = lambda a, b, c: jnp.where(t == self.full_steps, b, jnp.where(t == self.full_steps + self.selective_steps,
                                                                         c, a))
    sel = jax.tree.map(pick, sel, selective, pruned)
    state = state.replace(model_state={**state.model_state, "selection": sel})
    state, metrics = super().step(state, batch)
    phase = 1 + (t >= self.full_steps).astype(jnp.int32) + (t >= self.full_steps + self.selective_steps).astype(
        jnp.int32)
    kept = jnp.mean(jnp.stack([jnp.sum(m, -1).mean() for m in jax.tree.leaves(sel)]))
    return state, {**metrics, "phase": phase.astype(jnp.float32), "kept_spaces": kept}


def train_skan(model, train_data: Mapping[str, np.ndarray], *, task: Any = "regression", full_steps: int = 1000,
               selective_steps: int = 1000, prune_steps: int = 1000, top_k: int = 2, **fit_kwargs):
  """Trains a selectable KAN with the three-phase schedule on arrays (``zoo.recipes.train.fit`` with the procedure).

  Returns:
    ``fit``'s :class:`zoo.recipes.train.FitResult` (``result.variables`` include the final ``'selection'`` masks).
  """
  return train_lib.fit(model, train_data, task=task, steps=full_steps + selective_steps + prune_steps,
                       procedure=ThreePhaseSelection,
                       procedure_kwargs={"full_steps": full_steps, "selective_steps": selective_steps,
                                         "top_k": top_k}, **fit_kwargs)
