"""Unit tests of zoo.embedding_pooling, the contrastive recipe pieces and the stdlib docstring corpus."""

import functools

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

# Two blocks: still several layers for the multi-layer pooler (each block adds seconds of compile).
SMALL = dict(vocab_size=text.VOCAB_SIZE, embed_dim=16, num_layers=2, num_heads=2, mlp_dim=32, max_length=24,
             num_latents=4, pool_heads=2, impl="xla")  # impl: see test_poolers_read_what_they_should
# Compiling, not running, is this file's cost: XLA's backend optimization level 0 halves it (the comparisons below
# are between programs compiled the same way, and the numbers move by float rounding only).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, **kw):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def _tokens():
  lengths = np.array([5, 12, 20, 9, 3, 16, 7, 11])
  return jnp.asarray(np.stack([text.encode("the quick brown fox jumps"[:n - 1], 24) for n in lengths]))


@functools.cache
def _variables(pooling):
  """``EmbeddingModel(pooling)``'s initial variables on `_tokens`, shared by the tests: the parameters do not depend
  on ``causal`` or ``freeze_backbone`` (one compiled init per pooling)."""
  return _jit(E.EmbeddingModel(pooling=pooling, **SMALL).init)(jax.random.key(0), _tokens())


@functools.cache
def _apply(pooling, causal):
  """One jitted ``apply`` per model, shared by the tests."""
  return _jit(E.EmbeddingModel(pooling=pooling, causal=causal, **SMALL).apply)


@pytest.mark.parametrize("pooling", sorted(E.POOLINGS))
@pytest.mark.parametrize("causal", [True, False])
def test_embedding_model_shapes_norm_and_padding_invariance(pooling, causal):
  tokens = _tokens()
  variables, apply = _variables(pooling), _apply(pooling, causal)
  out = apply(variables, tokens)
  assert out.shape == (8, 16) and out.dtype == jnp.float32
  np.testing.assert_allclose(jnp.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
  # Extra right padding changes nothing: padding is never attended to and never pooled.
  padded = jnp.pad(tokens[:, :20], ((0, 0), (0, 4)))  # the longest example (20 tokens) still fits
  np.testing.assert_allclose(apply(variables, padded), out, rtol=1e-4, atol=1e-5)
  for leaf in jax.tree.leaves(variables["params"], is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)):
    assert isinstance(leaf, nn.LogicallyPartitioned) and len(leaf.names) == leaf.value.ndim


def _hidden_and_mask():
  """``hidden [layers 3, batch 2, length 5, features 8]`` (numpy: eager jax ops would each compile) and its mask."""
  hidden = np.random.default_rng(0).standard_normal((3, 2, 5, 8)).astype(np.float32)
  return hidden, np.array([[True, True, True, False, False], [True] * 5])


@functools.cache
def _pooler_grads(cls, **kwargs):
  """Gradients of ``cls(4, 2, **kwargs)(hidden, mask).sum()`` wrt (params, hidden), as numpy; shared by the tests.

  impl='xla': on CPU 'auto' runs this same reference, after tracing the GPU/TPU kernel branches too (0.4 s a call).
  """
  hidden, mask = _hidden_and_mask()
  pooler = cls(4, 2, impl="xla", **kwargs)
  variables = _jit(pooler.init)(jax.random.key(0), hidden, mask)
  f = lambda p, h: pooler.apply({"params": p}, h, mask).sum()
  return jax.tree.map(np.asarray, _jit(jax.grad(f, argnums=(0, 1)))(nn.unbox(variables["params"]), hidden))


