"""Segment ids in zoo.kernels.attention: the kernels (Pallas interpreter) against `reference`, tile skipping, the
Triton/Mosaic lowerings (jax.export), and the errors.

The oracle is the reference with the rule written out by hand here (``q == kv >= 0`` as a dense mask), so the
reference's own segment path is checked too. Shapes are tiny: the cost of this file is XLA compiling the
interpreted kernels (about one compile per case).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import attention as attn
from zoo.kernels import attention_segments as segments

FAST_COMPILE = {"xla_backend_optimization_level": 0}  # as tests/kernels/test_attention.py: float rounding only
CUDA_CHECKS = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]


def _qkv(seed, b, tq, tk, h, hk, d):
  ks = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(ks[0], (b, tq, h, d), jnp.float32)
  k = jax.random.normal(ks[1], (b, tk, hk, d), jnp.float32)
  v = jax.random.normal(ks[2], (b, tk, hk, d), jnp.float32)
  ct = jax.random.normal(ks[3], (b, tq, h, d), jnp.float32)
  return q, k, v, ct


def _by_hand(q_ids, kv_ids):
  """[b, 1, q, k]: the segment rule written out with numpy loops."""
  q_ids, kv_ids = np.asarray(q_ids), np.asarray(kv_ids)
  out = np.zeros((q_ids.shape[0], 1, q_ids.shape[1], kv_ids.shape[1]), bool)
  for b in range(q_ids.shape[0]):
    for i, a in enumerate(q_ids[b]):
      for j, c in enumerate(kv_ids[b]):
        out[b, 0, i, j] = a == c and a >= 0
  return jnp.asarray(out)


def _value_and_grads(fn, q, k, v, bias, ct):
  """Output and the gradients of <out, ct> wrt q, k, v and the bias (when given), in one jitted call."""
  @jax.jit
  def run(q, k, v, bias, ct):
    loss = lambda q, k, v, bias: jnp.sum(fn(q, k, v, bias) * ct)
    argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
    return fn(q, k, v, bias), jax.grad(loss, argnums=argnums)(q, k, v, bias)
  return run.lower(q, k, v, bias, ct).compile(FAST_COMPILE)(q, k, v, bias, ct)


def _assert_close(got, want):
  (out, grads), (ref_out, ref_grads) = got, want
  np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
  for name, g, r in zip(("q", "k", "v", "bias"), grads, ref_grads):
    np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")


# Ragged packed segments that straddle tiles, padding (-1 and another negative id) inside and at the end, a query
# whose segment has no key (kv ids differ from q's in example 1: fully masked rows), q_len != kv_len.
Q_IDS = np.array([[0] * 9 + [1] * 20 + [2] * 7 + [-1] * 4 + [3] * 5,
                  [4] * 3 + [-1] * 6 + [4] * 14 + [7] * 12 + [-3] * 10])  # 45 queries
KV_IDS = np.array([[0] * 12 + [1] * 17 + [2] * 11 + [-1] * 3 + [3] * 10,
                   [4] * 25 + [-1] * 3 + [5] * 25])  # 53 keys: segment 7 has no key in example 1


CASES = {  # name: (backend, block sizes, causal, kv ids)
    "gpu_16": ("gpu", attn.BlockSizes(16, 16, 16, 16, 16, 16), False, KV_IDS),
    "gpu_mixed_tiles_causal": ("gpu", attn.BlockSizes(32, 16, 16, 32, 16, 32), True, KV_IDS),
    "tpu_causal": ("tpu", attn.BlockSizes(16, 128, 32, 128, 16, 128), True, KV_IDS),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name):
  backend, tiles, causal, kv_ids = CASES[name]
  q, k, v, ct = _qkv(0, 2, Q_IDS.shape[1], kv_ids.shape[1], 4, 2, 16)
  bias = jax.random.normal(jax.random.key(1), (1, 4, Q_IDS.shape[1], kv_ids.shape[1]))  # its gradient too
  q_ids, kv_ids = jnp.asarray(Q_IDS), jnp.asarray(kv_ids)
  kernel = lambda q, k, v, bias: attn.flash_attention(q, k, v, bias=bias, is_causal=causal, block_sizes=tiles,
                                                      backend=backend, interpret=True, q_segment_ids=q_ids,
                                                      kv_segment_ids=kv_ids)
  mask = _by_hand(q_ids, kv_ids)
  ref = lambda q, k, v, bias: attn.reference(q, k, v, bias=bias, is_causal=causal, mask=mask)
  got, want = _value_and_grads(kernel, q, k, v, bias, ct), _value_and_grads(ref, q, k, v, bias, ct)
  _assert_close(got, want)
  # Fully masked rows (padded queries, segment 7 of example 1) follow the module's convention: the mean value.
  mean_v = jnp.repeat(jnp.mean(v, axis=1), 2, axis=1)  # [b, h, d]
  for b, i in [(0, 36), (1, 5), (1, 30)]:
    np.testing.assert_allclose(got[0][b, i], mean_v[b], atol=1e-5)


def test_reference_segments_equal_the_dense_mask_with_bias_and_causal():
  """`reference(q_segment_ids=...)` and `attention(impl='xla')` are the dense rule "and"-ed with mask and causal."""
  q, k, v, _ = _qkv(1, 2, 45, 53, 2, 2, 8)
  bias = jax.random.normal(jax.random.key(2), (1, 2, 45, 53))
  mask = jax.random.bernoulli(jax.random.key(3), 0.8, (2, 1, 1, 53))
  dense, self_dense = _by_hand(Q_IDS, KV_IDS), _by_hand(KV_IDS, KV_IDS)

  @jax.jit  # eager, every op would be compiled on its own
  def run(q, k, v, bias, mask, q_ids, kv_ids):
    got = attn.attention(q, k, v, bias=bias, mask=mask, is_causal=True, impl="xla", q_segment_ids=q_ids,
                         kv_segment_ids=kv_ids)
    want = attn.reference(q, k, v, bias=bias, mask=mask & dense, is_causal=True)
    # kv_segment_ids defaults to q_segment_ids
    return got, want, attn.reference(k, k, v, q_segment_ids=kv_ids), attn.reference(k, k, v, mask=self_dense)
  got, want, got_self, want_self = run(q, k, v, bias, mask, jnp.asarray(Q_IDS), jnp.asarray(KV_IDS))
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(got_self, want_self, atol=1e-6)


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_kernel_skips_tiles_without_a_common_id(backend):
  """Keys of a tile no query tile shares an id with are never used: NaNs there would poison a computed tile
  (``0 * NaN`` in ``p @ v``) but leave every output and gradient finite when the tile is skipped, forward and
  backward (on TPU the index maps also clamp the fetched tile; query tile 1 starts on key tile 1)."""
  bq, bk = (16, 16) if backend == "gpu" else (16, 128)
  tk = 4 * bk
  q_ids = jnp.asarray([[0] * 16 + [1] * 16])  # query tiles: segment 0, segment 1
  kv_ids = jnp.asarray([[0] * bk + [1] * bk + [2] * 2 * bk])  # key tiles 2, 3: segment 2, no query
  q, k, v, ct = _qkv(4, 1, 32, tk, 1, 1, 16)
  poisoned = v.at[:, 2 * bk:].set(jnp.nan)
  tiles = attn.BlockSizes(bq, bk, bq, bk, bq, bk)
  kernel = lambda q, k, v, bias: attn.flash_attention(q, k, v, block_sizes=tiles, backend=backend, interpret=True,
                                                      q_segment_ids=q_ids, kv_segment_ids=kv_ids)
  out, grads = _value_and_grads(kernel, q, k, poisoned, None, ct)
  for x in (out, *grads[:3]):
    assert np.isfinite(np.asarray(x)).all()
  mask = _by_hand(q_ids, kv_ids)
  want = _value_and_grads(lambda q, k, v, bias: attn.reference(q, k, v, mask=mask), q, k, v, None, ct)
  _assert_close((out, grads[:3]), (want[0], want[1][:3]))  # dk, dv of the unused keys: exactly 0 in both


def test_tile_bounds_by_hand():
  """The range per outer tile (TPU index maps, Triton loops): first..last tile of the other side sharing an id."""
  q_ids = jnp.asarray([[0] * 16 + [1] * 16 + [-1] * 16])  # 3 query tiles of 16: {0}, {1}, padding
  kv_ids = jnp.asarray([[0] * 128 + [1] * 200 + [-2] * 56])  # 3 key tiles of 128: {0}, {1}, {1 and padding}
  segs = segments.prepare(q_ids, kv_ids, 48, 384)
  *_, first, last = segments.tile_bounds(segs, 16, 128, "q")
  assert first.tolist() == [0, 1, 0] and last.tolist() == [0, 2, 0]  # the padding tile visits nothing: 0..0
  *_, first, last = segments.tile_bounds(segs, 16, 128, "kv")
  assert first.tolist() == [0, 1, 1] and last.tolist() == [0, 1, 1]


def test_allowed_fraction_by_hand():
  """Four 32-long segments on 32-wide tiles: each query tile visits one key tile of four."""
  ids = np.repeat(np.arange(4), 32)[None]
  assert segments.allowed_fraction(ids, ids, 32, 32) == 0.25
  assert segments.allowed_fraction(ids, ids, 64, 32) == 0.5  # a 64-wide query tile holds 2 ids: 2 key tiles of 4
  ragged = np.array([[0] * 40 + [1] * 56])  # tiles {0}, {0, 1}, {1}: 7 of 9 pairs share an id
  assert segments.allowed_fraction(ragged, ragged, 32, 32) == 7 / 9
  assert segments.allowed_fraction(ragged, ragged, 32, 32, causal=True) == 5 / 9  # (0, 1), (1, 2) above diagonal
  unsorted = np.array([[0] * 16 + [2] * 16 + [1] * 32])  # spans [0, 2] and [1, 1]: conservative, all visited
  assert segments.allowed_fraction(unsorted, unsorted, 32, 32) == 1.0
  padded = np.array([[0] * 32 + [-1] * 32])  # an all-padding tile is visited by no one
  assert segments.allowed_fraction(padded, padded, 32, 32) == 0.25


def test_sharded_batch_with_segment_ids():
  """Under ``jax.set_mesh`` the ids are split with the batch: the kernel runs per shard, no all-gather."""
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from zoo.recipes import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  q, k, v, _ = _qkv(7, 8, 24, 24, 2, 2, 8)
  ids = jnp.asarray(np.arange(24)[None] // np.arange(3, 11)[:, None])  # segments of 3..10 tokens per example
  ids = ids.at[:, -3:].set(-1)
  batch = NamedSharding(mesh, P(("data", "fsdp")))
  qs, ks, vs, idss = (jax.device_put(x, batch) for x in (q, k, v, ids))
  run = lambda q, k, v, ids: attn.attention(q, k, v, impl="pallas", q_segment_ids=ids,
                                            block_sizes={"gpu": attn.BlockSizes(16, 16, 16, 16, 16, 16)})
  with jax.set_mesh(mesh):
    fwd = jax.jit(run).lower(qs, ks, vs, idss).compile(FAST_COMPILE)
    out = fwd(qs, ks, vs, idss)
  assert "all-gather" not in fwd.as_text()
  assert out.sharding.is_equivalent_to(batch, 4)
  np.testing.assert_allclose(out, attn.reference(q, k, v, mask=_by_hand(ids, ids)), atol=2e-5)


# ---------------------------------------------------------------------------------------------------------------
# Lowering: Triton and Mosaic accept the segment kernels, forward and backward, and no [q, k] mask is built
# ---------------------------------------------------------------------------------------------------------------

S = jax.ShapeDtypeStruct
_KERNEL_CALL = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


def _export(fn, platform, *args):
  checks = CUDA_CHECKS if platform == "cuda" else []
  return jax.export.export(jax.jit(fn), platforms=(platform,), disabled_checks=checks)(*args).mlir_module()


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("causal", [False, True])
def test_exports_with_segments(platform, causal):
  b, tq, tk = 2, 300, 333
  args = (S((b, tq, 4, 64), jnp.bfloat16), S((b, tk, 2, 64), jnp.bfloat16), S((b, tk, 2, 64), jnp.bfloat16),
          S((b, tq), jnp.int32), S((b, tk), jnp.int32))

  def fwd(q, k, v, q_ids, kv_ids):
    return attn.attention(q, k, v, is_causal=causal, impl="pallas", q_segment_ids=q_ids, kv_segment_ids=kv_ids)

  def bwd(*a):
    return jax.grad(lambda q, k, v: jnp.sum(fwd(q, k, v, *a[3:]).astype(jnp.float32)), argnums=(0, 1, 2))(*a[:3])
  forward, backward = _export(fwd, platform, *args), _export(bwd, platform, *args)
  assert forward.count(_KERNEL_CALL[platform]) == 1
  assert backward.count(_KERNEL_CALL[platform]) == 3  # forward, dK/dV, dQ
  dense = re.compile(r"x(300|320|384)x(333|384|512)x")  # any [.., q, k] tensor, padded lengths included
  assert not dense.search(forward) and not dense.search(backward)
  # The same check sees the dense mask when one is passed instead (so it can fail).
  with_mask = lambda q, k, v, m: attn.attention(q, k, v, mask=m, impl="pallas")
  assert dense.search(_export(with_mask, platform, *args[:3], S((b, 1, tq, tk), jnp.bool_)))


def test_exports_with_segments_and_bias_gradient():
  b, t = 1, 256
  args = (S((b, t, 2, 32), jnp.float32),) * 3 + (S((1, 2, t, t), jnp.float32), S((b, t), jnp.int32))
  fn = lambda q, k, v, bias, ids: jax.grad(
      lambda q, bias: jnp.sum(attn.attention(q, k, v, bias=bias, impl="pallas", q_segment_ids=ids)),
      argnums=(0, 1))(q, bias)
  for platform in ("cuda", "tpu"):
    assert f"tensor<{b}x2x{t}x{t}xf32>" in _export(fn, platform, *args)  # the bias gradient is written


def test_auto_uses_the_kernel_with_segments_on_accelerators():
  args = (S((2, 128, 2, 64), jnp.bfloat16),) * 3 + (S((2, 128), jnp.int32),)
  fn = lambda q, k, v, ids: attn.attention(q, k, v, q_segment_ids=ids)
  for platform in ("cuda", "tpu"):
    assert _export(fn, platform, *args).count(_KERNEL_CALL[platform]) == 1
  cpu = _export(fn, "cpu", *args)
  assert all(call not in cpu for call in _KERNEL_CALL.values())


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def test_bad_segment_ids():
  q = jnp.zeros((2, 8, 2, 4))
  k = jnp.zeros((2, 6, 2, 4))
  ids8, ids6 = jnp.zeros((2, 8), jnp.int32), jnp.zeros((2, 6), jnp.int32)
  for fn in (attn.attention, attn.reference, attn.flash_attention):
    with pytest.raises(ValueError, match=r"`q_segment_ids` must have shape \[batch, q_length\] = \[2, 8\]"):
      fn(q, k, k, q_segment_ids=jnp.zeros((2, 7), jnp.int32), kv_segment_ids=ids6)
    with pytest.raises(ValueError, match=r"`kv_segment_ids` must have shape \[batch, kv_length\] = \[2, 6\]"):
      fn(q, k, k, q_segment_ids=ids8, kv_segment_ids=jnp.zeros((1, 6), jnp.int32))
    with pytest.raises(TypeError, match=r"`q_segment_ids` must have an integer dtype.*got float32"):
      fn(q, k, k, q_segment_ids=ids8.astype(jnp.float32), kv_segment_ids=ids6)
    with pytest.raises(TypeError, match=r"`kv_segment_ids` must have an integer dtype.*got bool"):
      fn(q, k, k, q_segment_ids=ids8, kv_segment_ids=ids6.astype(bool))
    with pytest.raises(ValueError, match=r"`kv_segment_ids` .* is required when q_length \(8\) != kv_length \(6\)"):
      fn(q, k, k, q_segment_ids=ids8)
    with pytest.raises(ValueError, match=r"`kv_segment_ids` needs `q_segment_ids`"):
      fn(q, k, k, kv_segment_ids=ids6)
    with pytest.raises(TypeError, match=r"`q_segment_ids` must be an int array"):
      fn(q, k, k, q_segment_ids=[0] * 8, kv_segment_ids=ids6)


def test_art_block_with_segment_ids_equals_the_dense_mask():
  """zoo.art's blocks now pass segment ids: the same output as the dense `segment_mask` (ART's former path),
  padding included (the kernel's ids against the reference are checked above; this checks the plumbing)."""
  from zoo import art  # pylint: disable=g-import-not-at-top
  ids = jnp.asarray([[0] * 5 + [-1] * 3 + [0] * 12, [1] * 9 + [2] * 7 + [-1] * 4])
  x = jax.random.normal(jax.random.key(5), (2, 20, 32))
  pos = jnp.broadcast_to(jnp.arange(20)[None, :, None], (2, 20, 3))
  block = art._JointBlock(num_heads=2, impl="xla")
  params = jax.jit(block.init)(jax.random.key(6), x, pos, art.segment_mask(ids))

  @jax.jit
  def run(params, x):
    return (block.apply(params, x, pos, art.segment_mask(ids)), block.apply(params, x, pos, None, segment_ids=ids),
            block.apply(params, x, pos, None))
  dense, seg, unmasked = run(params, x)
  np.testing.assert_allclose(seg, dense, atol=1e-6)
  assert not np.allclose(seg, unmasked, atol=1e-3)  # the ids do mask something
