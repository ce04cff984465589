"""Monotone deep Boltzmann machines (Feng, Winston, Kolter, 2023, arXiv 2307.04990): part (i), uniqueness of the
mean-field fixed point; part (ii), joint completion / classification training on binarised digits (slow).

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

Part (ii) (``@pytest.mark.slow``, ~100 s on the loaded 2-core machine): ``MonotoneDBM(num_hidden=16, rank=64)`` on
binarised digits (pixel > 0.5), trained by ``procedures.monotone_dbm.JointCompletion`` (a random 50% of pixels
hidden per step, label CE + hidden-pixel CE), Adam 1e-2, batch 64, 150 steps, seed ``ZOO_TEST_SEED``; tested with a
fixed random 50% of each test image's pixels hidden. Ablation ``monotone=False``; baseline logistic regression
(sklearn) on the observed pixels (hidden ones 0), trained on random 50% masks.

==========================================  ==============  ==============
(accuracy / hidden-pixel completion acc.)   offset 0        offset 1
==========================================  ==============  ==============
mDBM (method)                               0.640 / 0.769   0.624 / 0.764
``monotone=False`` (ablation)               0.500 / 0.652   0.098 / 0.434
logistic regression on observed pixels      0.673           0.673
==========================================  ==============  ==============

NOT reproduced: PAPERS.md's accuracy >= 0.8 (600 steps, 16-32 hidden blocks, rank 64-128 give 0.61-0.66; the label
CE plateaus near 1.4), and the mDBM does not beat logistic regression here. Asserted (what holds): accuracy >= 0.5,
completion >= 0.7, and the ablation's accuracy at least 0.05 lower (or non-finite). Offset 2 not calibrated (time).
Mutation check: the rescaling line of ``group_coupling`` replaced by ``scale = jnp.ones_like(norms)`` (see the note).
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


# ---------------------------------------------------------------- part (ii): joint completion and classification

STEPS_II, BATCH_II = 150, 64
ACC_MIN, COMPLETION_MIN, ABLATION_GAP = 0.5, 0.7, 0.05


def _train_dbm(monotone, seed, tr):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from zoo.recipes import tasks  # pylint: disable=g-import-not-at-top
  from zoo.recipes.procedures import monotone_dbm  # pylint: disable=g-import-not-at-top
  model = dbm.MonotoneDBM(num_hidden=16, rank=64, monotone=monotone)
  proc = monotone_dbm.JointCompletion(model=model, task=tasks.Classification(), optimizer=optax.adam(1e-2))
  x, y = jnp.asarray(tr["image"]), jnp.asarray(tr["label"])
  idx = jnp.asarray(np.random.default_rng(seed).integers(0, len(y), (STEPS_II, BATCH_II)))

  def run(s, idx):
    state = nn.unbox(proc.init(jax.random.key(s), {"image": x[:2], "label": y[:2]}))
    return jax.lax.scan(lambda st, i: (proc.step(st, {"image": x[i], "label": y[i]})[0], None), state, idx)[0]
  return proc, jax.jit(run)(seed, idx)


@pytest.mark.slow
def test_joint_completion_classifies_with_half_the_pixels_hidden():
  """Part (ii) (slow: two mean-field trainings of 150 steps; see the module docstring for the numbers)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from tests.conftest import seed_offset  # pylint: disable=g-import-not-at-top
  from zoo.recipes import data  # pylint: disable=g-import-not-at-top
  seed = seed_offset()
  sources, _ = data.load("digits")
  tr, te = sources["train"].arrays, sources["test"].arrays
  test_batch = {"image": jnp.asarray(te["image"]), "label": jnp.asarray(te["label"])}
  results = {}
  for name, monotone in (("mdbm", True), ("ablation", False)):
    proc, state = _train_dbm(monotone, seed, tr)
    ev = jax.jit(proc.evaluate)(state, test_batch)
    results[name] = (float(np.nanmean(np.asarray(ev["accuracy"]))),
                     float(np.nanmean(np.asarray(ev["completion_accuracy"]))))
  # Baseline: logistic regression on the observed binarised pixels (hidden ones set to 0), trained on random
  # 50% masks of the training images and tested on the model's fixed test mask.
  rng = np.random.default_rng(seed)
  xb_tr = (tr["image"].reshape(len(tr["image"]), -1) > 0.5).astype(np.float32)
  xb_te = (te["image"].reshape(len(te["image"]), -1) > 0.5).astype(np.float32)
  obs_tr = rng.uniform(size=xb_tr.shape) >= 0.5
  obs_te = np.asarray(jax.random.uniform(jax.random.key(0), xb_te.shape) >= 0.5)
  logreg = LogisticRegression(max_iter=2000).fit(xb_tr * obs_tr, tr["label"])
  results["logreg"] = (float(np.mean(logreg.predict(xb_te * obs_te) == te["label"])), float("nan"))
  print(seed, results)
  acc, completion = results["mdbm"]
  assert acc >= ACC_MIN and completion >= COMPLETION_MIN, results
  assert acc >= results["ablation"][0] + ABLATION_GAP or not np.isfinite(results["ablation"][0]), results
