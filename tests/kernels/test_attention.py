"""Tests of zoo.kernels.attention: the Pallas kernels in interpret mode against `reference`, and their lowering.

Interpret mode checks the numbers on CPU; `jax.export` for ``cuda`` / ``tpu`` checks that the Triton and Mosaic
lowerings accept the kernels (it does not run the backend compilers, which need the device).
Interpreted shapes are tiny (tiles of 16 on the Triton kernel, a few tiles per sequence) to keep this file fast.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo.kernels import attention as attn

GPU_TILES = attn.BlockSizes(16, 16, 16, 16, 16, 16)  # several tiles per tiny sequence
TPU_TILES = attn.BlockSizes(16, 128, 16, 128, 16, 128)  # the smallest tiles the TPU kernel allows
CUDA_CHECKS = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]


def _inputs(seed, b, tq, tk, h, hk, d, dv=None, dtype=jnp.float32, bias=None, mask=None):
  ks = jax.random.split(jax.random.key(seed), 6)
  q = jax.random.normal(ks[0], (b, tq, h, d), jnp.float32).astype(dtype)
  k = jax.random.normal(ks[1], (b, tk, hk, d), jnp.float32).astype(dtype)
  v = jax.random.normal(ks[2], (b, tk, hk, dv or d), jnp.float32).astype(dtype)
  kw = {}
  if bias is not None:
    kw["bias"] = jax.random.normal(ks[3], bias, jnp.float32).astype(dtype)
  if mask is not None:
    m = jax.random.bernoulli(ks[4], 0.7, mask)
    if mask[0] > 1:
      m = m.at[0].set(False)  # batch element 0 fully masked: its rows attend uniformly
    kw["mask"] = m
  ct = jax.random.normal(ks[5], (b, tq, h, dv or d), jnp.float32)
  return (q, k, v), kw, ct


# Nearly all of this file's time is XLA compiling the interpreted kernels (their grid loops become large CPU
# programs; running them takes milliseconds). XLA's backend optimization level 0 halves that compile and moves the
# numbers by float rounding only (5e-7 measured on the f32 cases, far inside the tolerances below). Everything is
# jitted: eager, every op of the reference and of the kernels' wrappers would be dispatched (compiled) one by one.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, **kw):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def _value_and_grads(fn, qkv, kw, ct, wrt_bias):
  """Output and the gradients of <out, ct> wrt q, k, v (and the bias), in one jitted call."""
  @_jit
  def run(qkv, kw, ct):
    def loss(q, k, v, bias):
      out = fn(q, k, v, **{**kw, **({} if bias is None else {"bias": bias})})
      return jnp.sum(out.astype(jnp.float32) * ct), out
    argnums = (0, 1, 2, 3) if wrt_bias else (0, 1, 2)
    (_, out), grads = jax.value_and_grad(loss, argnums=argnums, has_aux=True)(*qkv, kw.get("bias"))
    return out, grads
  return run(qkv, kw, ct)


def _rel_err(x, ref):
  x, ref = np.asarray(x, np.float32), np.asarray(ref, np.float32)
  return float(np.linalg.norm(x - ref) / (np.linalg.norm(ref) + 1e-30))


def _compare(kernel, case, causal, dtype=jnp.float32):
  qkv, kw, ct = _inputs(**case, dtype=dtype)
  wrt_bias = "bias" in kw
  out, grads = _value_and_grads(kernel, qkv, kw, ct, wrt_bias)
  ref = lambda *a, **k: attn.reference(*a, is_causal=causal, **k)
  assert out.shape == qkv[0].shape[:3] + qkv[2].shape[3:] and out.dtype == dtype
  if dtype == jnp.float32:
    ref_out, ref_grads = _value_and_grads(ref, qkv, kw, ct, wrt_bias)
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for name, g, r in zip("q k v bias".split(), grads, ref_grads):
      assert g.shape == r.shape, name
      np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")
    return
  # Low precision: the kernel must be about as close to the float32 truth as the XLA reference in the same dtype.
  up = lambda t: jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype == dtype else x, t)
  true_out, true_grads = _value_and_grads(ref, up(qkv), up(kw), ct, wrt_bias)
  ref_out, ref_grads = _value_and_grads(ref, qkv, kw, ct, wrt_bias)
  assert _rel_err(out, true_out) <= 1.5 * _rel_err(ref_out, true_out) + 2e-3
  for name, g, r, t in zip("q k v bias".split(), grads, ref_grads, true_grads):
    assert g.dtype == r.dtype, name
    assert _rel_err(g, t) <= 1.5 * _rel_err(r, t) + 2e-3, f"d{name}: {_rel_err(g, t)} vs {_rel_err(r, t)}"


# Shapes: lengths that are not multiples of the 16-wide tiles, q_len != kv_len both ways, grouped heads,
# head_dim that needs padding (24), value_dim != head_dim, broadcast biases and masks.
CASES = {
    "gqa_odd": (dict(seed=0, b=2, tq=37, tk=37, h=4, hk=2, d=32), False),
    "causal_q_shorter": (dict(seed=1, b=1, tq=20, tk=45, h=2, hk=2, d=16), True),
    "causal_q_longer": (dict(seed=2, b=1, tq=45, tk=20, h=2, hk=1, d=16), True),  # first rows fully masked
    "bias_and_key_mask": (dict(seed=3, b=2, tq=19, tk=33, h=2, hk=2, d=16, bias=(1, 2, 19, 33), mask=(2, 1, 1, 33)),
                          False),
    "causal_mask_bias_d24": (dict(seed=4, b=2, tq=33, tk=33, h=2, hk=1, d=24, dv=16, bias=(2, 1, 33, 33),
                                  mask=(2, 2, 33, 33)), True),
}


def _with_kv_len(case, tk):
  case = dict(case, tk=tk)
  for name in ("bias", "mask"):
    if name in case:
      case[name] = case[name][:3] + (tk,)
  return case


@pytest.mark.parametrize("name", list(CASES))
def test_gpu_kernel_matches_reference_f32(name):
  case, causal = CASES[name]
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=causal, block_sizes=GPU_TILES, backend="gpu",
                                                interpret=True, **k)
  _compare(kernel, case, causal)


def test_gpu_kernel_matches_reference_bf16():
  case, causal = CASES["causal_mask_bias_d24"]
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=causal, block_sizes=GPU_TILES, backend="gpu",
                                                interpret=True, **k)
  _compare(kernel, case, causal, dtype=jnp.bfloat16)


@pytest.mark.parametrize("name", ["causal_q_longer", "causal_mask_bias_d24"])
def test_tpu_kernel_matches_reference(name):
  case, causal = CASES[name]
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=causal, block_sizes=TPU_TILES, backend="tpu",
                                                interpret=True, **k)
  _compare(kernel, _with_kv_len(case, case["tk"] + 128), causal)  # more than one 128-wide key tile


def test_tpu_kernel_bf16():
  case, causal = CASES["bias_and_key_mask"]
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=causal, block_sizes=TPU_TILES, backend="tpu",
                                                interpret=True, **k)
  _compare(kernel, case, causal, dtype=jnp.bfloat16)


@pytest.mark.slow
def test_tpu_kernel_in_tpu_simulator():
  """The TPU interpreter (``pltpu.InterpretParams``) simulates VMEM, DMAs and the grid order of the real chip."""
  case, causal = CASES["causal_q_longer"]
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=causal, block_sizes=TPU_TILES, backend="tpu",
                                                interpret=pltpu.InterpretParams(), **k)
  _compare(kernel, _with_kv_len(case, 150), causal)


def test_default_block_sizes_several_tiles():
  """The default GPU tiles (128/64) on a sequence of a few tiles, with a causal mask and a bias gradient."""
  case = dict(seed=5, b=1, tq=200, tk=130, h=1, hk=1, d=16, bias=(1, 1, 200, 130))
  kernel = lambda *a, **k: attn.flash_attention(*a, is_causal=True, backend="gpu", interpret=True, **k)
  _compare(kernel, case, True)


# ---------------------------------------------------------------------------------------------------------------
# The public function
# ---------------------------------------------------------------------------------------------------------------


def _small(seed=0, b=2, t=24, h=2, d=16):
  (q, k, v), _, _ = _inputs(seed, b, t, t, h, h, d)
  return q, k, v


def test_impl_xla_and_auto_on_cpu_are_the_reference():
  q, k, v = _small()
  ref = attn.reference(q, k, v, is_causal=True)
  np.testing.assert_array_equal(attn.attention(q, k, v, is_causal=True, impl="xla"), ref)
  np.testing.assert_array_equal(attn.attention(q, k, v, is_causal=True), ref)  # auto: no kernel on CPU


def test_impl_pallas_on_cpu_runs_the_interpreted_kernel():
  q, k, v = _small()
  f = jax.jit(lambda q, k, v: attn.attention(q, k, v, is_causal=True, impl="pallas",
                                             block_sizes={"gpu": GPU_TILES}))
  assert "pallas_call" in str(jax.make_jaxpr(f)(q, k, v))
  np.testing.assert_allclose(f(q, k, v), attn.reference(q, k, v, is_causal=True), atol=2e-5)


def test_jit_matches_eager():
  q, k, v = _small()
  run = lambda q, k, v: attn.attention(q, k, v, impl="pallas", block_sizes={"gpu": GPU_TILES})
  np.testing.assert_allclose(jax.jit(run)(q, k, v), run(q, k, v), atol=1e-6)


def test_vmap():
  q, k, v = _small()
  qs, ks, vs = (jnp.stack([x, 2 * x]) for x in (q, k, v))
  run = lambda q, k, v: attn.attention(q, k, v, is_causal=True, impl="pallas", block_sizes={"gpu": GPU_TILES})
  # The vmapped output and gradients in one compile; the reference per element, unbatched.
  loss = lambda q, k, v: (run(q, k, v).sum(), run(q, k, v))
  (_, out), grads = _jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)))(qs, ks, vs)
  ref = jax.jit(lambda q, k, v: attn.reference(q, k, v, is_causal=True))
  for i in range(2):
    np.testing.assert_allclose(out[i], ref(qs[i], ks[i], vs[i]), atol=2e-5)
  ref_grads = jax.jit(jax.grad(lambda q, k, v: attn.reference(q, k, v, is_causal=True).sum(), argnums=(0, 1, 2)))(
      qs[1], ks[1], vs[1])
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g[1], r, atol=1e-4)


def test_sharded_batch_runs_per_shard():
  """Under ``jax.set_mesh`` the kernel runs on each device's shard: no all-gather, the output stays sharded."""
  from zoo.recipes import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  q, k, v = _small(b=8)
  bias = 0.5 * jax.random.normal(jax.random.key(7), (1, 2, 24, 24))  # shared by the batch: its gradient sums shards
  mask = jnp.arange(24)[None, None, None, :] < jnp.array([24, 20, 16, 12, 24, 3, 0, 7])[:, None, None, None]
  run = lambda q, k, v, bias: attn.attention(q, k, v, bias=bias, mask=mask, is_causal=True, impl="pallas",
                                             block_sizes={"gpu": GPU_TILES})
  loss = lambda q, k, v, bias: jnp.sum(run(q, k, v, bias) ** 2)
  batch = NamedSharding(mesh, P(("data", "fsdp")))
  qs, ks, vs = (jax.device_put(x, batch) for x in (q, k, v))
  with jax.set_mesh(mesh):
    fwd = _jit(run).lower(qs, ks, vs, bias).compile()  # compiled once: run, and its HLO read
    out, grads = fwd(qs, ks, vs, bias), _jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(qs, ks, vs, bias)
    hlo = fwd.as_text()
  assert "all-gather" not in hlo
  assert out.sharding.is_equivalent_to(batch, 4) and grads[0].sharding.is_equivalent_to(batch, 4)
  ref = lambda q, k, v, bias: attn.reference(q, k, v, bias=bias, mask=mask, is_causal=True)
  np.testing.assert_allclose(out, jax.jit(ref)(q, k, v, bias), atol=2e-5)
  ref_grads = jax.jit(jax.grad(lambda *a: jnp.sum(ref(*a) ** 2), argnums=(0, 1, 2, 3)))(q, k, v, bias)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-5)


