"""Activation Space Selectable KANs (Yang et al., 2024, arXiv 2408.08338): S-KAN against single-space KANs.

The claim: a KAN with one activation space does well on some tasks and badly on others; S-KAN, which lets every node
select among spaces (softmax over selection logits, three-phase schedule: all spaces, top 2, argmax), does well on
all of them. Here: [2, 5, 1] KANs on formulas on [-1, 1]^2 (``recipes/datasets/functions.py``): the single-space KANs
are ``zoo.kan.SKAN(spaces=(s,))`` for each of B-spline (efficient-KAN, with its silu branch), Chebyshev(tanh),
Fourier (harmonics of [-1, 1]), Gaussian RBF and wavelet; S-KAN is ``SKAN`` with all five, trained with
``zoo.recipes.procedures.skan.train_skan`` for the same number of steps (Adam 1e-2, batch 128, 1000 training points).

Measured (test MSE; S-KAN = three-phase with half/quarter/quarter of the steps; "all" = the all-spaces mixture
trained without pruning; seed 0):

==========  ========  =========  =======  =======  =======  ========  ========
target      bspline   chebyshev  fourier  rbf      wavelet  S-KAN     all
==========  ========  =========  =======  =======  =======  ========  ========
fourier     1.17e-3   3.14e-3    3.21e-3  1.25e-3  8.01e-3  4.17e-4   2.80e-4
bump        5.70e-6   9.50e-5    2.44e-2  8.76e-5  4.12e-5  4.15e-5   3.36e-5
kinks       5.53e-5   2.38e-4    4.70e-3  2.98e-4  2.94e-4  1.83e-4   3.73e-5
==========  ========  =========  =======  =======  =======  ========  ========

(1000 steps, seed 0; the slow test.)

The default test (400 steps, ``fourier``): the five single-space KANs against the all-spaces mixture (phase 1 of
the schedule, no pruning). Test MSE:

====  ========  =========  =======  =======  ========  =======================
seed  bspline   chebyshev  fourier  rbf      wavelet   mixture (x best single)
====  ========  =========  =======  =======  ========  =======================
0     2.71e-3   4.11e-3    1.29e-2  2.77e-3  9.09e-3   3.93e-4 (0.14x)
1     2.31e-3   1.39e-2    4.92e-2  4.86e-3  3.87e-3   2.54e-3 (1.10x)
2     3.15e-3   1.06e-2    1.52e-1  4.07e-3  6.92e-4   5.68e-4 (0.82x)
====  ========  =========  =======  =======  ========  =======================

What holds and is asserted: the best single space changes with the seed (B-spline, B-spline, wavelet), and the
selectable mixture is within 1.5x of whichever it is (the paper's "<= 1.5x the best single basis", here on one
target) and >= 5x better than the worst. The slow test (1000 steps, seed 0) asserts the full three-phase S-KAN
beats every single space on the Fourier-product target and is no worse than the median single space on all three.

Not reproduced at this scale:

* The three-phase schedule at short budgets: every narrowing of the masks (top 2 at 50% of the steps, argmax at
  75%) renormalises the softmax over the kept spaces and drops the others' contributions, so the training loss
  jumps ~100x (e.g. 1.3e-3 -> 0.18) and has only ~100 steps to recover. At 400 steps the pruned S-KAN's test MSE is
  7.5e-4 / 1.67e-2 / 6.98e-3 (seeds 0 / 1 / 2): 0.28x / 7.2x / 10x the best single space. Only seed 0 of the
  1000-step slow test was run.

* "S-KAN within 1.5x of the best single space on every target": on the Gaussian bump the B-spline KAN (with its
  silu branch) reaches 5.7e-6 and S-KAN only ~4e-5 (~7x); the mixture starts every space at weight 1/5 and has
  not caught up in 1000 steps.
* "each single-space KAN is >= 3x worse than the best on some target": true for Chebyshev, Fourier, RBF and wavelet,
  but the B-spline KAN is the best single space on all three targets.
* "on the Fourier target most nodes' argmax is Fourier": the selected spaces are mostly wavelet/RBF/B-spline in the
  first layer (a product of harmonics needs a non-periodic second layer, and the other spaces fit sin(2 pi x) on
  [-1, 1] well at this resolution).
"""

