"""Tests of zoo.kernels.maxsim: the Pallas kernels in interpret mode against `reference` (values and gradients,
f32/bf16, ragged documents, empty documents, odd shapes), the dispatch, and the Triton/Mosaic lowering by
``jax.export``. Interpreted shapes are tiny (16-wide GPU tiles) and every check runs under one ``jax.jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import maxsim as ms

GPU_TILES = ms.BlockSizes(16, 16)  # several tiles per tiny sequence
TPU_TILES = ms.BlockSizes(16, 128)  # the smallest tiles the TPU kernel allows
CUDA_CHECKS = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
_KERNEL_CALL = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


def _inputs(seed, b, lq, n, ld, k, dtype=jnp.float32):
  ks = jax.random.split(jax.random.key(seed), 5)
  q = jax.random.normal(ks[0], (b, lq, k), jnp.float32).astype(dtype)
  d = jax.random.normal(ks[1], (b, n, ld, k), jnp.float32).astype(dtype)
  lengths = jax.random.randint(ks[2], (b, n), 1, ld + 1)
  doc_mask = (jnp.arange(ld) < lengths[..., None]).at[0, n - 1].set(False)  # ragged, one empty document
  query_mask = jax.random.bernoulli(ks[3], 0.8, (b, lq))
  ct = jax.random.normal(ks[4], (b, n))
  return q, d, query_mask, doc_mask, ct


def _value_and_grads(fn, q, d, query_mask, doc_mask, ct):
  loss = lambda q, d: jnp.sum(fn(q, d, query_mask=query_mask, doc_mask=doc_mask) * ct)
  return jax.value_and_grad(loss, argnums=(0, 1))(q, d)


def _rel_err(x, ref):
  x, ref = np.asarray(x, np.float32), np.asarray(ref, np.float32)
  return float(np.linalg.norm(x - ref) / (np.linalg.norm(ref) + 1e-30))


def _kernel(backend, tiles):
  return lambda q, d, **kw: ms.maxsim(q, d, impl="pallas", block_sizes={"gpu": tiles} if backend == "gpu" else None,
                                      **kw) if backend == "gpu" else _tpu(q, d, tiles=tiles, **kw)


def _tpu(q, d, *, tiles, query_mask, doc_mask):
  maxima, _ = ms.token_maxsim(q, d, doc_mask=doc_mask, block_sizes=tiles, backend="tpu", interpret=True)
  return jnp.sum(jnp.where(query_mask[:, None, :], maxima, 0.0), axis=-1)


# (seed, batch, q_len, num_docs, d_len, dim): lengths not multiples of the tiles, dim needing padding (24)
CASES = {"odd": (0, 2, 19, 3, 37, 24), "one_tile": (1, 1, 8, 2, 10, 16)}


@pytest.mark.parametrize("backend,name", [("gpu", "odd"), ("tpu", "odd"),
                                          pytest.param("gpu", "one_tile", marks=pytest.mark.slow)])
def test_kernel_matches_reference_f32(backend, name):
  tiles = GPU_TILES if backend == "gpu" else TPU_TILES
  args = _inputs(*CASES[name])
  (v, grads), (rv, rgrads) = jax.jit(lambda *a: (_value_and_grads(_kernel(backend, tiles), *a),  # one compile
                                                  _value_and_grads(ms.reference, *a)))(*args)
  np.testing.assert_allclose(v, rv, rtol=1e-5, atol=1e-4)
  for g, r in zip(grads, rgrads):
    assert g.shape == r.shape
    np.testing.assert_allclose(g, r, atol=1e-5)


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_kernel_bf16_as_close_as_the_reference(backend):
  """In bfloat16 the kernel must be as close to the float32 truth as the XLA reference in bfloat16."""
  tiles = GPU_TILES if backend == "gpu" else TPU_TILES
  q, d, qm, dm, ct = _inputs(*CASES["odd"], dtype=jnp.bfloat16)

  @jax.jit
  def all_three(q, d, qm, dm, ct):  # one compile: kernel and reference in bfloat16, reference in float32
    return (_value_and_grads(_kernel(backend, tiles), q, d, qm, dm, ct),
            _value_and_grads(ms.reference, q, d, qm, dm, ct),
            _value_and_grads(ms.reference, q.astype(jnp.float32), d.astype(jnp.float32), qm, dm, ct))

  ker, ref, true = all_three(q, d, qm, dm, ct)
  assert ker[1][0].dtype == jnp.bfloat16
  for a, r, t in zip(jax.tree.leaves(ker), jax.tree.leaves(ref), jax.tree.leaves(true)):
    assert _rel_err(a, t) <= 1.5 * _rel_err(r, t) + 2e-3


def test_each_query_token_sends_gradient_to_one_document_token():
  """The custom_vjp routes d score / d q_i to the argmax token only: per (document, query token) one nonzero row."""
  q, d, _, dm, _ = _inputs(*CASES["odd"])
  b, lq, n, ld = q.shape[0], q.shape[1], d.shape[1], d.shape[2]

  def per_token_grad(i):  # the gradient of query token i's max (document 0 of batch 0) wrt that document's tokens
    f = lambda d: ms.token_maxsim(q, d, doc_mask=dm, block_sizes=GPU_TILES, interpret=True)[0][0, 0, i]
    return jax.grad(f)(d)[0, 0]
  @jax.jit
  def grads_and_argmax(q, d):  # one compile
    return (jax.vmap(per_token_grad)(jnp.arange(lq)),  # [lq, ld, k]
            ms.token_maxsim(q, d, doc_mask=dm, block_sizes=GPU_TILES, interpret=True)[1])

  grads, arg = grads_and_argmax(q, d)
  rows = np.abs(np.asarray(grads)).sum(-1) > 0
  assert (rows.sum(-1) == 1).all()
  np.testing.assert_array_equal(rows.argmax(-1), np.asarray(arg)[0, 0])
  sims = np.einsum("qk,jk->qj", np.asarray(q[0]), np.asarray(d[0, 0]))
  sims[:, ~np.asarray(dm[0, 0])] = -np.inf
  np.testing.assert_array_equal(np.asarray(arg)[0, 0], sims.argmax(-1))
  del b, n, ld


def test_pairwise_is_every_query_against_every_doc():
  q, d, qm, dm, _ = _inputs(*CASES["odd"])
  docs, dmask = d[0], dm[0]  # [3, 37, 24]

  @jax.jit
  def run(q, docs):  # one compile: the pairwise kernel and each query's reference scores
    out = ms.maxsim_pairwise(q, docs, query_mask=qm, doc_mask=dmask, impl="pallas", block_sizes={"gpu": GPU_TILES})
    wants = [ms.reference(q[i:i + 1], docs[None], query_mask=qm[i:i + 1], doc_mask=dmask[None])[0]
             for i in range(2)]
    return out, wants

  out, wants = run(q, docs)
  assert out.shape == (2, 3)
  for i in range(2):
    np.testing.assert_allclose(out[i], wants[i], rtol=1e-5, atol=1e-4)
  assert float(out[0, 2]) == 0.0  # the empty document


def test_auto_and_xla_on_cpu_are_the_reference_and_vmap():
  q, d, qm, dm, _ = _inputs(*CASES["one_tile"])
  run = lambda q, d: ms.maxsim(q, d, impl="pallas", block_sizes={"gpu": GPU_TILES})

  @jax.jit
  def everything(q, d):  # one compile: the reference, 'auto', 'xla', and the vmapped kernel
    return (ms.reference(q, d, query_mask=qm, doc_mask=dm), ms.maxsim(q, d, query_mask=qm, doc_mask=dm),
            ms.maxsim(q, d, query_mask=qm, doc_mask=dm, impl="xla"),
            jax.vmap(run)(jnp.stack([q, 2 * q]), jnp.stack([d, d])), ms.reference(q, d))

  ref, auto, xla, stacked, unmasked = everything(q, d)
  np.testing.assert_array_equal(auto, ref)
  np.testing.assert_array_equal(xla, ref)
  np.testing.assert_allclose(stacked[1], 2 * unmasked, rtol=1e-5, atol=1e-4)


def test_auto_logs_why_it_falls_back(caplog):
  q, d, _, _, _ = _inputs(*CASES["one_tile"])
  with caplog.at_level("INFO", logger="zoo.kernels.maxsim"):
    jax.export.export(jax.jit(lambda q, d: ms.maxsim(q, d)), platforms=("tpu",))(q.astype(jnp.float16),
                                                                              d.astype(jnp.float16))
  assert "float16" in caplog.text and "XLA reference" in caplog.text


def test_bad_inputs():
  q, d, _, _, _ = _inputs(*CASES["one_tile"])
  with pytest.raises(ValueError, match="impl"):
    ms.maxsim(q, d, impl="cuda")
  with pytest.raises(ValueError, match=r"\[batch, num_docs, d_length, dim\] \(rank 4\)"):
    ms.maxsim(q, d[0])
  with pytest.raises(ValueError, match="dim=16"):
    ms.maxsim(q, d[..., :8])
  with pytest.raises(TypeError, match="floating"):
    ms.maxsim(q.astype(jnp.int32), d)
  with pytest.raises(ValueError, match="doc_mask"):
    ms.maxsim(q, d, doc_mask=jnp.ones((1, 2), bool))
  with pytest.raises(ValueError, match="empty"):
    ms.maxsim(q[:0], d[:0])
  with pytest.raises(ValueError, match="one dtype"):
    ms.maxsim(q.astype(jnp.bfloat16), d, impl="pallas")
  with pytest.raises(ValueError, match="powers of two"):
    ms.maxsim(q, d, impl="pallas", block_sizes=ms.BlockSizes(24, 16))
  with pytest.raises(ValueError, match="multiples of 128"):
    ms.token_maxsim(q, d, backend="tpu", block_sizes=ms.BlockSizes(16, 64))
  with pytest.raises(ValueError, match="positive int"):
    ms.BlockSizes(0, 16)


# ---------------------------------------------------------------------------------------------------------------
# Lowering: Triton and Mosaic accept the kernel (forward and backward), and 'auto' picks it on accelerators
# ---------------------------------------------------------------------------------------------------------------

S = jax.ShapeDtypeStruct


def _export(fn, platform, *args):
  checks = CUDA_CHECKS if platform == "cuda" else []
  return jax.export.export(jax.jit(fn), platforms=(platform,), disabled_checks=checks)(*args).mlir_module()


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("shape", [(4, 32, 100, 180, 128, jnp.bfloat16), (2, 7, 5, 300, 96, jnp.float32)],
                         ids=lambda s: "x".join(map(str, s[:5])))
def test_exports(platform, shape):
  b, lq, n, ld, k, dtype = shape
  args = (S((b, lq, k), dtype), S((b, n, ld, k), dtype), S((b, n, ld), jnp.bool_))
  fwd = lambda q, d, m: ms.maxsim(q, d, doc_mask=m, impl="auto")
  bwd = lambda q, d, m: jax.grad(lambda q, d: jnp.sum(fwd(q, d, m)), argnums=(0, 1))(q, d)
  assert _export(fwd, platform, *args).count(_KERNEL_CALL[platform]) == 1
  assert _export(bwd, platform, *args).count(_KERNEL_CALL[platform]) == 1  # the backward is a gather/scatter
  assert _KERNEL_CALL[platform] not in _export(fwd, "cpu", *args)


def test_training_memory_does_not_hold_the_similarity_matrix():
  """Compiled temp memory of forward+backward (the interpreted kernel compiled for CPU, a proxy of the device).

  The reference keeps the [b, n, lq, ld] similarities (and their max mask) for its backward pass; the kernel keeps
  the argmax [b, n, lq] and gathers/scatters rows, so its memory grows with the documents [b, n, ld, k], not with
  lq * ld. Measured: ld 128 -> 512 grows the kernel 2.4 -> 3.5 MB and the reference 27 -> 109 MB.
  """
  def temp(fn, ld):
    q, d = S((1, 256, 16), jnp.float32), S((1, 64, ld, 16), jnp.float32)
    grad = jax.jit(jax.grad(lambda q, d: jnp.sum(fn(q, d)), argnums=(0, 1)))
    return grad.lower(q, d).compile().memory_analysis().temp_size_in_bytes
  kernel = lambda q, d: ms.maxsim(q, d, impl="pallas")
  k1, k2, r1, r2 = temp(kernel, 128), temp(kernel, 512), temp(ms.reference, 128), temp(ms.reference, 512)
  similarity = 64 * 256 * 512 * 4  # bytes of the float32 similarities at ld = 512
  assert r2 >= similarity and r2 > 3 * r1, (r1, r2)
  assert k2 < similarity / 4 and (k2 - k1) < (r2 - r1) / 20, (k1, k2, r1, r2)
