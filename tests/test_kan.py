"""zoo.kan: shapes, parameter trees, jit == no-jit, vmap, sharded forward on the 8-device mesh, clear errors, the grid
update, S-KAN's selection and schedule, KArAt's attention, and that every KAN layer goes through the kernel entry."""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import kan
from zoo.kernels import kan_basis
from zoo.recipes import sharding
from zoo.recipes import skan as skan_lib

RNG = np.random.default_rng(0)
X2 = jnp.asarray(RNG.uniform(-1, 1, (16, 2)), jnp.float32)
IMG = jnp.asarray(RNG.uniform(0, 1, (8, 8, 8, 1)), jnp.float32)

TINY_VIT = dict(hidden=16, num_layers=1, num_heads=2, mlp_dim=16)

MODELS = {
    # name: (module, input, output shape)
    "KANLinear": (kan.KANLinear(3), X2, (16, 3)),
    "KAN": (kan.KAN((4, 1)), X2, (16, 1)),
    "ReLUKAN": (kan.ReLUKAN((4, 1)), X2, (16, 1)),
    "AFKAN": (kan.AFKAN((4, 3)), X2, (16, 3)),
    "AFKAN_multistep": (kan.AFKAN((4, 3), method="multistep", activation="gelu", func="sum_prod"), X2, (16, 3)),
    "SKAN": (kan.SKAN((4, 1)), X2, (16, 1)),
    "SelectableKANConv": (kan.SelectableKANConv(3, spaces=("bspline", "rbf")), IMG, (8, 8, 8, 3)),
    "SConvKAN": (kan.SConvKAN(10, channels=(2,), spaces=("fourier", "chebyshev")), IMG, (8, 10)),
    "KArAtViT": (kan.KArAtViT(**TINY_VIT), IMG, (8, 10)),
    "KArAtViT_universal": (kan.KArAtViT(mode="universal", **TINY_VIT), IMG, (8, 10)),
}


@functools.lru_cache(maxsize=None)
def _init(name):
  model, x, _ = MODELS[name]
  return jax.jit(model.init)(jax.random.key(0), x)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_jit_equals_eager(name):
  model, x, shape = MODELS[name]
  variables = _init(name)
  y = jax.jit(model.apply)(variables, x)
  assert y.shape == shape and y.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(y)))
  if name == "KAN":  # eager is slow (op by op); one suffices
    np.testing.assert_allclose(model.apply(variables, x), y, rtol=1e-5, atol=1e-6)


def test_parameter_trees_and_counts():
  v = _init("KANLinear")
  shapes = jax.tree.map(jnp.shape, nn.unbox(v))
  assert shapes == {"params": {"base_weight": (2, 3), "spline_weight": (8, 2, 3), "spline_scaler": (2, 3)},
                    "grid": {"grid": (2, 12)}}
  # efficient-kan's grid: G=5 intervals on [-1, 1] extended by 3 knots each side.
  np.testing.assert_allclose(v["grid"]["grid"][0], np.linspace(-1 - 3 * 0.4, 1 + 3 * 0.4, 12), atol=1e-6)
  # AF-KAN's layer: i*o + K + 2 (reduce bias, temperature) + 2 i (LayerNorm).
  p = nn.unbox(_init("AFKAN")["params"])
  k = 5 + 3
  assert sum(np.size(a) for a in jax.tree.leaves(p["layers_0"])) == 2 * 4 + k + 2 + 2 * 2
  s = nn.unbox(_init("SKAN"))
  assert s["params"]["layers_0"]["selection_logits"].shape == (2, 5)
  assert s["selection"]["layers_0"]["mask"].shape == (2, 5)
  assert set(s["params"]["layers_0"]) == {"selection_logits", "base_bspline", "base_rbf", "base_wavelet",
                                          "coef_bspline", "coef_chebyshev", "coef_fourier", "coef_rbf",
                                          "coef_wavelet"}
  # Logical axis names on the KAN coefficients.
  boxed = _init("KAN")["params"]["layers_0"]["spline_weight"]
  assert boxed.names == (None, "embed", "mlp")


def test_bf16_compute():
  model = kan.KAN((4, 1), dtype=jnp.bfloat16)
  v = model.init(jax.random.key(0), X2)
  y = jax.jit(model.apply)(v, X2)
  assert y.dtype == jnp.bfloat16
  y32 = jax.jit(kan.KAN((4, 1)).apply)(v, X2)
  np.testing.assert_allclose(y.astype(jnp.float32), y32, atol=5e-2)


