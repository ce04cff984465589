r"""Correctness of every Pallas kernel, compiled on this device, against its jnp reference: forward and gradients.

    python benchmarks/kernels_check.py            # on a GPU/TPU: the compiled kernels, bfloat16 and float32
    python benchmarks/kernels_check.py --dry-run  # anywhere: tiny shapes, the kernels in the Pallas interpreter

The unit tests check the kernels in the interpreter on CPU; this script is what checks the lowered Triton / Mosaic
kernels where a device is lent (``benchmarks/device.sh`` runs it first). For each kernel (attention plain / causal /
biased, the KAN B-spline layer, the multigrid convolution, restriction and prolongation, MaxSim) it runs
``impl='pallas'`` and ``impl='xla'`` on the same inputs, under ``jax.jit``, and prints the largest error of the
output and of the gradient of ``sum(out * cotangent)`` with respect to every differentiable input, relative to the
reference's largest magnitude. A row fails above the dtype's tolerance (float32 2e-3, bfloat16 3e-2: the kernels
accumulate in float32 but read bfloat16 tiles). Exit status 1 if any row fails, so the device script reports it.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

import _timing  # benchmarks/_timing.py
from zoo.kernels import attention as attn
from zoo.kernels import kan_basis as kb
from zoo.kernels import maxsim as ms
from zoo.kernels import multigrid as mg

_TOL = {"float32": 2e-3, "bfloat16": 3e-2}


def _rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))


def _compare(fn, args, argnums):
  """(forward error, worst gradient error) of ``fn(impl='pallas')`` against ``fn(impl='xla')``."""
  outs = {}
  for impl in ("pallas", "xla"):
    f = lambda *a, impl=impl: fn(*a, impl=impl)
    y = jax.jit(f)(*args)
    cot = jax.random.normal(jax.random.key(7), y.shape, jnp.float32).astype(y.dtype)
    grads = jax.jit(jax.grad(lambda *a, f=f: jnp.sum((f(*a) * cot).astype(jnp.float32)), argnums=argnums))(*args)
    outs[impl] = (y, grads)
  fwd = _rel_err(outs["pallas"][0], outs["xla"][0])
  bwd = max(_rel_err(g, r) for g, r in zip(outs["pallas"][1], outs["xla"][1]))
  return fwd, bwd


def _cases(dtype, small: bool, interpret: bool):
  """(name, fn(*args, impl), args, differentiable argnums) for every kernel."""
  key = iter(jax.random.split(jax.random.key(0), 32))
  normal = lambda shape, scale=1.0: (scale * jax.random.normal(next(key), shape)).astype(dtype)
  interp = {"interpret": True} if interpret else {}

  b, length, heads, dim = (1, 128, 2, 64) if small else (2, 2048, 8, 128)
  q, k, v = (normal((b, length, heads, dim)) for _ in range(3))
  bias = normal((1, heads, length, length), 0.5)
  yield ("attention", lambda q, k, v, impl: attn.attention(q, k, v, impl=impl, **interp), (q, k, v), (0, 1, 2))
  yield ("attention causal", lambda q, k, v, impl: attn.attention(q, k, v, is_causal=True, impl=impl, **interp),
         (q, k, v), (0, 1, 2))
  yield ("attention bias", lambda q, k, v, bb, impl: attn.attention(q, k, v, bias=bb, impl=impl, **interp),
         (q, k, v, bias), (0, 1, 2, 3))

  batch, width = (64, 32) if small else (4096, 256)
  basis = kb.Basis.bspline(5, 3)
  grid = kb.make_grid(basis, width)
  x = jax.random.uniform(next(key), (batch, width), minval=-1, maxval=1).astype(dtype)
  coef = normal((kb.num_basis(basis), width, width), width ** -0.5)
  base = normal((width, width), width ** -0.5)
  yield ("kan bspline", lambda x, c, w, impl: kb.kan(x, c, basis=basis, grid=grid, base_weight=w, impl=impl,
                                                     **interp), (x, coef, base), (0, 1, 2))

  n, ch = (16, 4) if small else (256, 16)
  field = normal((2, n - 1, n - 1, ch))
  weight = normal((3, 3, ch, ch), 1 / 3)
  yield ("multigrid conv", lambda x, w, impl: mg.conv(x, w, impl=impl, **interp), (field, weight), (0, 1))
  yield ("multigrid restrict", lambda x, impl: mg.restrict(x, impl=impl, **interp), (field,), (0,))
  coarse = normal((2, n // 2 - 1, n // 2 - 1, ch))
  yield ("multigrid prolong", lambda x, impl: mg.prolong(x, shape=(n - 1, n - 1), impl=impl, **interp), (coarse,),
         (0,))

  bq, nd, lq, ld, kd = (1, 4, 8, 32, 32) if small else (8, 256, 32, 256, 128)
  query, docs = normal((bq, lq, kd)), normal((bq, nd, ld, kd))
  yield ("maxsim", lambda qq, dd, impl: ms.maxsim(qq, dd, impl=impl, **interp), (query, docs), (0, 1))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dry-run", action="store_true", help="tiny shapes, kernels in the Pallas interpreter (any CPU)")
  p.add_argument("--dtypes", nargs="+", default=None, help="default: float32 bfloat16 on a device, float32 dry")
  args = p.parse_args(argv)
  platform = _timing.platform()
  dry = args.dry_run or platform not in ("gpu", "tpu")
  dtypes = args.dtypes or (["float32"] if dry else ["float32", "bfloat16"])
  print(f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}, "
        f"{'dry run: interpreted kernels, tiny shapes' if dry else 'compiled kernels'}")
  print("| kernel | dtype | forward rel err | gradient rel err | tolerance | ok |")
  print("|---|---|---|---|---|---|")
  failed = []
  for dtype in dtypes:
    for name, fn, fargs, argnums in _cases(jnp.dtype(dtype), small=dry, interpret=dry):
      try:
        fwd, bwd = _compare(fn, fargs, argnums)
      except Exception as e:  # pylint: disable=broad-except  # one broken lowering must not hide the others
        print(f"| {name} | {dtype} | error: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | FAIL |")
        failed.append(f"{name} {dtype}")
        continue
      ok = max(fwd, bwd) <= _TOL[dtype]
      print(f"| {name} | {dtype} | {fwd:.2e} | {bwd:.2e} | {_TOL[dtype]:.0e} | {'yes' if ok else 'FAIL'} |",
            flush=True)
      if not ok:
        failed.append(f"{name} {dtype}")
  print("all kernels match their references" if not failed else f"FAILED: {', '.join(failed)}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
