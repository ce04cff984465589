"""Activation Space Selectable KANs (Yang et al., 2024, arXiv 2408.08338): S-KAN against single-space KANs and
against S-KAN with its selection switched off.

The claim: a KAN with one activation space does well on some functions and badly on others; S-KAN lets every node
select among spaces (softmax over learned selection logits; three-phase schedule: all spaces, the top 2, the
argmax), so it does well wherever some space suits each node.

Default test (the mechanism): an additive target that needs a *different* space at each input node,
``y = sin(3 pi x1) + x2`` on [-1, 1]^2 (a periodic node and a non-periodic one), and a one-layer KAN [2, 1], so the
function at each node is exactly one node's activation. Compared, all with Adam 1e-2, batch 128, 400 steps:

* the five single-space KANs ``zoo.kan.SKAN((1,), spaces=(s,))`` (B-spline, Chebyshev(tanh), Fourier, RBF,
  wavelet) -- the paper's baselines;
* S-KAN ``SKAN((1,))`` (all five spaces) trained with ``zoo.recipes.procedures.skan.train_skan`` (200 / 100 / 100
  steps for the three phases), ending with one space per node;
* the ablation: the same S-KAN and schedule with ``learn_selection=False`` (selection logits frozen at 0: a uniform
  mixture, and every narrowing keeps the first spaces, so it ends as B-spline on both nodes).

Measured (test MSE, ``ZOO_TEST_SEED`` = 0 / 1 / 2; the printed selection is each node's final space):

========  ========  =========  =======  =======  =======  ==========================  ========
seed      bspline   chebyshev  fourier  rbf      wavelet  S-KAN (selected)            ablation
========  ========  =========  =======  =======  =======  ==========================  ========
0         2.23e-1   2.87e-1    4.30e-2  5.93e-2  2.34e-2  7.79e-4 (fourier, wavelet)   2.04e-1
1         2.27e-1   2.74e-1    3.72e-2  6.24e-2  2.84e-2  4.91e-6 (fourier, bspline)   1.99e-1
2         2.21e-1   2.55e-1    4.55e-2  4.55e-2  1.85e-2  9.03e-6 (fourier, bspline)   1.90e-1
========  ========  =========  =======  =======  =======  ==========================  ========

Asserted (margins from the table): S-KAN <= 0.1x the best single space (measured 0.033x / 0.0002x / 0.0005x: it
beats every single space, more than the paper's "<= 1.5x the best"), S-KAN <= 0.02x the ablation (measured
0.004x or less), and the periodic node selects Fourier (every seed). Mutation check: with the selection logits'
gradient stopped in ``SelectableKANLayer`` (the ablation's line forced on) the S-KAN run *is* the ablation, 2.04e-1,
and the first two assertions fail.

The slow test (1000 steps, seed 0, [2, 5, 1] KANs on the three 2-D targets of the paper's kind, ``fourier``,
``bump``, ``kinks`` of ``recipes/datasets/functions.py``), measured before this rewrite:

==========  ========  =========  =======  =======  =======  ========  ========
target      bspline   chebyshev  fourier  rbf      wavelet  S-KAN     all
==========  ========  =========  =======  =======  =======  ========  ========
fourier     1.17e-3   3.14e-3    3.21e-3  1.25e-3  8.01e-3  4.17e-4   2.80e-4
bump        5.70e-6   9.50e-5    2.44e-2  8.76e-5  4.12e-5  4.15e-5   3.36e-5
kinks       5.53e-5   2.38e-4    4.70e-3  2.98e-4  2.94e-4  1.83e-4   3.73e-5
==========  ========  =========  =======  =======  =======  ========  ========

It asserts the three-phase S-KAN beats every single space on the Fourier-product target and is no worse than the
median single space on all three.

Not reproduced at this scale (the two-layer targets):

* "S-KAN within 1.5x of the best single space on every target": on the Gaussian bump the B-spline KAN (with its
  silu branch) reaches 5.7e-6 and S-KAN only ~4e-5 (~7x).
* "each single-space KAN is >= 3x worse than the best on some target": true for Chebyshev, Fourier, RBF and wavelet,
  but the B-spline KAN is the best single space on all three two-layer targets.
* "on the Fourier target most nodes' argmax is Fourier": in a [2, 5, 1] KAN on sin(2 pi x) cos(2 pi y) the selected
  spaces are mostly wavelet/RBF/B-spline (a product of harmonics needs a non-periodic second layer, and the other
  spaces fit sin(2 pi x) on [-1, 1] well at this resolution). On the additive target above, where each node's
  function is one activation, the periodic node selects Fourier on every seed.
* The schedule at short budgets on two-layer KANs: every narrowing renormalises the softmax over the kept spaces,
  so the training loss jumps ~100x and has few steps to recover (at 400 steps on ``fourier``: 0.28x / 7.2x / 10x
  the best single space, seeds 0 / 1 / 2).
"""

