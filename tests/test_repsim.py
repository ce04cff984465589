"""zoo.analysis.repsim: correlations against numpy, a planted permutation recovered by the matching, semi-matching,
conv activations folded into samples, spectral clustering of planted unit groups, the Lasso map's support and the
loss-sparsity curve, bad inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import core
from zoo.analysis import repsim


def test_correlations_and_planted_permutation():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 6))
  perm = rng.permutation(8)
  full = np.concatenate([a, rng.normal(size=(500, 2))], axis=1)
  b = full[:, perm] * 3.0 + 1.0 + 0.1 * rng.normal(size=(500, 8))  # b's unit j is full's unit perm[j]
  corr = repsim.unit_correlations(a, b)
  np.testing.assert_allclose(corr, np.corrcoef(a.T, b.T)[:6, 6:], atol=1e-10)
  cols, values = repsim.bipartite_match(corr)
  np.testing.assert_array_equal(cols, np.argsort(perm)[:6])
  assert np.all(values > 0.99)
  ident_cols, ident_values = repsim.bipartite_match(corr, match=False)
  np.testing.assert_array_equal(ident_cols, np.arange(6))
  np.testing.assert_allclose(ident_values, np.diag(corr[:, :6]))
  assert np.all(repsim.semi_match(corr)[1] >= values - 1e-12)
  joint = repsim.joint_correlations(a, b)
  assert joint.shape == (14, 14)
  np.testing.assert_allclose(joint[:6, 6:], corr, atol=1e-12)
  dead = b.copy()
  dead[:, 0] = 2.0  # a constant (dead) unit correlates 0 with everything
  assert np.all(repsim.unit_correlations(a, dead)[:, 0] == 0.0)


def test_semi_matching_can_share_a_unit():
  corr = np.array([[0.9, 0.1], [0.8, 0.2]])
  assert repsim.semi_match(corr)[0].tolist() == [0, 0]
  cols, values = repsim.bipartite_match(corr)
  assert cols.tolist() == [0, 1] and values.sum() == pytest.approx(1.1)  # 0.9 + 0.2 beats 0.1 + 0.8


def test_unit_activations_mlp_and_conv():
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
  mlp = core.MLP(features=(7, 3))
  v = nn.unbox(jax.jit(mlp.init)(jax.random.key(1), x))
  acts = repsim.unit_activations(mlp, v, x, ["dense_0"])
  expected = np.maximum(np.asarray(x).reshape(5, 64) @ np.asarray(v["params"]["dense_0"]["kernel"])
                        + np.asarray(v["params"]["dense_0"]["bias"]), 0)
  np.testing.assert_allclose(acts["dense_0"], expected, rtol=1e-5, atol=1e-6)
  conv = core.ConvNet(num_classes=3, features=(4,), hidden=())
  vc = nn.unbox(jax.jit(conv.init)(jax.random.key(2), x))
  name = [k for k in vc["params"] if "conv" in k.lower()][0]
  out = repsim.unit_activations(conv, vc, x, [name], post=None)[name]
  assert out.shape == (5 * 8 * 8, 4)
  with pytest.raises(ValueError, match="no submodule named 'nope'"):
    repsim.unit_activations(mlp, v, x, ["nope"])


def test_spectral_clusters_planted_groups():
  rng = np.random.default_rng(1)
  sources = rng.normal(size=(400, 3))
  units = np.repeat(sources, 4, axis=1) + 0.3 * rng.normal(size=(400, 12))
  labels = repsim.spectral_cluster_units(repsim.joint_correlations(units[:, :6], units[:, 6:]), 3)
  # Units 0-3, 4-7, 8-11 come from one source each: every group is one cluster and the clusters differ.
  groups = [set(labels[i:i + 4]) for i in (0, 4, 8)]
  assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3


def test_lasso_finds_sparse_support_and_curve():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(600, 10))
  b = np.stack([a[:, 3] - a[:, 7], 2 * a[:, 1]], axis=1) + 0.05 * rng.normal(size=(600, 2))
  coef, mse, nnz = repsim.sparse_prediction_map(a, b, 0.05)
  assert coef.shape == (2, 10)
  assert set(np.flatnonzero(coef[0])) == {3, 7} and set(np.flatnonzero(coef[1])) == {1}
  assert mse < 0.01 and nnz == 1.5
  curve = repsim.loss_sparsity_curve(a, b, [0.001, 0.1, 0.5])
  losses, nonzeros = [c[1] for c in curve], [c[2] for c in curve]
  assert losses == sorted(losses) and nonzeros == sorted(nonzeros, reverse=True)


def test_bad_inputs():
  a = np.zeros((10, 3), np.float32)
  with pytest.raises(ValueError, match="same probe rows"):
    repsim.unit_correlations(a, np.zeros((9, 3), np.float32))
  with pytest.raises(ValueError, match=r"`a` must have shape \[samples, units\]"):
    repsim.unit_correlations(np.zeros(10, np.float32), a)
  with pytest.raises(TypeError, match="floating"):
    repsim.unit_correlations(np.zeros((10, 3), np.int32), a)
  with pytest.raises(ValueError, match="non-finite"):
    repsim.unit_correlations(np.full((10, 3), np.nan), a)
  with pytest.raises(ValueError, match="units_a <= units_b"):
    repsim.bipartite_match(np.zeros((3, 2)))
  with pytest.raises(ValueError, match="square"):
    repsim.spectral_cluster_units(np.zeros((3, 2)), 2)
  with pytest.raises(ValueError, match="n_clusters"):
    repsim.spectral_cluster_units(np.eye(3), 4)
  with pytest.raises(ValueError, match="alpha"):
    repsim.sparse_prediction_map(a, a, 0.0)
  with pytest.raises(ValueError, match="at least one"):
    repsim.unit_activations(core.MLP(features=(2,)), {}, jnp.ones((1, 2)), [])
