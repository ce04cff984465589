"""Unit tests of zoo.embedding_pooling, the contrastive recipe pieces and the stdlib docstring corpus."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import embedding_pooling as E
from zoo.recipes.procedures import contrastive
from zoo.recipes import sharding
from zoo.recipes import train
from zoo.recipes.datasets import text

SMALL = dict(vocab_size=text.VOCAB_SIZE, embed_dim=16, num_layers=3, num_heads=2, mlp_dim=32, max_length=24,
             num_latents=4, pool_heads=2)


def _tokens():
  lengths = np.array([5, 12, 20, 9, 3, 16, 7, 11])
  return jnp.asarray(np.stack([text.encode("the quick brown fox jumps"[:n - 1], 24) for n in lengths]))


@pytest.mark.parametrize("pooling", sorted(E.POOLINGS))
@pytest.mark.parametrize("causal", [True, False])
def test_embedding_model_shapes_norm_and_padding_invariance(pooling, causal):
  model = E.EmbeddingModel(pooling=pooling, causal=causal, **SMALL)
  tokens = _tokens()
  variables = jax.jit(model.init)(jax.random.key(0), tokens)
  apply = jax.jit(model.apply)
  out = apply(variables, tokens)
  assert out.shape == (8, 16) and out.dtype == jnp.float32
  np.testing.assert_allclose(jnp.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
  # Extra right padding changes nothing: padding is never attended to and never pooled.
  padded = jnp.pad(tokens[:, :20], ((0, 0), (0, 4)))  # the longest example (20 tokens) still fits
  np.testing.assert_allclose(apply(variables, padded), out, rtol=1e-4, atol=1e-5)
  for leaf in jax.tree.leaves(variables["params"], is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)):
    assert isinstance(leaf, nn.LogicallyPartitioned) and len(leaf.names) == leaf.value.ndim


def test_poolers_read_what_they_should():
  hidden = jax.random.normal(jax.random.key(0), (3, 2, 5, 8))  # [layers, batch, length, features]
  mask = jnp.array([[True, True, True, False, False], [True] * 5])
  np.testing.assert_allclose(E.last_token(hidden, mask), hidden[:, jnp.arange(2), jnp.array([2, 4])])
  np.testing.assert_allclose(E.mean_pool(hidden[-1], mask)[0], hidden[-1, 0, :3].mean(0), rtol=1e-6)
  np.testing.assert_allclose(E.EOSPooling().apply({}, hidden, mask), E.l2_normalize(hidden[-1, jnp.arange(2),
                                                                                          jnp.array([2, 4])]))

  def grads(pooler):
    variables = jax.jit(pooler.init)(jax.random.key(0), hidden, mask)
    return jax.jit(jax.grad(lambda h: pooler.apply(variables, h, mask).sum()))(hidden)

  g_last = grads(E.LastLayerTrainablePooling(4, 2))
  g_multi = grads(E.MultiLayerTrainablePooling(4, 2))
  g_all = grads(E.LastLayerTrainablePooling(4, 2, last_token_only=False))
  assert float(jnp.abs(g_last[:-1]).max()) == 0.0  # last-layer pooling reads only the last layer ...
  assert float(jnp.abs(g_last[-1, 0, :2]).max()) == 0.0  # ... at the EOS token only (reference code)
  assert float(jnp.abs(g_multi[0, 0, 2]).max()) > 0  # ML-TP reads every layer's EOS state
  assert float(jnp.abs(g_multi[:, 0, :2]).max()) == 0.0
  assert float(jnp.abs(g_all[-1, 0, 0]).max()) > 0 and float(jnp.abs(g_all[-1, 0, 3:]).max()) == 0.0  # not padding


def test_multi_layer_pooling_ablation_flags():
  hidden = jax.random.normal(jax.random.key(0), (3, 2, 5, 8))
  mask = jnp.array([[True, True, True, False, False], [True] * 5])

  def grads(pooler):
    variables = jax.jit(pooler.init)(jax.random.key(0), hidden, mask)
    f = lambda p, h: pooler.apply({"params": p}, h, mask).sum()
    return jax.jit(jax.grad(f, argnums=(0, 1)))(nn.unbox(variables["params"]), hidden)

  _, g_last_only = grads(E.MultiLayerTrainablePooling(4, 2, last_layer_only=True))
  assert float(jnp.abs(g_last_only[:-1]).max()) == 0.0 and float(jnp.abs(g_last_only[-1, 0, 2]).max()) > 0
  for layer_attention in (True, False):
    g_params, g_hidden = grads(E.MultiLayerTrainablePooling(4, 2, layer_attention=layer_attention))
    attn = g_params["latent_attention"]["cross_attention"]
    qk = max(float(jnp.abs(attn[k]["kernel"]).max()) for k in ("query", "key"))
    # Uniform weights: the query-key scores are unused; the layers are still all read (through the values).
    assert (qk > 0) == layer_attention
    assert float(jnp.abs(g_hidden[0, 0, 2]).max()) > 0 and float(jnp.abs(g_hidden[:, 0, :2]).max()) == 0.0


def test_causal_embedding_ignores_nothing_but_the_future_and_language_model():
  model = E.EmbeddingModel(pooling="mean", causal=True, **SMALL)
  tokens = _tokens()
  variables = jax.jit(model.init)(jax.random.key(0), tokens)
  logits = jax.jit(lambda v, t: model.apply(v, t, method="language_model"))(variables, tokens)
  assert logits.shape == (8, 24, text.VOCAB_SIZE)
  hidden = jax.jit(lambda v, t: model.apply(v, t, method="hidden_states")[0])
  changed = tokens.at[1, 8].set(50)
  a, b = hidden(variables, tokens), hidden(variables, changed)
  np.testing.assert_allclose(a[:, 1, :8], b[:, 1, :8], atol=1e-5)
  bidir = E.EmbeddingModel(pooling="mean", causal=False, **SMALL)
  hb = jax.jit(lambda v, t: bidir.apply(v, t, method="hidden_states")[0])
  assert float(jnp.abs(hb(variables, tokens)[:, 1, :8] - hb(variables, changed)[:, 1, :8]).max()) > 1e-4


def test_frozen_backbone_gets_no_gradient():
  tokens = _tokens()
  for freeze in (True, False):
    model = E.EmbeddingModel(pooling="multi_layer", freeze_backbone=freeze, **SMALL)
    variables = jax.jit(model.init)(jax.random.key(0), tokens)
    g = jax.jit(jax.grad(lambda p: model.apply({"params": p}, tokens)[:, 0].sum()))(nn.unbox(variables["params"]))
    backbone = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g["backbone"]))
    assert (backbone == 0.0) == freeze
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g["pool"])) > 0


def test_sharded_forward_on_8_devices():
  model = E.EmbeddingModel(pooling="multi_layer", causal=False, **SMALL)
  tokens = _tokens()
  variables = jax.jit(model.init)(jax.random.key(0), tokens)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(tokens, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, jax.jit(model.apply)(variables, tokens), rtol=1e-4, atol=1e-5)
  stacked = jax.jit(jax.vmap(lambda t: model.apply(variables, t)))(tokens.reshape(2, 4, 24))
  np.testing.assert_allclose(stacked.reshape(8, 16), out, rtol=1e-4, atol=1e-5)


def test_infonce_and_retrieval_metrics():
  task = contrastive.InfoNCE(temperature=0.5)
  batch = {"query": jnp.ones((3, 4), jnp.int32), "doc": jnp.ones((3, 6), jnp.int32)}
  stacked = task.inputs(batch)
  assert stacked.shape == (6, 6) and int(stacked[0, 5]) == 0  # right-padded to one length
  q = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  d = jnp.array([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0]])
  outputs = jnp.concatenate([q, d])
  qn, dn = E.l2_normalize(q), E.l2_normalize(d)
  expected = optax.softmax_cross_entropy_with_integer_labels(qn @ dn.T / 0.5, jnp.arange(3))
  np.testing.assert_allclose(task.loss(outputs, batch), expected, rtol=1e-5)
  metrics = task.metrics(outputs, batch)
  np.testing.assert_allclose(metrics["recall_at_1"], [1.0, 1.0, 0.0])
  r = contrastive.retrieval_metrics(q, d, k=2)
  np.testing.assert_allclose(r["rank"], [1, 1, 3])
  np.testing.assert_allclose(r["mrr_at_k"], [1.0, 1.0, 0.0])
  np.testing.assert_allclose(r["mrr"], [1.0, 1.0, 1 / 3])
  # Ties do not count for the positive: a collapsed embedding (every score equal) is not a perfect retriever.
  collapsed = contrastive.retrieval_metrics(jnp.ones((3, 2)), jnp.ones((4, 2)), k=2)
  np.testing.assert_allclose(collapsed["rank"], [1, 2, 3])
  np.testing.assert_allclose(collapsed["recall_at_k"], [1.0, 1.0, 0.0])
  shuffled = contrastive.retrieval_metrics(jnp.ones((64, 2)), jnp.ones((64, 2)), key=jax.random.key(0))
  assert float(shuffled["mrr"].mean()) < 0.2  # random tie-breaking: about (ln 64 + 0.58) / 64 = 0.074
  np.testing.assert_allclose(task.metrics(jnp.ones((6, 2)), batch)["recall_at_1"], [1.0, 0.0, 0.0])
  with pytest.raises(ValueError, match=r"docs.*m >= n"):
    contrastive.retrieval_metrics(q, d[:2])
  with pytest.raises(ValueError, match="one embedding per input row"):
    task.loss(q, batch)
  with pytest.raises(KeyError, match="doc"):
    task.inputs({"query": batch["query"]})


def test_pretrain_then_contrast_phases_and_initial_params(single_device_mesh):
  tokens = np.asarray(_tokens())
  data = {"query": tokens[:, :12], "doc": tokens}
  model = E.EmbeddingModel(pooling="eos", **SMALL)
  result = train.fit(model, data, task=contrastive.InfoNCE(), procedure=contrastive.PretrainThenContrast,
                     procedure_kwargs={"pretrain_steps": 2}, steps=3, batch_size=8, mesh=single_device_mesh,
                     log_every=1, optimizer=optax.adam(1e-2))
  assert [h["train/lm_phase"] for h in result.history] == [1.0, 1.0, 0.0]
  assert result.history[0]["train/loss"] > 4.0  # next-token cross-entropy over 259 bytes starts near log(259)
  # initial_params: the backbone starts from the given parameters.
  backbone = nn.unbox(result.variables["params"]["backbone"])
  proc = contrastive.PretrainThenContrast(model=model, task=contrastive.InfoNCE(), optimizer=optax.adam(1e-3),
                                          initial_params={"backbone": backbone})
  state = nn.unbox(proc.init(jax.random.key(5), data))
  np.testing.assert_array_equal(state.params["backbone"]["embed"]["embedding"], backbone["embed"]["embedding"])
  with pytest.raises(ValueError, match="does not"):
    contrastive.PretrainThenContrast(model=model, task=contrastive.InfoNCE(), optimizer=optax.adam(1e-3),
                                     initial_params={"nope": backbone}).init(jax.random.key(0), data)


def test_docstring_corpus():
  assert text.decode(text.encode("héllo", 8)) == "héllo"
  encoded = text.encode("abcdefghij", 5)
  assert encoded.tolist()[-1] == text.EOS and text.decode(encoded) == "abcd"
  pairs = text.docstring_pairs()
  assert len(pairs) > 1000 and pairs == text.docstring_pairs()  # deterministic
  assert len({(q, d) for _, q, d in pairs}) == len(pairs)
  gen = text.stdlib_docstrings(query_length=32, doc_length=48, test_size=100)
  train_split, test_split = gen.splits["train"], gen.splits["test"]
  assert test_split["query"].shape == (100, 32) and test_split["doc"].shape == (100, 48)
  assert not set(train_split["index"].tolist()) & set(test_split["index"].tolist())
  assert (train_split["doc"] == text.EOS).sum(1).min() == 1  # exactly one EOS, right-padded


@pytest.mark.parametrize("kwargs, tokens, match", [
    (dict(pooling="max"), jnp.ones((2, 5), jnp.int32), r"pooling"),
    (dict(pooling="eos"), jnp.ones((2, 5)), r"tokens.*integer"),
    (dict(pooling="eos"), jnp.ones((2, 5, 1), jnp.int32), r"tokens.*rank 2"),
])
def test_bad_input_raises_a_clear_error(kwargs, tokens, match):
  with pytest.raises((ValueError, TypeError), match=match):
    E.EmbeddingModel(**{**SMALL, **kwargs}).init(jax.random.key(0), tokens)
