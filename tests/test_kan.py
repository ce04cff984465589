"""zoo.kan: shapes, parameter trees, jit == no-jit, vmap, sharded forward on the 8-device mesh, clear errors, the grid
update, S-KAN's selection and schedule, KArAt's attention, and that every KAN layer goes through the kernel entry."""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import kan
from zoo import karat
from zoo.kernels import kan_basis
from zoo.recipes import sharding
from zoo.recipes.procedures import skan as skan_lib
from zoo.recipes import tasks

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
    "AFKAN_fixed_phases": (kan.AFKAN((4, 3), train_phases=False), X2, (16, 3)),
    "AFKAN_ablation": (kan.AFKAN((4, 3), af_basis=False), X2, (16, 3)),
    "SKAN": (kan.SKAN((4, 1)), X2, (16, 1)),
    "SelectableKANConv": (kan.SelectableKANConv(3, spaces=("bspline", "rbf")), IMG, (8, 8, 8, 3)),
    "SConvKAN": (kan.SConvKAN(10, channels=(2,), spaces=("fourier", "chebyshev")), IMG, (8, 10)),
    "KArAtViT": (karat.KArAtViT(**TINY_VIT), IMG, (8, 10)),
    "KArAtViT_universal": (karat.KArAtViT(mode="universal", **TINY_VIT), IMG, (8, 10)),
}


@functools.lru_cache(maxsize=None)
def _init(name):
  model, x, _ = MODELS[name]
  return jax.jit(model.init)(jax.random.key(0), x)


# Compiling every model is the expensive part on CPU: all are checked abstractly (shapes, dtypes, parameter trees),
# a representative subset is compiled and run (KAN and KArAtViT run in the sharded-forward test below).
RUN = ("ReLUKAN", "AFKAN", "SKAN")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_dtypes(name):
  model, x, shape = MODELS[name]
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  y = jax.eval_shape(model.apply, variables, x)
  assert y.shape == shape and y.dtype == jnp.float32


@pytest.mark.parametrize("name", RUN)
def test_runs_finite_and_jit_equals_eager(name):
  model, x, shape = MODELS[name]
  variables = _init(name)
  y = jax.jit(model.apply)(variables, x)
  assert y.shape == shape and bool(jnp.all(jnp.isfinite(y)))


def test_jit_equals_eager():
  layer = kan.KANLinear(3)
  variables = _init("KANLinear")
  np.testing.assert_allclose(layer.apply(variables, X2), jax.jit(layer.apply)(variables, X2), rtol=1e-5, atol=1e-6)


def test_parameter_trees_and_counts():
  v = _init("KANLinear")
  shapes = jax.tree.map(jnp.shape, nn.unbox(v))
  assert shapes == {"params": {"base_weight": (2, 3), "spline_weight": (8, 2, 3), "spline_scaler": (2, 3)},
                    "grid": {"grid": (2, 12)}}
  # efficient-kan's grid: G=5 intervals on [-1, 1] extended by 3 knots each side.
  np.testing.assert_allclose(v["grid"]["grid"][0], np.linspace(-1 - 3 * 0.4, 1 + 3 * 0.4, 12), atol=1e-6)
  # AF-KAN's layer: i*o + K + 2 (reduce bias, temperature) + 2 i (LayerNorm) + 2 K trainable phases.
  p = nn.unbox(_init("AFKAN")["params"])
  k = 5 + 3
  assert sum(np.size(a) for a in jax.tree.leaves(p["layers_0"])) == 2 * 4 + k + 2 + 2 * 2 + 2 * k
  np.testing.assert_allclose(p["layers_0"]["phase_low"], (np.arange(k) - 3) / 5, atol=1e-6)     # ReLU-KAN's s_k
  np.testing.assert_allclose(p["layers_0"]["phase_high"], (np.arange(k) + 1) / 5, atol=1e-6)    # e_k = s_k + 4/G
  fixed = nn.unbox(_init("AFKAN_fixed_phases")["params"])
  assert "phase_low" not in fixed["layers_0"]
  s = nn.unbox(_init("SKAN"))
  assert s["params"]["layers_0"]["selection_logits"].shape == (2, 5)
  np.testing.assert_array_equal(s["selection"]["layers_0"]["mask"], np.ones((2, 5)))
  assert set(s["params"]["layers_0"]) == {"selection_logits", "base_bspline", "base_rbf", "base_wavelet",
                                          "coef_bspline", "coef_chebyshev", "coef_fourier", "coef_rbf",
                                          "coef_wavelet"}
  # Logical axis names on the KAN coefficients.
  boxed = _init("KAN")["params"]["layers_0"]["spline_weight"]
  assert boxed.names == (None, "embed", "mlp")