@pytest.mark.parametrize("name", ["KAN", "SKAN", "ReLUKAN"])
def test_vmap_over_a_leading_axis(name):
  model, x, _ = MODELS[name]
  v = _init(name)
  xs = jnp.stack([x, x[::-1] * 0.5])
  ys = jax.jit(jax.vmap(lambda x: model.apply(v, x)))(xs)
  for i in range(2):
    np.testing.assert_allclose(ys[i], model.apply(v, xs[i]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["KAN", "SKAN", "KArAtViT"])
def test_sharded_forward_on_the_mesh(name):
  model, x, shape = MODELS[name]
  assert len(jax.devices()) == 8
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  boxed = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = nn.unbox(_init(name))
  expected = jax.jit(model.apply)(variables, x)
  placed = jax.device_put(variables, sharding.state_shardings(boxed, mesh))
  assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed)), "no parameter is sharded"
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    y = jax.jit(model.apply)(placed, xs)
  assert y.shape == shape and len(y.sharding.device_set) == 8
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_every_kan_layer_goes_through_the_kernel_entry_point(monkeypatch):
  calls = []
  original = kan_basis.kan

  def counting(*args, **kwargs):
    calls.append(kwargs["basis"])
    return original(*args, **kwargs)

  monkeypatch.setattr(kan_basis, "kan", counting)
  expected = {"KANLinear": 1, "KAN": 2, "ReLUKAN": 2, "AFKAN": 4, "SKAN": 2, "SelectableKANConv": 1,
              "SConvKAN": 2, "KArAtViT": 1, "KArAtViT_universal": 1}
  for name, n in expected.items():
    model, x, _ = MODELS[name]
    variables = _init(name)
    calls.clear()
    jax.eval_shape(model.apply, variables, x)
    assert len(calls) == n, f"{name}: {len(calls)} kernel calls, expected {n}"


def test_input_errors():
  with pytest.raises(ValueError, match=r"KANLinear: `x` must have shape"):
    kan.KANLinear(3).init(jax.random.key(0), jnp.ones(()))
  with pytest.raises(TypeError, match="floating"):
    kan.KAN((3,)).init(jax.random.key(0), jnp.ones((4, 2), jnp.int32))
  with pytest.raises(ValueError, match="spaces"):
    kan.SKAN((3,), spaces=("bspline", "legendre")).init(jax.random.key(0), X2)
  with pytest.raises(ValueError, match="method"):
    kan.AFKAN((3,), method="local_attn").init(jax.random.key(0), X2)
  with pytest.raises(ValueError, match=r"SelectableKANConv: `x` must have shape \[batch, height"):
    kan.SelectableKANConv(3).init(jax.random.key(0), X2)
  with pytest.raises(ValueError, match="attention"):
    kan.KArAtViT(attention="linear", **TINY_VIT).init(jax.random.key(0), IMG)
  model, x, _ = MODELS["KAN"]
  with pytest.raises(ValueError, match=r"coef"):
    model.apply(_init("KAN"), jnp.ones((4, 3)))   # 3 inputs for a layer built on 2


def test_update_grid_preserves_the_function_and_adapts_to_data():
  model = kan.KAN((4, 1))
  x = jnp.asarray(RNG.uniform(-0.5, 0.9, (256, 2)), jnp.float32)     # data on a sub-interval of the grid
  v = jax.jit(model.init)(jax.random.key(1), x)
  y = model.apply(v, x)
  new_model, nv = kan.update_grid(model, v, x)
  assert new_model.grid_size == 5
  g = nv["grid"]["layers_0"]["grid"]
  assert g.shape == (2, 12)
  # The interior knots now span the data range (quantiles), not [-1, 1].
  np.testing.assert_allclose(g[:, 3], jnp.min(x, 0) - 0.01 * 0.02, atol=2e-2)
  np.testing.assert_allclose(g[:, -4], jnp.max(x, 0), atol=2e-2)
  np.testing.assert_allclose(new_model.apply(nv, x), y, atol=2e-3 * float(jnp.max(jnp.abs(y))) + 1e-4)
  # Extension: a finer grid (new module) still computes the same function.
  fine, fv = kan.update_grid(model, v, x, grid_size=12)
  assert fine.grid_size == 12 and fv["params"]["layers_0"]["spline_weight"].shape == (15, 2, 4)
  np.testing.assert_allclose(fine.apply(fv, x), y, atol=2e-3 * float(jnp.max(jnp.abs(y))) + 1e-4)
  with pytest.raises(TypeError, match="KAN or KANLinear"):
    kan.update_grid(kan.SKAN((3,)), v, x)


