"""Unit tests of zoo.colbert, the colbert procedure's task and metrics, and the concept_match dataset."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import colbert
from zoo.recipes import data, sharding
from zoo.recipes.procedures import colbert as colbert_proc

# Parameter inits draw from unsafe_rbg keys: XLA compiles them far faster than threefry (these tests use no seed's
# particular values).
KEY = lambda seed: jax.random.key(seed, impl="unsafe_rbg")
SMALL = dict(vocab_size=50, embed_dim=16, num_layers=0, num_heads=2, mlp_dim=32, max_length=16, dim=8, impl="xla")


def _batch(seed=0, b=4, lq=5, ld=7, m=2):
  rng = np.random.default_rng(seed)
  tok = lambda *s: rng.integers(1, 50, size=s).astype(np.int32)
  doc = tok(b, ld)
  doc[:, -2:] = 0  # right padding
  return {"query": jnp.asarray(tok(b, lq)), "doc": jnp.asarray(doc), "negative": jnp.asarray(tok(b, m, ld))}


# Every test of the shared model uses one batch size (8: the mesh's size), so the jitted forward compiles once.
B = 8


@functools.cache
def _init_and_forward():
  """``(model, variables, model.apply(variables, _batch(b=B)))``: init and forward in one compile."""
  model = colbert.ColBERT(**SMALL)

  @jax.jit
  def init_and_apply(key, batch):
    variables = model.init(key, batch)
    return variables, model.apply(variables, batch)

  return (model, *init_and_apply(KEY(0), _batch(b=B)))


@pytest.fixture(scope="module")
def model_and_vars():
  return _init_and_forward()[:2]


def test_shapes_unit_vectors_and_padding(model_and_vars):
  model, variables = model_and_vars
  batch = _batch(b=B)
  scores = _init_and_forward()[2]
  assert scores.shape == (B, B + B * 2) and scores.dtype == jnp.float32

  @jax.jit
  def encode_and_score(variables, batch):  # one compile for the encode and score paths
    vecs = model.apply(variables, batch["doc"], method=colbert.ColBERT.encode)
    rerank = model.apply(variables, batch["query"], batch["doc"][:, None], method=colbert.ColBERT.score)
    neg = model.apply(variables, batch["query"], batch["negative"], method=colbert.ColBERT.score)  # [b, 2]
    return vecs, rerank, neg

  vecs, rerank, neg = encode_and_score(variables, batch)
  norms = np.linalg.norm(np.asarray(vecs), axis=-1)
  np.testing.assert_allclose(norms[:, :-2], 1.0, rtol=1e-5)
  assert (norms[:, -2:] == 0).all()
  # MaxSim of unit vectors: each query token contributes a cosine in [-1, 1]
  assert np.all(np.abs(np.asarray(scores)) <= 5 + 1e-4)
  # in-batch column i of row i is the score of query i against its own doc, as the reranking path computes it
  np.testing.assert_allclose(np.diag(np.asarray(scores)[:, :B]), np.asarray(rerank)[:, 0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(scores)[1, B + 2:B + 4], np.asarray(neg)[1], rtol=1e-5, atol=1e-5)


def test_maxsim_by_hand():
  """s(q, d) = sum_i max_j q_i . d_j over the valid document tokens, computed here with numpy loops."""
  rng = np.random.default_rng(1)
  q, d = rng.normal(size=(1, 3, 4)).astype(np.float32), rng.normal(size=(1, 2, 5, 4)).astype(np.float32)
  mask = np.ones((1, 2, 5), bool)
  mask[0, 1, 3:] = False
  want = [sum(max(float(q[0, i] @ d[0, n, j]) for j in range(5) if mask[0, n, j]) for i in range(3))
          for n in range(2)]
  np.testing.assert_allclose(colbert.maxsim(jnp.asarray(q), jnp.asarray(d), doc_mask=jnp.asarray(mask))[0], want,
                             rtol=1e-5)


def test_jit_vmap_and_sharded_forward(model_and_vars):
  model, variables = model_and_vars
  batch = _batch(b=B)
  eager = model.apply(variables, batch)  # the one un-jitted call
  np.testing.assert_allclose(_init_and_forward()[2], eager, rtol=1e-5, atol=1e-5)
  stacked = {k: jnp.stack([v, v[::-1]]) for k, v in batch.items()}
  out = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, stacked)
  np.testing.assert_allclose(out[0], eager, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out[1][:, :8], eager[::-1, ::-1][:, 16:], rtol=1e-5, atol=1e-5)
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  sharded = {k: jax.device_put(v, NamedSharding(mesh, P(("data", "fsdp")))) for k, v in batch.items()}
  with jax.set_mesh(mesh):
    out = jax.jit(model.apply)(variables, sharded)
  np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-5)


def test_each_query_token_sends_gradient_to_one_document_token(model_and_vars):
  """The paper's argument, numerically: d score / d (document token vectors) is nonzero at one token per query token."""
  model, variables = model_and_vars
  batch = _batch(b=B)
  encode = jax.jit(lambda v, t: model.apply(v, t, method=colbert.ColBERT.encode))
  q = encode(variables, batch["query"])[:1]  # [1, lq, k]
  d = encode(variables, batch["doc"])[:1, None]  # [1, 1, ld, k]
  mask = (batch["doc"] != 0)[:1, None]
  one_hot = jnp.eye(q.shape[1])
  score = lambda d, w: colbert.maxsim(q, d, doc_mask=mask, query_mask=w[None] > 0).sum()
  grads = jax.jit(jax.vmap(lambda w: jax.grad(score)(d, w)))(one_hot)  # [lq, 1, 1, ld, k]: query token i alone
  touched = (np.abs(np.asarray(grads)).sum(-1) > 0).reshape(q.shape[1], -1)
  assert (touched.sum(-1) == 1).all(), touched


