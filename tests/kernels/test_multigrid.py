"""zoo.kernels.multigrid: reference semantics, the kernels' glue and bodies against the reference (interpret mode),
lowering for cuda and tpu (jax.export), and the classic V-cycle convergence check."""

import itertools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import multigrid as mg

SIZES = {"dirichlet": 9, "neumann": 9, "periodic": 8}
TRITON = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]


def _rand(shape, seed, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


def _spatial(d, boundary):
  n = SIZES[boundary]
  return (n,) if d == 1 else (n, n + 2 if boundary == "periodic" else n - 2)


def _close(a, b, rtol):
  """Max error relative to the largest reference entry, leaf by leaf."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    assert x.shape == y.shape
    scale = max(float(np.abs(y).max()), 1e-6)
    assert float(np.abs(x - y).max()) <= rtol * scale, (float(np.abs(x - y).max()), scale)


# ---------------------------------------------------------------------------------------------- geometry, errors


def test_coarse_and_fine_shapes():
  assert mg.coarse_shape((31, 64), "dirichlet") == (15, 32)
  assert mg.coarse_shape((33,), "neumann") == (17,)
  assert mg.coarse_shape((16, 8), "periodic") == (8, 4)
  for boundary, n in (("dirichlet", 31), ("neumann", 33), ("periodic", 32)):
    assert mg.fine_shape(mg.coarse_shape((n,), boundary), boundary) == (n,)
  with pytest.raises(ValueError, match="periodic grid must have an even size"):
    mg.coarse_shape((9,), "periodic")
  with pytest.raises(ValueError, match="boundary"):
    mg.coarse_shape((9,), "robin")


def test_clear_errors():
  x = jnp.zeros((2, 8, 8, 3))
  with pytest.raises(ValueError, match=r"`x` must have shape \[batch, length, channels\]"):
    mg.restrict(jnp.zeros((8, 8)))
  with pytest.raises(ValueError, match=r"`weight` must have shape \[3, 3, c_in=3, c_out\]"):
    mg.conv(x, jnp.zeros((3, 3, 4, 5)))
  with pytest.raises(ValueError, match="`impl` must be one of"):
    mg.restrict(x, impl="cuda")
  with pytest.raises(ValueError, match="`backend` must be one of"):
    mg.restrict(x, backend="cpu")
  with pytest.raises(ValueError, match="coarsens to"):
    mg.prolong(x, shape=(20, 20))
  with pytest.raises(ValueError, match=r"`stencil` must have shape \(3, 3\)"):
    mg.jacobi(x, x, mg.LAPLACIAN_1D)
  with pytest.raises(ValueError, match="centre must be nonzero"):
    mg.jacobi(x, x, np.zeros((3, 3)))
  with pytest.raises(TypeError, match="not a traced value"):
    jax.jit(lambda s: mg.residual(x, x, s))(jnp.asarray(mg.LAPLACIAN_2D))
  with pytest.raises(TypeError, match="floating dtype"):
    mg.restrict(jnp.zeros((2, 8, 3), jnp.int32))
  with pytest.raises(ValueError, match="BlockSizes.block_pixels must be a power of 2"):
    mg.BlockSizes(block_pixels=48)


# ------------------------------------------------------------------------------------------ reference semantics


def test_full_weighting_and_linear_interpolation_formulas_1d():
  c = _rand((1, 4, 1), 0)
  fine = mg.prolong_reference(c, boundary="dirichlet")  # 4 -> 9 interior nodes; coarse node i sits at fine 2i+1
  cz = np.pad(np.asarray(c[0, :, 0]), 1)
  np.testing.assert_allclose(fine[0, 1::2, 0], cz[1:-1], rtol=1e-6)
  np.testing.assert_allclose(fine[0, 0::2, 0], (cz[:-1] + cz[1:]) / 2, rtol=1e-6)
  x = _rand((1, 9, 1), 1)
  xz = np.pad(np.asarray(x[0, :, 0]), 1)
  coarse = mg.restrict_reference(x, boundary="dirichlet")
  np.testing.assert_allclose(coarse[0, :, 0], (xz[1:-2:2] + 2 * xz[2:-1:2] + xz[3::2]) / 4, rtol=1e-6)
  # Neumann keeps the boundary nodes (coarse i at fine 2i) and mirrors across them.
  xm = np.asarray(x[0, :, 0])
  coarse = mg.restrict_reference(x, boundary="neumann")
  np.testing.assert_allclose(coarse[0, 0, 0], (2 * xm[1] + 2 * xm[0]) / 4, rtol=1e-6)
  np.testing.assert_allclose(coarse[0, 2, 0], (xm[3] + 2 * xm[4] + xm[5]) / 4, rtol=1e-6)


@pytest.mark.parametrize("d", [1, 2])
def test_restriction_of_constants(d):
  x = jnp.ones((1,) + (8,) * d + (2,))
  np.testing.assert_allclose(mg.restrict_reference(x, boundary="periodic"), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mg.restrict_reference(jnp.ones((1,) + (9,) * d + (2,)), boundary="neumann"), 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(mg.prolong_reference(jnp.ones((1,) + (4,) * d + (2,)), boundary="periodic"), 1.0,
                             rtol=1e-6)


@pytest.mark.parametrize("d,boundary", [(1, "periodic"), (2, "dirichlet")])
def test_prolongation_is_the_adjoint_of_restriction(d, boundary):
  sp = _spatial(d, boundary)
  x = _rand((2, *sp, 3), 0)
  y = _rand((2, *mg.coarse_shape(sp, boundary), 3), 1)
  w = _rand((3,) * d + (3, 3), 2)

  @jax.jit
  def products(x, y, w):
    return (
        # Fixed operators: P = 2^d R^T (linear interpolation vs full weighting).
        2 ** d * jnp.vdot(mg.restrict_reference(x, boundary=boundary), y),
        jnp.vdot(x, mg.prolong_reference(y, shape=sp, boundary=boundary)),
        # Learned operators: the transposed convolution with w is the adjoint of the strided one with w^T.
        jnp.vdot(mg.restrict_reference(x, jnp.swapaxes(w, -1, -2), boundary=boundary), y),
        jnp.vdot(x, mg.prolong_reference(y, w, shape=sp, boundary=boundary)))

  a, b, c, e = products(x, y, w)
  scale = float(jnp.linalg.norm(x) * jnp.linalg.norm(y))
  np.testing.assert_allclose(a, b, atol=1e-5 * scale)
  np.testing.assert_allclose(c, e, atol=1e-5 * scale * float(jnp.abs(w).max()))


def test_conv_reference_matches_flax_padding():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x, w = _rand((2, 8, 6, 3), 0), _rand((3, 3, 3, 4), 1)
  for boundary, padding in (("dirichlet", "SAME"), ("periodic", "CIRCULAR")):
    conv = nn.Conv(4, (3, 3), padding=padding, use_bias=False)
    want = conv.apply({"params": {"kernel": w}}, x)
    np.testing.assert_allclose(mg.conv_reference(x, w, boundary=boundary), want, rtol=1e-5, atol=1e-5)


def test_jacobi_fixes_the_solution():
  u = _rand((1, 7, 7, 2), 0)
  f = mg.stencil_reference(u, mg.LAPLACIAN_2D)
  np.testing.assert_allclose(mg.jacobi(u, f, mg.LAPLACIAN_2D, iterations=3, impl="xla"), u, atol=1e-5)
  np.testing.assert_allclose(mg.residual(u, f, mg.LAPLACIAN_2D, impl="xla"), 0.0, atol=1e-5)


# ------------------------------------------------------------------- the kernels' glue (primitive written in jnp)


def _all_ops(x, w, f, sp, d, **kw):
  stencil = mg.LAPLACIAN_1D if d == 1 else mg.LAPLACIAN_2D
  c = mg.restrict(x, **kw)
  return {
      "conv": mg.conv(x, w, add=f[..., :5], scale=0.5, **kw),
      "full_weighting": c,
      "restrict": mg.restrict(x, w, **kw),
      "linear": mg.prolong(c, shape=sp, **kw),
      "prolong": mg.prolong(c, w, shape=sp, **kw),
      "jacobi": mg.jacobi(x, f[..., :3], stencil, iterations=2, **kw),
      "smooth": mg.smooth(x, f[..., :5], w, jnp.swapaxes(w, -1, -2), **kw),
      "residual": mg.residual(x, f[..., :5], w, **kw),
  }


@pytest.mark.parametrize("d,boundary", list(itertools.product([1, 2], mg.BOUNDARIES)))
def test_glue_matches_reference_values_and_gradients(d, boundary):
  """Every operator through the kernels' phase/padding glue (the primitive in jnp) equals the lax.conv reference.

  Gradients (the custom_vjp: flipped taps, transposed weights, the weight-gradient reduction) for both phase offsets
  (Dirichlet: coarse nodes odd; periodic: even) on 2D grids; the Neumann glue differs from the periodic one only in
  jnp.pad's mode, and 1D grids are 2D grids of height 1 (their gradients are checked in interpret mode below).
  """
  sp = _spatial(d, boundary)
  x, w, f = _rand((2, *sp, 3), 0), _rand((3,) * d + (3, 5), 1), _rand((2, *sp, 5), 2)
  grads = d == 2 and boundary in ("dirichlet", "periodic")  # both phase offsets

  def loss(x, w, f, **kw):
    return sum(jnp.sum(jnp.sin(v)) for v in _all_ops(x, w, f, sp, d, **kw).values())

  @jax.jit
  def both(x, w, f):
    out = {}
    for name, kw in (("kernel", dict(boundary=boundary, backend="jnp")), ("ref", dict(boundary=boundary, impl="xla"))):
      out[name] = (_all_ops(x, w, f, sp, d, **kw), jax.grad(loss, (0, 1, 2))(x, w, f, **kw) if grads else ())
    return out

  out = both(x, w, f)
  _close(out["kernel"][0], out["ref"][0], 1e-5)
  _close(out["kernel"][1], out["ref"][1], 1e-4)


# ------------------------------------------------------------------------------------- kernel bodies, interpreted


def _kernel_case(x, w, u, f, c, **kw):
  """A few public ops covering the primitive's variants: matrix taps + extra, 4 input phases, scalar taps + 2 extras,
  prolongation output phases, and a 1D grid."""
  return {
      "conv_add": mg.conv(x, w, add=u, **kw),
      "restrict": mg.restrict(x, w, **kw),
      "jacobi": mg.jacobi(u, f, mg.LAPLACIAN_2D, **kw),
      "linear_1d": mg.prolong(c, shape=(9,), **kw),
  }


@pytest.mark.parametrize("backend", ["triton", "mosaic"])
def test_kernel_bodies_interpreted(backend):
  x, w, u, f = _rand((1, 5, 6, 3), 0), _rand((3, 3, 3, 4), 1), _rand((1, 5, 6, 4), 2), _rand((1, 5, 6, 4), 3)
  c = _rand((1, 4, 3), 4)

  def loss(x, w, u, f, c, **kw):
    return sum(jnp.sum(jnp.sin(v)) for v in _kernel_case(x, w, u, f, c, **kw).values())

  def run(**kw):
    return _kernel_case(x, w, u, f, c, **kw), jax.grad(loss, (0, 1, 2, 3, 4))(x, w, u, f, c, **kw)

  got = jax.jit(lambda: run(backend=backend, interpret=True))()
  want = jax.jit(lambda: run(impl="xla"))()
  _close(got[0], want[0], 1e-5)
  _close(got[1], want[1], 1e-4)


def test_triton_kernel_tiles_and_bfloat16_interpreted():
  """More channels and pixels than one tile (the c_in loop, several pixel and c_out programs, masked edges), and
  bfloat16 operands with float32 accumulation."""
  x, w = _rand((1, 5, 7, 20), 0), _rand((3, 3, 20, 18), 1)
  bs = mg.BlockSizes(block_pixels=16, block_cin=16, block_cout=16)
  g = _rand((1, 5, 7, 18), 2)
  f = lambda x, w, **kw: jnp.vdot(mg.conv(x, w, **kw), g)
  kw = dict(backend="triton", interpret=True, block_sizes=bs)
  got = jax.jit(lambda x, w: (mg.conv(x, w, **kw), jax.grad(f, (0, 1))(x, w, **kw),
                              mg.conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), **kw)))(x, w)
  _close(got[0], mg.conv_reference(x, w), 1e-5)
  _close(got[1], jax.grad(f, (0, 1))(x, w, impl="xla"), 1e-4)
  assert got[2].dtype == jnp.bfloat16
  _close(got[2], mg.conv_reference(x, w), 3e-2)


# ------------------------------------------------------------------------------------------- lowering (export)


def _export(fn, args, platform):
  exported = jax.export.export(jax.jit(fn), platforms=(platform,),
                               disabled_checks=TRITON if platform == "cuda" else ())(*args)
  return exported.mlir_module()


def _count_kernels(text, platform):
  return text.count("__gpu$xla.gpu.triton") if platform == "cuda" else text.count("tpu_custom_call")


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_lowers_forward_and_backward_at_zoo_shapes(platform):
  """impl='auto' picks the Pallas kernels when lowering for cuda/tpu: no XLA convolution is left."""
  x, w, c = jnp.zeros((2, 64, 64, 16)), jnp.zeros((3, 3, 16, 16)), jnp.zeros((2, 32, 32, 16))
  x1, w1 = jnp.zeros((2, 64, 1)), jnp.zeros((3, 1, 8))

  def fwd(x, w, c, x1, w1):
    return (mg.conv(x, w, add=x).sum() + mg.restrict(x, w).sum() + mg.prolong(c, w, shape=(64, 64)).sum()
            + mg.restrict(x).sum() + mg.prolong(c, shape=(64, 64)).sum() + mg.jacobi(x, x, mg.LAPLACIAN_2D).sum()
            + mg.smooth(None, x1, None, w1).sum() + mg.restrict(x1).sum())

  args = (x, w, c, x1, w1)
  text = _export(fwd, args, platform)
  # conv 1, learned restriction 1, learned prolongation 4 (output phases), full weighting 1, bilinear 4, jacobi 1,
  # 1D conv 1, 1D full weighting 1.
  assert _count_kernels(text, platform) == 14
  assert "stablehlo.convolution" not in text
  text = _export(jax.grad(fwd, (0, 1, 2, 3, 4)), args, platform)
  assert _count_kernels(text, platform) > 14
  assert "stablehlo.convolution" not in text


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_lowers_bfloat16_and_block_sizes(platform):
  x, w = jnp.zeros((4, 128, 128, 32), jnp.bfloat16), jnp.zeros((3, 3, 32, 32), jnp.bfloat16)
  bs = mg.BlockSizes(block_pixels=128, block_cin=32, block_cout=32, block_rows=4)
  fn = jax.grad(lambda x, w: mg.conv(x, w, block_sizes=bs).astype(jnp.float32).sum(), (0, 1))
  assert _count_kernels(_export(fn, (x, w), platform), platform) == 2  # input and weight gradients


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_v_cycle_and_mgno_lower(platform):
  from zoo import mgno  # pylint: disable=g-import-not-at-top
  f = jnp.zeros((1, 255, 255, 1))
  text = _export(lambda f: mg.v_cycle(f, stencil=mg.LAPLACIAN_2D), (f,), platform)
  assert "stablehlo.convolution" not in text and _count_kernels(text, platform) > 20
  model = mgno.PRESETS["darcy"]()
  x = jnp.zeros((2, 64, 64, 1))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
  grad = jax.grad(lambda v, x: jnp.mean(model.apply(v, x) ** 2))
  text = _export(grad, (variables, x), platform)
  assert "stablehlo.convolution" not in text


# ---------------------------------------------------------------------------------------------------- dispatch


def test_dispatch_on_cpu(caplog):
  x, w = _rand((2, 8, 8, 3), 0), _rand((3, 3, 3, 2), 1)
  want = mg.conv_reference(x, w)
  np.testing.assert_allclose(mg.conv(x, w), want, rtol=1e-6)  # auto: the reference on CPU
  with caplog.at_level(logging.INFO, logger="zoo.kernels.multigrid"):
    np.testing.assert_allclose(mg.conv(x, w, impl="pallas"), want, rtol=1e-6)
  assert "no Pallas lowering for this platform" in caplog.text


# ------------------------------------------------------------------------------------------------ the V-cycle


def _v_cycle_factors(n_points, cycles=4, **kw):
  n = n_points - 2  # interior nodes of a grid with n_points per side, boundary included
  h = 1.0 / (n_points - 1)
  f = jnp.asarray(np.random.default_rng(0).standard_normal((1, n, n, 1)), jnp.float32) * h * h
  cycle = jax.jit(lambda u: mg.v_cycle(f, u, stencil=mg.LAPLACIAN_2D, pre_smooth=2, post_smooth=2, omega=0.8, **kw))
  norm = lambda u: float(jnp.linalg.norm(mg.residual(u, f, mg.LAPLACIAN_2D, impl="xla")))
  u, r = jnp.zeros_like(f), [norm(jnp.zeros_like(f))]
  for _ in range(cycles):
    u = cycle(u)
    r.append(norm(u))
  return np.array(r[1:]) / np.array(r[:-1])


def test_v_cycle_reduces_poisson_residual_by_a_grid_independent_factor():
  """5-point Laplacian, full weighting, bilinear prolongation, damped Jacobi (omega = 4/5, 2 pre + 2 post sweeps).

  Measured residual reduction per cycle (cycles 1-4), the same to two digits on every grid:
  0.064, 0.135, 0.149, 0.158.
  """
  _check_grid_independence({n: _v_cycle_factors(n, impl="xla") for n in (33, 65, 129)})


@pytest.mark.slow
def test_v_cycle_factor_on_257_points():
  _check_grid_independence({n: _v_cycle_factors(n, impl="xla") for n in (33, 257)})


def _check_grid_independence(factors):
  for n, fac in factors.items():
    assert np.all(fac < 0.2), (n, fac)
  third = np.array([fac[2] for fac in factors.values()])
  assert third.max() / third.min() < 1.1, factors  # independent of the grid size


def test_v_cycle_through_the_kernel_glue():
  np.testing.assert_allclose(_v_cycle_factors(33, cycles=2, backend="jnp"), _v_cycle_factors(33, cycles=2,
                                                                                              impl="xla"), rtol=1e-3)
