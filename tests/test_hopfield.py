"""Unit tests of zoo.hopfield: the update rule against numpy, the layers' equations, shapes, dtypes, jit, vmap,
sharding on the 8-device mesh, masks, iteration to a fixed point, and clear errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import hopfield as hf
from zoo.recipes import sharding


def _np_softmax(a):
  a = a - a.max(-1, keepdims=True)
  e = np.exp(a)
  return e / e.sum(-1, keepdims=True)


def _np_retrieve(q, x, beta, steps=1):
  for _ in range(steps):
    q = _np_softmax(beta * q @ np.swapaxes(x, -1, -2)) @ x
  return q


def _np_layer_norm(x, p, eps=1e-5):
  mu = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _apply(model, **kwargs):
  """``model.apply`` jitted (one compilation per test instead of one per op), with static keyword arguments."""
  return jax.jit(functools.partial(model.apply, **kwargs))


def _rand(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------ functions


@pytest.mark.parametrize("steps", [1, 3])
def test_retrieve_equals_numpy_update_rule(steps):
  q, x = _rand(0, 2, 3, 5, 8), _rand(1, 3, 7, 8)  # leading axes [2, 3] and [3] broadcast
  out = hf.retrieve(q, x, beta=1.5, steps=steps)
  assert out.shape == (2, 3, 5, 8) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, _np_retrieve(q.astype(np.float64), x.astype(np.float64), 1.5, steps),
                             rtol=2e-5, atol=2e-5)


def test_retrieve_one_memory_for_many_queries():
  q, x = _rand(2, 4, 6, 8), _rand(3, 11, 8)
  np.testing.assert_allclose(hf.retrieve(q, x, beta=3.0), _np_retrieve(q, x, 3.0), rtol=2e-5, atol=2e-5)
  np.testing.assert_array_equal(hf.retrieve(q, x, beta=3.0, steps=0), q)


def test_retrieve_dtypes_jit_vmap_grad():
  q, x = _rand(4, 2, 5, 8), _rand(5, 2, 9, 8)
  qb, xb = jnp.asarray(q, jnp.bfloat16), jnp.asarray(x, jnp.bfloat16)
  out = hf.retrieve(qb, xb, beta=2.0)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), _np_retrieve(q, x, 2.0), atol=0.1)
  f = lambda q, x: hf.retrieve(q, x, beta=2.0, steps=2)
  np.testing.assert_allclose(jax.jit(f)(q, x), f(q, x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.vmap(f)(q, x), f(q, x), rtol=1e-5, atol=1e-6)
  grad = jax.grad(lambda q: jnp.sum(f(q, x) ** 2))(q)
  assert grad.shape == q.shape and bool(jnp.all(jnp.isfinite(grad)))


def test_association_and_energy_equal_numpy():
  q, x, beta = _rand(6, 3, 4, 8), _rand(7, 3, 10, 8), 0.7
  w = hf.association(q, x, beta=beta)
  np.testing.assert_allclose(w, _np_softmax(beta * q @ np.swapaxes(x, -1, -2)), rtol=1e-5, atol=1e-6)
  mask = np.arange(10) < 6
  wm = hf.association(q, x, beta=beta, mask=mask)
  assert float(jnp.max(wm[..., 6:])) == 0.0
  np.testing.assert_allclose(jnp.sum(wm, -1), 1.0, rtol=1e-5)
  e = hf.energy(q, x, beta=beta)
  qd, xd = q.astype(np.float64), x.astype(np.float64)
  logits = beta * qd @ np.swapaxes(xd, -1, -2)
  lse = logits.max(-1) + np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
  m2 = (xd ** 2).sum(-1).max(-1)[:, None]
  expected = -lse / beta + 0.5 * (qd ** 2).sum(-1) + np.log(10) / beta + 0.5 * m2
  assert e.shape == (3, 4)
  np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-5)
  assert bool(jnp.all(e >= -1e-5))  # the paper's Lemma: E >= 0


@pytest.mark.parametrize("call, message", [
    (lambda: hf.retrieve(np.zeros(8, np.float32), np.zeros((3, 8), np.float32), beta=1.0), "`query` must have shape"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.float32), np.zeros((3, 7), np.float32), beta=1.0), "features=8"),
    (lambda: hf.retrieve(np.zeros((2, 2, 8), np.float32), np.zeros((3, 3, 8), np.float32), beta=1.0), "broadcast"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.int32), np.zeros((3, 8), np.float32), beta=1.0), "floating"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.float32), np.zeros((3, 8), np.float32), beta=-1.0), "beta"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.float32), np.zeros((3, 8), np.float32), beta=np.ones(2)), "beta"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.float32), np.zeros((3, 8), np.float32), beta=1.0, steps=-1), "steps"),
    (lambda: hf.retrieve(np.zeros((2, 8), np.float32), np.zeros((3, 8), np.float32), beta=1.0, steps=1.5), "steps"),
    (lambda: hf.energy(np.zeros((2, 8), np.float32), np.zeros((3, 6), np.float32), beta=1.0), "`stored`"),
])
def test_function_errors(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call()


# --------------------------------------------------------------------------------------------------- layers


def _unboxed_params(variables):
  return nn.unbox(variables)["params"]


def _params(model, *args, scale=0.3, seed=0):
  """Random variables shaped like ``model.init(key, *args)``, drawn with numpy.

  Compiling a model's initialisers costs seconds of CPU per model (threefry), so only the tests of the
  initialisation itself call ``init``.
  """
  abstract = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), *args))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (scale * rng.normal(size=s.shape)).astype(s.dtype), abstract)


def test_hopfield_equals_the_papers_equation():
  """Z = softmax(beta R W_Q W_K^T Y^T) Y W_K W_V W_O, with LayerNorms on R, Y and the projection, 2 heads."""
  r, y, v = _rand(8, 2, 3, 6), _rand(9, 2, 5, 4), _rand(10, 2, 5, 7)
  layer = hf.Hopfield(features=9, num_heads=2, head_dim=3, pattern_dim=4)
  variables = _params(layer, r, y, v)  # random biases and LayerNorm parameters: every term is checked
  p = variables["params"]
  out = _apply(layer)(variables, r, y, v)
  assert out.shape == (2, 3, 9)
  rn, yn, vn = (_np_layer_norm(r, p["state_norm"]), _np_layer_norm(y, p["stored_norm"]),
                _np_layer_norm(v, p["projection_norm"]))
  q = np.einsum("bqd,dhk->bhqk", rn, p["query"]["kernel"]) + p["query"]["bias"][None, :, None]
  k = np.einsum("bnd,dhk->bhnk", yn, p["key"]["kernel"]) + p["key"]["bias"][None, :, None]
  val = np.einsum("bnd,dhk->bhnk", vn, p["value"]["kernel"]) + p["value"]["bias"][None, :, None]
  beta = 1 / np.sqrt(3)  # default scaling 1/sqrt(head_dim)
  z = _np_softmax(beta * q @ np.swapaxes(k, -1, -2)) @ val  # [b, h, q, pattern_dim]
  expected = np.einsum("bhqk,hkf->bqf", z, p["out"]["kernel"]) + p["out"]["bias"]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_hopfield_init_follows_the_reference():
  x = _rand(11, 2, 5, 16)
  layer = hf.Hopfield(num_heads=4)
  out, variables = jax.jit(layer.init_with_output)(jax.random.key(0), x)
  assert out.shape == (2, 5, 16)
  p = _unboxed_params(variables)
  assert set(p) == {"stored_norm", "state_norm", "projection_norm", "query", "key", "value", "out"}
  assert p["query"]["kernel"].shape == (16, 4, 4) and p["value"]["kernel"].shape == (16, 4, 4)
  assert p["out"]["kernel"].shape == (4, 4, 16)
  assert abs(float(jnp.std(p["query"]["kernel"])) - 0.02) < 0.006  # N(0, 0.02^2), zero biases, unit LayerNorms
  assert float(jnp.max(jnp.abs(p["query"]["bias"]))) == 0.0
  np.testing.assert_array_equal(p["stored_norm"]["scale"], 1.0)
  # Every parameter carries logical axis names.
  boxed = jax.tree.leaves(variables, is_leaf=lambda a: isinstance(a, nn.LogicallyPartitioned))
  assert boxed and all(isinstance(a, nn.LogicallyPartitioned) for a in boxed)
  assert nn.get_partition_spec(variables)["params"]["query"]["kernel"] == jax.sharding.PartitionSpec(
      "embed", "heads", "kv")


def test_hopfield_options_change_the_parameters():
  x = _rand(11, 2, 5, 16)
  off = hf.Hopfield(num_heads=4, normalize_stored_pattern=False, normalize_state_pattern=False,
                    normalize_pattern_projection=False, disable_out_projection=True, use_bias=False,
                    normalize_hopfield_space=True, normalize_hopfield_space_affine=True, pattern_dim=3)
  v_off = _params(off, x)
  assert set(v_off["params"]) == {"query", "key", "value", "hopfield_space_norm"}
  assert set(v_off["params"]["query"]) == {"kernel"}
  assert _apply(off)(v_off, x).shape == (2, 5, 12)  # heads * pattern_dim, no output projection


def test_hopfield_dtypes():
  x = _rand(12, 2, 5, 8)
  layer = hf.Hopfield(num_heads=2)
  variables = _params(layer, x, scale=0.1)
  apply = _apply(layer)
  out32 = apply(variables, x)
  out_b = apply(variables, jnp.asarray(x, jnp.bfloat16))
  assert out32.dtype == jnp.float32 and out_b.dtype == jnp.float32  # bf16 inputs, f32 parameters: f32
  out_bf = _apply(hf.Hopfield(num_heads=2, dtype=jnp.bfloat16))(variables, jnp.asarray(x, jnp.bfloat16))
  assert out_bf.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out_bf, np.float32), out32, atol=0.03)


def test_hopfield_jit_vmap_grad():
  r, y = _rand(13, 3, 2, 4, 8), _rand(14, 3, 2, 6, 8)
  layer = hf.Hopfield(num_heads=2, update_steps_max=2)
  variables = _params(layer, r[0], y[0])
  f = lambda r, y: layer.apply(variables, r, y)
  eager = f(r[1], y[1])
  jitted = jax.jit(f)
  np.testing.assert_allclose(jitted(r[1], y[1]), eager, rtol=1e-5, atol=1e-6)
  per_slice = np.stack([jitted(r[i], y[i]) for i in range(3)])
  np.testing.assert_allclose(jax.jit(jax.vmap(f))(r, y), per_slice, rtol=1e-5, atol=1e-6)
  grads = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply(v, r[0], y[0]) ** 2)))(variables)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.max(jnp.abs(grads["params"]["query"]["kernel"]))) > 0.0  # through the iteration


def test_update_steps_iterate_to_a_fixed_point():
  """``update_steps_max`` updates in the Hopfield space are ``retrieve`` on the projected patterns."""
  r, y = _rand(15, 2, 3, 8), _rand(16, 2, 12, 8)
  kw = dict(normalize_stored_pattern=False, normalize_state_pattern=False, normalize_pattern_projection=False,
            scaling=1.0, update_steps_eps=1e-6)
  variables = _params(hf.Hopfield(**kw), r, y)
  p = variables["params"]
  q = jnp.einsum("bqd,dhk->bhqk", r, p["query"]["kernel"]) + p["query"]["bias"][None, :, None]
  k = jnp.einsum("bnd,dhk->bhnk", y, p["key"]["kernel"]) + p["key"]["bias"][None, :, None]
  val = jnp.einsum("bnd,dhk->bhnk", y, p["value"]["kernel"]) + p["value"]["bias"][None, :, None]

  def expected(steps):
    xi = hf.retrieve(q, k, beta=1.0, steps=steps)
    z = np.asarray(hf.association(xi, k, beta=1.0)) @ np.asarray(val)
    return np.einsum("bhqk,hkf->bqf", z, p["out"]["kernel"]) + p["out"]["bias"]

  outs = {steps: _apply(hf.Hopfield(**{**kw, "update_steps_max": steps}))(variables, r, y) for steps in (0, 3, 60)}
  np.testing.assert_allclose(outs[0], expected(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(outs[3], expected(3), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(outs[60], expected(200), rtol=1e-4, atol=1e-5)  # converged to the fixed point
  assert float(jnp.max(jnp.abs(outs[60] - outs[0]))) > 1e-2  # ... and the iteration did something
  # A huge eps stops every (example, head) after its first extra update.
  once = _apply(hf.Hopfield(**{**kw, "update_steps_max": 10, "update_steps_eps": 1e9}))(variables, r, y)
  np.testing.assert_allclose(once, expected(1), rtol=1e-4, atol=1e-5)


def test_hopfield_masks():
  r, y = _rand(17, 2, 3, 8), _rand(18, 2, 6, 8)
  layer = hf.Hopfield(num_heads=2)
  variables = _params(layer, r, y)
  apply = _apply(layer)
  keep = np.array([[True] * 4 + [False] * 2, [True] * 6])
  out = apply(variables, r, y, stored_mask=keep)
  y2 = y.copy()
  y2[0, 4:] = 100.0  # masked stored patterns must not matter
  np.testing.assert_allclose(apply(variables, r, y2, stored_mask=keep), out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[0], apply(variables, r[:1], y[:1, :4])[0], rtol=1e-5, atol=1e-6)
  # An association mask with only the diagonal: each query retrieves exactly one pattern.
  diag = np.eye(3, 6, dtype=bool)
  _, inter = _apply(layer, mutable=["intermediates"])(variables, r, y, association_mask=diag)
  (weights,) = inter["intermediates"]["association"]
  assert weights.shape == (2, 2, 3, 6)
  np.testing.assert_allclose(weights, np.broadcast_to(diag, weights.shape), atol=1e-6)


def test_hopfield_dropout_on_association():
  x = _rand(19, 2, 5, 8)
  layer = hf.Hopfield(dropout_rate=0.5)
  variables = _params(layer, x)
  det = _apply(layer)(variables, x)
  np.testing.assert_array_equal(_apply(layer, train=False)(variables, x), det)
  train = _apply(layer, train=True)
  a = train(variables, x, rngs={"dropout": jax.random.key(1)})
  b = train(variables, x, rngs={"dropout": jax.random.key(2)})
  assert float(jnp.max(jnp.abs(a - b))) > 0 and float(jnp.max(jnp.abs(a - det))) > 0


def test_hopfield_pooling():
  y = _rand(20, 3, 7, 8)
  pool = hf.HopfieldPooling(quantity=2, num_heads=2)
  variables = _params(pool, y)
  assert variables["params"]["pooling_weights"].shape == (2, 8)
  apply = _apply(pool)
  out = apply(variables, y)
  assert out.shape == (3, 16)
  perm = np.random.default_rng(0).permutation(7)  # a set function: the order of the set does not matter
  np.testing.assert_allclose(apply(variables, y[:, perm]), out, rtol=1e-5, atol=1e-6)
  frozen = hf.HopfieldPooling(quantity=2, num_heads=2, trainable=False)
  grads = jax.jit(jax.grad(lambda v: jnp.sum(frozen.apply(v, y) ** 2)))(variables)["params"]
  assert float(jnp.max(jnp.abs(grads["pooling_weights"]))) == 0.0
  assert float(jnp.max(jnp.abs(grads["hopfield"]["query"]["kernel"]))) > 0.0


def test_uniform_association_ablation_averages_the_projected_patterns():
  """``uniform_association=True`` (the ablation): weights 1/n over the unmasked stored patterns, whatever the state."""
  y = _rand(22, 3, 7, 8)
  keep = np.ones((3, 7), bool)
  keep[0, 5:] = False
  pool = hf.HopfieldPooling(num_heads=2, uniform_association=True)
  variables = _params(pool, y)
  out, inter = _apply(pool, mutable=["intermediates"])(variables, y, stored_mask=keep)
  (weights,) = inter["intermediates"]["hopfield"]["association"]
  np.testing.assert_allclose(weights, np.broadcast_to((keep / keep.sum(1, keepdims=True))[:, None, None],
                                                      weights.shape), atol=1e-6)
  p = variables["params"]["hopfield"]
  val = np.einsum("bnd,dhk->bhnk", _np_layer_norm(y, p["projection_norm"]), p["value"]["kernel"])
  val = val + p["value"]["bias"][None, :, None]
  mean = np.stack([val[i][:, keep[i]].mean(1) for i in range(3)])  # [b, h, k]
  np.testing.assert_allclose(out, np.einsum("bhk,hkf->bf", mean, p["out"]["kernel"]) + p["out"]["bias"], rtol=1e-4,
                             atol=1e-5)
  # The same parameters without the ablation retrieve: the output depends on the learned state pattern.
  moved = jax.tree.map(lambda a: a, variables)  # a new dict tree sharing the arrays
  moved["params"]["pooling_weights"] = _rand(23, *moved["params"]["pooling_weights"].shape)
  paper = _apply(hf.HopfieldPooling(num_heads=2))
  assert float(jnp.max(jnp.abs(paper(moved, y) - paper(variables, y)))) > 1e-3
  np.testing.assert_allclose(_apply(pool)(moved, y, stored_mask=keep), out, rtol=1e-5, atol=1e-6)


def test_hopfield_layer_lookup():
  r = _rand(21, 2, 5, 8)
  layer = hf.HopfieldLayer(quantity=11, lookup_weights_as_separated=True, features=6)
  variables = _params(layer, r)
  p = variables["params"]
  assert p["lookup_weights"].shape == (11, 8) and p["target_weights"].shape == (11, 8)
  out = layer.apply(variables, r)  # not jitted here; the jitted call must agree
  assert out.shape == (2, 5, 6)
  np.testing.assert_allclose(jax.jit(layer.apply)(variables, r), out, rtol=1e-5, atol=1e-6)
  # Without separate targets the stored patterns are also the pattern projections.
  shared = hf.HopfieldLayer(quantity=4)
  assert set(_params(shared, r)["params"]) == {"lookup_weights", "hopfield"}


def test_models_shapes_and_bf16():
  img = _rand(22, 4, 8, 8, 1)
  clf = hf.HopfieldClassifier(num_classes=10, width=16, num_heads=2)
  variables = _params(clf, img, scale=0.1)
  assert _apply(clf)(variables, img).shape == (4, 10)
  bf16 = hf.HopfieldClassifier(width=16, num_heads=2, dtype=jnp.bfloat16)
  assert _apply(bf16)(variables, jnp.asarray(img, jnp.bfloat16)).dtype == jnp.bfloat16
  bags = _rand(23, 4, 32, 16)
  for pooling in ("hopfield", "mean", "max"):
    shapes = jax.eval_shape(hf.HopfieldMIL(pooling=pooling, width=8, hidden=16).init_with_output,
                            jax.random.key(0), bags)[0]
    assert shapes.shape == (4, 2)


def test_sharded_forward_on_8_devices():
  assert jax.device_count() == 8
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = hf.HopfieldClassifier(width=16, num_heads=2)
  img = _rand(24, 8, 8, 8, 1)
  variables = _params(model, img, scale=0.1)
  expected = _apply(model)(variables, img)
  params_sh = sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), img), mesh)
  assert any(any(s.spec) for s in jax.tree.leaves(params_sh))  # some parameters are sharded (fsdp)
  params = jax.device_put(variables, params_sh)
  x = jax.device_put(img, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, x)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  assert len(out.sharding.device_set) == 8


@pytest.mark.parametrize("call, message", [
    (lambda m, v: m.apply(v, np.zeros((2, 5), np.float32)), "`state` must have shape"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 12), np.float32)), "features=12, expected 8"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 8), np.int32)), "floating"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 8), np.float32), np.zeros((3, 4, 8), np.float32)), "batch=3"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 8), np.float32), stored_mask=np.ones((2, 4), bool)), "stored_mask"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 8), np.float32), stored_mask=np.ones((2, 5))), "bool"),
    (lambda m, v: m.apply(v, np.zeros((2, 5, 8), np.float32), association_mask=np.ones((5, 4), bool)),
     "association_mask"),
    (lambda m, v: hf.Hopfield(num_heads=3).init(jax.random.key(0), np.zeros((2, 5, 8), np.float32)), "divisible"),
    (lambda m, v: hf.Hopfield(update_steps_max=-1).init(jax.random.key(0), np.zeros((2, 5, 8), np.float32)),
     "update_steps_max"),
    (lambda m, v: hf.HopfieldPooling().init(jax.random.key(0), np.zeros((2, 8), np.float32)), "`stored`"),
    (lambda m, v: hf.HopfieldClassifier(patch_size=2, patch_stride=2).init(jax.random.key(0),
                                                                         np.zeros((2, 7, 7, 1), np.float32)),
     "patch_size"),
    (lambda m, v: hf.HopfieldClassifier().init(jax.random.key(0), np.zeros((2, 8, 8), np.float32)), "`image`"),
    (lambda m, v: hf.HopfieldMIL(pooling="sum").init(jax.random.key(0), np.zeros((2, 4, 3), np.float32)),
     "pooling"),
])
def test_layer_errors(call, message):
  model = hf.Hopfield(num_heads=2)
  variables = _params(model, np.zeros((2, 5, 8), np.float32))
  with pytest.raises((ValueError, TypeError), match=message):
    call(model, variables)