def test_traced_scale_and_its_gradient():
  """A learned inverse temperature (Hopfield's beta) is a traced scale: the kernel scales the queries instead."""
  q, k, v = _small()
  loss = lambda impl: (lambda q, k, v, s: jnp.sum(attn.attention(
      q, k, v, scale=s, is_causal=True, impl=impl, block_sizes={"gpu": GPU_TILES}) ** 2))
  grads = _jit(jax.grad(loss("pallas"), argnums=(0, 1, 2, 3)))(q, k, v, 0.7)
  ref_grads = jax.jit(jax.grad(loss("xla"), argnums=(0, 1, 2, 3)))(q, k, v, 0.7)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-5)


def test_integer_mask_reads_as_the_reference_does():
  q, k, v = _small()
  mask = (jnp.arange(24)[:, None] % 3 != 0).astype(jnp.int32)
  out = _jit(lambda q, k, v, mask: attn.attention(q, k, v, mask=mask, impl="pallas", block_sizes={"gpu": GPU_TILES}))(
      q, k, v, mask)
  np.testing.assert_allclose(out, jax.jit(attn.reference)(q, k, v, mask=mask), atol=2e-5)


def test_dropout():
  q, k, v = _small()
  rng = jax.random.key(3)
  out = attn.attention(q, k, v, dropout_rate=0.3, dropout_rng=rng)  # auto: the reference, which has dropout
  np.testing.assert_array_equal(out, attn.reference(q, k, v, dropout_rate=0.3, dropout_rng=rng))
  with pytest.raises(ValueError, match="dropout"):
    attn.attention(q, k, v, dropout_rate=0.3, dropout_rng=rng, impl="pallas")


