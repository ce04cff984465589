"""Unit tests of zoo.ranking (DSSM, CDSSM, KNRM, DRMM, MatchPyramid, Duet), the ranking task and the docstring
ranking dataset."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import ranking
from zoo.recipes import sharding
from zoo.recipes.procedures.ranking import ListRanking

V, H = 40, 64


def _inputs(seed=0, b=8, n=4, lq=3, ld=12, t=4):
  rng = np.random.default_rng(seed)
  q = rng.integers(1, V, size=(b, lq)).astype(np.int32)
  q[:, -1] = 0  # a padded query slot
  d = rng.integers(1, V, size=(b, n, ld)).astype(np.int32)
  d[:, :, -3:] = 0
  d[:, 0, 2] = q[:, 0]  # candidate 0 holds an exact match
  return {"query": jnp.asarray(q), "docs": jnp.asarray(d),
          "query_tri": jnp.asarray(rng.integers(1, H, size=(b, lq, t)) * (q[..., None] > 0), jnp.int32),
          "docs_tri": jnp.asarray(rng.integers(1, H, size=(b, n, ld, t)) * (d[..., None] > 0), jnp.int32),
          "query_idf": jnp.asarray(rng.uniform(1, 5, size=(b, lq)), jnp.float32)}


MODELS = {
    "dssm": ranking.DSSM(H, hidden=(16, 8)),
    "cdssm": ranking.CDSSM(H, filters=8, features=8),
    "knrm": ranking.KNRM(V, embed_dim=8),
    "drmm": ranking.DRMM(V, embed_dim=8),
    "matchpyramid": ranking.MatchPyramid(V, embed_dim=8, pool=(3, 4)),
    "duet": ranking.Duet(V, H, filters=8, hidden=8),
}


# Parameter inits draw from unsafe_rbg keys: XLA compiles them far faster than threefry (no test here depends on a
# seed's particular values).
KEY = lambda seed: jax.random.key(seed, impl="unsafe_rbg")


@functools.cache
def _compiled(name):
  """``(variables, apply(variables, _inputs()))`` of ``MODELS[name]``, init and forward in one compile, shared across
  tests."""
  model = MODELS[name]

  @jax.jit
  def init_and_apply(key, x):
    variables = model.init(key, x)
    return variables, model.apply(variables, x)

  return init_and_apply(KEY(0), _inputs())


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_jit_vmap(name):
  model = MODELS[name]
  x = _inputs()
  variables, out = _compiled(name)
  assert out.shape == (8, 4) and out.dtype == jnp.float32 and np.isfinite(np.asarray(out)).all()
  if name not in ("knrm", "dssm"):  # vmap: one interaction and one representation model
    return
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), x)
  both = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, stacked)
  np.testing.assert_allclose(both[1], out, rtol=1e-5, atol=1e-5)


def test_sharded_forward():
  x = _inputs()
  variables, want = _compiled("knrm")
  apply = jax.jit(MODELS["knrm"].apply)
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  xs = jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, P(("data", "fsdp")))), x)
  with jax.set_mesh(mesh):
    out = apply(variables, xs)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_knrm_kernels_and_features_by_hand():
  mus, sigmas = ranking.kernel_mus_sigmas()
  np.testing.assert_allclose(mus, [1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9], atol=1e-6)
  np.testing.assert_allclose(sigmas, [1e-3] + [0.1] * 10)
  assert len(ranking.kernel_mus_sigmas(exact_match=False)[0]) == 10
  # phi_k = sum_i 0.01 log(sum_j exp(-(M_ij - mu_k)^2 / 2 sigma_k^2)) with M the embedding cosines
  model = ranking.KNRM(V, embed_dim=8)
  x = _inputs(b=1, n=1)
  variables = jax.jit(model.init)(KEY(1), x)
  phi = np.asarray(jax.jit(functools.partial(model.apply, method=ranking.KNRM.features))(variables, x))[0, 0]
  emb = np.asarray(variables["params"]["embedding"]["embedding"].unbox())
  q, d = np.asarray(x["query"])[0], np.asarray(x["docs"])[0, 0]
  unit = lambda v: v / np.linalg.norm(v)
  want = np.zeros(11)
  for i in q[q > 0]:
    for k in range(11):
      kk = sum(np.exp(-(unit(emb[i]) @ unit(emb[j]) - mus[k]) ** 2 / (2 * sigmas[k] ** 2)) for j in d[d > 0])
      want[k] += 0.01 * np.log(max(kk, 1e-10))
  np.testing.assert_allclose(phi, want, rtol=1e-4, atol=1e-5)
  # the exact match planted in candidate 0 fires the mu=1 kernel for one of the two query words (no match at all
  # would give 2 * 0.01 * log(1e-10) = -0.46)
  assert phi[0] > -0.3


def test_letter_trigrams():
  t = ranking.letter_trigrams("good", 1000, 8)
  assert (t[:4] > 0).all() and (t[4:] == 0).all()  # #go goo ood od#
  np.testing.assert_array_equal(ranking.letter_trigrams("good", 1000, 8), t)  # deterministic
  assert set(ranking.letter_trigrams("goods", 1000, 8)[:4]) >= set(t[:3])  # shared trigrams


def test_list_ranking_task():
  scores = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
  batch = {"labels": jnp.array([[1, 0, 0], [1, 0, 0]]), "docs": jnp.zeros((2, 3, 4), jnp.int32),
           "query": jnp.zeros((2, 2), jnp.int32)}
  task = ListRanking(loss_name="pairwise_hinge")
  # relu(1 - (s_pos - s_neg)) averaged over the (pos, neg) pairs of a list: [(0 + 0) / 2, ((1 + 3) + (1 + 1)) / 2]
  np.testing.assert_allclose(jax.jit(task.loss)(scores, batch), [0.0, 3.0], atol=1e-6)
  m = jax.jit(task.metrics)(scores, batch)
  np.testing.assert_allclose(m["mrr"], [1.0, 1 / 3], rtol=1e-6)
  soft = ListRanking(loss_name="softmax", list_size=2)
  assert soft.inputs(batch)["docs"].shape == (2, 2, 4)
  np.testing.assert_allclose(jax.jit(soft.loss)(scores[:, :2], batch),
                             [np.log1p(np.exp(-1.0)), np.log1p(np.exp(3.0))], rtol=1e-5)
  with pytest.raises(ValueError, match="loss_name"):
    ListRanking(loss_name="lambda")
  with pytest.raises(ValueError, match="candidates"):
    task.loss(scores[:, :2], batch)


def test_bad_inputs():
  x = _inputs()
  knrm = MODELS["knrm"]
  variables = _compiled("knrm")[0]
  with pytest.raises(ValueError, match="`query` must hold indices"):
    knrm.apply(variables, {**x, "query": x["query"].at[0, 0].set(V)})
  with pytest.raises(TypeError, match="integer"):
    knrm.apply(variables, {**x, "docs": x["docs"].astype(jnp.float32)})
  with pytest.raises(ValueError, match="batch=8"):
    knrm.apply(variables, {**x, "docs": x["docs"][:2]})
  dssm_vars = _compiled("dssm")[0]
  with pytest.raises(TypeError, match="'query_tri'"):
    MODELS["dssm"].apply(dssm_vars, {"query": x["query"], "docs": x["docs"]})
  with pytest.raises(ValueError, match="docs_tri"):
    MODELS["dssm"].apply(dssm_vars, {**x, "docs_tri": x["docs_tri"].at[0, 0, 0, 0].set(H)})
  with pytest.raises(ValueError, match="multiples of pool"):  # a shape error: raised while tracing
    jax.eval_shape(ranking.MatchPyramid(V, embed_dim=8, pool=(2, 5)).init, KEY(0), x)


def test_docstring_ranking_unseen_words():
  from zoo.recipes import data  # pylint: disable=g-import-not-at-top
  sources, info = data.load("docstring_ranking", seed=0)
  tr, te = sources["train"].arrays, sources["test"].arrays
  train_words = set(tr["query"][tr["query"] > 0].tolist())
  test_words = set(te["query"][te["query"] > 0].tolist())
  assert train_words and test_words and not train_words & test_words
  assert (te["labels"].sum(1) == 1).all() and te["docs"].shape[1] == 50
  assert (tr["labels"][:, :info.metadata["train_candidates"]].sum(1) == 1).all()
  pos = te["docs"][te["labels"] == 1]  # [queries, d]: the source document holds every query word
  for q, d in zip(te["query"], pos):
    assert set(q[q > 0].tolist()) <= set(d.tolist())
