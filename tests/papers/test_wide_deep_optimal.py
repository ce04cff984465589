"""Effect test for "Wide and Deep Neural Networks Achieve Consistency for Classification" (Radhakrishnan, Belkin,
Uhler, PNAS 2023, arXiv 2204.14126): the infinite-depth limit of the NNGP/NTK classifier is decided by the dual
activation. The paper's constructed activation (``xi = rho^7/2 + rho/2`` for S^1) tends to Devroye's Bayes-consistent
Hilbert-kernel classifier; ReLU (the ablation: same recursion, same depth, same ridgeless classifier, only ``xi``
changed) tends to the majority vote.

Data as in the official code: Dirichlet (1, 2) (label +1, prior 0.4) vs (2, 1) projected to the circle; float64 via
``jax.enable_x64()`` (a context, no global flag).

Measured (ZOO_TEST_SEED 0 / 1 / 2; n = 500 train, 1000 test, depth 500):
  constructed xi: accuracy 0.735 / 0.736 / 0.732, agreement with Devroye 0.998 / 0.996 / 0.999;
  Devroye 0.733 / 0.740 / 0.733; Bayes 0.758 / 0.763 / 0.763 (gap 2.3 / 2.7 / 3.1 pts; asserted <= 5);
  ReLU NNGP at the same depth (ablation) 0.665 / 0.677 / 0.636; 1-NN 0.676 / 0.694 / 0.660;
  majority vote 0.592 / 0.570 / 0.622.
  (At depth 2000, the previous calibration, the constructed xi's predictions are the same and ReLU's accuracy is
  0.671 / 0.688 / 0.637: the constructed kernel has reached its limit by depth 500. ReLU's recursion runs every
  layer on every entry, so depth 500 costs a quarter of depth 2000.)
  ReLU NTK (40 train / 100 test points) agreement with the majority vote at depth 10 / 10^3 / 5*10^4:
  0.69 / 0.71 / 0.99, 0.56 / 0.72 / 1.00, 0.48 / 0.49 / 0.99.
"""

import jax
import jax.numpy as jnp
import numpy as np

from zoo import ntk
from zoo.recipes.datasets.dirichlet_sphere import dirichlet_sphere_arrays

DEPTH = 500  # the constructed kernel's predictions equal depth 2000's (docstring)


def _data(seed, n_train, n_test):
  tr = dirichlet_sphere_arrays(n_train, seed=1000 + 2 * seed)
  te = dirichlet_sphere_arrays(n_test, seed=1001 + 2 * seed)
  pm = lambda a: jnp.asarray(2 * a - 1)  # {0, 1} -> {-1, +1}
  return jnp.asarray(tr["x"]), pm(tr["label"]), jnp.asarray(te["x"]), pm(te["label"]), pm(te["bayes"])


def _classify(x_train, y_train, x_test, depth, activation):
  # one kernel call (one compile) for the train Gram matrix and the train-test kernel: columns [train | test]
  log_space = ntk.dual_activation(activation).xi0 == 0.0
  n = x_train.shape[0]
  k = ntk.deep_nngp(x_train, jnp.concatenate([x_train, x_test]), depth, activation, log_space=log_space)
  if log_space:
    return ntk.kernel_classify((k[0][:, :n], k[1][:, :n]), y_train, (k[0][:, n:], k[1][:, n:]))
  return ntk.kernel_classify(k[:, :n], y_train, k[:, n:])


def test_constructed_activation_tends_to_devroye_and_beats_relu_and_1nn(seed):
  with jax.enable_x64():
    x_train, y_train, x_test, y_test, bayes = _data(seed, 500, 1000)
    acc = lambda p: float(jnp.mean(p == y_test))
    full = _classify(x_train, y_train, x_test, DEPTH, "2d_opt")
    ablation = _classify(x_train, y_train, x_test, DEPTH, "relu")
    devroye = ntk.hilbert_classifier(x_train, y_train, x_test, dim=1)
    nn1 = ntk.one_nn(x_train, y_train, x_test)
    majority = ntk.majority_vote(y_train, x_test.shape[0])
    agreement = float(jnp.mean(full == devroye))
    print(f"full {acc(full):.3f} agree-devroye {agreement:.3f} devroye {acc(devroye):.3f} bayes {acc(bayes):.3f} "
          f"relu {acc(ablation):.3f} 1nn {acc(nn1):.3f} majority {acc(majority):.3f}")
  assert agreement >= 0.95
  assert acc(full) >= acc(bayes) - 0.05
  assert acc(full) >= acc(nn1) + 0.02
  assert acc(full) >= acc(ablation) + 0.03
  assert acc(full) >= acc(majority) + 0.06


def test_relu_ntk_tends_to_majority_vote_with_depth(seed):
  with jax.enable_x64():
    x_train, y_train, x_test, _, _ = _data(seed, 40, 100)
    majority = ntk.majority_vote(y_train, x_test.shape[0])
    agree = []
    for depth in (10, 1000, 50_000):
      k = ntk.deep_ntk(x_train, jnp.concatenate([x_train, x_test]), depth, normalize=True)  # [train | test]
      pred = ntk.kernel_classify(k[:, :x_train.shape[0]], y_train, k[:, x_train.shape[0]:])
      agree.append(float(jnp.mean(pred == majority)))
    print("relu ntk agreement with majority vote", agree)
  assert agree[0] <= agree[1] + 0.02 <= agree[2] + 0.04
  assert agree[2] >= 0.9
  assert agree[2] >= agree[0] + 0.15
