"""Modular sums with a variable number of operands, as token sequences: ``a_1 + a_2 + ... + a_k = -> (sum a_i) mod M``.

For "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs" (CoLa, Li, Li and Zhou, 2025, arXiv
2507.07996), whose claim is that harder inputs want more depth and easier ones less: the number of operands ``k`` in
``[min_operands, max_operands]`` is the difficulty knob, drawn uniformly per example.

Token vocabulary (``vocab_size = modulus + 3``): ``0`` padding, ``1 .. M`` the operand values ``0 .. M-1`` (value + 1),
``M + 1`` the ``+`` sign, ``M + 2`` the ``=`` sign. A sequence is ``a_1 + a_2 + ... + a_k =`` right-padded to
``2 * max_operands`` tokens; the answer is read at the ``=`` token.

Keys per example: ``tokens [2 * max_operands]`` int32, ``label []`` int32 (the sum mod M), ``operands []`` int32
(``k``), ``answer_position []`` int32 (the index of ``=``, ``2k - 1``). Deterministic by ``seed``.

* :func:`modular_sum_arrays` ``(n, modulus, min_operands, max_operands, rng) -> {key: array [n, ...]}``: the
  generator itself (numpy, no TFDS), for tests and notebooks.
* dataset ``modular_sums`` (``zoo.recipes.data.load('modular_sums', ...)``): ``train`` / ``test`` splits.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["modular_sum_arrays", "modular_sums", "vocab_size"]


def vocab_size(modulus: int) -> int:
  """Token ids are in ``[0, modulus + 3)``: padding, ``M`` operand values, ``+`` and ``=``."""
  return modulus + 3


def modular_sum_arrays(n: int, modulus: int, min_operands: int, max_operands: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
  """``n`` random sums (module docstring); ``k`` uniform in ``[min_operands, max_operands]``."""
  if modulus < 2:
    raise ValueError(f"modular_sums: `modulus` must be >= 2; got {modulus}.")
  if not 1 <= min_operands <= max_operands:
    raise ValueError(f"modular_sums: need 1 <= min_operands <= max_operands; got {min_operands}, {max_operands}.")
  length = 2 * max_operands
  k = rng.integers(min_operands, max_operands + 1, size=n)
  values = rng.integers(0, modulus, size=(n, max_operands))
  used = np.arange(max_operands)[None] < k[:, None]
  tokens = np.zeros((n, length), np.int32)
  tokens[:, 0::2] = np.where(used, values + 1, 0)
  tokens[:, 1::2] = np.where(used, modulus + 1, 0)  # '+' after every operand ...
  tokens[np.arange(n), 2 * k - 1] = modulus + 2       # ... except the last one, which is followed by '='
  label = (np.where(used, values, 0).sum(1) % modulus).astype(np.int32)
  return {"tokens": tokens, "label": label, "operands": k.astype(np.int32),
          "answer_position": (2 * k - 1).astype(np.int32)}


@data.register("modular_sums", version="1.0.0")
def modular_sums(modulus: int = 7, min_operands: int = 2, max_operands: int = 5, train_size: int = 20000,
                 test_size: int = 1000, seed: int = 0) -> data.Generated:
  """``train`` / ``test`` splits of random modular sums; metadata ``num_classes = modulus`` and ``vocab_size``."""
  rng = np.random.default_rng(seed)
  splits = {"train": modular_sum_arrays(train_size, modulus, min_operands, max_operands, rng),
            "test": modular_sum_arrays(test_size, modulus, min_operands, max_operands, rng)}
  return data.Generated(splits, metadata={"num_classes": modulus, "vocab_size": vocab_size(modulus),
                                          "max_operands": max_operands})
