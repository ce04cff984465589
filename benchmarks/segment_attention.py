r"""Segment-id attention: FLOPs the kernels skip and the time that saves, against full attention in the same run.

    python benchmarks/segment_attention.py                                   # CPU: small, kernels interpreted
    python benchmarks/segment_attention.py --lengths 4096 8192 --dtype bfloat16 --reps 10   # on a GPU/TPU

Layout: ART-style packed sequences (zoo/art.py): one sequence of ``length`` tokens cut into segments that each
cover ``coverage`` of it (sorted ids, the last segment ragged, so a query attends to about ``coverage`` of the keys;
``--padding`` marks that fraction of the end as padding, id -1). For each coverage (10%, 25%, 50%, 100% by default)
it prints:

* ``pairs``: the fraction of (query, key) pairs the segment ids allow (exact, from the ids; before ``--causal``);
* ``tiles``: the fraction of (query tile, key tile) pairs the forward kernel visits with the backend's default tiles
  (`zoo.kernels.attention_segments.allowed_fraction`, causal tiles dropped too); ``skipped`` = 1 - tiles / (tiles
  of full attention with the same ``--causal``) is the share of full attention's matmul FLOPs (FlashAttention-2's
  count, 4 * b * h * q * k * d forward, 2.5x that backward, per visited tile) that the segment kernel does not do;
* forward and forward+backward (gradients of q, k, v) times, median of ``--reps``, of
  ``seg``  ``attention(impl='pallas', q_segment_ids=...)``: the mask computed per tile, empty tile pairs skipped;
  ``full`` the same kernel without any mask (measured in this run; the ``seg/full`` ratio is the speed-up);
  ``dense`` the same kernel with the equivalent dense ``[b, 1, q, k]`` bool mask (ART's former path: the mask is
  an O(q * k) additive bias in HBM and no tile is skipped).

On CPU the kernels run in the Pallas interpreter: their times are not a speed measurement, but ``lax.cond`` skips
the work of an empty tile there too, so ``seg/full`` still shows the work saved (the interpreter's per-tile overhead
remains). On a GPU/TPU the kernels are compiled (Triton / Mosaic), bfloat16 by default.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

import _timing  # benchmarks/_timing.py
from zoo.kernels import attention as attn
from zoo.kernels import attention_segments as segments


def packed_ids(batch: int, length: int, coverage: float, padding: float = 0.0) -> np.ndarray:
  """``[batch, length]`` int32: consecutive segments of ``round(coverage * length)`` tokens, the tail padded."""
  seg_len = max(1, int(round(coverage * length)))
  ids = np.arange(length) // seg_len
  n_pad = int(round(padding * length))
  if n_pad:
    ids[length - n_pad:] = -1
  return np.broadcast_to(ids, (batch, length)).astype(np.int32)


def pair_fraction(ids: np.ndarray) -> float:
  ids = ids[:1]  # every example has the same layout
  same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] >= 0)
  return float(same.mean())


def _measure(fn, args, reps):
  try:
    if _timing.platform() == "cpu":
      return _timing.median_cpu_seconds(fn, args, reps)
    return _timing.median_seconds(fn, args, reps)
  except Exception as e:  # pylint: disable=broad-except
    print(f"    failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
    return float("nan")


def check(q, k, v, ids, causal) -> float:
  """Relative error (L2) of the segment kernel's output against `reference` with the dense mask, in float32."""
  out = jax.jit(lambda q, k, v, ids: attn.attention(q, k, v, is_causal=causal, impl="pallas",
                                                    q_segment_ids=ids))(q, k, v, ids)
  up = lambda x: x.astype(jnp.float32)
  ref = jax.jit(lambda q, k, v, ids: attn.reference(q, k, v, is_causal=causal,
                                                    mask=segments.dense_mask(ids, ids)))(up(q), up(k), up(v), ids)
  out, ref = np.asarray(up(out)), np.asarray(ref)
  return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def run(lengths, coverages, batch, heads, head_dim, dtype, causal, padding, reps) -> bool:
  """Prints the table; returns whether the kernel matched the reference (checked at the first length)."""
  platform = _timing.platform()
  backend = "tpu" if platform == "tpu" else "gpu"
  tiles = attn.BlockSizes.get_default(backend, head_dim)
  print(f"platform {platform} ({'compiled' if platform in ('gpu', 'tpu') else 'Pallas interpreter'}), "
        f"{jnp.dtype(dtype).name}, batch {batch}, heads {heads}, head_dim {head_dim}, causal {causal}, "
        f"padding {padding:.0%}, tiles {tiles.block_q}x{tiles.block_k} (fwd), reps {reps}")
  clock = "wall time" if platform in ("gpu", "tpu") else "process CPU time"
  print(f"{clock} in ms, median; ratio = time / full attention's time in this run (< 1: faster)")
  header = (f"{'length':>6} {'cover':>6} {'pairs':>6} {'tiles':>6} {'skipped':>8} | {'fwd seg':>9} {'full':>9} "
            f"{'ratio':>6} | {'f+b seg':>9} {'full':>9} {'ratio':>6} | {'f+b dense':>9} {'ratio':>6}")
  print(header)
  print("-" * len(header))
  ok = True
  for n, length in enumerate(lengths):
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(kk, (batch, length, heads, head_dim), jnp.float32).astype(dtype)
               for kk in keys[:3])
    ct = jax.random.normal(keys[3], q.shape, jnp.float32).astype(dtype)

    def fwd_bwd(fn):
      loss = lambda q, k, v, *extra: jnp.sum(fn(q, k, v, *extra).astype(jnp.float32) * ct.astype(jnp.float32))
      return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))

    seg_fn = lambda q, k, v, ids: attn.attention(q, k, v, is_causal=causal, impl="pallas", q_segment_ids=ids)
    full_fn = lambda q, k, v: attn.attention(q, k, v, is_causal=causal, impl="pallas")
    dense_fn = lambda q, k, v, mask: attn.attention(q, k, v, mask=mask, is_causal=causal, impl="pallas")
    full_f = _measure(jax.jit(full_fn), (q, k, v), reps)
    full_fb = _measure(fwd_bwd(full_fn), (q, k, v), reps)
    seg_f, seg_fb, dense_fb = jax.jit(seg_fn), fwd_bwd(seg_fn), fwd_bwd(dense_fn)
    bq, bk = min(tiles.block_q, length), min(tiles.block_k, length)
    for cov in coverages:
      ids_np = packed_ids(batch, length, cov, padding)
      pad_to = -(-length // max(bq, bk)) * max(bq, bk)
      padded = np.pad(ids_np, ((0, 0), (0, pad_to - length)), constant_values=-1)
      visited = segments.allowed_fraction(padded, padded, bq, bk, causal=causal)
      no_segments = np.where(np.arange(pad_to) < length, 0, -1)[None]  # full attention: only the kernel's padding
      full_visited = segments.allowed_fraction(no_segments, no_segments, bq, bk, causal=causal)
      ids = jnp.asarray(ids_np)
      mask = jnp.asarray(segments.dense_mask(ids, ids))
      tf = _measure(seg_f, (q, k, v, ids), reps)
      tfb = _measure(seg_fb, (q, k, v, ids), reps)
      tdb = _measure(dense_fb, (q, k, v, mask), reps)
      if n == 0 and cov == coverages[0]:
        err, tol = check(q, k, v, ids, causal), (2e-2 if jnp.dtype(dtype).itemsize < 4 else 1e-4)
        ok = err <= tol
        print(f"    check: |seg - reference| / |reference| = {err:.2e} ({'ok' if ok else 'FAILED'}, tolerance "
              f"{tol:.0e})", flush=True)
      skipped = 1 - visited / full_visited
      print(f"{length:>6} {cov:>6.0%} {pair_fraction(ids_np):>6.1%} {visited:>6.1%} {skipped:>8.1%} | "
            f"{1e3 * tf:>9.2f} {1e3 * full_f:>9.2f} {tf / full_f:>6.2f} | {1e3 * tfb:>9.2f} {1e3 * full_fb:>9.2f} "
            f"{tfb / full_fb:>6.2f} | {1e3 * tdb:>9.2f} {tdb / full_fb:>6.2f}", flush=True)
  return ok


def main(argv=None):
  on_device = _timing.platform() in ("gpu", "tpu")
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192] if on_device else [1024])
  p.add_argument("--coverages", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
  p.add_argument("--batch", type=int, default=4 if on_device else 1)
  p.add_argument("--heads", type=int, default=8 if on_device else 2)
  p.add_argument("--head-dim", type=int, default=64 if on_device else 32)
  p.add_argument("--dtype", default="bfloat16" if on_device else "float32")
  p.add_argument("--causal", action="store_true")
  p.add_argument("--padding", type=float, default=0.0, help="fraction of each sequence marked as padding (-1)")
  p.add_argument("--reps", type=int, default=10 if on_device else 5)
  a = p.parse_args(argv)
  if not run(a.lengths, a.coverages, a.batch, a.heads, a.head_dim, jnp.dtype(a.dtype), a.causal, a.padding, a.reps):
    sys.exit(1)


if __name__ == "__main__":
  main()