def test_poolers_read_what_they_should():
  hidden, mask = _hidden_and_mask()
  eos = hidden[:, [0, 1], [2, 4]]  # [layers, batch, features]: each example's last real token
  np.testing.assert_allclose(_jit(E.last_token)(hidden, mask), eos)
  np.testing.assert_allclose(_jit(E.mean_pool)(hidden[-1], mask)[0], hidden[-1, 0, :3].mean(0), rtol=1e-6)
  np.testing.assert_allclose(_jit(E.EOSPooling().apply)({}, hidden, mask),
                             eos[-1] / np.linalg.norm(eos[-1], axis=-1, keepdims=True), rtol=1e-6)
  _, g_last = _pooler_grads(E.LastLayerTrainablePooling)
  _, g_multi = _pooler_grads(E.MultiLayerTrainablePooling)
  _, g_all = _pooler_grads(E.LastLayerTrainablePooling, last_token_only=False)
  assert np.abs(g_last[:-1]).max() == 0.0  # last-layer pooling reads only the last layer ...
  assert np.abs(g_last[-1, 0, :2]).max() == 0.0  # ... at the EOS token only (reference code)
  assert np.abs(g_multi[0, 0, 2]).max() > 0  # ML-TP reads every layer's EOS state
  assert np.abs(g_multi[:, 0, :2]).max() == 0.0
  assert np.abs(g_all[-1, 0, 0]).max() > 0 and np.abs(g_all[-1, 0, 3:]).max() == 0.0  # not padding


def test_multi_layer_pooling_ablation_flags():
  _, g_last_only = _pooler_grads(E.MultiLayerTrainablePooling, last_layer_only=True)
  assert np.abs(g_last_only[:-1]).max() == 0.0 and np.abs(g_last_only[-1, 0, 2]).max() > 0
  for layer_attention in (True, False):  # True is the default (its gradients are shared with the test above)
    flags = {} if layer_attention else {"layer_attention": False}
    g_params, g_hidden = _pooler_grads(E.MultiLayerTrainablePooling, **flags)
    attn = g_params["latent_attention"]["cross_attention"]
    qk = max(np.abs(attn[k]["kernel"]).max() for k in ("query", "key"))
    # Uniform weights: the query-key scores are unused; the layers are still all read (through the values).
    assert (qk > 0) == layer_attention
    assert np.abs(g_hidden[0, 0, 2]).max() > 0 and np.abs(g_hidden[:, 0, :2]).max() == 0.0


def test_causal_embedding_ignores_nothing_but_the_future_and_language_model():
  model = E.EmbeddingModel(pooling="mean", causal=True, **SMALL)
  tokens = _tokens()
  variables = _variables("mean")
  logits = _jit(lambda v, t: model.apply(v, t, method="language_model"))(variables, tokens)
  assert logits.shape == (8, 24, text.VOCAB_SIZE)
  hidden = _jit(lambda v, t: model.apply(v, t, method="hidden_states")[0])
  changed = tokens.at[1, 8].set(50)
  a, b = hidden(variables, tokens), hidden(variables, changed)
  np.testing.assert_allclose(a[:, 1, :8], b[:, 1, :8], atol=1e-5)
  bidir = E.EmbeddingModel(pooling="mean", causal=False, **SMALL)
  hb = _jit(lambda v, t: bidir.apply(v, t, method="hidden_states")[0])
  assert float(jnp.abs(hb(variables, tokens)[:, 1, :8] - hb(variables, changed)[:, 1, :8]).max()) > 1e-4


def test_frozen_backbone_gets_no_gradient():
  tokens = _tokens()
  params = nn.unbox(_variables("multi_layer")["params"])
  for freeze in (True, False):
    model = E.EmbeddingModel(pooling="multi_layer", freeze_backbone=freeze, **SMALL)
    g = _jit(jax.grad(lambda p: model.apply({"params": p}, tokens)[:, 0].sum()))(params)
    backbone = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g["backbone"]))
    assert (backbone == 0.0) == freeze
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g["pool"])) > 0