def test_bf16_compute():
  v = _init("KANLinear")
  y = jax.jit(kan.KANLinear(3, dtype=jnp.bfloat16).apply)(v, X2)
  assert y.dtype == jnp.bfloat16
  y32 = jax.jit(kan.KANLinear(3).apply)(v, X2)
  np.testing.assert_allclose(y.astype(jnp.float32), y32, atol=3e-2 * float(jnp.max(jnp.abs(y32))))


@pytest.mark.parametrize("name", ["KAN"])
def test_vmap_over_a_leading_axis(name):
  model, x, _ = MODELS[name]
  v = _init(name)
  xs = jnp.stack([x, x[::-1] * 0.5])
  ys = jax.jit(jax.vmap(lambda x: model.apply(v, x)))(xs)
  for i in range(2):
    np.testing.assert_allclose(ys[i], model.apply(v, xs[i]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["KAN", "KArAtViT"])
def test_sharded_forward_on_the_mesh(name):
  model, x, shape = MODELS[name]
  assert len(jax.devices()) == 8
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  boxed = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = nn.unbox(_init(name))
  expected = jax.jit(model.apply)(variables, x)
  assert expected.shape == shape and bool(jnp.all(jnp.isfinite(expected)))
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
  # AF-KAN with trainable phases (the default) evaluates its basis in jnp: the kernel's grids are constants.
  expected = {"KANLinear": 1, "KAN": 2, "ReLUKAN": 2, "AFKAN_fixed_phases": 4, "SKAN": 2, "SelectableKANConv": 1,
              "SConvKAN": 2, "KArAtViT": 1, "KArAtViT_universal": 1}
  for name, n in expected.items():
    model, x, _ = MODELS[name]
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
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
    karat.KArAtViT(attention="linear", **TINY_VIT).init(jax.random.key(0), IMG)
  with pytest.raises(ValueError, match=r"KANLinear: `x` must have shape \[\.\.\., features=2\]"):
    kan.KAN((4, 1)).apply(_init("KAN"), jnp.ones((4, 3)))   # 3 inputs for a layer built on 2


def test_update_grid_preserves_the_function_and_adapts_to_data():
  model = kan.KAN((4, 1))
  x = jnp.asarray(RNG.uniform(-0.5, 0.9, (256, 2)), jnp.float32)     # data on a sub-interval of the grid
  v = nn.unbox(jax.jit(model.init)(jax.random.key(1), x))
  y = jax.jit(model.apply)(v, x)
  modules = []

  def update(v, x, **kw):  # jitted (eager least squares is slow); the module comes out at trace time
    new_model, new_vars = kan.update_grid(model, v, x, **kw)
    modules.append(new_model)
    return new_vars

  nv = jax.jit(update)(v, x)
  new_model = modules[-1]
  assert new_model.grid_size == 5
  g = nv["grid"]["layers_0"]["grid"]
  assert g.shape == (2, 12)
  # The interior knots now span the data range (quantiles), not [-1, 1].
  np.testing.assert_allclose(g[:, 3], jnp.min(x, 0), atol=2e-2)
  np.testing.assert_allclose(g[:, -4], jnp.max(x, 0), atol=2e-2)
  scale = float(jnp.max(jnp.abs(y)))
  np.testing.assert_allclose(jax.jit(new_model.apply)(nv, x), y, atol=2e-3 * scale + 1e-4)
  # Extension: a finer grid (a new module) still computes the same function (one layer, to compile less).
  layer = model.layer(0)
  lv = {"params": v["params"]["layers_0"], "grid": v["grid"]["layers_0"]}
  y0 = jax.jit(layer.apply)(lv, x)
  fines = []

  def extend(lv, x):
    fine, fv = kan.update_grid(layer, lv, x, grid_size=12)
    fines.append(fine)
    return fv

  fv = jax.jit(extend)(lv, x)
  fine = fines[-1]
  assert fine.grid_size == 12 and fv["params"]["spline_weight"].shape == (15, 2, 4)
  np.testing.assert_allclose(jax.jit(fine.apply)(fv, x), y0, atol=2e-3 * float(jnp.max(jnp.abs(y0))) + 1e-4)
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
  # The procedure's step on its own (the trainer around it is tested in tests/recipes): phases 1, 2, 3 keep 3, 2, 1
  # spaces per node.
  model = kan.SKAN((2, 1), spaces=("bspline", "fourier", "rbf"), impl="xla")
  proc = skan_lib.ThreePhaseSelection(model=model, task=tasks.Regression(), optimizer=optax.adam(1e-2),
                                      full_steps=2, selective_steps=2, top_k=2)
  batch = {"x": X2, "y": X2[:, :1] ** 2}
  state = jax.jit(lambda r, b: nn.unbox(proc.init(r, b)))(jax.random.key(0), batch)   # as the trainer does
  step = jax.jit(proc.step)
  phases, kept = [], []
  for _ in range(6):
    state, metrics = step(state, batch)
    phases.append(float(metrics["phase"]))
    kept.append(float(metrics["kept_spaces"]))
  assert phases == [1, 1, 2, 2, 3, 3] and kept == [3, 3, 2, 2, 1, 1]
  masks = jax.tree.leaves(proc.variables(state)["selection"])
  assert all(np.all(np.sum(np.asarray(m), -1) == 1) for m in masks)


def test_karat_attention_rows_and_masks():
  b, n, h, d, g, r = 2, 6, 2, 4, 3, 4
  rng = np.random.default_rng(4)
  q, k, v = (jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for _ in range(3))
  coef = jnp.asarray(rng.normal(size=(h, 2 * g, n, r)) * 0.3, jnp.float32)
  proj = jnp.asarray(rng.normal(size=(h, r, n)) * 0.5, jnp.float32)
  eye = jnp.broadcast_to(jnp.eye(n)[None, :, None, :], (b, n, h, n))
  w = karat.karat_attention(q, k, eye, coef=coef, proj=proj, grid_size=g, is_causal=True)   # rows of the weights
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
  out = karat.karat_attention(q, k, v, coef=coef, proj=proj, grid_size=g)
  np.testing.assert_allclose(out, jnp.einsum("bhqk,bkhd->bqhd", want, v), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="coef"):
    karat.karat_attention(q, k, v, coef=coef[:, :4], proj=proj, grid_size=g)


def test_karat_blockwise_vs_universal_parameters():
  def params(name):
    model, x, _ = MODELS[name]
    return flax.traverse_util.flatten_dict(nn.unbox(jax.eval_shape(model.init, jax.random.key(0), x)["params"]),
                                           sep="/")
  blockwise, universal = params("KArAtViT"), params("KArAtViT_universal")
  assert any("attention_fn/phi_coef" in k for k in blockwise)
  assert "phi_coef" in universal and not any("attention_fn" in k for k in universal)
  # 2x2 patches of 8x8 + a class token: N = 17 tokens, rank 8, G = 3, 2 heads.
  assert universal["phi_coef"].shape == (2, 6, 17, 8) and universal["phi_proj"].shape == (2, 8, 17)


def test_afkan_trainable_phases_equal_the_fixed_kernel_path_at_init_and_get_gradients():
  # At init the trainable phases are the fixed grid, so both paths compute the same function.
  full, fixed = MODELS["AFKAN"][0], MODELS["AFKAN_fixed_phases"][0]
  v = nn.unbox(_init("AFKAN"))
  v_fixed = nn.unbox(_init("AFKAN_fixed_phases"))
  shared = jax.tree.map(lambda a: a, v_fixed)
  for name in ("layers_0", "layers_1"):
    shared["params"][name] = {k: a for k, a in v["params"][name].items() if not k.startswith("phase")}
  np.testing.assert_allclose(jax.jit(full.apply)(v, X2), jax.jit(fixed.apply)(shared, X2), rtol=1e-4, atol=1e-5)
  g = jax.jit(jax.grad(lambda p: jnp.sum(full.apply({"params": p}, X2) ** 2)))(v["params"])
  assert float(jnp.abs(g["layers_0"]["phase_low"]).sum()) > 0 and float(jnp.abs(g["layers_0"]["phase_high"]).sum()) > 0


def test_afkan_ablation_is_the_identity_basis():
  # af_basis=False: every f_k(x) = x, so the layer sees the (min-max normalised) input itself.
  layer = kan.AFKANLayer(3, af_basis=False, method="multistep", norm="none", func_norm=False, activation="relu")
  v = nn.unbox(layer.init(jax.random.key(0), X2))
  p = v["params"]
  expected = jnp.maximum(X2 * jnp.sum(p["reduce_kernel"]) + p["reduce_bias"], 0.0) @ p["linear"]["kernel"]
  np.testing.assert_allclose(layer.apply(v, X2), expected, rtol=1e-5, atol=1e-6)
  assert not any(k.startswith("phase") for k in p)


def test_frozen_selection_and_frozen_karat_operator_get_no_gradient():
  x = X2
  for learn in (True, False):
    m = kan.SKAN((1,), learn_selection=learn)
    v = m.init(jax.random.key(0), x)
    g = jax.jit(jax.grad(lambda p: jnp.sum(m.apply({**v, "params": p}, x) ** 2)))(v["params"])
    assert (float(jnp.abs(nn.unbox(g["layers_0"]["selection_logits"])).sum()) > 0) == learn
  m = karat.KArAtViT(learn_operator=False, **TINY_VIT)
  v = _init("KArAtViT")
  g = jax.grad(lambda p: jnp.sum(m.apply({"params": p}, IMG) ** 2))(v["params"])
  phi = [a for path, a in flax.traverse_util.flatten_dict(nn.unbox(g), sep="/").items() if "phi_" in path]
  assert phi and all(float(jnp.abs(a).sum()) == 0 for a in phi)


def test_edge_activations_sum_to_the_layer_and_are_univariate():
  model = kan.KAN(features=(3, 1))
  x = jax.random.uniform(jax.random.key(0), (6, 2), minval=-1, maxval=1)
  variables = model.init(jax.random.key(1), x)
  layer_vars = {"params": variables["params"]["layers_0"], "grid": variables["grid"]["layers_0"]}
  phi = kan.edge_activations(model.layer(0), layer_vars, x)
  assert phi.shape == (6, 2, 3)
  np.testing.assert_allclose(phi.sum(-2), model.layer(0).apply(layer_vars, x), rtol=1e-5, atol=1e-6)
  moved = kan.edge_activations(model.layer(0), layer_vars, x.at[:, 1].set(0.3))  # input 1 changes, input 0 does not
  np.testing.assert_allclose(moved[:, 0], phi[:, 0], rtol=1e-6)
  assert float(jnp.abs(moved[:, 1] - phi[:, 1]).max()) > 1e-3
  with pytest.raises(ValueError, match="x"):
    kan.edge_activations(model.layer(0), layer_vars, x[:, :1])
