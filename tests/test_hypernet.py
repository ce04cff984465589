"""Unit tests of zoo.hypernet: layouts (full / component / chunk), generators (MLP / attention / LSTM), conditioning
(task / data / noise / none), hyperfan variances against Chang et al.'s formula, MIP's residual, apply_target on
other zoo models, jit / vmap, the 8-device mesh, bad input; and the continual-learning pieces it serves."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import hypernet
from zoo.recipes import sharding
from zoo.recipes.procedures import continual

TARGET = core.MLP((8, 3))  # 5 -> 8 -> 3: 48 + 27 = 75 weights


def _hn(**kw):
  kw = {"conditioning": "task", "num_tasks": 4, "output": "chunk", "chunk_size": 16, "hidden": (16,), **kw}
  return hypernet.HyperNetwork(TARGET, (5,), **kw)


@pytest.mark.parametrize("output,arch", [("full", "mlp"), ("component", "lstm"), ("chunk", "attention")])
def test_generated_pytree_has_the_targets_shapes_and_applies(output, arch):
  hn = _hn(output=output, arch=arch)
  ids = jnp.array([0, 3, 1])
  variables = jax.jit(hn.init)(jax.random.key(0), ids)
  apply = jax.jit(hn.apply)  # one compile per layout: eager flax apply of an LSTM / attention generator is slow
  w = apply(variables, ids)
  shapes = hypernet.target_shapes(TARGET, (5,))
  assert jax.tree.map(lambda a: a.shape[1:], w) == jax.tree.map(lambda s: s.shape, shapes)
  assert all(a.shape[0] == 3 for a in jax.tree.leaves(w))
  x = jnp.ones((3, 5))
  y = hypernet.apply_target(TARGET, w, x, batched=True)
  assert y.shape == (3, 3)
  # Example i goes through weight set i.
  w1 = jax.tree.map(lambda a: a[1], w)
  np.testing.assert_allclose(y[1], hypernet.apply_target(TARGET, w1, x[1:2])[0], rtol=1e-5, atol=1e-6)
  if arch == "mlp":  # eager and jitted agree (eager only here: it is cheap for the MLP generator)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), w, hn.apply(variables, ids))
  # The same task id gives the same weights (static within a task), wherever it sits in the batch.
  w2 = apply(variables, jnp.array([3, 3, 0]))  # same shape: no recompile
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=1e-5, atol=1e-6), w, w2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6), w, w2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b[2], rtol=1e-5, atol=1e-6), w, w2)


def test_chunks_are_the_heads_outputs_in_order():
  hn = _hn(output="chunk", chunk_size=16)  # 75 weights -> 5 chunks, 5 padding entries
  variables = jax.jit(hn.init)(jax.random.key(1), jnp.arange(2))
  w, inter = jax.jit(lambda v: hn.apply(v, jnp.arange(2), capture_intermediates=lambda m, _: m.name == "head",
                                        mutable=["intermediates"]))(variables)
  head = np.asarray(inter["intermediates"]["head"]["__call__"][0])
  assert head.shape == (2, 5, 16)
  flat = np.concatenate([np.asarray(a).reshape(2, -1) for a in jax.tree.leaves(w)], axis=1)
  np.testing.assert_allclose(flat, head.reshape(2, -1)[:, :75], rtol=1e-6)


def test_lstm_chunks_depend_on_earlier_chunks_and_mlp_chunks_do_not():
  """Perturbing the first chunk embedding changes later chunks only with the LSTM (dependency preserving)."""
  for arch, depends in (("lstm", True), ("mlp", False)):
    hn = _hn(arch=arch)
    variables = nn.unbox(jax.jit(hn.init)(jax.random.key(2), jnp.arange(1)))
    bumped = jax.tree_util.tree_map_with_path(
        lambda p, a: a.at[0].add(1.0) if "chunk_embedding" in jax.tree_util.keystr(p) else a, variables)
    head = jax.jit(lambda v, hn=hn: hn.apply(v, jnp.arange(1), capture_intermediates=lambda m, _: m.name == "head",
                                             mutable=["intermediates"])[1]["intermediates"]["head"]["__call__"][0])
    diff = np.abs(np.asarray(head(variables) - head(bumped)))[0]  # [chunks, chunk_size]
    assert diff[0].max() > 0
    assert (diff[1:].max() > 1e-6) == depends, (arch, diff.max(1))


def test_hyperfan_variances_follow_chang_et_al():
  hn = hypernet.HyperNetwork(TARGET, (5,), conditioning="task", num_tasks=2, output="full", hidden=(16,))
  shapes, _, _, index = hn.layout()
  var = hn._head_variance(index, shapes, 16)  # pylint: disable=protected-access
  # Flattening order: dense_0 bias (8), dense_0 kernel (5x8), dense_1 bias (3), dense_1 kernel (8x3).
  np.testing.assert_allclose(var[:8], 1 / (2 * 16))
  np.testing.assert_allclose(var[8:48], 1 / (2 * 5 * 16))
  np.testing.assert_allclose(var[48:51], 1 / (2 * 16))
  np.testing.assert_allclose(var[51:], 1 / (2 * 8 * 16))
  out = hypernet.HyperNetwork(TARGET, (5,), conditioning="task", num_tasks=2, output="full", hidden=(16,),
                              init_scheme="hyperfan_out")
  var = out._head_variance(index, shapes, 16)  # pylint: disable=protected-access
  np.testing.assert_allclose(var[:8], 0.0)
  np.testing.assert_allclose(var[8:48], 1 / (8 * 16))
  np.testing.assert_allclose(var[51:], 1 / (3 * 16))
  fans, is_bias = hypernet.target_fans(shapes)
  assert is_bias.sum() == 11 and set(fans[~is_bias]) == {5.0, 8.0}


def test_residual_is_theta0_plus_hypernetwork_and_theta0_has_standard_init():
  hn = hypernet.HyperNetwork(TARGET, (5,), conditioning="data", output="full", hidden=(16,), residual=True,
                             input_encoding="cossin")
  gamma = jnp.linspace(0, 1, 4)[:, None]
  variables = jax.jit(hn.init)(jax.random.key(3), gamma)
  theta0 = np.asarray(nn.unbox(variables["params"]["theta0"]))
  assert theta0.shape == (75,)
  np.testing.assert_array_equal(theta0[:8], 0.0)  # biases start at zero
  zero_head = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.zeros_like(a) if "head" in jax.tree_util.keystr(p) else a, nn.unbox(variables))
  w = jax.jit(hn.apply)(zero_head, gamma)
  flat = np.concatenate([np.asarray(a).reshape(4, -1) for a in jax.tree.leaves(w)], axis=1)
  np.testing.assert_allclose(flat, np.broadcast_to(theta0, (4, 75)), rtol=1e-6)
  # The default hypernetwork (zero biases, ReLU) is positively homogeneous: h(c gamma) = c h(gamma).
  plain = hypernet.HyperNetwork(TARGET, (5,), conditioning="data", output="full", hidden=(16,))
  v = jax.jit(plain.init)(jax.random.key(4), gamma)
  papply = jax.jit(plain.apply)
  a = papply(v, 0.5 * gamma + 0.25)
  b = papply(v, 2 * (0.5 * gamma + 0.25))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(2 * x, y, rtol=1e-5, atol=1e-6), a, b)


def test_noise_and_static_conditioning():
  hn = _hn(conditioning="noise", embedding_dim=6)
  variables = jax.jit(hn.init)({"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.zeros((2, 6)))
  w = jax.jit(lambda v, k: hn.apply(v, 5, rngs={"noise": k}))(variables, jax.random.key(7))  # 5 weight samples
  assert jax.tree.leaves(w)[0].shape[0] == 5
  assert float(jnp.abs(jax.tree.leaves(w)[1][0] - jax.tree.leaves(w)[1][1]).max()) > 0
  static = _hn(conditioning="none")
  v = jax.jit(lambda k: static.init(k, 1))(jax.random.key(0))
  assert jax.tree.leaves(jax.jit(lambda v: static.apply(v, 3))(v))[0].shape[0] == 3


def test_hypermodel_targets_another_zoo_model_and_vmaps():
  conv = core.ConvNet(num_classes=3, features=(2,), kernel_size=(3, 3), hidden=(4,))
  model = hypernet.HyperModel(hypernet.HyperNetwork(conv, (8, 8, 1), conditioning="task", num_tasks=2,
                                                    chunk_size=32, hidden=(8,)))
  inputs = {"task": jnp.array([0, 1, 1]), "x": jnp.ones((3, 8, 8, 1))}
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  direct = jax.jit(model.apply)(variables, inputs)
  assert direct.shape == (3, 3)
  stacked = {"task": jnp.stack([inputs["task"]] * 2), "x": jnp.stack([inputs["x"]] * 2)}
  out = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, stacked)
  np.testing.assert_allclose(out[1], direct, rtol=1e-5, atol=1e-6)


def test_sharded_forward_on_8_devices():
  model = hypernet.HyperModel(_hn())
  inputs = {"task": jnp.arange(16) % 4, "x": jax.random.normal(jax.random.key(0), (16, 5))}
  mesh = sharding.make_mesh({"data": 8})
  abstract = jax.eval_shape(model.init, jax.random.key(0), inputs)
  variables = jax.jit(model.init, out_shardings=sharding.state_shardings(abstract, mesh))(jax.random.key(0), inputs)
  x = jax.device_put(inputs, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(variables, x)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(model.apply)(jax.device_get(variables), inputs), rtol=1e-5, atol=1e-5)


def test_bad_input_is_a_clear_error():
  hn = _hn()
  variables = jax.jit(hn.init)(jax.random.key(0), jnp.arange(2))  # jitted inits; the applies below stay eager, so
  with pytest.raises(ValueError, match=r"\[0, 4\)"):  # the ids are concrete
    hn.apply(variables, jnp.array([0, 4]))
  with pytest.raises(TypeError, match="integer"):
    hn.apply(variables, jnp.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="empty batch"):
    hn.apply(variables, jnp.zeros((0,), jnp.int32))
  model = hypernet.HyperModel(hn)
  mv = jax.jit(model.init)(jax.random.key(0), {"task": jnp.arange(2), "x": jnp.ones((2, 5))})
  with pytest.raises(ValueError, match="d0=5"):
    model.apply(mv, {"task": jnp.arange(2), "x": jnp.ones((2, 6))})
  with pytest.raises(ValueError, match="same batch size"):
    model.apply(mv, {"task": jnp.arange(3), "x": jnp.ones((2, 5))})
  with pytest.raises(ValueError, match="keys"):
    model.apply(mv, jnp.ones((2, 5)))
  with pytest.raises(ValueError, match="task"):
    model.apply(mv, {"task": jnp.array([0, 9]), "x": jnp.ones((2, 5))})
  # Traced out-of-range ids give NaN outputs, never a silently clipped task.
  out = jax.jit(model.apply)(mv, {"task": jnp.array([0, 9]), "x": jnp.ones((2, 5))})
  assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
  for kw, match in (({"output": "x"}, "output"), ({"arch": "lstm", "output": "full"}, "arch"),
                    ({"num_tasks": None}, "num_tasks"), ({"init_scheme": "he"}, "init_scheme"),
                    ({"chunk_size": 0}, "chunk_size"), ({"input_encoding": "fourier"}, "input_encoding")):
    with pytest.raises(ValueError, match=match):
      _hn(**kw).init(jax.random.key(0), jnp.arange(2))
  noise = _hn(conditioning="noise", embedding_dim=6)
  with pytest.raises(ValueError, match="features=6"):
    noise.init(jax.random.key(0), jnp.zeros((2, 5)))


def test_continual_metrics_and_regularizer():
  R = jnp.array([[0.9, 0.5, 0.4], [0.7, 0.95, 0.5], [0.6, 0.9, 0.8]])
  np.testing.assert_allclose(continual.average_accuracy(R), (0.6 + 0.9 + 0.8) / 3, rtol=1e-6)
  np.testing.assert_allclose(continual.forgetting(R), [0.3, 0.05], rtol=1e-5)
  w = {"a": jnp.ones((3, 2)), "b": jnp.zeros((3, 1))}
  s = {"a": jnp.zeros((3, 2)), "b": jnp.ones((3, 1))}
  np.testing.assert_allclose(continual.output_regularizer(w, s, jnp.array([True, True, False])), 3.0)
  np.testing.assert_allclose(continual.output_regularizer(w, s, jnp.array([False, False, False])), 0.0)


def test_hypercl_freezes_earlier_task_embeddings_and_snapshots_at_boundaries():
  model = hypernet.HyperModel(_hn(num_tasks=3), x_key="x")
  proc = continual.HyperCL(model=model, optimizer=optax.adam(1e-2), num_tasks=3, steps_per_task=2, beta=1.0)
  batch = {"image": jnp.ones((4, 5)), "label": jnp.zeros((4,), jnp.int32), "task": jnp.array([0, 1, 2, 1])}
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), batch))
  step = jax.jit(proc.step)
  emb = lambda s: np.asarray(s.params["hypernet"]["task_embedding"]["embedding"]["embedding"])  # noqa: E731
  e0 = emb(state)
  for _ in range(2):
    state, m = step(state, batch)
  e1 = emb(state)
  assert np.abs(e1[0] - e0[0]).max() > 0 and np.abs(e1[1:] - e0[1:]).max() == 0  # only task 0 learned
  state, m = step(state, batch)  # first step of task 1: the snapshot is taken, the regulariser starts at 0
  assert float(m["task"]) == 1.0 and float(m["regularizer"]) == 0.0
  np.testing.assert_array_equal(emb(state)[0], e1[0])  # task 0's embedding is frozen from now on
  state, m = step(state, batch)
  assert float(m["regularizer"]) > 0.0
  with pytest.raises(ValueError, match="steps_per_task"):
    continual.HyperCL(model=model, num_tasks=3, steps_per_task=0)
  with pytest.raises(ValueError, match="task-conditioned"):
    continual.HyperCL(model=hypernet.HyperModel(_hn(conditioning="noise")), num_tasks=3)
