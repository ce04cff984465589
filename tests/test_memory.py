"""zoo.memory: content addressing, erase/add writes, the LSTM-controlled slot-memory network, the DNI module.

Besides shapes, jit, vmap, the sharded forward and errors, these check the two hooks synthetic gradients rely on:
the gradient with respect to ``state_offset`` is the true ``dL/ds_t`` (finite differences), and ``truncate=True``
changes no value, only the backward pass.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import memory
from zoo.recipes import sharding

B, TIME, IN, F = 4, 6, 3, 8


def _x(b=B, t=TIME, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, IN))


def _net(**kw):
  return memory.NeuralMemoryNetwork(2, **{"features": F, "num_slots": 5, "slot_size": 4, **kw})


@pytest.fixture(scope="module")
def net_vars():
  net = _net()
  return net, nn.unbox(net.init(jax.random.key(1), _x()))


# ------------------------------------------------------------------------------------------------------ memory ops


def test_content_addressing_read_and_write():
  mem = jnp.asarray([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])  # [1, 3, 2]
  w = memory.content_weights(mem, jnp.asarray([[2.0, 0.0]]), jnp.asarray([50.0]))
  np.testing.assert_allclose(w.sum(-1), [1.0], rtol=1e-6)
  assert int(jnp.argmax(w[0])) == 0 and float(w[0, 0]) > 0.99  # cosine similarity, scale-free in the key
  flat = memory.content_weights(mem, jnp.asarray([[2.0, 0.0]]), jnp.asarray([0.0]))
  np.testing.assert_allclose(flat, np.full((1, 3), 1 / 3), rtol=1e-6)
  np.testing.assert_allclose(memory.memory_read(mem, jnp.asarray([[0.5, 0.5, 0.0]])), [[0.5, 0.5]])
  one_hot = jnp.asarray([[0.0, 1.0, 0.0]])
  written = memory.memory_write(mem, one_hot, jnp.ones((1, 2)), jnp.asarray([[3.0, 4.0]]))
  np.testing.assert_allclose(written[0], [[1.0, 0.0], [3.0, 4.0], [-1.0, 0.0]])  # erased, then added; others kept
  kept = memory.memory_write(mem, one_hot, jnp.zeros((1, 2)), jnp.zeros((1, 2)))
  np.testing.assert_allclose(kept, mem)


def test_slot_memory_is_learned_and_broadcast():
  m = memory.SlotMemory(5, 4)
  v = m.init(jax.random.key(0), 3)
  out = m.apply(v, 3)
  assert out.shape == (3, 5, 4)
  np.testing.assert_array_equal(out[0], out[2])
  assert float(jnp.std(out[0])) > 0.01  # distinct slots from the start
  with pytest.raises(ValueError, match="num_slots"):
    memory.SlotMemory(0, 4).init(jax.random.key(0), 3)


# ------------------------------------------------------------------------------------------------------ network


def test_network_shapes_jit_vmap(net_vars):
  net, v = net_vars
  x = _x()
  assert set(v["params"]) == {"controller", "head", "memory"}
  assert set(v["params"]["controller"]) == {"lstm", "interface"}
  y, s = jax.jit(lambda v, x: net.apply(v, x, return_state=True))(v, x)
  assert y.shape == (B, TIME, 2) and s.shape == (B, TIME, 2 * F) and y.dtype == jnp.float32
  assert net.state_size == 2 * F
  np.testing.assert_allclose(net.apply(v, x), y, rtol=1e-5, atol=1e-6)
  stacked = jax.vmap(lambda xb: net.apply(v, xb))(x.reshape(2, 2, TIME, IN))
  np.testing.assert_allclose(stacked.reshape(B, TIME, 2), y, rtol=1e-5, atol=1e-6)
  # Truncation changes only the backward pass.
  y_t, s_t = jax.jit(lambda v, x: net.apply(v, x, truncate=True, return_state=True))(v, x)
  np.testing.assert_array_equal(y_t, y)
  np.testing.assert_array_equal(s_t, s)


def test_network_is_causal(net_vars):
  net, v = net_vars
  x = _x()
  changed = x.at[:, 4:].set(5.0)
  apply = jax.jit(net.apply)
  y, y2 = apply(v, x), apply(v, changed)
  np.testing.assert_allclose(y[:, :4], y2[:, :4], rtol=1e-6)
  assert not np.allclose(y[:, 4:], y2[:, 4:])


def test_state_offset_gradient_is_the_true_state_gradient(net_vars):
  net, v = net_vars
  x = _x(b=1)
  target = jax.random.normal(jax.random.key(3), (1, TIME, 2))
  loss = jax.jit(lambda off: jnp.mean((net.apply(v, x, state_offset=off) - target) ** 2))
  zeros = jnp.zeros((1, TIME, 2 * F))
  g = jax.jit(jax.grad(loss))(zeros)
  assert float(jnp.abs(g[0, 0]).max()) > 0  # the first state reaches the loss through memory and recurrence
  eps = 1e-3
  for t, k in [(0, 1), (2, F + 3), (5, 2 * F - 1)]:
    e = zeros.at[0, t, k].set(eps)
    numeric = (loss(e) - loss(-e)) / (2 * eps)
    np.testing.assert_allclose(float(g[0, t, k]), float(numeric), rtol=2e-2, atol=2e-5)
  # Truncated, only the direct paths are left: the first state's gradient loses its recurrent part.
  g_trunc = jax.jit(jax.grad(lambda off: jnp.mean((net.apply(v, x, state_offset=off, truncate=True) - target) ** 2)))(
      zeros)
  np.testing.assert_allclose(g_trunc[0, -1], g[0, -1], rtol=1e-5, atol=1e-8)  # the last step: nothing after it
  assert not np.allclose(g_trunc[0, 0], g[0, 0])


def test_sharded_forward_matches_single_device(net_vars):
  net, v = net_vars
  x = _x(b=8)
  expected = jax.jit(net.apply)(v, x)
  boxed = jax.eval_shape(lambda: net.init(jax.random.key(1), x))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(v, sharding.state_shardings(boxed, mesh))
  assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(net.apply)(placed, jax.device_put(x, sharding.batch_sharding(mesh)))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_network_errors(net_vars):
  net, v = net_vars
  with pytest.raises(ValueError, match="`x`"):
    net.apply(v, jnp.ones((B, IN)))
  with pytest.raises(TypeError, match="`x`"):
    net.apply(v, jnp.ones((B, TIME, IN), jnp.int32))
  with pytest.raises(ValueError, match="`state_offset`"):
    net.apply(v, _x(), state_offset=jnp.zeros((B, TIME, F)))
  with pytest.raises(ValueError, match="features"):
    memory.NeuralMemoryNetwork(2, features=0).init(jax.random.key(0), _x())


# ------------------------------------------------------------------------------------------- synthetic gradients


def test_synthetic_gradient_module():
  sg = memory.SyntheticGradient(6, hidden=(8,))
  s, ctx = jnp.ones((2, 5, 6)), jnp.ones((2, 5, 3))
  v = sg.init(jax.random.key(0), s, ctx)
  out = sg.apply(v, s, ctx)
  assert out.shape == (2, 5, 6)
  np.testing.assert_array_equal(out, 0.0)  # DNI: the output layer starts at zero
  random = memory.SyntheticGradient(6, hidden=(8,), zero_init=False)
  assert float(jnp.abs(random.apply(random.init(jax.random.key(0), s, ctx), s, ctx)).max()) > 0
  assert sg.apply(sg.init(jax.random.key(0), s), s).shape == (2, 5, 6)  # no context
  with pytest.raises(ValueError, match="`s`"):
    sg.init(jax.random.key(0), jnp.ones((2, 5, 4)), ctx)
  with pytest.raises(ValueError, match="`context`"):
    sg.init(jax.random.key(0), s, jnp.ones((2, 4, 3)))