def test_auto_logs_why_it_falls_back(caplog):
  q, k, v = _small()
  with caplog.at_level("INFO", logger="zoo.kernels.attention"):
    attn.attention(q, k, v, dropout_rate=0.1, dropout_rng=jax.random.key(0))
  assert "dropout" in caplog.text and "XLA reference" in caplog.text


def test_bad_inputs():
  q, k, v = _small()
  with pytest.raises(ValueError, match="impl"):
    attn.attention(q, k, v, impl="cuda")
  with pytest.raises(ValueError, match="rank 4"):
    attn.attention(q[0], k, v, impl="pallas")
  with pytest.raises(ValueError, match="must divide"):
    attn.attention(q, k[:, :, :1].repeat(3, axis=2), v[:, :, :1].repeat(3, axis=2), impl="pallas")
  with pytest.raises(ValueError, match="`bias` must be broadcastable"):
    attn.attention(q, k, v, bias=jnp.zeros((3, 24, 24)), impl="pallas")
  with pytest.raises(ValueError, match="powers of two"):
    attn.attention(q, k, v, impl="pallas", block_sizes=attn.BlockSizes(24, 16, 16, 16, 16, 16))
  with pytest.raises(ValueError, match="multiples of 128"):
    attn.flash_attention(q, k, v, backend="tpu", block_sizes=attn.BlockSizes(16, 64, 16, 128, 16, 128))
  with pytest.raises(ValueError, match="float32/bfloat16/float16"):
    attn.attention(q.astype(jnp.bfloat16), k, v, impl="pallas")
  with pytest.raises(ValueError, match="positive int"):
    attn.BlockSizes(0, 16, 16, 16, 16, 16)
  with pytest.raises(ValueError, match="backend"):
    attn.BlockSizes.get_default("rocm")


