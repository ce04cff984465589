"""A fixed random permutation of binary vectors, for "Exact Learning of Permutations for Nonzero Binary Inputs with
Logarithmic Training Size and Quadratic Ensemble Complexity" (Giapitzakis, Back de Luca, Fountoulakis, 2025,
arXiv 2502.16763): train on the ``k`` standard basis vectors ``e_i -> P e_i``, test on all ``2^k - 1`` nonzero
binary inputs ``x -> P x`` (``zoo.ntk_ensembles.permutation_task``). Keys ``x``, ``y`` float32 ``[k]``.
"""

from __future__ import annotations

from zoo import ntk_ensembles
from zoo.recipes import data

__all__ = ["permutations"]


@data.register("permutations", version="1.0.0")
def permutations(k: int = 8, seed: int = 0) -> data.Generated:
  """Splits ``train`` (``k`` basis vectors) and ``test`` (``2^k - 1`` inputs) of one random permutation."""
  task = ntk_ensembles.permutation_task(k, seed)
  return data.Generated({"train": {"x": task["x_train"], "y": task["y_train"]},
                         "test": {"x": task["x_test"], "y": task["y_test"]}},
                        metadata={"k": k, "perm": task["perm"].tolist()})
