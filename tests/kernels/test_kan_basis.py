"""zoo.kernels.kan_basis: the bases against textbook formulas (B-splines against scipy), the Pallas kernels in
interpret mode against the reference (values and gradients, f32/bf16, odd shapes, dense/depthwise, both the Triton
and the Mosaic kernel structure), the dispatch, and export lowering for cuda (Triton) and tpu (Mosaic)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import BSpline

from zoo.kernels import kan_basis as kb

B = kb.Basis


# ------------------------------------------------------------------------------------------------------- bases


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_bspline_basis_matches_scipy_design_matrix(order):
  rng = np.random.default_rng(order)
  n_in, n_knots = 3, 11
  # Per-input knots: uniform, non-uniform, and clamped (repeated end knots, where 0/0 := 0 matters).
  uniform = np.linspace(-1.5, 1.5, n_knots)
  nonuniform = np.sort(rng.uniform(-2, 2, n_knots))
  inner = np.linspace(-1, 1, n_knots - 2 * order)
  clamped = np.concatenate([np.full(order, -1.0), inner, np.full(order, 1.0)])
  grid = np.stack([uniform, nonuniform, clamped])
  x = np.stack([rng.uniform(t[order], t[-order - 1], 50) for t in grid], axis=-1)   # [50, in] in the base interval
  x[0, 2] = grid[2, order]                                                           # a knot exactly
  ours = np.asarray(kb.bspline_basis(jnp.asarray(x, jnp.float32), jnp.asarray(grid, jnp.float32), order))
  assert ours.shape == (50, n_in, n_knots - order - 1)
  for i in range(n_in):
    want = BSpline.design_matrix(x[:, i], grid[i], order).toarray()
    np.testing.assert_allclose(ours[:, i], want, atol=2e-5)


def test_bspline_basis_errors():
  with pytest.raises(ValueError, match="grid"):
    kb.bspline_basis(jnp.zeros((4, 3)), jnp.zeros((2, 8)), 3)
  with pytest.raises(ValueError, match="knots"):
    kb.bspline_basis(jnp.zeros((4, 3)), jnp.zeros((3, 4)), 3)


def test_other_bases_match_closed_forms():
  x = jnp.linspace(-0.99, 0.99, 41)[:, None]
  xn = np.asarray(x)[:, 0]
  # Fourier: cos(jx), sin(jx).
  v = np.asarray(kb.basis_values(x, None, B.fourier(3)))[:, 0]
  np.testing.assert_allclose(v, np.stack([np.cos(j * xn) for j in (1, 2, 3)] + [np.sin(j * xn) for j in (1, 2, 3)],
                                         -1), atol=1e-5)
  # Chebyshev of tanh: T_k(t) = cos(k arccos t).
  v = np.asarray(kb.basis_values(x, None, B.chebyshev(4)))[:, 0]
  t = np.tanh(xn)
  np.testing.assert_allclose(v, np.stack([np.cos(k * np.arccos(t)) for k in range(5)], -1), atol=1e-5)
  # Gaussian RBF on the default centres.
  g = kb.make_grid(B.rbf(5), 1)
  c = np.linspace(-1, 1, 5)
  v = np.asarray(kb.basis_values(x, g, B.rbf(5)))[:, 0]
  np.testing.assert_allclose(v, np.exp(-((xn[:, None] - c) / 0.5) ** 2), atol=1e-5)
  # Mexican hat.
  v = np.asarray(kb.basis_values(x, g, B.wavelet(5)))[:, 0]
  u = (xn[:, None] - c) / 0.5
  np.testing.assert_allclose(v, 2 / (np.sqrt(3) * np.pi ** 0.25) * (1 - u ** 2) * np.exp(-u ** 2 / 2), atol=1e-5)


def test_relu_kan_basis_support_and_peak():
  # ReLU-KAN (Qiu et al. 2024): R_i is supported on [s_i, e_i] and equals 1 at the midpoint.
  g_size, order = 5, 3
  basis = B.relu(g_size, order)
  grid = kb.make_grid(basis, 1, lo=0.0, hi=1.0)
  s = (np.arange(g_size + order) - order) / g_size
  e = s + (order + 1) / g_size
  np.testing.assert_allclose(np.asarray(grid[0, :g_size + order]), s, atol=1e-6)
  mid = (s + e) / 2
  vals = np.asarray(kb.basis_values(jnp.asarray(mid[:, None], jnp.float32), grid, basis))[:, 0]  # [K, K]
  np.testing.assert_allclose(np.diag(vals), 1.0, atol=1e-5)
  xs = np.linspace(-1, 2, 301, dtype=np.float32)
  vals = np.asarray(kb.basis_values(jnp.asarray(xs[:, None]), grid, basis))[:, 0]
  outside = (xs[:, None] < s[None] - 1e-6) | (xs[:, None] > e[None] + 1e-6)
  assert np.all(vals[outside] == 0.0) and np.all(vals >= 0.0)


def test_af_basis_and_activations():
  basis = B.af(3, 2, "silu", "quad1")
  grid = kb.make_grid(basis, 1)
  x = jnp.asarray([[0.3]])
  s, e = np.asarray(grid[0, 0]), np.asarray(grid[0, 3])
  silu = lambda z: z / (1 + np.exp(-z))
  want = (silu(0.3 - s) * silu(e - 0.3)) ** 2
  np.testing.assert_allclose(float(kb.basis_values(x, grid, basis)[0, 0, 0]), want, rtol=1e-5)
  z = jnp.linspace(-4, 4, 101)
  np.testing.assert_allclose(kb.ACTIVATIONS["gelu"](z), jax.nn.gelu(z, approximate=False), atol=1e-6)
  np.testing.assert_allclose(kb.ACTIVATIONS["selu"](z), jax.nn.selu(z), atol=1e-6)
  np.testing.assert_allclose(kb.ACTIVATIONS["softplus"](z), jax.nn.softplus(z), atol=1e-6)


def test_basis_validation():
  with pytest.raises(ValueError, match="kind"):
    B("spline", 4)
  with pytest.raises(ValueError, match="activation"):
    B.af(activation="swish2")
  with pytest.raises(ValueError, match="func"):
    B.af(func="quad9")
  assert kb.num_basis((B.bspline(5, 3), B.fourier(2))) == 12
  assert kb.num_knots((B.bspline(5, 3), B.fourier(2), B.rbf(4))) == 12 + 4


# ---------------------------------------------------------------------------------------- kernel vs reference


def _operands(basis, n, n_in, n_out, *, depthwise=False, base=True, dtype=jnp.float32, seed=0, nonuniform=False):
  rng = np.random.default_rng(seed)
  k = kb.num_basis(basis)
  x = jnp.asarray(rng.uniform(-1.1, 1.1, (n, n_in)), dtype)
  coef = jnp.asarray(0.3 * rng.normal(size=(k, n_in) if depthwise else (k, n_in, n_out)), dtype)
  wb = jnp.asarray(rng.normal(size=coef.shape[1:]), dtype) if base else None
  grid = kb.make_grid(basis, n_in)
  if nonuniform and grid is not None:
    grid = jnp.sort(grid + jnp.asarray(0.05 * rng.normal(size=grid.shape), jnp.float32), axis=1)
  return x, coef, grid, wb


def _value_and_grads(basis, x, coef, grid, wb, **kw):
  def loss(x, coef, wb):
    y = kb.kan(x, coef, basis=basis, grid=grid, base_weight=wb, **kw)
    y32 = y.astype(jnp.float32)
    return jnp.sum(y32 * jnp.cos(y32)), y
  argnums = (0, 1, 2) if wb is not None else (0, 1)
  (_, y), grads = jax.value_and_grad(loss, argnums=argnums, has_aux=True)(x, coef, wb)
  return y, grads


CASES = {
    # name: (basis, batch, in, out, depthwise, base, nonuniform grid)
    "bspline_nonuniform_base": (B.bspline(3, 3), 13, 7, 5, False, True, True),
    "spaces_combo": ((B.bspline(2, 2), B.chebyshev(2), B.fourier(1), B.rbf(3), B.wavelet(3)), 9, 5, 3, False, False,
                     False),
    "relu_depthwise": (B.relu(3, 2), 11, 6, None, True, True, False),
}


# Interpret mode is slow on CPU: the default run covers every kernel variant (dense with and without the silu branch,
# depthwise, both kernel structures); the full cross product is marked slow.
_FAST = {("bspline_nonuniform_base", "gpu"), ("spaces_combo", "tpu"), ("relu_depthwise", "tpu")}


@pytest.mark.parametrize("backend,case", [
    pytest.param(b, c, marks=() if (c, b) in _FAST else pytest.mark.slow)
    for c in sorted(CASES) for b in ("gpu", "tpu")])
def test_interpret_matches_reference_f32(backend, case):
  basis, n, n_in, n_out, depthwise, base, nonuniform = CASES[case]
  x, coef, grid, wb = _operands(basis, n, n_in, n_out, depthwise=depthwise, base=base, nonuniform=nonuniform)
  y0, g0 = _value_and_grads(basis, x, coef, grid, wb, impl="xla")
  y1, g1 = _value_and_grads(basis, x, coef, grid, wb, impl="pallas", interpret=True, backend=backend)
  assert y1.shape == y0.shape == (n, n_in if depthwise else n_out)
  np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
  for a, b in zip(g1, g0):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["tpu", pytest.param("gpu", marks=pytest.mark.slow)])
def test_interpret_matches_reference_bf16(backend):
  basis = B.af(2, 2, "gelu", "quad1")
  x, coef, grid, wb = _operands(basis, 10, 6, 3, dtype=jnp.bfloat16, seed=3)
  y0, g0 = _value_and_grads(basis, x, coef, grid, wb, impl="xla")
  y1, g1 = _value_and_grads(basis, x, coef, grid, wb, impl="pallas", interpret=True, backend=backend)
  assert y1.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in g1)
  scale = float(jnp.max(jnp.abs(y0.astype(jnp.float32))))
  np.testing.assert_allclose(y1.astype(jnp.float32), y0.astype(jnp.float32), atol=3e-2 * scale)
  for a, b in zip(g1, g0):
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    np.testing.assert_allclose(a, b, atol=3e-2 * float(jnp.max(jnp.abs(b))))


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores
def test_interpret_several_tiles_and_leading_dims():
  # Shapes larger than the blocks exercise the in-kernel loop / grid accumulation and the padding of every axis.
  basis = B.bspline(2, 1)
  x, coef, grid, wb = _operands(basis, 40, 37, 19, seed=5)
  blocks = kb.BlockSizes(block_batch=16, block_in=16, block_out=16)
  for backend in ("gpu", "tpu"):
    y0, g0 = _value_and_grads(basis, x, coef, grid, wb, impl="xla")
    y1, g1 = _value_and_grads(basis, x, coef, grid, wb, impl="pallas", interpret=True, backend=backend,
                              block_sizes=blocks)
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  x3 = x.reshape(5, 8, 37)
  y = kb.kan(x3, coef, basis=basis, grid=grid, base_weight=wb, impl="pallas", interpret=True)
  np.testing.assert_allclose(y.reshape(40, 19), kb.reference(x, coef, basis=basis, grid=grid, base_weight=wb),
                             rtol=1e-5, atol=1e-5)


def test_grid_is_not_differentiated_on_any_path():
  basis = B.rbf(4)
  x, coef, grid, _ = _operands(basis, 6, 3, 2, base=False)
  for kw in ({"impl": "xla"}, {"impl": "pallas", "interpret": True}):
    g = jax.grad(lambda g: kb.kan(x, coef, basis=basis, grid=g, **kw).sum())(grid)
    assert float(jnp.max(jnp.abs(g))) == 0.0
  basis = B.bspline(3, 2)  # the dense B-spline XLA path (a custom_jvp) too
  x, coef, grid, wb = _operands(basis, 6, 3, 2)
  g = jax.grad(lambda g: kb.kan(x, coef, basis=basis, grid=g, base_weight=wb, impl="xla").sum())(grid)
  assert float(jnp.max(jnp.abs(g))) == 0.0


@pytest.mark.parametrize("base", [True, False])
def test_xla_path_equals_the_reference_in_every_derivative_mode(base):
  # Dense B-spline layers run a custom_jvp arrangement on CPU (issue 13); it must be the reference's function in
  # values, reverse mode, forward mode and second derivatives (e.g. a physics-informed loss on a KAN).
  basis = B.bspline(4, 3)
  x, coef, grid, wb = _operands(basis, 7, 5, 3, base=base, seed=11, nonuniform=True)
  f_xla = lambda x, c, w: kb.kan(x, c, basis=basis, grid=grid, base_weight=w, impl="xla")
  f_ref = lambda x, c, w: kb.reference(x, c, basis=basis, grid=grid, base_weight=w)
  close = functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-5)
  close(f_xla(x, coef, wb), f_ref(x, coef, wb))
  argnums = (0, 1, 2) if base else (0, 1)
  loss = lambda f: lambda x, c, w: jnp.sum(jnp.sin(f(x, c, w)))
  for a, b in zip(jax.grad(loss(f_xla), argnums)(x, coef, wb), jax.grad(loss(f_ref), argnums)(x, coef, wb)):
    close(a, b)
  close(jax.jacfwd(f_xla)(x, coef, wb), jax.jacfwd(f_ref)(x, coef, wb))
  dxx = lambda f: jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, coef, wb) ** 2))(x) ** 2))
  close(dxx(f_xla)(x), dxx(f_ref)(x), rtol=1e-4, atol=1e-4)
  xb, cb = x.astype(jnp.bfloat16), coef.astype(jnp.bfloat16)
  wbb = None if wb is None else wb.astype(jnp.bfloat16)
  yb = f_xla(xb, cb, wbb)
  assert yb.dtype == jnp.bfloat16
  y0 = f_ref(xb, cb, wbb).astype(jnp.float32)
  np.testing.assert_allclose(yb.astype(jnp.float32), y0, atol=2e-2 * float(jnp.max(jnp.abs(y0))))


# ---------------------------------------------------------------------------------------------------- dispatch


def test_auto_on_cpu_runs_the_reference_and_jits():
  basis = B.fourier(2)
  x, coef, grid, wb = _operands(basis, 8, 4, 3)
  ref = kb.reference(x, coef, basis=basis, grid=grid, base_weight=wb)
  f = jax.jit(lambda x, c, w: kb.kan(x, c, basis=basis, grid=grid, base_weight=w, impl="auto"))
  np.testing.assert_allclose(f(x, coef, wb), ref, rtol=1e-6)
  np.testing.assert_allclose(kb.kan(x, coef, basis=basis, base_weight=wb), ref, rtol=1e-6)
  g = jax.grad(lambda c: kb.kan(x, c, basis=basis, base_weight=wb).sum())(coef)
  g0 = jax.grad(lambda c: kb.reference(x, c, basis=basis, base_weight=wb).sum())(coef)
  np.testing.assert_allclose(g, g0, rtol=1e-6)


def test_entry_point_errors():
  basis = B.bspline(3, 3)
  x, coef, grid, wb = _operands(basis, 4, 3, 2)
  with pytest.raises(ValueError, match="impl"):
    kb.kan(x, coef, basis=basis, grid=grid, impl="cuda")
  with pytest.raises(ValueError, match=r"coef.*num_basis=6"):
    kb.kan(x, coef[:5], basis=basis, grid=grid)
  with pytest.raises(ValueError, match=r"grid.*num_knots=10"):
    kb.kan(x, coef, basis=basis, grid=grid[:, :5])
  with pytest.raises(ValueError, match="grid"):
    kb.kan(x, coef, basis=basis)
  with pytest.raises(ValueError, match="base_weight"):
    kb.kan(x, coef, basis=basis, grid=grid, base_weight=wb.T)
  with pytest.raises(TypeError, match="floating"):
    kb.kan(x.astype(jnp.int32), coef, basis=basis, grid=grid)
  with pytest.raises(ValueError, match="power of two"):
    kb.BlockSizes(block_batch=24, block_in=16, block_out=16)


# ---------------------------------------------------------------------------------------------------- lowering

_TRITON = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]

# Shapes the zoo uses: a [2,5,1] KAN on a function-fitting batch, a digits KAN layer, S-ConvKAN patches (3x3x4),
# a KArAt row map (16 tokens -> rank 8 over batch*heads*tokens rows), the benchmark's widest layer, and AF-KAN's
# depthwise reduction; with every basis kind somewhere.
EXPORT_CASES = {
    "kan_fit": (B.bspline(5, 3), 256, 2, 5, False, True, jnp.float32),
    "digits_spaces": ((B.bspline(5, 3), B.chebyshev(4), B.fourier(3), B.rbf(8), B.wavelet(8)), 128, 64, 32, False,
                      True, jnp.float32),
    "sconvkan_patches": (B.rbf(8), 4096, 36, 16, False, True, jnp.bfloat16),
    "karat_rows": (B.fourier(3), 64 * 4 * 16, 16, 8, False, False, jnp.float32),
    "bench_wide": (B.bspline(5, 3), 4096, 1024, 1024, False, True, jnp.bfloat16),
    "afkan_depthwise": (B.af(5, 3, "gelu", "quad1"), 128, 64, None, True, False, jnp.float32),
    "relukan": (B.relu(5, 3), 128, 64, 10, False, False, jnp.float32),
}


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_exports_forward_and_backward(platform, case):
  basis, n, n_in, n_out, depthwise, base, dtype = EXPORT_CASES[case]
  k = kb.num_basis(basis)
  x = jax.ShapeDtypeStruct((n, n_in), dtype)
  coef = jax.ShapeDtypeStruct((k, n_in) if depthwise else (k, n_in, n_out), dtype)
  wb = jax.ShapeDtypeStruct(coef.shape[1:], dtype) if base else None
  grid = kb.make_grid(basis, n_in)

  def train(x, coef, wb):
    def loss(x, coef, wb):
      return kb.kan(x, coef, basis=basis, grid=grid, base_weight=wb, impl="pallas").astype(jnp.float32).sum()
    return jax.value_and_grad(loss, argnums=(0, 1, 2) if base else (0, 1))(x, coef, wb)

  exported = jax.export.export(jax.jit(train), platforms=(platform,), disabled_checks=_TRITON)(x, coef, wb)
  text = exported.mlir_module()
  target = "__gpu$xla.gpu.triton" if platform == "cuda" else "tpu_custom_call"
  prefix = "kan_depthwise_" if depthwise else "kan_"
  for name in ("fwd", "dx", "dcoef"):
    assert prefix + name in text, f"{prefix + name} kernel missing from the {platform} export"
  assert text.count(f"custom_call @{target}") >= 3
  assert exported.platforms == (platform,)


def test_auto_exports_kernels_per_platform_from_one_function():
  basis = B.bspline(5, 3)
  grid = kb.make_grid(basis, 8)
  f = jax.jit(lambda x, c: kb.kan(x, c, basis=basis, grid=grid, impl="auto"))
  x, c = jax.ShapeDtypeStruct((32, 8), jnp.float32), jax.ShapeDtypeStruct((8, 8, 4), jnp.float32)
  cuda = jax.export.export(f, platforms=("cuda",), disabled_checks=_TRITON)(x, c).mlir_module()
  tpu = jax.export.export(f, platforms=("tpu",))(x, c).mlir_module()
  cpu = jax.export.export(f, platforms=("cpu",))(x, c).mlir_module()
  assert "kan_fwd" in cuda and "triton" in cuda
  assert "kan_fwd" in tpu and "tpu_custom_call" in tpu
  assert "kan_fwd" not in cpu and "custom_call" not in cpu