# ---------------------------------------------------------------------------------------------------------------
# Lowering: the real backends would accept the kernels (jax.export for cuda and tpu, forward and backward)
# ---------------------------------------------------------------------------------------------------------------

S = jax.ShapeDtypeStruct
_KERNEL_CALL = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


def _export(fn, platform, *args):
  checks = CUDA_CHECKS if platform == "cuda" else []
  return jax.export.export(jax.jit(fn), platforms=(platform,), disabled_checks=checks)(*args).mlir_module()


def _lowering_fns(causal, with_bias, with_mask, impl="pallas", **kw):
  def fwd(q, k, v, bias, mask):
    return attn.attention(q, k, v, bias=bias, mask=mask, is_causal=causal, impl=impl, **kw)

  def bwd(q, k, v, bias, mask):
    argnums = (0, 1, 2, 3) if with_bias else (0, 1, 2)
    return jax.grad(lambda *a: jnp.sum(fwd(*a).astype(jnp.float32)), argnums=argnums)(q, k, v, bias, mask)
  return fwd, bwd


# (batch, q_len, kv_len, heads, kv_heads, head_dim, dtype, causal, bias shape, mask shape): the zoo's shapes
# (head_dim 32/64/128, lengths 64..2048), odd lengths, grouped heads, broadcast bias/mask.
LOWERING = [
    (2, 64, 64, 4, 4, 32, jnp.float32, False, None, None),
    (2, 256, 256, 8, 2, 64, jnp.bfloat16, True, None, None),
    (1, 2048, 2048, 4, 4, 128, jnp.bfloat16, True, None, None),
    (2, 300, 177, 4, 1, 64, jnp.float32, False, (1, 4, 300, 177), (2, 1, 1, 177)),
    (2, 129, 1000, 2, 2, 32, jnp.bfloat16, True, None, (2, 1, 129, 1000)),
    (1, 512, 512, 2, 2, 80, jnp.bfloat16, False, (2, 512, 512), None),
    (1, 1024, 1024, 2, 2, 256, jnp.bfloat16, True, None, None),
]


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("shape", LOWERING, ids=lambda s: "x".join(map(str, s[:6])) + f"-{jnp.dtype(s[6]).name}")
def test_exports(platform, shape):
  b, tq, tk, h, hk, d, dtype, causal, bias, mask = shape
  args = (S((b, tq, h, d), dtype), S((b, tk, hk, d), dtype), S((b, tk, hk, d), dtype),
          None if bias is None else S(bias, dtype), None if mask is None else S(mask, jnp.bool_))
  fwd, bwd = _lowering_fns(causal, bias is not None, mask is not None)
  assert _export(fwd, platform, *args).count(_KERNEL_CALL[platform]) == 1
  assert _export(bwd, platform, *args).count(_KERNEL_CALL[platform]) == 3  # forward, dK/dV, dQ


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_auto_picks_the_kernel_on_accelerators(platform):
  args = (S((2, 128, 4, 64), jnp.bfloat16),) * 3 + (None, None)
  fwd, _ = _lowering_fns(True, False, False, impl="auto")
  assert _export(fwd, platform, *args).count(_KERNEL_CALL[platform]) == 1
  assert _KERNEL_CALL[platform] not in _export(fwd, "cpu", *args)
  dropout = lambda q, k, v: attn.attention(q, k, v, dropout_rate=0.1, dropout_rng=jax.random.key(0))
  assert _KERNEL_CALL[platform] not in _export(dropout, platform, *args[:3])  # falls back to the reference


