"""Sequence tasks with planted long-range structure, for recurrent models.

``copy_first``: the copy-first-token task (the "remember the first symbol" long-time-lag problem of Hochreiter &
Schmidhuber, 1997, used by the deep learning review, arXiv:1905.13294, to contrast gated and simple RNNs). A
sequence of ``length + 1`` token ids starts with one of ``num_symbols`` symbols (ids ``0 .. num_symbols-1``),
followed by ``length`` distractors drawn uniformly from ``num_distractors`` other ids
(``num_symbols .. num_symbols+num_distractors-1``); the label is the first symbol. A model that forgets the first
step is at chance, ``1 / num_symbols``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["copy_first"]


def _copy_first_split(rng: np.random.Generator, n: int, length: int, num_symbols: int, num_distractors: int):
  first = rng.integers(0, num_symbols, size=n)
  rest = rng.integers(num_symbols, num_symbols + num_distractors, size=(n, length))
  tokens = np.concatenate([first[:, None], rest], axis=1).astype(np.int32)
  return {"tokens": tokens, "label": first.astype(np.int64)}


@data.register("copy_first", version="1.0.0")
def copy_first(length: int = 40, num_symbols: int = 8, num_distractors: int = 8, n_train: int = 20000,
               n_test: int = 2000, seed: int = 0) -> data.Generated:
  """Copy the first token after ``length`` distractors: ``tokens`` int32 ``[length + 1]``, ``label`` in
  ``[0, num_symbols)``; vocabulary size ``num_symbols + num_distractors`` (metadata ``vocab_size``)."""
  if length < 1 or num_symbols < 2 or num_distractors < 1:
    raise ValueError(f"copy_first: need length >= 1, num_symbols >= 2, num_distractors >= 1; got length={length}, "
                     f"num_symbols={num_symbols}, num_distractors={num_distractors}.")
  rng = np.random.default_rng(seed)
  splits = {"train": _copy_first_split(rng, n_train, length, num_symbols, num_distractors),
            "test": _copy_first_split(rng, n_test, length, num_symbols, num_distractors)}
  return data.Generated(splits, metadata={"num_classes": num_symbols, "vocab_size": num_symbols + num_distractors,
                                          "length": length + 1})
