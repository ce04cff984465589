r"""Multigrid speed and memory: a V-cycle and an MgNO layer (forward+backward), kernels vs the lax.conv reference.

    python benchmarks/multigrid.py                              # the device's default sweep
    python benchmarks/multigrid.py --sizes 64 128 256 --channels 16 --batch 4 --reps 5

Two workloads per grid size ``n x n`` (Dirichlet, batch ``--batch``):

* ``v_cycle``: one classic V-cycle (``zoo.kernels.multigrid.v_cycle``: 5-point Laplacian, full weighting, bilinear
  prolongation, 2 + 2 damped-Jacobi sweeps, down to 1-3 points) on ``--channels`` right-hand sides, forward only
  (it is a solver).
* ``mgno_layer``: one ``zoo.mgno.MgNOLayer`` (``--channels`` in and out, 5 levels, GELU, field bias), forward +
  backward (gradients of the parameters and the input), the training step's cost.

Implementations, measured in the same run:

* ``xla``     ``impl='xla'``: ``lax.conv_general_dilated`` (the reference; cuDNN on GPU).
* ``kernel``  ``impl='pallas'``: the Triton kernel on GPU, the Mosaic kernel on TPU. On CPU a Pallas kernel only runs
              in the interpreter, which says nothing about speed: CPU runs skip it.
* ``glue``    ``backend='jnp'``: the kernels' decomposition (padding, even/odd phases, shifted matmuls) with the
              primitive written in jnp and compiled by XLA: what the reduction to shifted matmuls costs by itself.

Printed per row: median time over ``--reps`` runs after a warm-up, the ratio ``xla / impl`` (>1: faster than the
reference), and XLA's compiled memory (``memory_analysis()``: temporaries + outputs, the same arguments for all).
CPU runs use small sizes (64-256) by default; the issue's 64^2-1024^2 sweep is the GPU/TPU default.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import _timing  # benchmarks/_timing.py
from zoo import mgno
from zoo.kernels import multigrid as mg


def _kw(impl: str):
  if impl == "glue":
    return dict(backend="jnp")
  return dict(impl={"kernel": "pallas", "xla": "xla"}[impl])


def _v_cycle_fn(impl: str):
  return jax.jit(lambda f: mg.v_cycle(f, stencil=mg.LAPLACIAN_2D, **_kw(impl)))


def _layer_fn(impl: str, channels: int):
  layer = mgno.MgNOLayer(channels, levels=5, **_kw(impl))

  def loss(params, x):
    return jnp.sum(layer.apply(params, x).astype(jnp.float32))

  return layer, jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def main(argv=None) -> None:
  platform = _timing.platform()
  accelerator = platform in ("gpu", "tpu")
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024] if accelerator else
                      [64, 128, 256])
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--reps", type=int, default=5)
  args = parser.parse_args(argv)
  dtype = jnp.bfloat16 if accelerator else jnp.float32
  impls = ["xla", "kernel", "glue"] if accelerator else ["xla", "glue"]
  print(f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}, dtype {jnp.dtype(dtype).name}, "
        f"batch {args.batch}, channels {args.channels}")
  if not accelerator:
    print("CPU: the Pallas kernels only run in the interpreter here, so 'kernel' is not timed; small sizes only.")
  print("| workload | n | impl | ms | xla / impl | MiB |")
  print("|---|---|---|---|---|---|")
  for n in args.sizes:
    key = jax.random.key(n)
    f = (jax.random.normal(key, (args.batch, n - 1, n - 1, args.channels)) / n ** 2).astype(dtype)
    x = jax.random.normal(key, (args.batch, n, n, args.channels)).astype(dtype)
    base = {}
    for workload in ("v_cycle", "mgno_layer"):
      for impl in impls:
        if workload == "v_cycle":
          fn, fargs = _v_cycle_fn(impl), (f,)
        else:
          layer, fn = _layer_fn(impl, args.channels)
          params = jax.jit(layer.init)(jax.random.key(0), x)
          fargs = (params, x)
        try:
          t = _timing.median_seconds(fn, fargs, args.reps)
          mem = _timing.memory_mib(fn, fargs)
        except Exception as e:  # pylint: disable=broad-except
          print(f"| {workload} | {n} | {impl} | failed: {type(e).__name__}: {str(e)[:80]} | | |")
          continue
        if impl == "xla":
          base[workload] = t
        print(f"| {workload} | {n} | {impl} | {1e3 * t:.2f} | {base[workload] / t:.2f} | {mem:.1f} |", flush=True)


if __name__ == "__main__":
  main()