def test_float16_kernel_on_gpu_reference_on_tpu():
  args = (S((2, 128, 4, 64), jnp.float16),) * 3 + (None, None)
  fwd, bwd = _lowering_fns(False, False, False, impl="auto")
  assert _export(bwd, "cuda", *args).count(_KERNEL_CALL["cuda"]) == 3
  assert _KERNEL_CALL["tpu"] not in _export(fwd, "tpu", *args)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_bias_gradient_only_when_asked(platform):
  """The O(length^2) bias gradient is written only when the bias is differentiated."""
  b, t, h = 2, 256, 2
  args = (S((b, t, h, 64), jnp.bfloat16),) * 3 + (S((1, h, t, t), jnp.bfloat16), None)
  ds = f"tensor<{b}x{h}x{t}x{t}xf32>"
  with_bias = _export(_lowering_fns(False, True, False)[1], platform, *args)
  without = _export(_lowering_fns(False, False, False)[1], platform, *args)
  assert ds in with_bias and ds not in without


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("d", [32, 64, 128])
@pytest.mark.parametrize("t", [64, 128, 512, 1000, 2048, 4096])
def test_exports_sweep(platform, d, t):
  for dtype in (jnp.float32, jnp.bfloat16):
    for causal in (False, True):
      args = (S((2, t, 4, d), dtype), S((2, t, 2, d), dtype), S((2, t, 2, d), dtype), S((2, 1, 1, t), dtype), None)
      fwd, bwd = _lowering_fns(causal, True, False, impl="auto")
      assert _export(fwd, platform, *args).count(_KERNEL_CALL[platform]) == 1
      assert _export(bwd, platform, *args).count(_KERNEL_CALL[platform]) == 3


def test_kernel_memory_is_linear_in_length():
  """Compiled temp memory of forward+backward: O(length) for the kernel, O(length^2) for the reference."""
  def temp(fn, t):
    q = S((1, t, 2, 32), jnp.float32)
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v)), argnums=(0, 1, 2)))
    return grad.lower(q, q, q).compile(FAST_COMPILE).memory_analysis().temp_size_in_bytes  # same bytes as -O2
  kernel = lambda q, k, v: attn.flash_attention(q, k, v, is_causal=True, interpret=True)
  ref = lambda q, k, v: attn.reference(q, k, v, is_causal=True)
  k1, k2, r1, r2 = temp(kernel, 512), temp(kernel, 2048), temp(ref, 512), temp(ref, 2048)
  assert k2 / k1 < 4.5, (k1, k2)  # 4x the length: 4x the memory (measured 3.97x)
  assert r2 / r1 > 8, (r1, r2)  # measured 9.5x (XLA fuses part of the reference's [length, length] buffers)
  assert k2 < r2 / 8


def test_module_names_the_paper():
  assert re.search(r"arXiv:2307\.08691", attn.__doc__)
