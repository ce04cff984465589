"""Unit tests of zoo.gnn: shapes, dense-adjacency oracles, padding, jit, vmap, the 8-device mesh, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import gnn
from zoo.recipes import sharding

N, F = 7, 5


def _graph(seed=0, num_nodes=N, features=F, pad=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_nodes, features)).astype(np.float32)
  und = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [2, 6]])
  edges = np.concatenate([und, und[:, ::-1]]).astype(np.int32)
  mask = np.ones(len(edges), bool)
  if pad:  # padding edges point anywhere and must not matter
    edges = np.concatenate([edges, rng.integers(0, num_nodes, (pad, 2))]).astype(np.int32)
    mask = np.concatenate([mask, np.zeros(pad, bool)])
  return x, edges, mask


def _dense_adjacency(edges, mask, num_nodes, weights=None):
  a = np.zeros((num_nodes, num_nodes))
  w = mask.astype(float) if weights is None else weights * mask
  for (s, r), wi in zip(edges, w):
    a[r, s] += wi
  return a


def _params(variables):
  return nn.unbox(variables)["params"]


def test_gcn_matches_dense_numpy():
  x, edges, mask = _graph()
  weights = np.random.default_rng(1).uniform(0.5, 2.0, len(edges)).astype(np.float32)
  layer = gnn.GCNConv(4)
  variables = layer.init(jax.random.key(0), x, edges, mask * weights)
  out = layer.apply(variables, x, edges, mask * weights)
  p = _params(variables)
  a = _dense_adjacency(edges, mask, N, weights) + np.eye(N)
  d = a.sum(1)
  expected = (a / np.sqrt(d[:, None] * d[None, :])) @ x @ np.asarray(p["linear"]["kernel"]) + np.asarray(p["bias"])
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_sage_matches_dense_numpy():
  x, edges, mask = _graph()
  layer = gnn.SAGEConv(3)
  variables = layer.init(jax.random.key(0), x, edges, mask)
  p = _params(variables)
  a = _dense_adjacency(edges, mask, N)
  mean = a @ x / np.maximum(a.sum(1, keepdims=True), 1)
  expected = (mean @ np.asarray(p["neighbours"]["kernel"]) + np.asarray(p["neighbours"]["bias"])
              + x @ np.asarray(p["root"]["kernel"]))
  np.testing.assert_allclose(layer.apply(variables, x, edges, mask), expected, rtol=1e-5, atol=1e-5)


def test_gat_matches_dense_numpy():
  x, edges, mask = _graph()
  layer = gnn.GATConv(8, heads=2)
  variables = layer.init(jax.random.key(0), x, edges, mask)
  p = _params(variables)
  h = (x @ np.asarray(p["linear"]["kernel"])).reshape(N, 2, 4)
  src = (h * np.asarray(p["att_src"])).sum(-1)
  dst = (h * np.asarray(p["att_dst"])).sum(-1)
  adj = _dense_adjacency(edges, mask, N) + np.eye(N) > 0
  out = np.zeros((N, 2, 4))
  for i in range(N):
    for head in range(2):
      logits = src[:, head] + dst[i, head]
      logits = np.where(logits > 0, logits, 0.2 * logits)
      logits = np.where(adj[i], logits, -np.inf)
      alpha = np.exp(logits - logits.max())
      alpha /= alpha.sum()
      out[i, head] = alpha @ h[:, head]
  expected = out.reshape(N, 8) + np.asarray(p["bias"])
  np.testing.assert_allclose(layer.apply(variables, x, edges, mask), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv", sorted(gnn.CONVS))
def test_gnn_shapes_padding_jit_and_vmap(conv):
  x, edges, _ = _graph(pad=0)
  model = gnn.GNN(num_classes=3, hidden_features=8, conv=conv)
  graph = {"nodes": x, "edges": edges}
  variables = jax.jit(model.init)(jax.random.key(0), graph)
  apply = jax.jit(model.apply)
  out = apply(variables, graph)
  assert out.shape == (N, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(model.apply(variables, graph), out, rtol=1e-5, atol=1e-6)  # jit == no jit
  # A batch of graphs with padding edges (mask False): graph 0 is `graph` padded, and padding changes nothing.
  graphs = [_graph(seed=s, pad=4) for s in range(3)]
  batch = {"nodes": np.stack([g[0] for g in graphs]), "edges": np.stack([g[1] for g in graphs]),
           "edge_mask": np.stack([g[2] for g in graphs])}
  batched = apply(variables, batch)
  assert batched.shape == (3, N, 3)
  np.testing.assert_allclose(batched[0], out, rtol=1e-5, atol=1e-6)
  # vmap over single graphs == the batched call.
  vmapped = jax.jit(jax.vmap(lambda g: model.apply(variables, g)))(batch)
  np.testing.assert_allclose(vmapped, batched, rtol=1e-5, atol=1e-6)


def test_embedding_stack_and_bf16():
  x, edges, mask = _graph()
  model = gnn.GNN(num_classes=None, hidden_features=6, num_layers=3, normalize_layer_inputs=True,
                  dtype=jnp.bfloat16)
  graph = {"nodes": x, "edges": edges, "edge_mask": mask}
  variables = jax.jit(model.init)(jax.random.key(0), graph)
  assert sorted(_params(variables)) == ["layer_0", "layer_1", "layer_2"]
  out = jax.jit(model.apply)(variables, graph)
  assert out.shape == (N, 6) and out.dtype == jnp.bfloat16
  assert float(jnp.min(out)) >= 0.0  # every layer ends in a ReLU without a classifier


def test_logical_axis_names():
  x, edges, mask = _graph()
  variables = jax.eval_shape(gnn.GNN(num_classes=2, hidden_features=8, conv="gat").init, jax.random.key(0),
                             {"nodes": x, "edges": edges})
  specs = nn.get_partition_spec(variables)["params"]
  assert tuple(specs["layer_0"]["conv"]["linear"]["kernel"]) == ("embed", "mlp")
  assert tuple(specs["layer_0"]["conv"]["att_src"]) == ("heads", "kv")


def _sharded_apply(model, variables, batch, mesh):
  abstract = jax.eval_shape(lambda: variables)
  shardings = sharding.state_shardings(abstract, mesh)
  params = jax.device_put(nn.unbox(variables), shardings)
  batch_sh = jax.tree.map(lambda _: sharding.batch_sharding(mesh), batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply, in_shardings=(shardings, batch_sh))(params, batch)
  return out, params


def test_sharded_forward_on_8_devices():
  assert jax.device_count() == 8
  graphs = [_graph(seed=s, pad=2) for s in range(8)]
  batch = {"nodes": np.stack([g[0] for g in graphs]), "edges": np.stack([g[1] for g in graphs]),
           "edge_mask": np.stack([g[2] for g in graphs])}
  model = gnn.GNN(num_classes=3, hidden_features=16, conv="gcn")
  variables = jax.jit(model.init)(jax.random.key(0), batch)
  expected = jax.jit(model.apply)(variables, batch)
  # A batch of 8 graphs, data parallel over all devices.
  out, _ = _sharded_apply(model, variables, batch, sharding.make_mesh({"data": -1}))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  # One graph, hidden layers split over an 8-way tensor axis (the graph configs' mesh).
  one = jax.tree.map(lambda a: a[:1], batch)
  out, params = _sharded_apply(model, variables, one, sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": -1}))
  assert len(params["params"]["layer_0"]["conv"]["linear"]["kernel"].sharding.device_set) == 8
  assert params["params"]["layer_0"]["conv"]["linear"]["kernel"].sharding.spec[1] == "tensor"
  np.testing.assert_allclose(out, expected[:1], rtol=1e-5, atol=1e-6)


def test_clear_errors():
  x, edges, mask = _graph()
  model = gnn.GNN(num_classes=2, hidden_features=8)
  graph = {"nodes": x, "edges": edges}
  variables = jax.eval_shape(model.init, jax.random.key(0), graph)
  with pytest.raises(ValueError, match=r"`edges` must have shape \[edges, pair=2\]"):
    model.apply(variables, {"nodes": x, "edges": edges[:, :1]})
  with pytest.raises(TypeError, match="`edges` must have a integer dtype"):
    model.apply(variables, {"nodes": x, "edges": edges.astype(np.float32)})
  with pytest.raises(ValueError, match="`x` must have shape"):
    model.apply(variables, {"nodes": x[None, None], "edges": edges})
  with pytest.raises(TypeError, match="`x` must have a floating dtype"):
    model.apply(variables, {"nodes": x.astype(np.int32), "edges": edges})
  with pytest.raises(ValueError, match="`edge_mask` must have shape"):
    model.apply(variables, {"nodes": x, "edges": edges, "edge_mask": mask[:-1]})
  with pytest.raises(KeyError, match="the graph has no"):
    model.apply(variables, {"nodes": x})
  with pytest.raises(TypeError, match="must be a mapping"):
    model.apply(variables, x)
  with pytest.raises(ValueError, match="multiple of `heads`"):
    jax.eval_shape(gnn.GATConv(6, heads=4).init, jax.random.key(0), x, edges)
  with pytest.raises(ValueError, match="`conv` must be one of"):
    jax.eval_shape(gnn.GNN(num_classes=2, conv="gin").init, jax.random.key(0), graph)
