"""Safety Verification of Deep Neural Networks (Huang, Kwiatkowska, Wang, Wu, CAV 2017, arXiv 1610.06940).

``zoo.analysis.verify`` encodes a trained ReLU MLP exactly in z3 (rational weights, ``If(z > 0, z, 0)``) and asks
whether any point of the grid ``x + tau n``, ``|n_i| <= p`` (the paper's ladders of +-tau manipulations under its
minimality assumption) is classified differently from ``x``. The paper's claim tested here: the SMT search is
exhaustive and exact (a SAFE verdict is a proof, an UNSAFE one comes with a genuine counterexample), unlike the
adversarial-example search it is compared with (FGSM), and unlike an incomplete convex relaxation.

Setting (the issue's): iris, ``core.MLP(features=(8, 3))`` trained with Adam 1e-2 for 300 steps (seed
``ZOO_TEST_SEED``).

(a) The paper's check, tau = 0.05, p in {1, 3}, 10 test points (the 5 with the smallest logit margin and 5 others
    drawn by the seed): every z3 verdict equals brute-force enumeration of all (2p+1)^4 grid points, every UNSAFE
    witness flips the float64 prediction, and both SAFE and UNSAFE occur.
(b) Baseline and ablation on a larger region (tau = 0.15, p = 3) over the whole test split (45 points):

    * the paper's method (``exact=True``): UNSAFE exactly where brute force finds a flipped grid point, every witness
      flips the network's class;
    * the ablation ``exact=False`` (each ReLU replaced by its triangle relaxation over interval bounds, the same
      query otherwise): its UNSAFE "witnesses" often do not change the class (spurious counterexamples);
    * the baseline, FGSM to the grid corner ``x + tau p sign(grad)`` (``zoo.attacks.fgsm``): it misses unsafe
      regions whose counterexamples are not at that corner.

Measured (``ZOO_TEST_SEED`` = 0 / 1 / 2; z3 runs on every region FGSM misses and 8 others, to bound the cost):

=====================================================  ===========  ===========  ===========
quantity                                               offset 0     offset 1     offset 2
=====================================================  ===========  ===========  ===========
test accuracy                                          1.000        0.956        0.956
(a) SAFE / UNSAFE among the 20 queries, z3 == brute    13 / 7, yes  13 / 7, yes  13 / 7, yes
(b) unsafe regions of 45 (brute force)                 27           25           26
(b) unsafe regions FGSM finds (baseline)               25           22           24
(b) z3-checked regions: UNSAFE with a flipping witness 10 / 10      11 / 11      10 / 10
(b) relaxed (ablation) witnesses that do not flip      4-5 / 10     8 / 11       4 / 10
=====================================================  ===========  ===========  ===========

(z3's choice of model, hence the relaxed witness, varied by one between runs of the same seed; on all 45 test
points the relaxation's non-flipping witnesses were 11-18 and its verdict was a false UNSAFE on 0-1 region.)

Asserted: accuracy >= 0.93 (the issue's 95%: 42 of 45 would be 0.933; measured 43-45), (a) in full; (b) exact ==
brute force on every checked region with flipping witnesses, >= 2 non-flipping relaxed witnesses, FGSM misses >= 1
region (and every region it finds is unsafe). Mutation check: ``constraints.append(aj == zj)`` in place of the
exact ReLU ``If`` in ``encode_mlp_z3`` (the network made linear) fails (a): a z3 witness does not flip the class.
Cost: ~20 s on a loaded 2-core machine (300 training steps in one scan, ~40 small z3 queries).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo.analysis import verify
from zoo.recipes import data, tasks
from zoo.recipes.procedures import backprop


@pytest.fixture(scope="module")
def iris_net(seed):
  """The 4-8-3 MLP trained by the backprop procedure, its 300 steps in one ``lax.scan`` (the config's settings)."""
  sources, _ = data.load("iris")
  tr, te = sources["train"].arrays, sources["test"].arrays
  proc = backprop.Backprop(model=core.MLP(features=(8, 3)), task=tasks.Classification(input_key="x"),
                           optimizer=optax.adam(1e-2))
  batches = data.Batches(data.ArraySource(tr), 32, seed=seed)
  idx = np.stack([batches.indices(t) for t in range(300)])
  state = nn.unbox(proc.init(jax.random.key(seed), {k: v[:32] for k, v in tr.items()}))

  def body(s, i):
    return proc.step(s, {"x": jnp.asarray(tr["x"])[i], "label": jnp.asarray(tr["label"])[i]})[0], None
  state = jax.jit(lambda s: jax.lax.scan(body, s, jnp.asarray(idx))[0])(state)
  return verify.mlp_layers(proc.variables(state)), te["x"].astype(np.float64), te["label"]


@pytest.fixture(scope="module")
def seed():
  from tests.conftest import seed_offset  # pylint: disable=g-import-not-at-top
  return seed_offset()


def _flips(layers, point, label):
  return int(np.argmax(verify.forward(layers, point[None])[0])) != label


def test_smt_equals_brute_force_on_grid_regions(iris_net, seed):
  layers, x, y = iris_net
  logits = verify.forward(layers, x)
  acc = float(np.mean(logits.argmax(1) == y))
  assert acc >= 0.93, acc
  top = np.sort(logits, axis=1)
  near = np.argsort(top[:, -1] - top[:, -2], kind="stable")[:5]
  others = np.random.default_rng(seed).choice(np.setdiff1d(np.arange(len(x)), near), 5, replace=False)
  statuses = []
  for p in (1, 3):
    for i in np.concatenate([near, others]):
      v = verify.verify_region(layers, x[i], tau=0.05, p=p)
      unsafe, flipped = verify.brute_force_region(layers, x[i], tau=0.05, p=p)
      assert v.safe == (not unsafe), (p, i, v, len(flipped))
      if not v.safe:
        assert _flips(layers, v.witness, v.label), (p, i, v)
        assert np.all(np.abs(v.offsets) <= p)
      statuses.append(v.status)
  print("acc", acc, "statuses", statuses.count("SAFE"), statuses.count("UNSAFE"))
  assert "SAFE" in statuses and "UNSAFE" in statuses


def test_exact_encoding_beats_relaxation_and_fgsm(iris_net):
  layers, x, _ = iris_net
  tau, p = 0.15, 3
  unsafe_idx = [i for i in range(len(x)) if verify.brute_force_region(layers, x[i], tau=tau, p=p)[0]]
  labels = verify.forward(layers, x).argmax(1)
  corners = verify.fgsm_grid_points(layers, x, labels, tau=tau, p=p)
  fgsm_found = np.flatnonzero(verify.forward(layers, corners).argmax(1) != labels).tolist()
  missed = sorted(set(unsafe_idx) - set(fgsm_found))
  # z3 on every region FGSM misses and on the first 8 others (the solver's time is the test's cost).
  checked = missed + [i for i in unsafe_idx if i not in missed][:8]
  exact_flip, relaxed_noflip = 0, 0
  for i in checked:
    v = verify.verify_region(layers, x[i], tau=tau, p=p)
    assert not v.safe, i
    exact_flip += _flips(layers, v.witness, v.label)
    r = verify.verify_region(layers, x[i], tau=tau, p=p, exact=False)
    assert not r.safe, i  # sound: it never proves an unsafe region safe
    relaxed_noflip += not _flips(layers, r.witness, r.label)
  print("unsafe", len(unsafe_idx), "fgsm found", len(fgsm_found), "checked", len(checked), "exact flips", exact_flip,
        "relaxed non-flips", relaxed_noflip)
  assert len(unsafe_idx) >= 10
  assert exact_flip == len(checked)
  assert relaxed_noflip >= 2
  assert set(fgsm_found) <= set(unsafe_idx)
  assert len(missed) >= 1
