"""Effect test for "Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data" (Dang et al., ICML
2023, arXiv 2301.00437): the regularised (deep linear) unconstrained-features model, trained in float64 (inside
``jax.enable_x64()``, no global flag) by full-batch Adam, reaches the paper's global minima. The mechanism is the
regularisation (lambda_W = lambda_H = 1e-3); the ablation is the same model, init and optimiser with lambda = 0,
whose interpolating solutions keep the init's within-class spread and show no orthogonal frame.

Measured (ZOO_TEST_SEED 0 / 1 / 2), K = 4, n_k = (40, 20, 10, 5), d = 16, init scale 1, 20k Adam steps:
  imbalanced bias-free MSE, M = 1: NC1 1.2e-32 / 4.6e-32 / 1.1e-31, max |cos(mean_k, mean_l)| 4e-17 / 2e-16 / 5e-17,
    max relative error of ||w_k||^2 against the closed form 1.1e-16 / 2.2e-16 / 2.2e-16 (predicted 6.250, 4.397,
    3.087, 2.161); ablation (lambda = 0): NC1 2.59 / 3.58 / 2.97, max |cos| 0.52 / 0.77 / 0.34, norms off by
    142% / 393% / 389%.
  balanced M = 3 (10 per class): with bias NC1 ~1e-32, ETF distance ~1e-16, NC3 cos 1.0; without bias NC1 ~1e-32,
    orthogonal-frame distance ~1e-16, NC3 cos 1.0 (seed 0; see the test's printout for the others).
"""

import numpy as np

from zoo.analysis import neural_collapse as nc

SIZES = (40, 20, 10, 5)
LAMBDA = 1e-3


def _imbalanced(seed, lam):
  labels = np.repeat(np.arange(4), SIZES)
  params, _ = nc.train_ufm(labels, 4, feature_dim=16, depth=1, lambda_W=lam, lambda_H=lam, steps=20_000,
                           learning_rate=1e-2, init_scale=1.0, seed=seed)
  return nc.nc_metrics(nc.ufm_features(params), labels, nc.ufm_classifier(params), centered=False)


def test_imbalanced_ufm_reaches_the_general_orthogonal_frame(seed):
  full = _imbalanced(seed, LAMBDA)
  ablation = _imbalanced(seed, 0.0)
  predicted, _ = nc.gof_predicted_norms(SIZES, LAMBDA, LAMBDA)
  err = lambda m: float(np.max(np.abs(m["classifier_norms"] / predicted - 1)))
  print("full", full["nc1"], full["max_mean_cos"], err(full), "ablation", ablation["nc1"], ablation["max_mean_cos"],
        err(ablation))
  assert full["nc1"] < 1e-4 and full["max_mean_cos"] < 0.02
  assert err(full) < 0.03
  assert np.all(np.diff(full["classifier_norms"]) < 0)  # ||w_k||^2 grows with n_k (sizes are decreasing)
  assert full["nc3"] > 0.99
  # without the regularisation the same training keeps the init's spread and no orthogonal frame forms
  assert ablation["nc1"] > 0.1 and ablation["max_mean_cos"] > 0.1 and err(ablation) > 0.3


def test_deep_balanced_ufm_collapses_to_etf_with_bias_and_orthogonal_frame_without(seed):
  labels = np.repeat(np.arange(4), 10)
  out = {}
  for bias in (True, False):
    params, _ = nc.train_ufm(labels, 4, feature_dim=16, depth=3, bias=bias, steps=20_000, learning_rate=1e-2,
                             seed=seed)
    out[bias] = nc.nc_metrics(nc.ufm_features(params), labels, nc.ufm_classifier(params), centered=bias)
  print({b: (m["nc1"], m["nc2_etf"], m["nc2_of"], m["nc3"]) for b, m in out.items()})
  for m in out.values():
    assert m["nc1"] < 1e-3 and m["nc3"] > 0.99
  assert out[True]["nc2_etf"] < 0.05 and out[True]["nc2_of"] > 0.5   # simplex ETF, not orthogonal
  assert out[False]["nc2_of"] < 0.05                                  # orthogonal frame
