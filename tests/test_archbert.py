"""Unit tests of zoo.archbert: node tokens and adjacency from ONNX graphs, the adjacency mask really restricts
attention, shapes/jit/vmap, the 8-device mesh, the losses against hand computations, recall@k, clear errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import archbert, archtext
from zoo.recipes import sharding
from zoo.recipes.datasets import arch_bench
from zoo.recipes.procedures import archbert as proc

# Compiling, not running, is this file's cost: XLA's backend optimization level 0 halves it; the comparisons are
# against eager values or programs compiled the same way, and the numbers move by float rounding only.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
B = {"space": "B", "channels": (4, 8), "kernels": (3, 1), "pools": ("max", "none"), "activation": "relu"}
VOCAB = archtext.ArchTokenizer().vocab


def _jit(fn, **kw):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def test_arch_nodes_follow_the_onnx_graph():
  tokens, adj = archbert.arch_nodes(B, max_nodes=10)
  assert tokens.shape == (10, 7) and adj.shape == (10, 10)
  assert tokens[0, 0] == VOCAB["Conv"] and tokens[0, 1] == VOCAB["3"] and list(tokens[0, 4:]) == [
      VOCAB["4"], VOCAB["8"], VOCAB["8"]]
  assert tokens[2, 0] == VOCAB["MaxPool"] and tokens[6, 0] == VOCAB["Gemm"] and (tokens[7:] == 0).all()
  chain = np.eye(10, dtype=bool)[:7, :7] | np.eye(7, k=1, dtype=bool) | np.eye(7, k=-1, dtype=bool)
  np.testing.assert_array_equal(adj[:7, :7], chain)
  assert not adj[7:].any()
  with pytest.raises(ValueError, match="max_nodes"):
    archbert.arch_nodes(B, max_nodes=4)


def test_caption_tokenizer_and_corpus():
  corpus = arch_bench.arch_corpus(40, seed=3)
  assert len({c["space"] for c in corpus["configs"]}) == 2
  assert 0.3 < corpus["label"].mean() < 0.7  # balanced true/false statements
  tok = archbert.CaptionTokenizer()
  ids = tok.encode(corpus["captions"], 32)
  assert ids.shape == (40, 32) and (ids[:, 0] == 1).all()
  with pytest.raises(ValueError, match="unknown word 'transformer'"):
    tok.encode("a transformer network", 8)


@pytest.fixture(scope="module")
def small():
  arrays = arch_bench.archbert_arrays(8, seed=0, max_nodes=16, text_length=32)
  model = archbert.ArchBERT(len(VOCAB), archbert.CaptionTokenizer().vocab_size, features=16, num_layers=1,
                            num_heads=2, mlp_dim=32, max_nodes=16, max_length=32)
  adj = arrays["adjacency"].astype(bool)
  # jitted: an eager init dispatches (compiles) op by op
  variables = _jit(functools.partial(model.init, method=archbert.ArchBERT.initialize))(
      jax.random.key(0), arrays["nodes"], adj, arrays["caption"])
  return model, variables, arrays


def test_shapes_jit_and_vmap(small):
  model, variables, arrays = small
  adj = arrays["adjacency"].astype(bool)
  a, t = model.apply(variables, arrays["nodes"], adj, arrays["caption"])
  assert a.shape == t.shape == (8, 16)
  ja, jt = _jit(model.apply)(variables, arrays["nodes"], adj, arrays["caption"])
  np.testing.assert_allclose(ja, a, rtol=1e-5, atol=1e-5)
  va, _ = _jit(jax.vmap(model.apply, in_axes=(None, 0, 0, 0)))(
      variables, arrays["nodes"].reshape(2, 4, 16, 7), adj.reshape(2, 4, 16, 16), arrays["caption"].reshape(2, 4, 32))
  np.testing.assert_allclose(va.reshape(8, 16), a, rtol=1e-5, atol=1e-5)
  # shapes only: traced, not compiled
  logits = jax.eval_shape(functools.partial(model.apply, method=archbert.ArchBERT.mam_logits), variables,
                          arrays["nodes"], adj, arrays["caption"])
  assert logits.shape == (8, 16, len(VOCAB))
  assert jax.eval_shape(functools.partial(model.apply, method=archbert.ArchBERT.reason_logit), variables, a,
                        t).shape == (8,)


def test_adjacency_mask_limits_what_a_node_sees(small):
  """One block: changing a node two hops away leaves a node's state unchanged under the mask, not without it."""
  model, variables, arrays = small
  enc = archbert.ArchGraphEncoder(len(VOCAB), features=16, num_layers=1, num_heads=2, mlp_dim=32)
  nodes = arrays["nodes"][:1]
  adj = arrays["adjacency"][:1].astype(bool)
  v = _jit(enc.init)(jax.random.key(1), nodes, adj)
  apply = _jit(enc.apply)  # one compile for the four calls
  changed = nodes.copy()
  changed[0, 3, 0] = VOCAB["Tanh"] if changed[0, 3, 0] != VOCAB["Tanh"] else VOCAB["Elu"]
  full = jnp.asarray(proc.attention_adjacency(adj, nodes, "full"))
  h0, h1 = apply(v, nodes, adj), apply(v, changed, adj)
  np.testing.assert_allclose(h0[0, 0], h1[0, 0], atol=1e-6)  # node 0 is 3 hops from node 3
  assert np.abs(np.asarray(h0[0, 2] - h1[0, 2])).max() > 1e-4  # a neighbour sees it
  f0, f1 = apply(v, nodes, full), apply(v, changed, full)
  assert np.abs(np.asarray(f0[0, 0] - f1[0, 0])).max() > 1e-4