def test_projection_variants():
  x = jnp.ones((2, 3, 16))
  for name in colbert.PROJECTIONS:  # structure and shapes only: abstract evaluation, nothing compiled
    proj = colbert.make_projection(name, 8)
    params = jax.eval_shape(proj.init, jax.random.key(0), x)["params"]
    assert jax.eval_shape(proj.apply, {"params": params}, x).shape == (2, 3, 8)
    names = set(params)
    spec = colbert.PROJECTIONS[name]
    if name == "linear":
      assert names == {"linear"} and "bias" not in params["linear"]  # ColBERT's Linear(bias=False)
      continue
    assert ("shortcut" in names) == spec["residual"]
    assert ("gate_0" in names) == spec["gated"]
    hidden = params["wi_0"]["kernel"].unbox().shape[-1] if hasattr(params["wi_0"]["kernel"], "unbox") else \
        params["wi_0"]["kernel"].shape[-1]
    assert hidden == int(spec["expansion"] * 8)
  # nonlinear=False: a linear map (f(2x) = 2 f(x) once the biases are zero)
  z = jnp.asarray(np.random.default_rng(2).normal(size=(5, 16)), jnp.float32)

  def f_z_and_f_2z(proj):  # one compile per module: init, then f(z) and f(2z)
    v = proj.init(KEY(1), x)
    return proj.apply(v, z), proj.apply(v, 2 * z)

  f1, f2 = jax.jit(f_z_and_f_2z, static_argnums=0)(colbert.FFNProj(8, use_bias=False, nonlinear=False))
  np.testing.assert_allclose(f2, 2 * f1, rtol=1e-5, atol=1e-5)
  f1, f2 = jax.jit(f_z_and_f_2z, static_argnums=0)(colbert.FFNProj(8, use_bias=False))
  assert not np.allclose(f2, 2 * f1, atol=1e-3)


def test_frozen_encoder_gets_no_gradient():
  model = colbert.ColBERT(**{**SMALL, "num_layers": 1}, freeze_encoder=True)  # a transformer layer gets no gradient
  batch = _batch()
  task = colbert_proc.Contrastive()

  # Any parameter values show it: random ones in the init's structure (abstract init, so nothing compiles but the
  # gradient).
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype),
                        jax.eval_shape(model.init, KEY(0), batch)["params"])
  grads = jax.jit(jax.grad(lambda p: jnp.mean(task.loss(model.apply({"params": p}, batch), batch))))(params)
  enc = jax.tree.leaves(grads["encoder"])
  assert enc and all(np.abs(np.asarray(g)).max() == 0.0 for g in enc)
  assert any(np.abs(np.asarray(g)).max() > 0.0 for g in jax.tree.leaves(grads["project"]))


