"""Symbolic function-fitting tasks on ``[-1, 1]^d`` (the KAN papers' regression benchmarks), deterministic by seed.

Dataset ``function_fitting(formula=..., n_train=1000, n_test=1000, seed=0, noise=0.0)``: ``x [n, d]`` float32
uniform on ``[-1, 1]^d``, ``y [n, 1]`` float32 the formula's value (plus Gaussian ``noise`` on the training split
only). :data:`FORMULAS` maps each name to ``(d, f)``; :func:`sample` gives the arrays without the data layer.

Formulas (``x, y`` the first two coordinates):

* ``fourier``: ``sin(2 pi x) cos(2 pi y)`` (periodic: favours a Fourier basis);
* ``bump``: ``exp(-(x^2 + y^2) / (2 * 0.3^2))`` (a Gaussian bump: favours Gaussian RBFs);
* ``kinks``: ``|x| + relu(y)`` (piecewise linear: favours splines);
* ``exp_sin``: ``exp(sin(pi x) + y^2)`` (the KAN paper's first toy example);
* ``product``: ``x y``;
* ``bessel_like``: ``sin(5 x) / (1 + 5 x^2)`` in one variable;
* ``four_var``: ``exp((sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))) / 2)`` (KAN paper, a deeper composition);
* ``friedman1``: Friedman's (1991) regression benchmark (sklearn's ``make_friedman1`` without noise) on
  ``u = (x + 1) / 2`` in ``[0, 1]^5``, divided by 5: ``(10 sin(pi u1 u2) + 20 (u3 - 1/2)^2 + 10 u4 + 5 u5) / 5``
  (additive and interacting parts, a standard gradient-boosting benchmark).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from zoo.recipes import data


def _fourier(x):
  return np.sin(2 * np.pi * x[:, 0]) * np.cos(2 * np.pi * x[:, 1])


def _bump(x):
  return np.exp(-(x[:, 0] ** 2 + x[:, 1] ** 2) / (2 * 0.3 ** 2))


def _kinks(x):
  return np.abs(x[:, 0]) + np.maximum(x[:, 1], 0.0)


def _exp_sin(x):
  return np.exp(np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2)


def _product(x):
  return x[:, 0] * x[:, 1]


def _bessel_like(x):
  return np.sin(5 * x[:, 0]) / (1 + 5 * x[:, 0] ** 2)


def _four_var(x):
  return np.exp((np.sin(np.pi * (x[:, 0] ** 2 + x[:, 1] ** 2)) + np.sin(np.pi * (x[:, 2] ** 2 + x[:, 3] ** 2))) / 2)


def _friedman1(x):
  u = (x + 1.0) / 2.0
  return (10 * np.sin(np.pi * u[:, 0] * u[:, 1]) + 20 * (u[:, 2] - 0.5) ** 2 + 10 * u[:, 3] + 5 * u[:, 4]) / 5.0


FORMULAS: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "fourier": (2, _fourier),
    "bump": (2, _bump),
    "kinks": (2, _kinks),
    "exp_sin": (2, _exp_sin),
    "product": (2, _product),
    "bessel_like": (1, _bessel_like),
    "four_var": (4, _four_var),
    "friedman1": (5, _friedman1),
}


def sample(formula: str, n: int, seed: int, noise: float = 0.0) -> dict[str, np.ndarray]:
  """``{'x': [n, d], 'y': [n, 1]}`` float32 for ``formula``, ``x`` uniform on ``[-1, 1]^d``."""
  if formula not in FORMULAS:
    raise ValueError(f"function_fitting: unknown formula {formula!r}; valid: {', '.join(sorted(FORMULAS))}.")
  d, f = FORMULAS[formula]
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, (n, d))
  y = f(x)
  if noise:
    y = y + noise * rng.normal(size=y.shape)
  return {"x": x.astype(np.float32), "y": y[:, None].astype(np.float32)}


@data.register("function_fitting", version="1.0.0")
def function_fitting(formula: str = "exp_sin", n_train: int = 1000, n_test: int = 1000, seed: int = 0,
                     noise: float = 0.0) -> data.Generated:
  """A symbolic formula on [-1, 1]^d: ``x [d]`` float32, ``y [1]`` float32 (see ``recipes/datasets/functions.py``)."""
  train = sample(formula, n_train, seed, noise)
  test = sample(formula, n_test, seed + 1_000_003)
  return data.Generated({"train": train, "test": test},
                        metadata={"formula": formula, "input_dim": FORMULAS[formula][0]})