import os

import jax
import numpy as np
import optax
import pytest

from zoo import kan
from zoo.recipes.procedures import skan
from zoo.recipes import train
from zoo.recipes.datasets import functions


def _single(space, data, steps, mesh, seed):
  model = kan.SKAN((5, 1), spaces=(space,), impl="xla")
  result = train.fit(model, data[0], task="regression", optimizer=optax.adam(1e-2), steps=steps, batch_size=128,
                     eval_data=data[1], mesh=mesh, seed=seed)
  return result.metrics["loss"]


def _skan(data, steps, mesh, seed):
  model = kan.SKAN((5, 1), impl="xla")
  result = skan.train_skan(model, data[0], full_steps=steps // 2, selective_steps=steps // 4,
                           prune_steps=steps - steps // 2 - steps // 4, top_k=2, optimizer=optax.adam(1e-2),
                           batch_size=128, eval_data=data[1], mesh=mesh, seed=seed)
  masks = jax.tree.leaves(result.variables["selection"])
  assert all(np.all(np.asarray(m).sum(-1) == 1) for m in masks), "phase 3 keeps one space per node"
  return result.metrics["loss"], kan.selection_probabilities(result.variables)


STEPS = int(os.environ.get("ZOO_SKAN_STEPS", 400))
SEED = int(os.environ.get("ZOO_SKAN_SEED", 0))


def _data(target, seed):
  return functions.sample(target, 1000, seed), functions.sample(target, 1000, seed + 99)


def _mixture(data, steps, mesh, seed):
  """Phase 1 alone: every node mixes all five spaces with its learned softmax weights (no pruning)."""
  model = kan.SKAN((5, 1), impl="xla")
  result = train.fit(model, data[0], task="regression", optimizer=optax.adam(1e-2), steps=steps, batch_size=128,
                     eval_data=data[1], mesh=mesh, seed=seed)
  return result.metrics["loss"]


def test_selectable_mixture_matches_the_best_single_space_without_knowing_it(single_device_mesh):
  # Which single space is best depends on the seed here (B-spline for seeds 0 and 1, wavelet for seed 2); the
  # selectable layer is within 1.5x of whichever it is, and far from the worst.
  data = _data("fourier", SEED)
  singles = {s: _single(s, data, STEPS, single_device_mesh, SEED) for s in kan.SPACES}
  mixture = _mixture(data, STEPS, single_device_mesh, SEED)
  best, worst = min(singles.values()), max(singles.values())
  print({k: f"{v:.2e}" for k, v in singles.items()}, f"S-KAN mixture {mixture:.2e} ({mixture / best:.2f}x the best)")
  assert mixture <= 1.5 * best
  assert mixture <= 0.2 * worst


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_skan_is_robust_across_targets(single_device_mesh, seed):
  ratios = {}
  for target in ("fourier", "bump", "kinks"):
    data = _data(target, seed)
    singles = {s: _single(s, data, 1000, single_device_mesh, seed) for s in kan.SPACES}
    selectable, _ = _skan(data, 1000, single_device_mesh, seed)
    best, median = min(singles.values()), float(np.median(list(singles.values())))
    ratios[target] = selectable / best
    print(target, {k: f"{v:.2e}" for k, v in singles.items()}, f"S-KAN {selectable:.2e}")
    assert selectable <= median, f"{target}: S-KAN worse than the median single space"
  print("S-KAN / best single space:", ratios)
  assert ratios["fourier"] < 1.0
  assert max(ratios.values()) < 15.0