def test_selection_mask_reduces_to_a_single_space():
  model = kan.SelectableKANLayer(3, spaces=("bspline", "fourier"))
  v = nn.unbox(model.init(jax.random.key(2), X2))
  only_fourier = {**v, "selection": {"mask": jnp.asarray([[0.0, 1.0]] * 2)}}
  single = kan.SelectableKANLayer(3, spaces=("fourier",))
  sv = {"params": {"selection_logits": jnp.zeros((2, 1)), "coef_fourier": v["params"]["coef_fourier"]},
        "selection": {"mask": jnp.ones((2, 1))}}
  np.testing.assert_allclose(model.apply(only_fourier, X2), single.apply(sv, X2), rtol=1e-5, atol=1e-6)
  p = kan.selection_probabilities(only_fourier)
  np.testing.assert_allclose(p[""], [[0, 1], [0, 1]])


def test_narrow_masks_and_schedule_procedure():
  params = {"l": {"selection_logits": jnp.asarray([[0.1, 0.5, -1.0], [2.0, 0.0, 1.0]])}}
  sel = {"l": {"mask": jnp.asarray([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])}}
  top2 = skan_lib.narrow_masks(params, sel, 2)
  np.testing.assert_array_equal(top2["l"]["mask"], [[1, 1, 0], [0, 1, 1]])      # masked-out space never returns
  top1 = skan_lib.narrow_masks(params, top2, 1)
  np.testing.assert_array_equal(top1["l"]["mask"], [[0, 1, 0], [0, 0, 1]])
  data = {"x": np.asarray(X2), "y": np.asarray(X2[:, :1] ** 2)}
  from zoo.recipes import sharding as sh  # pylint: disable=g-import-not-at-top
  result = skan_lib.train_skan(kan.SKAN((2, 1), spaces=("bspline", "fourier", "rbf")), data, full_steps=2,
                               selective_steps=2, prune_steps=2, top_k=2, batch_size=16, log_every=1,
                               mesh=sh.make_mesh(devices=jax.devices()[:1]))
  phases = [h["train/phase"] for h in result.history]
  kept = [h["train/kept_spaces"] for h in result.history]
  assert phases == [1, 1, 2, 2, 3, 3] and kept == [3, 3, 2, 2, 1, 1]
  masks = jax.tree.leaves(result.variables["selection"])
  assert all(np.all(np.sum(np.asarray(m), -1) == 1) for m in masks)


def test_karat_attention_rows_and_masks():
  b, n, h, d, g, r = 2, 6, 2, 4, 3, 4
  rng = np.random.default_rng(4)
  q, k, v = (jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for _ in range(3))
  coef = jnp.asarray(rng.normal(size=(h, 2 * g, n, r)) * 0.3, jnp.float32)
  proj = jnp.asarray(rng.normal(size=(h, r, n)) * 0.5, jnp.float32)
  eye = jnp.broadcast_to(jnp.eye(n)[None, :, None, :], (b, n, h, n))
  w = kan.karat_attention(q, k, eye, coef=coef, proj=proj, grid_size=g, is_causal=True)   # rows of the weights
  w = jnp.transpose(w, (0, 2, 1, 3))
  np.testing.assert_allclose(jnp.sum(jnp.abs(w), -1), 1.0, atol=1e-4)
  assert float(jnp.max(jnp.abs(jnp.triu(w, 1)))) == 0.0
  # The same operator written out: Fourier KAN layer on each logit row, projection, L1 normalisation.
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0
  j = jnp.arange(1, g + 1)
  feats = jnp.concatenate([jnp.cos(logits[..., None] * j), jnp.sin(logits[..., None] * j)], -1)  # [b,h,q,k,2g]
  u = jnp.einsum("bhqkg,hgkr->bhqr", feats, coef)
  want = jnp.einsum("bhqr,hrk->bhqk", u, proj)
  want = want / (jnp.sum(jnp.abs(want), -1, keepdims=True) + 1e-6)
  out = kan.karat_attention(q, k, v, coef=coef, proj=proj, grid_size=g)
  np.testing.assert_allclose(out, jnp.einsum("bhqk,bkhd->bqhd", want, v), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="coef"):
    kan.karat_attention(q, k, v, coef=coef[:, :4], proj=proj, grid_size=g)


def test_karat_blockwise_vs_universal_parameters():
  blockwise = flax.traverse_util.flatten_dict(nn.unbox(_init("KArAtViT")["params"]), sep="/")
  universal = flax.traverse_util.flatten_dict(nn.unbox(_init("KArAtViT_universal")["params"]), sep="/")
  assert any("attention_fn/phi_coef" in k for k in blockwise)
  assert "phi_coef" in universal and not any("attention_fn" in k for k in universal)
  # 2x2 patches of 8x8 + a class token: N = 17 tokens, rank 8, G = 3, 2 heads.
  assert universal["phi_coef"].shape == (2, 6, 17, 8) and universal["phi_proj"].shape == (2, 8, 17)
