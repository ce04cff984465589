"""Effect test: "What can a Single Attention Layer Learn? A Study Through the Random Features Lens" (Fu, Guo, Bai,
Mei, 2023, arXiv 2307.11353).

Setting (PAPERS.md): query and N = 8 keys on S^7 (d = 8), 2000 training and 2000 test samples, random-feature
attention with M = 256 heads (2048 features) against a two-layer ReLU random-feature network with 2048 features on
the flattened input, both fitted by ridge regression with the same lambda grid (lambda picked on a validation split
of the training set).

Target: one attention head, ``f = (1/N) sum_i exp(2 <x_0, x_i>) <beta, x_i>``, a permutation-invariant function of
the keys. In the same test: the paper's baseline (the RFMLP) and the ablation, the same RFA with its attention over
the random query-key features switched off (``attn='uniform'``: weights 1/N, every head returns the mean key).
Measured (normalised test MSE, ZOO_TEST_SEED 0 / 1 / 2):

* RFA 0.057 / 0.051 / 0.051; RFA with non-zero-mean W = I + G 0.0048 / 0.0037 / 0.0041;
* ablation RFA with uniform attention 0.497 / 0.493 / 0.488; baseline RFMLP 0.284 / 0.276 / 0.285.

Asserted: RFA/RFMLP < 0.5 (measured 0.18-0.20; the paper's sample-complexity advantage; PAPERS.md asked < 0.7),
RFA < 0.25 x the uniform-attention ablation (measured 0.10-0.12) and the non-zero-mean sampling beats zero-mean
on this target (the paper's third implication). Mutation check: replacing the exp-attention weights by uniform ones
in ``RandomFeatureAttention._features`` makes RFA = the ablation (0.497) and fails RFA/RFMLP < 0.5 (1.75).
Slow: the same check on data seed ZOO_TEST_SEED + 3 (seed 3: RFA 0.052, uniform 0.482, biased 0.0042, RFMLP 0.281).

Deviation: PAPERS.md suggested the target (1/N) sum <x_0, x_i>^3. With the paper's exp-attention features
``exp(x_0^T W x_i) <v, x_i>`` every term has degree k in x_0 and k + 1 in x_i, i.e. opposite parities on the sphere,
while <x_0, x_i>^3 is odd in both: the target is orthogonal to the whole model class. Measured: RFA nMSE 1.00
(exp and softmax), RFMLP 0.95: neither learns it at this size; ``test_inner_cubic_is_outside_the_class`` (slow)
keeps that fact checked.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import random_features
from zoo.recipes import data

L2_GRID = [10.0 ** k for k in np.arange(-7.0, 0.5, 0.5)]


def _load(target, seed=0):
  sources, _ = data.load("rf_attention_targets", target=target, d=8, num_keys=8, seed=seed)
  return sources["train"].arrays, sources["test"].arrays


def _ridge_nmse(model, train, test, seed=0):
  """Normalised test MSE with lambda picked on the last quarter of the training set (one eigendecomposition)."""
  variables = model.init(jax.random.key(seed), train["x"][:2])
  feats = np.asarray(model.apply(variables, train["x"], method="features"))
  feats_test = np.asarray(model.apply(variables, test["x"], method="features"))
  n_fit = len(feats) * 3 // 4
  weights = np.asarray(random_features.fit_ridge(feats[:n_fit], train["y"][:n_fit], L2_GRID))  # [grid, P]
  val = ((feats[n_fit:] @ weights.T - train["y"][n_fit:, None]) ** 2).mean(0)
  best = int(np.argmin(val))
  pred = feats_test @ weights[best]
  return float(np.mean((pred - test["y"]) ** 2) / np.var(test["y"]))


def _run(seed):
  train, test = _load("attention_head", seed)
  return {
      "rfa": _ridge_nmse(random_features.RandomFeatureAttention(256), train, test, seed),
      # Ablation: the same model, the attention over the random query-key features switched off (weights 1/N).
      "rfa_uniform": _ridge_nmse(random_features.RandomFeatureAttention(256, attn="uniform"), train, test, seed),
      "rfa_biased": _ridge_nmse(random_features.RandomFeatureAttention(256, mean_scale=1.0), train, test, seed),
      "rfmlp": _ridge_nmse(random_features.RandomFeatureMLP(2048), train, test, seed),
  }


def _check(r):
  print(r)
  assert r["rfmlp"] > 0.15  # the baseline really is worse, not both trivially perfect
  assert r["rfa"] / r["rfmlp"] < 0.5
  assert r["rfa"] < 0.25 * r["rfa_uniform"]  # the random attention, not the keys' mean, does the work
  assert r["rfa_biased"] < 0.5 * r["rfa"]


def test_random_feature_attention_beats_random_feature_mlp(seed):
  _check(_run(seed))


@pytest.mark.slow
def test_random_feature_attention_beats_random_feature_mlp_other_seed(seed):
  _check(_run(seed + 3))


def test_keys_permutation_invariance():
  x = random_features.sphere_inputs(np.random.default_rng(0), 16, 9, 8)
  perm = np.concatenate([[0], 1 + np.random.default_rng(1).permutation(8)])
  for attn in ("exp", "softmax"):
    model = random_features.RandomFeatureAttention(64, attn=attn)
    variables = model.init(jax.random.key(0), x)
    variables = jax.tree.map(lambda v: v, variables)
    variables["params"]["value"] = jax.tree.map(
        lambda v: jax.random.normal(jax.random.key(2), v.shape), variables["params"]["value"])
    out, out_perm = model.apply(variables, jnp.asarray(x)), model.apply(variables, jnp.asarray(x[:, perm]))
    np.testing.assert_allclose(out_perm, out, atol=1e-6)
    assert float(jnp.std(out)) > 1e-2  # a non-trivial function
  # The baseline on the flattened input is not invariant.
  mlp = random_features.RandomFeatureMLP(64)
  variables = mlp.init(jax.random.key(0), x)
  variables["params"]["readout"] = jax.tree.map(lambda v: jnp.ones_like(v), variables["params"]["readout"])
  change = mlp.apply(variables, jnp.asarray(x[:, perm])) - mlp.apply(variables, jnp.asarray(x))
  assert float(jnp.max(jnp.abs(change))) > 1e-3


@pytest.mark.slow
def test_inner_cubic_is_outside_the_class():
  train, test = _load("inner_cubic")
  for attn in ("exp", "softmax"):
    nmse = _ridge_nmse(random_features.RandomFeatureAttention(256, attn=attn), train, test)
    print(attn, nmse)
    assert nmse > 0.9
