"""Modular addition ``(a, b) -> (a + b) mod M`` (``zoo.grokking.modular_addition_data``): ``x`` = ``[onehot(a);
onehot(b)]`` float32 ``[2M]``, ``y`` = ``onehot((a + b) mod M)`` float32 ``[M]``, ``label`` int32; a random split
of the ``M^2`` pairs. For "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking" (Tian,
2025, arXiv 2509.21519).
"""

from __future__ import annotations

from zoo import grokking
from zoo.recipes import data

__all__ = ["modular_addition"]


@data.register("modular_addition", version="1.0.0")
def modular_addition(modulus: int = 23, train_fraction: float = 0.75, seed: int = 0) -> data.Generated:
  """Splits ``train`` / ``test`` of all pairs; metadata ``num_classes = modulus``."""
  d = grokking.modular_addition_data(modulus, train_fraction, seed)
  return data.Generated({split: {"x": d[f"x_{split}"], "y": d[f"y_{split}"], "label": d[f"c_{split}"]}
                         for split in ("train", "test")}, metadata={"num_classes": modulus})