def test_contrastive_task_and_rerank_metrics():
  task = colbert_proc.Contrastive(temperature=0.5)
  batch = _batch(b=3, m=1)
  scores = jnp.array([[3.0, 1.0, 0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 1.0, 0.0, 0.0, 5.0]])
  logits = np.asarray(scores) / 0.5
  want = [np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(3)]
  np.testing.assert_allclose(jax.jit(task.loss)(scores, batch), want, rtol=1e-4, atol=1e-5)
  m = jax.jit(task.metrics)(scores, batch)
  np.testing.assert_allclose(m["mrr"], [1.0, 0.5, 0.5])
  np.testing.assert_allclose(m["recall_at_1"], [1.0, 0.0, 0.0])
  assert set(task.inputs(batch)) == {"query", "doc", "negative"}
  with pytest.raises(ValueError, match="in-batch scores"):
    task.loss(scores[:, :4], batch)
  # one relevant document ranked second: NDCG = 1 / log2(3), MRR = 1/2, AP = 1/2
  r = jax.jit(colbert_proc.rerank_metrics)(jnp.array([[0.3, 0.9, 0.1]]), jnp.array([[1, 0, 0]]))
  np.testing.assert_allclose(r["ndcg_at_10"], [1 / np.log2(3)], rtol=1e-5)
  np.testing.assert_allclose(r["mrr"], [0.5])
  np.testing.assert_allclose(r["ap"], [0.5])
  with pytest.raises(ValueError, match="queries, candidates"):
    colbert_proc.rerank_metrics(jnp.zeros(3), jnp.zeros(3))


def test_bad_inputs(model_and_vars):
  model, variables = model_and_vars
  batch = _batch(b=B)
  with pytest.raises(TypeError, match="'query'"):
    model.apply(variables, batch["query"])
  with pytest.raises(TypeError, match="integer"):
    model.apply(variables, {**batch, "query": batch["query"].astype(jnp.float32)})
  with pytest.raises(ValueError, match=f"batch={B}"):
    model.apply(variables, {**batch, "doc": batch["doc"][:2]})
  with pytest.raises(ValueError, match="negative"):
    model.apply(variables, {**batch, "negative": batch["negative"][..., :3]})
  with pytest.raises(ValueError, match="tokens"):  # out-of-range ids are an error, not a wrapped gather
    model.apply(variables, {**batch, "query": batch["query"].at[0, 0].set(99)})
  with pytest.raises(ValueError, match="projection"):
    colbert.ColBERT(**SMALL, projection="mlp").init(jax.random.key(0), batch)
  with pytest.raises(ValueError, match="depth"):
    colbert.FFNProj(8, depth=0).init(jax.random.key(0), jnp.ones((2, 4)))


def test_concept_match_dataset():
  sources, info = data.load("concept_match", seed=0, vocab_size=65, concepts=16, train_size=50, test_size=20,
                            candidates=10, hard=3, doc_length=10, min_doc_length=6)
  concept_of = np.asarray(info.metadata["concept_of"])
  te = sources["test"].arrays
  assert te["candidates"].shape == (20, 10, 10) and te["labels"].shape == (20, 10)
  assert (te["labels"].sum(1) == 1).all()
  for i in range(20):
    q = te["query"][i]
    assert len(set(concept_of[q])) == 4
    pos = te["candidates"][i][te["labels"][i] == 1][0]
    pos = pos[pos > 0]
    assert set(concept_of[q]) <= set(concept_of[pos])  # every query concept, by a synonym
    assert not set(q) & set(pos)
  tr = sources["train"].arrays
  for i in range(50):
    q, neg = tr["query"][i], tr["negative"][i]
    assert len(set(q) & set(neg[neg > 0])) == 2  # the hard negative: exact tokens for half the concepts
    assert 6 <= int((tr["doc"][i] > 0).sum()) <= 10
  with pytest.raises(ValueError, match="multiple of `concepts`"):
    data.load("concept_match", vocab_size=64, concepts=16)
