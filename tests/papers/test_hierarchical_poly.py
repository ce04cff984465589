"""Learning Hierarchical Polynomials with Three-Layer Neural Networks (Wang, Nichani, Lee, ICLR 2024, arXiv
2311.13774): ``zoo.hierarchical_poly`` + ``zoo.recipes.procedures.hier_poly``.

Setting (PAPERS.md): d = 12, n = 20000 (D1 = D2 = 10000), ``y = p(x)^3`` with ``p`` the unit-variance quadratic
feature of a balanced +-1 spectrum ``A``; test on 5000 fresh samples. ``ThreeLayerNet`` (m2 = 300 He_2 inner
features, m1 = 500), layer-wise training (one GD step on ``W``, then ridge on the outer layer, l2 = 1e-3).

* Full method: ``train_layerwise`` (stage 1 on).
* Ablation: ``feature_learning=False`` (stage 1 skipped; the same ridge on random middle features).
* Baseline: ``random_features_krr``, 500 random ReLU features of ``x`` (the same width m1) on all 20000 samples,
  the same l2.

Metrics: the median over the m1 neurons of ``|corr(preactivation, p)|`` on the test set after stage 1, and the test
MSE normalised by ``Var(y)``.

Seeds: the ``seed`` fixture of tests/conftest.py, i.e. ``ZOO_TEST_SEED`` (default 0) + k, k = 0, 1, 2.
Measured per seed (offset 0 runs seeds 0, 1, 2; offset 1 runs 1, 2, 3; offset 2 runs 2, 3, 4):

====  =================  =====================  =================  =====================  ==============
seed  full median |corr|  ablation median |corr|  full test NMSE     ablation test NMSE     RF-KRR NMSE
====  =================  =====================  =================  =====================  ==============
0     0.844              0.072                  0.486              0.505                  0.649
1     0.883              0.072                  0.427              0.433                  0.664
2     0.893              0.073                  0.411              0.537                  0.679
3     0.793              0.073                  0.523              0.441                  0.617
4     0.770              0.072                  0.632              0.591                  0.710
====  =================  =====================  =================  =====================  ==============

Asserted (every offset): on every seed full |corr| >= 0.7, ablation |corr| <= 0.2, full NMSE <= KRR NMSE - 0.03
(measured margins 0.078-0.268), mean margin >= 0.06 (0.15-0.21). Not reproduced: PAPERS.md's |corr| >= 0.8 holds
on 3 of 5 seeds only (0.77-0.89; the degree-2 projection of p^3 is not exactly proportional to p at d = 12), its
NMSE < 0.3 vs KRR > 0.7 is measured 0.41-0.63 vs 0.62-0.71, and the feature-learning step does not lower the test
NMSE against the ablation at this single d (random middle features over the He_2 inner layer already fit g(p)
about as well): the paper's claim is a sample-complexity rate in d, which one d = 12 run cannot show. With l2 = 1e-5
seed 4's full NMSE blew up to 1.48 (tail extrapolation), hence l2 = 1e-3.

Mutation check: ``w = w - 0.0 * lr * jax.grad(loss)(w)`` in ``train_layerwise`` (the stage-1 step removed) makes the
full run identical to the ablation (|corr| 0.072) and ``full |corr| >= 0.7`` fails.
"""

import numpy as np
import jax

from zoo import hierarchical_poly as H
from zoo.recipes.procedures import hier_poly

D, N, N_TEST = 12, 20000, 5000


def _run(s):
  rng = np.random.default_rng(s)
  A = H.quadratic_feature_matrix(rng, D)  # pylint: disable=invalid-name
  train, test = H.hierarchical_target(rng, N, D, A=A), H.hierarchical_target(rng, N_TEST, D, A=A)
  model = H.ThreeLayerNet()
  variables = model.init(jax.random.key(s), train["x"][:2])
  half, var = N // 2, test["y"].var()
  out = {}
  for name, fl in (("full", True), ("ablation", False)):
    trained = hier_poly.train_layerwise(model, variables, train["x"][:half], train["y"][:half], train["x"][half:],
                                        train["y"][half:], jax.random.key(100 + s), feature_learning=fl)
    pre = np.asarray(model.apply(trained, test["x"], method="preactivations"))
    pre_c, p_c = pre - pre.mean(0), test["p"] - test["p"].mean()
    corr = np.abs(pre_c.T @ p_c) / (np.linalg.norm(pre_c, axis=0) * np.linalg.norm(p_c) + 1e-30)
    out[name] = (float(np.median(corr)), float(np.mean((model.apply(trained, test["x"]) - test["y"]) ** 2) / var))
  pred = hier_poly.random_features_krr(jax.random.key(s), train["x"], train["y"], test["x"], 500)
  out["krr"] = float(np.mean((np.asarray(pred) - test["y"]) ** 2) / var)
  return out


def test_layerwise_training_learns_the_hidden_feature(seed):
  runs = [_run(seed + k) for k in range(3)]
  print(runs)
  for r in runs:
    assert r["full"][0] >= 0.7, r         # stage 1 recovers p (measured 0.79-0.89)
    assert r["ablation"][0] <= 0.2, r     # without it the middle layer is unrelated to p (0.07)
    assert r["full"][1] <= r["krr"] - 0.03, r  # the three-layer net beats random-features KRR on every seed
  assert np.mean([r["krr"] - r["full"][1] for r in runs]) >= 0.06, runs
