"""Efficient Global Optimization of Two-layer ReLU Networks (Bai, Gautam, Sojoudi, 2022, arXiv 2201.01965).

``zoo.convex_nn``: the convex program of a two-layer ReLU net with weight decay over its activation patterns,
Bai et al.'s ADMM (one Cholesky factorisation, matrix-vector iterations in one jitted scan), network recovery.

Data: ``n = 80`` points in the plane (``d = 2``, no bias: every pattern is enumerated exactly, 160 of them), targets
from a planted 3-neuron ReLU teacher plus noise 0.1 (seeded by ``ZOO_TEST_SEED``), ``beta = 1``.

* The oracle: cvxpy (Clarabel) on the same program. ADMM (``rho = 0.3``, 4000 iterations, float32) must reach its
  optimum within 1e-3 relative (PAPERS.md), with the cone constraints satisfied to 1e-3.
* The recovered network's regularised nonconvex loss equals the convex optimum (within 1e-4 relative), and is no
  worse than the best of 10 Adam runs (lr 1e-2, 5000 full-batch steps) on the planted width 3, within 1e-4
  relative (PAPERS.md: "+1e-4"; taken relative here). Several Adam runs end in worse local minima.
* The ablation of the mechanism: the same ADMM without the cone constraints (``constrained=False``, the
  unconstrained relaxation): its convex objective is below the optimum but the network read off it is not the
  solution: its real loss is far above the optimum.

Measured (``ZOO_TEST_SEED`` = 0 / 1 / 2):

====================================  =======================  =======================  =======================
quantity                              0                        1                        2
====================================  =======================  =======================  =======================
cvxpy optimum                         3.6538                   1.6385                   1.1491
ADMM objective (relative gap)         3.6556 (5.1e-4)          1.6385 (9.6e-6)          1.1492 (2.6e-5)
recovered network loss (neurons)      3.6556 (18)              1.6385 (13)              1.1492 (10)
Adam width 3, min / max of 10 runs    3.6538 / 11.85           1.6386 / 6.75            1.1548 / 2.52
ablation: no cone constraints, net    100.4                    5.99                     1.30
====================================  =======================  =======================  =======================

Adam finds the global optimum in its best run on offsets 0 and 1 (on 2 none of the 10 runs does), and ends in a worse
local minimum in several runs on every offset. Not reproduced: "the recovered net's loss <= min Adam + 1e-4": on
offset 0 ADMM needs more than 8000 iterations for a 1e-4 gap (5.1e-4 at 8000, 3.4e-4 at 12000: the convergence is
slower than linear on that instance), so the test asserts 1e-3 relative (the oracle's tolerance). Mutation check:
dropping the projection of the slacks (``s = gu + nu`` instead of ``max(gu + nu, 0)`` in ``_admm``) turns ADMM into
the relaxation: objective 3.353 against the optimum 3.654, the first assertion fails. Cost: ~11 s of CPU time.

Not implemented: the adversarially robust counterpart (the paper's Section 5) and its PGD-accuracy claim.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import convex_nn as cn

N, BETA, RHO, ITERS = 80, 1.0, 0.3, 8000


def _data(seed):
  rng = np.random.default_rng([seed, 2022])
  x = rng.normal(size=(N, 2))
  u = rng.normal(size=(2, 3))
  y = np.maximum(x @ u, 0) @ np.array([1.0, -1.0, 0.7]) + 0.1 * rng.normal(size=N)
  return x.astype(np.float32), y.astype(np.float32)


def _cvxpy_optimum(x, y, d):
  cp = pytest.importorskip("cvxpy")
  x, y = x.astype(np.float64), y.astype(np.float64)
  p = d.shape[1]
  v, w = cp.Variable((p, 2)), cp.Variable((p, 2))
  dm = d.astype(np.float64)
  pred = cp.sum(cp.multiply(dm, x @ (v - w).T), axis=1)
  s = 2 * dm - 1
  cons = [cp.multiply(s, x @ v.T) >= 0, cp.multiply(s, x @ w.T) >= 0]
  obj = 0.5 * cp.sum_squares(pred - y) + BETA * (cp.sum(cp.norm(v, 2, axis=1)) + cp.sum(cp.norm(w, 2, axis=1)))
  problem = cp.Problem(cp.Minimize(obj), cons)
  problem.solve(solver="CLARABEL")
  return problem.value


def _adam(x, y, width, runs, seed):
  model = cn.TwoLayerReLU(width=width)
  tx = optax.adam(1e-2)

  def run(key):
    params = nn.unbox(model.init(key, x))["params"]
    loss = lambda p: cn.network_objective(x, y, p["u"], p["alpha"], BETA)  # noqa: E731

    def body(carry, _):
      p, st = carry
      g = jax.grad(loss)(p)
      updates, st = tx.update(g, st, p)
      return (optax.apply_updates(p, updates), st), None
    params = jax.lax.scan(body, (params, tx.init(params)), None, length=5000)[0][0]
    return loss(params)
  return np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(seed), runs)))


def test_admm_reaches_the_global_optimum_and_recovers_the_network(seed):
  x, y = _data(seed)
  d = cn.enumerate_patterns_2d(x)
  assert d.shape[1] == 2 * N  # points in general position: 2n sectors
  optimum = _cvxpy_optimum(x, y, d)

  result = cn.admm_solve(x, y, d, BETA, rho=RHO, iters=ITERS)
  objective = float(result.objective[-1])
  u, alpha = cn.recover_network(result.v, result.w)
  net = float(cn.network_objective(x, y, u, alpha, BETA))
  relaxed = cn.admm_solve(x, y, d, BETA, rho=RHO, iters=ITERS, constrained=False)
  ru, ralpha = cn.recover_network(relaxed.v, relaxed.w)
  relaxed_net = float(cn.network_objective(x, y, ru, ralpha, BETA))
  adam = _adam(x, y, 3, 10, seed)
  print(dict(optimum=optimum, admm=objective, gap=(objective - optimum) / optimum, violation=float(result.violation),
             net=net, neurons=u.shape[1], adam_min=adam.min(), adam_max=adam.max(),
             relaxed=float(relaxed.objective[-1]), relaxed_net=relaxed_net))

  assert abs(objective - optimum) <= 1e-3 * optimum
  assert float(result.violation) <= 1e-3
  assert abs(net - objective) <= 1e-4 * objective  # recovery keeps the objective: the constraints hold
  assert net <= adam.min() * (1 + 1e-3)
  assert adam.max() >= optimum + 0.3  # gradient descent at the planted width can end in worse minima
  # Ablation: without the cone constraints the program is a relaxation (lower value), but its network is not.
  assert float(relaxed.objective[-1]) <= optimum
  assert relaxed_net >= 1.08 * optimum


# ---- Section 5: the adversarially robust counterpart, on make_moons ----------------------------------------------

M_TRAIN, M_TEST, NOISE, EPS, M_BETA, M_ITERS = 60, 400, 0.3, 0.15, 0.01, 1000


def _pgd_accuracy(u, alpha, x, y, eps):
  from zoo import attacks  # pylint: disable=g-import-not-at-top
  f = lambda p: jax.nn.relu(jnp.concatenate([p, jnp.ones((p.shape[0], 1))], 1) @ u) @ alpha  # noqa: E731
  logits = lambda p: jnp.stack([-f(p), f(p)], 1)  # noqa: E731
  adv = attacks.pgd_linf(logits, jnp.asarray(x[:, :2]), jnp.asarray(y > 0, jnp.int32), eps, eps / 4, 20,
                         key=jax.random.key(0))
  return float(jnp.mean(jnp.sign(f(adv)) == y)), float(jnp.mean(jnp.sign(f(jnp.asarray(x[:, :2]))) == y))


def test_robust_convex_net_beats_the_standard_one_under_pgd(seed):
  from zoo.recipes.datasets.moons import moons_arrays  # pylint: disable=g-import-not-at-top
  x, y = moons_arrays(M_TRAIN, NOISE, 2 * seed)
  xt, yt = moons_arrays(M_TEST, NOISE, 2 * seed + 1)
  robust_patterns = cn.sample_patterns(x, 20000, jax.random.key(seed), eps=EPS, perturbed=2)[:, :64]
  patterns = cn.sample_patterns(x, 64, jax.random.key(seed))
  robust = cn.robust_admm_solve(x, y, robust_patterns, M_BETA, EPS, rho=0.1, iters=M_ITERS, perturbed=2)
  ablation = cn.robust_admm_solve(x, y, patterns, M_BETA, 0.0, rho=0.1, iters=M_ITERS, perturbed=2)
  standard = cn.admm_solve(x, y, patterns, M_BETA, rho=RHO, iters=M_ITERS)
  acc = {name: _pgd_accuracy(*cn.recover_network(r.v, r.w), xt, yt, EPS)
         for name, r in (("robust", robust), ("ablation", ablation), ("standard", standard))}
  print(dict(acc, robust_patterns=robust_patterns.shape[1], violation=float(robust.violation)))
  assert float(robust.violation) <= 1e-2  # the patterns hold over the balls (up to ADMM accuracy)
  assert acc["robust"][0] >= acc["standard"][0] + 0.06  # PGD accuracy at the training eps, the paper's claim
  assert acc["robust"][0] >= acc["ablation"][0] + 0.06  # eps = 0: the same solver, the mechanism off
