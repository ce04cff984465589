"""Monotone deep Boltzmann machines (Feng, Winston, Kolter, 2023, arXiv 2307.04990): part (i), uniqueness of the
mean-field fixed point. (Part (ii), joint completion / classification training on binarised digits, is not built.)

``zoo.dbm``: 8 categorical variables with 3 states each, couplings ``W = blockdiag(A^T A) - A^T A`` from a random
``A [16, 24]`` (entries N(0, 1)), biases N(0, 0.25); forward-backward splitting with proxsoftmax (alpha 0.125) from
20 random initial marginals (tol 1e-7). Three models per run, seeds ``ZOO_TEST_SEED + 0, 1, 2``.

* the paper's method: ``monotone_coupling(A, monotone=True)`` (``I - W >= 0.1 I``): every run reaches the same
  marginals, which solve ``q = softmax_blocks(W q + b)``;
* the ablation ``monotone=False`` (the same ``W`` without the block rescaling of ``A``, the same solver): several
  distinct fixed points among the runs that converge;
* the baseline: plain damped mean field ``q <- (q + softmax(W q + b)) / 2`` on the unconstrained ``W``.

Measured (seeds 0-7, calibration script): monotone spread over 20 starts <= 6.3e-7 (50-66 iterations), mean-field
residual <= 3.6e-7; ablation: 3-6 distinct fixed points among 11-20 converged runs; baseline: 3-6 distinct among
18-20 converged. Asserted: monotone spread < 1e-5 and residual < 1e-5 on every model; ablation and baseline >= 2
distinct fixed points on every model. Mutation check: dropping the rescaling (``scale = jnp.minimum(1.0, ...)``
replaced by ``scale = jnp.ones_like(norms)``) makes the monotone runs disagree and the spread assertion fails.
"""

import jax
import numpy as np
import pytest

from zoo import dbm

N, K, RANK, STARTS = 8, 3, 16, 20

# One compiled solver for every model and start (w, b, starts -> per-start marginals, iterations, residual).
_SOLVE = jax.jit(jax.vmap(lambda w, b, z0: dbm.mean_field_fixed_point(w, b, K, z0=z0, tol=1e-7, max_iter=3000),
                          in_axes=(None, None, 0)))
_NAIVE = jax.jit(jax.vmap(lambda w, b, z0: dbm.naive_mean_field(w, b, K, z0=z0, tol=1e-7, max_iter=3000),
                          in_axes=(None, None, 0)))


def _distinct(q, converged, tol=1e-3):
  reps = []
  for row in q[converged]:
    if not any(np.max(np.abs(row - r)) < tol for r in reps):
      reps.append(row)
  return len(reps)


@pytest.mark.parametrize("k", range(3))
def test_monotone_fixed_point_is_unique(k):
  from tests.conftest import seed_offset  # pylint: disable=g-import-not-at-top
  seed = seed_offset() + k
  a = jax.random.normal(jax.random.key(seed), (RANK, N * K))
  b = 0.5 * jax.random.normal(jax.random.key(100 + seed), (N * K,))
  starts = jax.nn.softmax(3 * jax.random.normal(jax.random.key(7 + seed), (STARTS, N, K)), -1).reshape(STARTS, -1)
  w = dbm.monotone_coupling(a, K)
  q, _, res = (np.asarray(x) for x in _SOLVE(w, b, starts))
  assert np.all(res < 1e-6), res
  spread = np.max(np.abs(q - q[0]))
  mf_residual = np.max(np.abs(q - np.asarray(jax.nn.softmax((q @ np.asarray(w).T + np.asarray(b)).reshape(
      STARTS, N, K), -1)).reshape(STARTS, -1)))
  w_raw = dbm.monotone_coupling(a, K, monotone=False)
  q_raw, _, res_raw = (np.asarray(x) for x in _SOLVE(w_raw, b, starts))
  ablation = _distinct(q_raw, res_raw < 1e-6)
  naive = _NAIVE(w_raw, b, starts)
  baseline = _distinct(np.asarray(naive[0]), np.asarray(naive[2]) < 1e-6)
  print(seed, "spread", spread, "mf residual", mf_residual, "ablation distinct", ablation, "of",
        int((res_raw < 1e-6).sum()), "baseline distinct", baseline)
  assert spread < 1e-5 and mf_residual < 1e-5
  assert ablation >= 2 and baseline >= 2
