"""Unit tests of zoo.snnk (random features, SNNKDense, bundling, adapters) and the BundledRidge procedure."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import snnk
from zoo import transformer
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train


# Parameter inits draw from unsafe_rbg keys: XLA compiles them far faster than threefry. (The random-feature
# estimates below keep their threefry keys: their Monte-Carlo tolerances were set on those draws.)
KEY = lambda seed: jax.random.key(seed, impl="unsafe_rbg")


def _x(n=6, d=5, seed=0, scale=0.4):
  return scale * jax.random.normal(jax.random.key(seed), (n, d))


@jax.jit
def _urf_estimates(x, w):
  g = snnk.gaussian_matrix(jax.random.key(2), 20000, 4)
  one = jnp.ones_like
  # f = exp: a = A = 1 is exactly the positive random features.
  exp_gap = jnp.max(jnp.abs(snnk.urf(x, g, one, one, jnp.ones((20000,))) - snnk.positive_rf(x, g)))
  # f = cos: tau = (delta_1 + delta_{-1}) / 2, xi = +-1 uniform, a(xi) = sqrt(i xi), A = 1 on both sides.
  xis = jnp.where(jax.random.bernoulli(jax.random.key(3), 0.5, (20000,)), 1.0, -1.0).astype(jnp.complex64)
  a_fn = lambda xi: jnp.sqrt(1j * xi)
  return exp_gap, (snnk.urf(x, g, one, a_fn, xis) @ snnk.urf(w, g, one, a_fn, xis).T).real


def test_urf_recovers_exp_and_a_fourier_cos_kernel():
  x, w = _x(8, 4, 0), _x(5, 4, 1)
  exp_gap, est = _urf_estimates(x, w)
  assert exp_gap < 1e-5
  err = np.abs(np.asarray(est - jnp.cos(x @ w.T)))
  assert err.max() < 0.12 and err.mean() < 0.03, err  # Monte-Carlo, m = 20000 complex features


def test_relu_features_converge_to_arccos_and_orthogonal_rows():
  x, w = _x(8, 4, 0, 1.0), _x(5, 4, 1, 1.0)

  @jax.jit
  def estimates(x, w):  # one compile: i.i.d. and orthogonal features, and the closed form
    est = lambda g: snnk.relu_rf(x, g) @ snnk.relu_rf(w, g).T
    return [est(snnk.gaussian_matrix(jax.random.key(4), 40000, 4, orthogonal=o)) for o in (False, True)], \
        snnk.arccos_kernel(x, w)

  ests, want = estimates(x, w)
  for est in ests:
    np.testing.assert_allclose(est, want, atol=0.05, rtol=0.05)
  np.testing.assert_allclose(want, snnk.arccos_kernel(x, w), rtol=1e-5, atol=1e-6)  # jit == eager
  block = snnk.gaussian_matrix(jax.random.key(5), 4, 4, orthogonal=True)
  gram = np.asarray(block @ block.T)
  np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-4)
  # The closed form itself: same direction -> |x||w| / 2, orthogonal -> |x||w| / (2 pi).
  e = jnp.eye(2)
  np.testing.assert_allclose(snnk.arccos_kernel(e, e), [[0.5, 1 / (2 * np.pi)], [1 / (2 * np.pi), 0.5]], rtol=1e-5)


@pytest.mark.parametrize("kind", snnk.KINDS)
def test_snnk_dense_shapes_jit_vmap(kind):
  layer = snnk.SNNKDense(3, 32, kind=kind)
  x = _x()
  variables = jax.jit(layer.init)(KEY(0), x)
  assert set(variables) == ({"params"} if kind == "linear" else {"params", "random_features"})
  out = jax.jit(layer.apply)(variables, x)
  assert out.shape == (6, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, layer.apply(variables, x), rtol=1e-5, atol=1e-6)
  batched = jax.vmap(layer.apply, in_axes=(None, 0))(variables, x.reshape(2, 3, 5))
  np.testing.assert_allclose(batched.reshape(6, 3), out, rtol=1e-5, atol=1e-6)
  feats = layer.apply(variables, x, method="features_of")
  assert feats.shape == (6, 6 if kind == "linear" else 32)
  np.testing.assert_allclose(feats @ nn.unbox(variables["params"]["psi"]), out, rtol=1e-5, atol=1e-6)


def test_init_from_dense_approximates_the_exp_layer_and_linear_is_exact():
  x = _x(16, 5, 0, 0.3)
  kernel, bias = 0.3 * jax.random.normal(jax.random.key(1), (5, 4)), 0.1 * jnp.ones((4,))
  layer = snnk.SNNKDense(4, 8192, kind="exp")
  lin = snnk.SNNKDense(4, kind="linear")

  @jax.jit
  def from_dense(x, kernel, bias):  # one compile for both layers
    variables = snnk.init_from_dense(layer, layer.init(jax.random.key(2), x), kernel, bias)
    lv = snnk.init_from_dense(lin, lin.init(KEY(2), x), kernel, bias)
    return variables, layer.apply(variables, x), lin.apply(lv, x)

  variables, approx, linear = from_dense(x, kernel, bias)
  np.testing.assert_allclose(approx, jnp.exp(x @ kernel + bias), rtol=0.1)
  np.testing.assert_allclose(linear, x @ kernel + bias, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="bias"):
    snnk.init_from_dense(layer, variables, kernel, None)
  with pytest.raises(ValueError, match="psi"):
    snnk.init_from_dense(layer, variables, kernel[:, :3], bias[:3])


def test_bundle_collapses_a_stack():
  x = _x(7, 5)
  layer = snnk.SNNKDense(6, 16)
  rng = np.random.default_rng(1)
  k1, k2 = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  b1, b2 = jnp.arange(4.0), jnp.ones((3,))

  @jax.jit
  def stack_and_bundled(x):  # one compile: the stack, and its bundled form
    variables = layer.init(KEY(0), x)
    stack = (layer.apply(variables, x) @ k1 + b1) @ k2 + b2
    psi, bias = snnk.bundle(nn.unbox(variables["params"]["psi"]), [k1, k2], [b1, b2])
    return variables, stack, layer.apply(variables, x, method="features_of") @ psi + bias

  variables, stack, bundled = stack_and_bundled(x)
  np.testing.assert_allclose(bundled, stack, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="kernels\\[1\\]"):
    snnk.bundle(nn.unbox(variables["params"]["psi"]), [k1, k1], [b1, b1])


def test_bundled_ridge_procedure_equals_closed_form(digits, single_device_mesh):
  train_data, _ = digits
  model = snnk.SNNKClassifier(10, 64)
  result = train.fit(model, train_data, task=tasks.Classification(), procedure="snnk.BundledRidge",
                     procedure_kwargs={"l2": 1e-3}, steps=3, batch_size=449, mesh=single_device_mesh)
  variables = result.variables
  feats = model.apply(variables, train_data["image"][:1347], method="features_of")
  expected = snnk.bundle_closed_form(feats, jax.nn.one_hot(train_data["label"][:1347], 10), 1e-3)
  np.testing.assert_allclose(variables["params"]["snnk"]["psi"], expected, rtol=2e-3, atol=2e-3)


def test_adapter_vit_starts_as_the_vit_and_masks_adapters():
  image = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  shape = dict(hidden=16, mlp_dim=32, num_heads=2, num_layers=1)
  vit, adapted = transformer.ViT(**shape), snnk.AdapterViT(**shape)

  def merge(vit_params, ad_params):
    return {**vit_params, "encoder": {**vit_params["encoder"],
                                      **{k: v for k, v in ad_params["encoder"].items() if k.startswith("adapter_")}}}

  @jax.jit
  def run(image):  # one compile: both inits, the ViT, the adapted ViT with its ViT weights, and a non-zero adapter
    vit_vars = nn.unbox(vit.init(KEY(1), image))
    ad_vars = nn.unbox(adapted.init(KEY(2), image))
    params = merge(vit_vars["params"], ad_vars["params"])
    adapter = params["encoder"]["adapter_0"]
    adapter = {**adapter, "snnk": {**adapter["snnk"], "psi": jnp.ones_like(adapter["snnk"]["psi"])}}
    bumped = merge(params, {"encoder": {**params["encoder"], "adapter_0": adapter}})
    rf = ad_vars["random_features"]
    return (params, ad_vars["params"], vit.apply(vit_vars, image),
            adapted.apply({"params": params, "random_features": rf}, image),
            adapted.apply({"params": bumped, "random_features": rf}, image))

  params, ad_params, reference, loaded, changed = run(image)
  assert jax.tree.structure(params) == jax.tree.structure(ad_params)  # ViT weights load as they are
  np.testing.assert_allclose(loaded, reference, atol=1e-6)
  mask = snnk.adapter_mask(params)
  assert mask["encoder"]["adapter_0"]["snnk"]["psi"] and mask["head"]["kernel"]
  assert not mask["encoder"]["block_0"]["mlp"]["wi"]["kernel"] and not mask["cls"]
  # A non-zero adapter changes the output.
  assert not np.allclose(changed, reference)


def test_sharded_forward_on_8_devices():
  model = snnk.SNNKClassifier(10, 64)
  x = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
  variables = jax.jit(model.init)(KEY(1), x)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(model.apply)(nn.unbox(variables), x), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named_errors():
  layer = snnk.SNNKDense(3, 8)
  variables = jax.jit(layer.init)(KEY(0), _x())
  with pytest.raises(ValueError, match="width 5"):
    layer.apply(variables, _x(d=4))
  with pytest.raises(TypeError, match="`x`"):
    layer.apply(variables, jnp.ones((6, 5), jnp.int32))
  with pytest.raises(ValueError, match="`kind`"):
    snnk.SNNKDense(3, kind="tanh").init(jax.random.key(0), _x())
  with pytest.raises(ValueError, match="empty batch"):
    snnk.SNNKClassifier().init(jax.random.key(0), jnp.ones((0, 8, 8, 1)))
  with pytest.raises(ValueError, match="`x`"):
    snnk.relu_rf(jnp.ones((3, 4)), jnp.ones((8, 5)))
  with pytest.raises(ValueError, match="`targets`"):
    snnk.bundle_closed_form(jnp.ones((4, 3)), jnp.ones((5, 2)))
  with pytest.raises(ValueError, match="`l2`"):
    snnk.bundle_closed_form(jnp.ones((4, 3)), jnp.ones((4, 2)), 0.0)
  with pytest.raises(TypeError, match="features_of"):
    from zoo.recipes.procedures.snnk import BundledRidge  # pylint: disable=g-import-not-at-top
    BundledRidge(model=transformer.ViT(), task=tasks.Classification())
