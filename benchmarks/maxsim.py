r"""MaxSim (ColBERT late interaction) speed and memory: zoo's fused Pallas kernel against the einsum + max reference.

    python benchmarks/maxsim.py                          # the device's default sweep
    python benchmarks/maxsim.py --docs 1000 --doc-lengths 180 300 --dim 128

Both implementations score ``batch`` queries of ``q_len`` tokens against ``docs`` documents each (ColBERT
reranking: ``maxsim(query [b, lq, k], docs [b, n, ld, k])``), bfloat16 on GPU/TPU and float32 on CPU, timed after a
warm-up call, median of ``--reps`` runs. ``zoo``: ``maxsim(impl='pallas')`` (Triton on GPU, Mosaic on TPU, the
Pallas interpreter on CPU, where its time says only that it runs); ``xla``: ``zoo.kernels.maxsim.reference``
(einsum to the [b, n, lq, ld] similarities, then max). Printed per shape: forward (reranking) and forward+backward
(training) time, ``x zoo`` = time / zoo's time (>1: zoo is faster), and the compiled temporary memory of each
(``memory_analysis().temp_size_in_bytes``, inputs and outputs excluded).
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import _timing  # benchmarks/_timing.py
from zoo.kernels import maxsim as ms


def _measure(fn, b, lq, n, ld, k, dtype, reps):
  keys = jax.random.split(jax.random.key(0), 2)
  q = jax.random.normal(keys[0], (b, lq, k), jnp.float32).astype(dtype)
  d = jax.random.normal(keys[1], (b, n, ld, k), jnp.float32).astype(dtype)
  fwd = jax.jit(fn)
  bwd = jax.jit(jax.grad(lambda q, d: jnp.sum(fn(q, d)), argnums=(0, 1)))
  out = []
  for f in (fwd, bwd):
    try:
      out.append(_timing.median_seconds(f, (q, d), reps))
    except Exception as e:  # pylint: disable=broad-except
      out.append(type(e).__name__)
    try:
      out.append(f.lower(q, d).compile().memory_analysis().temp_size_in_bytes)
    except Exception as e:  # pylint: disable=broad-except
      out.append(type(e).__name__)
  return out


def _t(s):
  return f"{s * 1e3:10.2f}" if isinstance(s, float) else f"{s[:10]:>10}"


def _m(x):
  return f"{x / 2**20:9.1f}" if isinstance(x, int) else f"{x[:9]:>9}"


def _r(s, ref):
  return f"{s / ref:6.2f}" if isinstance(s, float) and isinstance(ref, float) else f"{'-':>6}"


def main(argv=None):
  platform = jax.devices()[0].platform
  accel = platform in ("gpu", "tpu")
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=8 if accel else 1)
  p.add_argument("--q-len", type=int, default=32)
  p.add_argument("--docs", type=int, default=1000 if accel else 16)
  p.add_argument("--doc-lengths", type=int, nargs="+", default=[128, 256, 512] if accel else [64, 128])
  p.add_argument("--dim", type=int, default=128 if accel else 64)
  p.add_argument("--dtype", default="bfloat16" if accel else "float32")
  p.add_argument("--reps", type=int, default=10 if accel else 2)
  args = p.parse_args(argv)
  dtype = jnp.dtype(args.dtype)
  print(f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}, dtype {dtype.name}")
  if not accel:
    print("NOTE: no GPU/TPU: 'zoo' runs in the Pallas interpreter; its times only show that it runs. The memory "
          "columns are XLA's compiled estimates for CPU.")
  impls = {"zoo": lambda q, d: ms.maxsim(q, d, impl="pallas"), "xla": ms.reference}
  print(f"\n{'impl':>5} {'b':>3} {'lq':>4} {'n':>5} {'ld':>5} {'k':>4} | {'fwd ms':>10} {'x zoo':>6} {'temp MiB':>9} | "
        f"{'fwd+bwd ms':>10} {'x zoo':>6} {'temp MiB':>9}")
  for ld in args.doc_lengths:
    res = {name: _measure(fn, args.batch, args.q_len, args.docs, ld, args.dim, dtype, args.reps)
           for name, fn in impls.items()}
    zf, _, zb, _ = res["zoo"]
    for name, (sf, mf, sb, mb) in res.items():
      print(f"{name:>5} {args.batch:3d} {args.q_len:4d} {args.docs:5d} {ld:5d} {args.dim:4d} | {_t(sf)} {_r(sf, zf)} "
            f"{_m(mf)} | {_t(sb)} {_r(sb, zb)} {_m(mb)}")
    sys.stdout.flush()


if __name__ == "__main__":
  main()
