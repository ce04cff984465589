"""Convergent Learning: Do different neural networks learn the same representations? (Li, Yosinski, Clune, Lipson,
Hopcroft, ICLR 2016, arXiv 1511.07543).

``zoo.analysis.repsim`` correlates the units of two networks on one probe set and pairs them. The paper's claim
tested here: two networks of one architecture trained from different seeds learn many units that correspond one to
one (high correlation after the maximum bipartite matching, far above what a random-init network gives), and the
units of one net are well predicted by a *sparse* linear map from the other's.

Setting (the issue's): sklearn digits, two ``core.MLP(features=(128, 64, 10))`` trained with Adam 1e-3, batch 64,
400 steps, seeds ``ZOO_TEST_SEED + 0, 1`` (one ``vmap``-ed scan); a third net of the same architecture at its
random initialisation (seed ``+ 2``). Probe set: all 1797 digits (more rows make the chance level of a matched
correlation lower); post-ReLU activations of both hidden layers.

* the paper's method: Hungarian matching (``bipartite_match``, ``scipy.optimize.linear_sum_assignment``) of net 1's
  units to net 2's;
* the ablation ``bipartite_match(match=False)``: the same correlations, unit ``i`` compared with unit ``i`` (no
  permutation found);
* the baseline: the same matching of net 1 against the random-init net;
* the control: net 2's probe rows shuffled (matched correlation at chance).

Measured (mean matched correlation, layers dense_0 (128 units) / dense_1 (64 units)):

===========================================  =============  =============  =============
quantity                                     offset 0       offset 1       offset 2
===========================================  =============  =============  =============
test accuracy of the 2 nets                  0.971 / 0.971  0.971 / 0.971  0.971 / 0.978
trained vs trained, matched (method)         0.639 / 0.611  0.635 / 0.654  0.638 / 0.691
trained vs trained, identity (ablation)      0.005 / 0.050  0.041 / 0.046  0.008 / -0.008
trained vs random init, matched (baseline)   0.474 / 0.394  0.476 / 0.438  0.469 / 0.415
rows shuffled, matched (control)             0.044 / 0.035  0.046 / 0.039  0.048 / 0.040
semi-matching                                0.694 / 0.636  0.664 / 0.711  0.686 / 0.727
Lasso alpha 0.01 mse, dense_1 from net 1     0.031          0.035          0.032
  ... from the random-init net               0.105          0.099          0.125
===========================================  =============  =============  =============

(Lasso at alpha 0.01: each net-2 unit uses ~15 of net 1's units, ~39 of the random net's.) The paper finds
stronger convergence in early layers (conv1 vs conv5 of AlexNet); on this 2-hidden-layer MLP the two layers are
about equal (not reproduced at this scale).

Asserted: accuracies >= 0.95; mean over layers of (matched - random-init matched) >= 0.15 and each layer >= 0.1;
matched - identity >= 0.4 per layer; shuffled < 0.1; semi-matching >= matching; the Lasso map from the trained
net has half the loss of the one from the random net with fewer units. Mutation check:
``linear_sum_assignment(corr, maximize=False)`` in ``bipartite_match`` (the minimum-weight matching) drops the
matched correlation far below the random-init baseline and the first gap assertion fails.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo.analysis import repsim
from zoo.recipes import data, tasks
from zoo.recipes.procedures import backprop

STEPS, BATCH, LAYERS = 400, 64, ("dense_0", "dense_1")


@pytest.fixture(scope="module")
def nets():
  from tests.conftest import seed_offset  # pylint: disable=g-import-not-at-top
  seed = seed_offset()
  sources, _ = data.load("digits")
  tr, te = sources["train"].arrays, sources["test"].arrays
  model = core.MLP(features=(128, 64, 10))
  proc = backprop.Backprop(model=model, task=tasks.Classification(), optimizer=optax.adam(1e-3))
  seeds = [seed, seed + 1]
  idx = np.stack([np.stack([data.Batches(data.ArraySource(tr), BATCH, seed=s).indices(t) for t in range(STEPS)])
                  for s in seeds])
  x, y = jnp.asarray(tr["image"]), jnp.asarray(tr["label"])

  def one(s, idx):
    state = nn.unbox(proc.init(jax.random.key(s), {"image": x[:2], "label": y[:2]}))
    return jax.lax.scan(lambda st, i: (proc.step(st, {"image": x[i], "label": y[i]})[0], None), state, idx)[0]
  states = jax.jit(jax.vmap(one))(jnp.asarray(seeds), jnp.asarray(idx))
  trained = [proc.variables(jax.tree.map(lambda v, k=k: v[k], states)) for k in range(2)]
  random_init = proc.variables(nn.unbox(proc.init(jax.random.key(seed + 2), {"image": tr["image"][:2],
                                                                            "label": tr["label"][:2]})))
  accs = [float(np.mean(np.asarray(model.apply(v, te["image"])).argmax(1) == te["label"])) for v in trained]
  probe = np.concatenate([tr["image"], te["image"]])
  acts = [repsim.unit_activations(model, v, probe, LAYERS) for v in (*trained, random_init)]
  return accs, acts


def test_trained_nets_share_units(nets):
  accs, (a1, a2, ar) = nets
  assert min(accs) >= 0.95, accs
  perm = np.random.default_rng(0).permutation(a1[LAYERS[0]].shape[0])
  gaps, rows = [], {}
  for layer in LAYERS:
    corr = repsim.unit_correlations(a1[layer], a2[layer])
    matched = repsim.bipartite_match(corr)[1].mean()
    identity = repsim.bipartite_match(corr, match=False)[1].mean()
    baseline = repsim.bipartite_match(repsim.unit_correlations(a1[layer], ar[layer]))[1].mean()
    shuffled = repsim.bipartite_match(repsim.unit_correlations(a1[layer], a2[layer][perm]))[1].mean()
    semi = repsim.semi_match(corr)[1].mean()
    rows[layer] = np.round([matched, identity, baseline, shuffled, semi], 3).tolist()
    gaps.append(matched - baseline)
    assert matched - baseline >= 0.1, (layer, rows[layer])
    assert matched - identity >= 0.4, (layer, rows[layer])
    assert shuffled < 0.1, (layer, rows[layer])
    assert semi >= matched - 1e-12, (layer, rows[layer])
  print("accs", accs, "matched/identity/random/shuffled/semi", rows)
  assert np.mean(gaps) >= 0.15, (gaps, rows)


def test_sparse_map_from_trained_net_beats_random(nets):
  _, (a1, a2, ar) = nets
  _, mse, nnz = repsim.sparse_prediction_map(a1["dense_1"], a2["dense_1"], 0.01)
  _, mse_r, nnz_r = repsim.sparse_prediction_map(ar["dense_1"], a2["dense_1"], 0.01)
  print("lasso mse/nonzeros trained", mse, nnz, "random", mse_r, nnz_r)
  assert mse <= 0.5 * mse_r and nnz < nnz_r, (mse, nnz, mse_r, nnz_r)
