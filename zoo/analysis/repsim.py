"""Do different networks learn the same units? Correlation, matching and sparse mapping between two networks' units.

Paper: "Convergent Learning: Do different neural networks learn the same representations?" (Li, Yosinski, Clune,
Lipson, Hopcroft, ICLR 2016, arXiv 1511.07543). Train networks of one architecture from different seeds, record every
unit's activation on a shared probe set (for a conv layer every spatial position is a further sample), standardise
them and correlate unit ``i`` of net 1 with unit ``j`` of net 2 (``C_ij``; the within-net matrix is the reference).
Then ask how the units correspond:

* one-to-one: the maximum-weight bipartite matching of ``C`` (``scipy.optimize.linear_sum_assignment``, the
  paper's "bipartite matching"), against *semi-matching*, every unit of net 1 paired with its most correlated unit
  of net 2 (several may share one; it is never worse than the matching);
* few-to-one: spectral clustering of the units of both nets on the joint correlation matrix (scikit-learn);
* many-to-many: predicting each unit of net 2 from all units of net 1 with an L1-penalised linear map
  (``sklearn.linear_model.Lasso``) and the loss as a function of the map's sparsity (the loss-sparsity curve, §5).

Public names (``a: [samples, units_a]``, ``b: [samples, units_b]`` float activations on the same probe rows):

* :func:`unit_activations` ``(model, variables, x, names, *, post=relu)`` -> ``{name: [samples, units]}``: the
  outputs of the named submodules on ``x`` (flax ``capture_intermediates``; a conv output ``[n, h, w, c]`` becomes
  ``[n*h*w, c]``), passed through ``post`` (the paper correlates post-ReLU activations; core.MLP's ``dense_i``
  outputs are pre-activation).
* :func:`unit_correlations` ``(a, b)`` -> ``[units_a, units_b]`` Pearson correlations (a unit constant on the probe
  set, e.g. a dead ReLU, correlates 0 with everything).
* :func:`bipartite_match` ``(corr, *, match=True)`` -> ``(cols [units_a], values [units_a])``: unit ``i`` of net 1
  is paired with ``cols[i]`` of net 2 (needs ``units_a <= units_b``); ``match=False`` pairs unit ``i`` with unit
  ``i`` (the ablation: the same comparison without finding the permutation).
* :func:`semi_match` ``(corr)`` -> ``(cols, values)``: the row-wise argmax.
* :func:`spectral_cluster_units` ``(corr, n_clusters, *, seed=0)`` -> labels ``[units]`` from
  ``sklearn.cluster.SpectralClustering`` on the affinity ``max(corr, 0)`` of a square (joint) correlation matrix.
* :func:`joint_correlations` ``(a, b)`` -> the ``[ua + ub, ua + ub]`` correlation matrix of both nets' units.
* :func:`sparse_prediction_map` ``(a, b, alpha)`` -> ``(coef [units_b, units_a], loss, nonzeros)``: the Lasso map
  from standardised ``a`` to standardised ``b``, its mean squared error and the mean number of net-1 units each
  net-2 unit uses; :func:`loss_sparsity_curve` ``(a, b, alphas)`` -> ``[(alpha, loss, nonzeros), ...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import scipy.optimize

__all__ = ["bipartite_match", "joint_correlations", "loss_sparsity_curve", "semi_match", "sparse_prediction_map",
           "spectral_cluster_units", "unit_activations", "unit_correlations"]


def _as_matrix(x: Any, name: str, where: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{where}: `{name}` must have shape [samples, units]; got shape {x.shape}.")
  if not np.issubdtype(x.dtype, np.floating):
    raise TypeError(f"{where}: `{name}` must be floating; got {x.dtype}.")
  if x.shape[0] < 2 or x.shape[1] == 0:
    raise ValueError(f"{where}: `{name}` needs >= 2 samples and >= 1 unit; got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{where}: `{name}` has non-finite entries.")
  return x.astype(np.float64)


def _pair(a, b, where):
  a, b = _as_matrix(a, "a", where), _as_matrix(b, "b", where)
  if a.shape[0] != b.shape[0]:
    raise ValueError(f"{where}: `a` and `b` must be activations on the same probe rows; got {a.shape[0]} and "
                     f"{b.shape[0]} samples.")
  return a, b


def _standardise(x):
  std = x.std(0)
  # A constant unit carries no signal: zero it so it correlates 0 with everything instead of dividing by 0.
  return np.where(std > 1e-12, (x - x.mean(0)) / np.where(std > 1e-12, std, 1.0), 0.0)


def unit_activations(model: nn.Module, variables: Any, x: Any, names: Sequence[str], *,
                     post: Callable[[Any], Any] | None = jax.nn.relu, **apply_kwargs) -> dict[str, np.ndarray]:
  """Each named submodule's output on ``x`` as ``[samples, units]`` (spatial positions folded into samples)."""
  names = list(names)
  if not names:
    raise ValueError("unit_activations: `names` must list at least one submodule name.")
  wanted = set(names)
  _, state = model.apply(variables, x, capture_intermediates=lambda m, _: m.name in wanted,
                         mutable=["intermediates"], **apply_kwargs)
  inter = state.get("intermediates", {})
  out = {}
  for name in names:
    if name not in inter:
      raise ValueError(f"unit_activations: no submodule named {name!r} at the top level of {type(model).__name__}; "
                       f"available: {sorted(inter)}.")
    value = np.asarray(inter[name]["__call__"][0])
    value = np.asarray(post(value)) if post is not None else value
    out[name] = value.reshape(-1, value.shape[-1])
  return out


