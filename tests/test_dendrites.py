"""Unit tests of zoo.dendrites: the dendrite-augmented forward, the perforation (no error into dendrites), shapes,
jit, vmap, a sharded forward on the 8-device mesh, config-style construction and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import core, dendrites, gnn
from zoo.recipes import sharding


def _mlp_model(k=2):
  return dendrites.Perforated(core.MLP(features=(5, 3)), num_dendrites=k)


def _with_dendrite_weights(variables, seed=0):
  """Non-zero dendrite-to-neuron weights (they start at 0) and cascade weights, so dendrites show in outputs."""
  params = nn.unbox(variables)["params"]
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.asarray(rng.normal(size=v.shape), v.dtype)
      if jax.tree_util.keystr(p).endswith(("['to_neuron']", "['cascade']")) else v, params)
  return {**nn.unbox(variables), "params": params}


def test_forward_matches_the_definition():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
  model = _mlp_model(k=2)
  variables = _with_dendrite_weights(jax.jit(model.init)(jax.random.key(0), x))
  p = variables["params"]
  base = core.MLP(features=(5, 3))
  # Inactive dendrites: exactly the base model (also the default, read from the 'perforation' collection).
  np.testing.assert_array_equal(model.apply(variables, x), base.apply({"params": p["base"]}, x))

  def layer(x, neuron, bank, active):
    y = x @ neuron["kernel"] + neuron["bias"]
    d = []
    for k in range(2):
      pre = x @ bank[f"slot_{k}"]["kernel"] + bank[f"slot_{k}"]["bias"]
      for j in range(k):
        pre = pre + bank["cascade"][k, j] * d[j]
      d.append(jax.nn.sigmoid(pre))
    return y + sum(bank["to_neuron"][k] * d[k] for k in range(active))

  for active in (1, 2):
    h = jax.nn.relu(layer(x, p["base"]["dense_0"], p["dendrites_dense_0"], active))
    expected = layer(h, p["base"]["dense_1"], p["dendrites_dense_1"], active)
    out = model.apply(variables, x, active_dendrites=active)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda v, x: model.apply(v, x, active_dendrites=active))(variables, x),
                               out, rtol=1e-5, atol=1e-6)
  # vmap over examples == the batched call.
  vmapped = jax.jit(jax.vmap(lambda row: model.apply(variables, row[None], active_dendrites=2)[0]))(x)
  np.testing.assert_allclose(vmapped, model.apply(variables, x, active_dendrites=2), rtol=1e-5, atol=1e-6)
  # The stored counter switches dendrites in too.
  counted = {**variables, "perforation": {"active": jnp.asarray(2, jnp.int32)}}
  np.testing.assert_allclose(model.apply(counted, x), model.apply(variables, x, active_dendrites=2), rtol=1e-6)


def test_perforation_blocks_every_error_into_and_through_dendrites():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  model = _mlp_model()
  variables = _with_dendrite_weights(jax.jit(model.init)(jax.random.key(0), x))

  def loss(params, x):
    return jnp.sum(model.apply({**variables, "params": params}, x, active_dendrites=2) ** 2)

  grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
  for bank in ("dendrites_dense_0", "dendrites_dense_1"):
    for k in range(2):
      assert float(jnp.abs(grads[bank][f"slot_{k}"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(grads[bank]["cascade"]).max()) == 0.0
    assert float(jnp.abs(grads[bank]["to_neuron"]).max()) > 0.0  # learned with the neurons
  # No error reaches the input through the dendrites: d/dx equals the gradient through the neurons alone.
  frozen = {**variables, "params": jax.lax.stop_gradient(variables["params"])}

  def neurons_only(x):
    h = x
    outs = model.apply(frozen, h, active_dendrites=2, mutable=["intermediates"])[1]["intermediates"]
    d0, d1 = outs["dendrites_dense_0"]["dendrites"][0], outs["dendrites_dense_1"]["dendrites"][0]
    p = frozen["params"]
    y = x @ p["base"]["dense_0"]["kernel"] + p["base"]["dense_0"]["bias"]
    y = y + jnp.einsum("kbn,kn->bn", jax.lax.stop_gradient(d0), p["dendrites_dense_0"]["to_neuron"])
    y = jax.nn.relu(y) @ p["base"]["dense_1"]["kernel"] + p["base"]["dense_1"]["bias"]
    y = y + jnp.einsum("kbn,kn->bn", jax.lax.stop_gradient(d1), p["dendrites_dense_1"]["to_neuron"])
    return jnp.sum(y ** 2)

  np.testing.assert_allclose(grad_x, jax.jit(jax.grad(neurons_only))(x), rtol=1e-5, atol=1e-6)


def test_sows_dendrites_and_exposes_errors():
  x = jnp.ones((4, 6))
  model = _mlp_model()
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert "perturbations" not in variables and "intermediates" not in variables
  _, cols = model.apply(variables, x, mutable=["intermediates", "perturbations"])
  assert cols["intermediates"]["dendrites_dense_0"]["dendrites"][0].shape == (2, 4, 5)
  assert cols["perturbations"]["dendrites_dense_1"]["error"].shape == (4, 3)


def test_composes_with_convnet_and_gnn_and_shards():
  images = jnp.ones((8, 8, 8, 1))
  model = dendrites.Perforated(core.ConvNet(num_classes=10, features=(4, 8), hidden=(16,)), exclude=("head",))
  variables = jax.jit(model.init)(jax.random.key(0), images)
  params = nn.unbox(variables)["params"]
  assert dendrites.dendrite_paths(params) == ["dendrites_conv_0", "dendrites_conv_1", "dendrites_dense_0"]
  assert params["dendrites_conv_0"]["slot_0"]["kernel"].shape == params["base"]["conv_0"]["kernel"].shape
  assert tuple(nn.get_partition_spec(variables)["params"]["dendrites_conv_1"]["slot_0"]["kernel"]) == (
      None, None, "conv_in", "conv_out")
  variables = _with_dendrite_weights(variables)
  expected = jax.jit(lambda v, x: model.apply(v, x, active_dendrites=1))(variables, images)
  assert expected.shape == (8, 10)
  # Sharded: the batch over 8 data-parallel devices, parameters by their logical names.
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  shardings = sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), images), mesh)
  placed = jax.device_put(variables, shardings)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(lambda v, x: model.apply(v, x, active_dendrites=1),
                  in_shardings=(shardings, sharding.batch_sharding(mesh)))(placed, images)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  # A graph model: every GCN layer's Dense gets dendrites.
  graph = {"nodes": jnp.ones((1, 5, 3)), "edges": jnp.array([[[0, 1], [1, 0]]])}
  gnn_params = jax.eval_shape(dendrites.Perforated(gnn.GNN(num_classes=2, hidden_features=4)).init,
                              jax.random.key(0), graph)["params"]
  assert dendrites.dendrite_paths(gnn_params) == ["dendrites_layer_0__conv__linear",
                                                  "dendrites_layer_1__conv__linear"]


def test_config_style_base_and_errors():
  x = jnp.ones((2, 6))
  spec = dendrites.Perforated({"name": "core.MLP", "features": [5, 3]}, num_dendrites=1)
  hash(spec)  # modules must stay hashable when built from a config mapping
  module = dendrites.Perforated(core.MLP(features=(5, 3)), num_dendrites=1)
  a = jax.eval_shape(spec.init, jax.random.key(0), x)
  b = jax.eval_shape(module.init, jax.random.key(0), x)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  with pytest.raises(ValueError, match="name='family.Class'"):
    jax.eval_shape(dendrites.Perforated({"features": [3]}).init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="`num_dendrites` must be >= 1"):
    jax.eval_shape(dendrites.Perforated(core.MLP(features=(3,)), num_dendrites=0).init, jax.random.key(0), x)
  assert dendrites.is_dendrite_weight((jax.tree_util.DictKey("dendrites_a"), jax.tree_util.DictKey("slot_0"),
                                       jax.tree_util.DictKey("kernel")))
  assert not dendrites.is_dendrite_weight((jax.tree_util.DictKey("dendrites_a"),
                                           jax.tree_util.DictKey("to_neuron")))
