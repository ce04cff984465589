"""Effect test for "Exact Learning of Permutations for Nonzero Binary Inputs with Logarithmic Training Size and
Quadratic Ensemble Complexity" (Giapitzakis, Back de Luca, Fountoulakis, 2025, arXiv 2502.16763).

k = 6: 64 two-layer NTK-parameterised ReLU nets of width 4096 (one jit, vmap over seeds) trained by full-batch GD on
the 6 basis vectors only (final training MSE < 1e-4), tested on all 63 nonzero binary inputs. The mechanism is
ensembling + the rounding step; the ablation is a single net (M = 1) with the same rounding, and a second baseline is
plain rounding at 1/2 instead of the paper's threshold between the infinite ensemble's two output levels.

Measured (ZOO_TEST_SEED 0 / 1 / 2), exact-match rate over the 63 inputs for M = 1, 4, 16, 64 (averaged over the
64/M disjoint groups of nets):
  midpoint rounding  [0.311, 0.617, 0.913, 1.0] / [0.308, 0.649, 0.940, 1.0] / [0.336, 0.696, 0.960, 1.0]
  top-||x||_1        [0.522, 0.835, 0.984, 1.0] / [0.528, 0.877, 1.000, 1.0] / [0.561, 0.892, 0.992, 1.0]
  rounding at 1/2    [0.268, 0.468, 0.683, 0.825] / [0.285, 0.548, 0.810, 1.0] / [0.292, 0.507, 0.679, 0.810]
  infinite-ensemble mean (closed-form NTK), rounded: 1.0 on every seed. Max training MSE ~1e-14.
"""

import jax.numpy as jnp
import numpy as np

from zoo import ntk_ensembles as ne


def _rates(outputs, x, y, rule):
  rates = []
  for m in (1, 4, 16, 64):
    groups = outputs.reshape(64 // m, m, *outputs.shape[1:]).mean(1)
    rates.append(float(np.mean([np.mean(np.asarray(ne.exact_match(ne.round_prediction(g, x, rule), y)))
                                for g in groups])))
  return rates


def test_ensemble_learns_the_permutation_exactly(seed):
  task = ne.permutation_task(6, seed)
  x_train, y_train = jnp.asarray(task["x_train"]), jnp.asarray(task["y_train"])
  x, y = jnp.asarray(task["x_test"]), task["y_test"]
  params, mse = ne.train_ensemble(x_train, y_train, num_models=64, width=4096, steps=200, learning_rate=2.0,
                                  seed=seed)
  assert float(mse.max()) < 1e-4
  mean = ne.infinite_ensemble_mean(x_train, y_train, x)
  # (i) the infinite ensemble, rounded, is exactly P x on every nonzero binary input (and top-s agrees)
  assert bool(jnp.all(ne.exact_match(ne.round_prediction(mean, x), y)))
  assert bool(jnp.all(ne.exact_match(ne.round_prediction(mean, x, "topk"), y)))
  outputs = ne.ensemble_outputs(params, x)
  full = _rates(outputs, x, y, "midpoint")
  half = _rates(outputs, x, y, "half")
  print("midpoint", full, "half", half, "topk", _rates(outputs, x, y, "topk"))
  # (ii) exact-match rate grows with the ensemble size, reaching >= 0.95 at M = 64 ~ k^2
  assert all(a <= b + 1e-9 for a, b in zip(full, full[1:]))
  assert full[-1] >= 0.95
  assert full[0] <= 0.5 and full[-1] >= full[0] + 0.4  # a single net (the ablation) is far from exact
  assert full[2] >= half[2] + 0.05  # the paper's threshold beats plain rounding at 1/2