def unit_correlations(a, b) -> np.ndarray:
  """Pearson correlation ``C_ij`` of unit ``i`` of ``a`` with unit ``j`` of ``b`` over the probe rows."""
  a, b = _pair(a, b, "unit_correlations")
  return _standardise(a).T @ _standardise(b) / a.shape[0]


def joint_correlations(a, b) -> np.ndarray:
  """The correlation matrix of the units of both nets together, ``[ua + ub, ua + ub]``."""
  a, b = _pair(a, b, "joint_correlations")
  both = np.concatenate([a, b], axis=1)
  z = _standardise(both)
  return z.T @ z / both.shape[0]


def _check_corr(corr, where, square=False):
  corr = np.asarray(corr, np.float64)
  if corr.ndim != 2 or not corr.size:
    raise ValueError(f"{where}: `corr` must be a non-empty [units_a, units_b] matrix; got shape {corr.shape}.")
  if square and corr.shape[0] != corr.shape[1]:
    raise ValueError(f"{where}: `corr` must be square (a joint correlation matrix); got shape {corr.shape}.")
  if not np.all(np.isfinite(corr)):
    raise ValueError(f"{where}: `corr` has non-finite entries.")
  return corr


def bipartite_match(corr, *, match: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The one-to-one pairing of maximal total correlation: ``(cols [units_a], values [units_a])``."""
  corr = _check_corr(corr, "bipartite_match")
  if corr.shape[0] > corr.shape[1]:
    raise ValueError(f"bipartite_match: needs units_a <= units_b to pair every row; got shape {corr.shape} "
                     f"(pass corr.T).")
  if not match:
    cols = np.arange(corr.shape[0])
    return cols, corr[cols, cols]
  rows, cols = scipy.optimize.linear_sum_assignment(corr, maximize=True)
  order = np.argsort(rows)
  cols = cols[order]
  return cols, corr[np.arange(corr.shape[0]), cols]


def semi_match(corr) -> tuple[np.ndarray, np.ndarray]:
  """Each row's most correlated column (several rows may pick one column): ``(cols, values)``."""
  corr = _check_corr(corr, "semi_match")
  cols = np.argmax(corr, axis=1)
  return cols, corr[np.arange(corr.shape[0]), cols]


def spectral_cluster_units(corr, n_clusters: int, *, seed: int = 0) -> np.ndarray:
  """Spectral clustering of units on the affinity ``max(corr, 0)``: labels ``[units]`` in ``[0, n_clusters)``."""
  from sklearn.cluster import SpectralClustering  # pylint: disable=g-import-not-at-top
  corr = _check_corr(corr, "spectral_cluster_units", square=True)
  if not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= corr.shape[0]):
    raise ValueError(f"spectral_cluster_units: `n_clusters` must be an integer in [1, {corr.shape[0]}]; got "
                     f"{n_clusters!r}.")
  affinity = np.maximum((corr + corr.T) / 2, 0.0)
  return SpectralClustering(n_clusters=n_clusters, affinity="precomputed", random_state=seed).fit_predict(affinity)


def sparse_prediction_map(a, b, alpha: float, *, max_iter: int = 5000) -> tuple[np.ndarray, float, float]:
  """Lasso regression of standardised ``b`` on standardised ``a``: ``(coef [ub, ua], mse, mean nonzeros per unit)``.

  ``alpha`` is scikit-learn's L1 weight (``1/(2n) ||B - A W^T||^2 + alpha ||W||_1``), the paper's sparsity knob.
  """
  from sklearn.linear_model import Lasso  # pylint: disable=g-import-not-at-top
  a, b = _pair(a, b, "sparse_prediction_map")
  if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha > 0):
    raise ValueError(f"sparse_prediction_map: `alpha` must be a positive number; got {alpha!r}.")
  za, zb = _standardise(a), _standardise(b)
  lasso = Lasso(alpha=alpha, fit_intercept=False, max_iter=max_iter).fit(za, zb)
  coef = np.atleast_2d(lasso.coef_)
  mse = float(np.mean((za @ coef.T - zb) ** 2))
  return coef, mse, float(np.mean(np.sum(coef != 0, axis=1)))


def loss_sparsity_curve(a, b, alphas: Sequence[float]) -> list[tuple[float, float, float]]:
  """``[(alpha, mse, mean nonzeros per unit)]`` for each L1 weight: the paper's loss-sparsity trade-off."""
  if not len(alphas):
    raise ValueError("loss_sparsity_curve: `alphas` must list at least one L1 weight.")
  return [(float(al), *sparse_prediction_map(a, b, al)[1:]) for al in alphas]
