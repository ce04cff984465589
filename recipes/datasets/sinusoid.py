"""Few-shot sinusoid regression episodes (Finn et al., MAML, 2017), laid out as sequences for memory networks.

``sinusoid_episodes``: each example is one task ``y = A sin(x + phase)`` with ``A ~ U[0.1, 5]``, ``phase ~
U[0, pi]`` and ``x ~ U[-5, 5]`` (MAML's setting, used by Fast & Slow Learning, arXiv:2011.05438, among its regression
benchmarks). An episode is a sequence of ``shots`` support steps followed by ``queries`` query steps, as a
memory-augmented network reads it (Santoro et al., 2016): step ``t`` has the input ``[x_t / 5, y_t / 5, 1]`` on a
support step (the label is given) and ``[x_t / 5, 0, 0]`` on a query step; the target ``y_t`` is given at every
step and ``query`` marks the steps the loss counts.

Keys: ``x [shots + queries, 3]`` float32, ``y [shots + queries, 1]`` float32 (raw scale), ``query [shots + queries]``
float32 in {0, 1}. Metadata: ``shots``, ``queries``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["sinusoid_episodes"]


def _episodes(rng: np.random.Generator, n: int, shots: int, queries: int):
  amplitude = rng.uniform(0.1, 5.0, size=(n, 1))
  phase = rng.uniform(0.0, np.pi, size=(n, 1))
  x = rng.uniform(-5.0, 5.0, size=(n, shots + queries))
  y = amplitude * np.sin(x + phase)
  support = np.zeros((n, shots + queries))
  support[:, :shots] = 1.0
  inputs = np.stack([x / 5.0, support * y / 5.0, support], axis=-1).astype(np.float32)
  return {"x": inputs, "y": y[..., None].astype(np.float32), "query": (1.0 - support).astype(np.float32)}


@data.register("sinusoid_episodes", version="1.0.0")
def sinusoid_episodes(shots: int = 10, queries: int = 10, n_train: int = 20000, n_test: int = 1000,
                      seed: int = 0) -> data.Generated:
  """``shots``-shot sinusoid regression episodes of ``shots + queries`` steps (module docstring)."""
  if shots < 1 or queries < 1:
    raise ValueError(f"sinusoid_episodes: need shots >= 1 and queries >= 1; got shots={shots}, queries={queries}.")
  rng = np.random.default_rng(seed)
  splits = {"train": _episodes(rng, n_train, shots, queries), "test": _episodes(rng, n_test, shots, queries)}
  return data.Generated(splits, metadata={"shots": shots, "queries": queries})