def test_bad_inputs(small):
  model, variables, arrays = small
  adj = arrays["adjacency"].astype(bool)
  with pytest.raises(ValueError, match="node_tokens"):
    model.apply(variables, arrays["nodes"] + 5000, adj, arrays["caption"])
  with pytest.raises(TypeError, match="adjacency"):
    model.apply(variables, arrays["nodes"], arrays["adjacency"], arrays["caption"])
  with pytest.raises(ValueError, match="adjacency"):
    model.apply(variables, arrays["nodes"], adj[:, :4, :4], arrays["caption"])
  with pytest.raises(ValueError, match="tokens"):
    model.apply(variables, arrays["nodes"], adj, arrays["caption"] + 1000)
  with pytest.raises(ValueError, match="mode"):
    proc.attention_adjacency(adj, arrays["nodes"], "ring")


def test_losses_and_recall_by_hand():
  a = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  t = jnp.array([[1.0, 1.0], [0.0, 1.0]])
  cos = np.array([1 / np.sqrt(2), 1.0])
  np.testing.assert_allclose(archbert.alignment_loss(a, t, jnp.array([1, 0])),
                             ((cos[0] - 1) ** 2 + cos[1] ** 2) / 2, rtol=1e-5)
  logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
  np.testing.assert_allclose(archbert.mam_loss(logits, jnp.array([[0, 1]]), jnp.array([[False, True]])),
                             -np.log(0.1), rtol=1e-5)
  emb = np.eye(4)
  assert archbert.recall_at_k(emb, emb, 1) == 1.0
  assert archbert.recall_at_k(emb, emb[::-1], 1) == 0.0
  with pytest.raises(ValueError, match="alignment_loss"):
    archbert.alignment_loss(a, t[:1], jnp.array([1, 0]))


def test_sharded_forward_on_8_devices(small):
  model, variables, arrays = small
  adj = arrays["adjacency"].astype(bool)
  mesh = sharding.make_mesh({"data": 8})
  xs = [jax.device_put(x, sharding.batch_sharding(mesh)) for x in (arrays["nodes"], adj, arrays["caption"])]
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    a, _ = _jit(model.apply)(variables, *xs)
  assert len(a.sharding.device_set) == 8
  np.testing.assert_allclose(a, _jit(model.apply)(variables, arrays["nodes"], adj, arrays["caption"])[0], rtol=1e-4,
                             atol=1e-5)