import jax
import numpy as np
import optax
import pytest

from zoo import kan
from zoo.recipes import train
from zoo.recipes.datasets import functions
from zoo.recipes.procedures import skan

STEPS = 400


def _additive(n, seed):
  """``y = sin(3 pi x1) + x2``, x uniform on [-1, 1]^2: node 1 wants a periodic space, node 2 a non-periodic one."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
  return {"x": x, "y": (np.sin(3 * np.pi * x[:, 0]) + x[:, 1])[:, None].astype(np.float32)}


def _single(space, data, steps, mesh, seed, features=(1,)):
  model = kan.SKAN(features, spaces=(space,), impl="xla")
  result = train.fit(model, data[0], task="regression", optimizer=optax.adam(1e-2), steps=steps, batch_size=128,
                     eval_data=data[1], mesh=mesh, seed=seed)
  return result.metrics["loss"]


def _skan(data, steps, mesh, seed, features=(1,), learn_selection=True):
  model = kan.SKAN(features, learn_selection=learn_selection, impl="xla")
  result = skan.train_skan(model, data[0], full_steps=steps // 2, selective_steps=steps // 4,
                           prune_steps=steps - steps // 2 - steps // 4, top_k=2, optimizer=optax.adam(1e-2),
                           batch_size=128, eval_data=data[1], mesh=mesh, seed=seed)
  masks = jax.tree.leaves(result.variables["selection"])
  assert all(np.all(np.asarray(m).sum(-1) == 1) for m in masks), "phase 3 keeps one space per node"
  probs = kan.selection_probabilities(result.variables)
  return result.metrics["loss"], {k: [kan.SPACES[j] for j in np.argmax(np.asarray(v), -1)] for k, v in probs.items()}


def test_skan_selects_a_space_per_node_and_beats_every_single_space_and_the_ablation(single_device_mesh, seed):
  data = _additive(1000, seed), _additive(1000, seed + 99)
  singles = {s: _single(s, data, STEPS, single_device_mesh, seed) for s in kan.SPACES}
  full, selected = _skan(data, STEPS, single_device_mesh, seed)
  ablation, ablated = _skan(data, STEPS, single_device_mesh, seed, learn_selection=False)
  best = min(singles.values())
  print({k: f"{v:.2e}" for k, v in singles.items()}, f"S-KAN {full:.2e} {selected} ({full / best:.4f}x the best "
        f"single); ablation {ablation:.2e} {ablated}")
  assert full <= 0.1 * best, "S-KAN should beat every single space when each node needs a different one"
  assert full <= 0.02 * ablation, "learned selection should beat the frozen uniform selection"
  assert selected["layers_0"][0] == "fourier", "the periodic node should select the Fourier space"


def _data(target, seed):
  return functions.sample(target, 1000, seed), functions.sample(target, 1000, seed + 99)


@pytest.mark.slow
def test_skan_is_robust_across_targets(single_device_mesh, seed):
  ratios = {}
  for target in ("fourier", "bump", "kinks"):
    data = _data(target, seed)
    singles = {s: _single(s, data, 1000, single_device_mesh, seed, features=(5, 1)) for s in kan.SPACES}
    selectable, _ = _skan(data, 1000, single_device_mesh, seed, features=(5, 1))
    best, median = min(singles.values()), float(np.median(list(singles.values())))
    ratios[target] = selectable / best
    print(target, {k: f"{v:.2e}" for k, v in singles.items()}, f"S-KAN {selectable:.2e}")
    assert selectable <= median, f"{target}: S-KAN worse than the median single space"
  print("S-KAN / best single space:", ratios)
  assert ratios["fourier"] < 1.0
  assert max(ratios.values()) < 15.0