def test_sharded_forward_on_8_devices():
  model = E.EmbeddingModel(pooling="multi_layer", causal=False, **SMALL)
  tokens = _tokens()
  variables = _variables("multi_layer")
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = _jit(model.apply)(placed, jax.device_put(tokens, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, _apply("multi_layer", False)(variables, tokens), rtol=1e-4, atol=1e-5)
  stacked = _jit(jax.vmap(lambda t: model.apply(variables, t)))(tokens.reshape(2, 4, 24))
  np.testing.assert_allclose(stacked.reshape(8, 16), out, rtol=1e-4, atol=1e-5)


def test_infonce_and_retrieval_metrics():
  # Every call jitted and the expectations in numpy: eagerly, each jax op would compile on its own (150 of them).
  task = contrastive.InfoNCE(temperature=0.5)
  batch = {"query": np.ones((3, 4), np.int32), "doc": np.ones((3, 6), np.int32)}
  stacked = _jit(task.inputs)(batch)
  assert stacked.shape == (6, 6) and int(stacked[0, 5]) == 0  # right-padded to one length
  q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
  d = np.array([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0]], np.float32)
  outputs = np.concatenate([q, d])
  qn, dn = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (q, d))
  logits = qn @ dn.T / 0.5
  expected = np.log(np.exp(logits).sum(1)) - np.diag(logits)  # cross-entropy of the matching doc
  np.testing.assert_allclose(_jit(task.loss)(outputs, batch), expected, rtol=1e-5)
  metrics = _jit(task.metrics)(outputs, batch)
  np.testing.assert_allclose(metrics["recall_at_1"], [1.0, 1.0, 0.0])
  retrieval = _jit(contrastive.retrieval_metrics, static_argnames="k")
  r = retrieval(q, d, k=2)
  np.testing.assert_allclose(r["rank"], [1, 1, 3])
  np.testing.assert_allclose(r["mrr_at_k"], [1.0, 1.0, 0.0])
  np.testing.assert_allclose(r["mrr"], [1.0, 1.0, 1 / 3])
  # Ties do not count for the positive: a collapsed embedding (every score equal) is not a perfect retriever.
  collapsed = retrieval(np.ones((3, 2)), np.ones((4, 2)), k=2)
  np.testing.assert_allclose(collapsed["rank"], [1, 2, 3])
  np.testing.assert_allclose(collapsed["recall_at_k"], [1.0, 1.0, 0.0])
  shuffled = retrieval(np.ones((64, 2)), np.ones((64, 2)), key=jax.random.key(0))
  assert float(shuffled["mrr"].mean()) < 0.2  # random tie-breaking: about (ln 64 + 0.58) / 64 = 0.074
  np.testing.assert_allclose(_jit(task.metrics)(np.ones((6, 2)), batch)["recall_at_1"], [1.0, 0.0, 0.0])
  with pytest.raises(ValueError, match=r"docs.*m >= n"):
    contrastive.retrieval_metrics(q, d[:2])
  with pytest.raises(ValueError, match="one embedding per input row"):
    task.loss(q, batch)
  with pytest.raises(KeyError, match="doc"):
    task.inputs({"query": batch["query"]})


def test_pretrain_then_contrast_phases_and_initial_params(single_device_mesh):
  tokens = np.asarray(_tokens())
  data = {"query": tokens[:, :12], "doc": tokens}
  model = E.EmbeddingModel(pooling="eos", **{**SMALL, "num_layers": 1})  # one block: the phases are what is checked
  result = train.fit(model, data, task=contrastive.InfoNCE(), procedure=contrastive.PretrainThenContrast,
                     procedure_kwargs={"pretrain_steps": 2}, steps=3, batch_size=8, mesh=single_device_mesh,
                     log_every=1, optimizer=optax.adam(1e-2))
  assert [h["train/lm_phase"] for h in result.history] == [1.0, 1.0, 0.0]
  assert result.history[0]["train/loss"] > 4.0  # next-token cross-entropy over 259 bytes starts near log(259)
  # initial_params: the backbone starts from the given parameters.
  backbone = nn.unbox(result.variables["params"]["backbone"])
  proc = contrastive.PretrainThenContrast(model=model, task=contrastive.InfoNCE(), optimizer=optax.adam(1e-3),
                                          initial_params={"backbone": backbone})
  state = nn.unbox(_jit(proc.init)(jax.random.key(5), data))  # eager, each initializer would compile on its own
  np.testing.assert_array_equal(state.params["backbone"]["embed"]["embedding"], backbone["embed"]["embedding"])
  with pytest.raises(ValueError, match="does not"):
    _jit(contrastive.PretrainThenContrast(model=model, task=contrastive.InfoNCE(), optimizer=optax.adam(1e-3),
                                          initial_params={"nope": backbone}).init)(jax.random.key(0), data)


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
