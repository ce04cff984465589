r"""KAN layer speed and memory: the fused Pallas kernel against the naive jnp layer and an MLP of equal size, one run.

    python benchmarks/kan.py                          # the device's default sweep
    python benchmarks/kan.py --batches 1024 4096 --widths 64 256 --reps 5

Implementations of one layer ``[batch, width] -> [batch, width]`` (B-splines, G = 5, order 3, so K = 8 basis
functions, with the silu branch: ``(K + 1) width^2`` parameters), timed forward+backward (gradients of x, the
coefficients and the base weight) after a warm-up, median of ``--reps`` runs, bfloat16 on GPU/TPU, float32 on CPU:

* ``kernel``  ``zoo.kernels.kan_basis.kan(impl='pallas')``: Triton on GPU, Mosaic on TPU. On CPU it can only run in
              the Pallas interpreter, which says nothing about speed: CPU runs skip its timing and report its
              compiled (interpreted) memory only.
* ``naive``   ``zoo.kernels.kan_basis.reference``: plain jnp, writes the [batch, width, K] basis tensor.
* ``mlp``     ``Dense(width -> h) -> relu -> Dense(h -> width)`` with ``h = (K + 1) width / 2``: the same parameter
              count.

Printed per size: time of each, ratios ``naive / kernel`` and ``mlp / kernel`` (>1: the kernel is faster), and
compiled memory (``memory_analysis()``: temporaries + outputs; arguments excluded, the same for all). A second
table compiles (without running) forward+backward of ``kernel`` and ``naive`` for K = 4..32 at one size: the naive
layer's memory grows with K (the basis tensor and its gradient), the kernel's only by the coefficients.

Targets (issue 5): the kernel faster than the naive path, its memory flat in K. Measured only where a GPU/TPU is
lent; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import _timing  # benchmarks/_timing.py
from zoo.kernels import kan_basis as kb


def _layer_fns(basis, grid, impl: str, interpret: bool):
  def loss(x, coef, wb):
    if impl == "naive":
      y = kb.reference(x, coef, basis=basis, grid=grid, base_weight=wb)
    else:
      y = kb.kan(x, coef, basis=basis, grid=grid, base_weight=wb, impl="pallas", interpret=interpret)
    return jnp.sum(y.astype(jnp.float32))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def _mlp_fn():
  def loss(x, w1, w2):
    return jnp.sum(jnp.dot(jax.nn.relu(jnp.dot(x, w1)), w2).astype(jnp.float32))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def _operands(batch: int, width: int, k: int, dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (batch, width)), dtype)
  coef = jnp.asarray(0.1 * rng.normal(size=(k, width, width)), dtype)
  wb = jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), dtype)
  hidden = (k + 1) * width // 2
  w1 = jnp.asarray(rng.normal(size=(width, hidden)) / np.sqrt(width), dtype)
  w2 = jnp.asarray(rng.normal(size=(hidden, width)) / np.sqrt(hidden), dtype)
  return x, coef, wb, w1, w2


def run_sweep(batches, widths, reps: int, dtype):
  platform = _timing.platform()
  on_device = platform in ("gpu", "tpu")
  basis = kb.Basis.bspline(5, 3)
  k = basis.size
  rows = []
  print(f"\n## forward+backward, {platform}, {jnp.dtype(dtype).name}, B-splines G=5 order 3 (K={k}), median of "
        f"{reps}")
  print("| batch | width | params | kernel ms | naive ms | mlp ms | naive/kernel | mlp/kernel | kernel MiB | "
        "naive MiB | mlp MiB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for width in widths:
    grid = kb.make_grid(basis, width)
    kernel = _layer_fns(basis, grid, "kernel", interpret=not on_device)
    naive = _layer_fns(basis, grid, "naive", interpret=False)
    mlp = _mlp_fn()
    for batch in batches:
      x, coef, wb, w1, w2 = _operands(batch, width, k, dtype)
      t_naive = _timing.median_seconds(naive, (x, coef, wb), reps)
      t_mlp = _timing.median_seconds(mlp, (x, w1, w2), reps)
      t_kernel = _timing.median_seconds(kernel, (x, coef, wb), reps) if on_device else float("nan")
      m_kernel = _timing.memory_mib(kernel, (x, coef, wb))
      m_naive = _timing.memory_mib(naive, (x, coef, wb))
      m_mlp = _timing.memory_mib(mlp, (x, w1, w2))
      row = dict(batch=batch, width=width, params=(k + 1) * width * width, kernel=t_kernel * 1e3,
                 naive=t_naive * 1e3, mlp=t_mlp * 1e3, m_kernel=m_kernel, m_naive=m_naive, m_mlp=m_mlp)
      rows.append(row)
      print(f"| {batch} | {width} | {row['params']} | {row['kernel']:.2f} | {row['naive']:.2f} | {row['mlp']:.2f} | "
            f"{t_naive / t_kernel:.2f} | {t_mlp / t_kernel:.2f} | {m_kernel:.1f} | {m_naive:.1f} | {m_mlp:.1f} |",
            flush=True)
  return rows


def run_memory_vs_basis(batch: int, width: int, dtype):
  on_device = _timing.platform() in ("gpu", "tpu")
  print(f"\n## compiled memory of forward+backward vs the number of basis functions (batch {batch}, width {width})")
  print("| G | K | kernel MiB | naive MiB | naive/kernel |")
  print("|---|---|---|---|---|")
  out = []
  for g in (1, 5, 13, 29):
    basis = kb.Basis.bspline(g, 3)
    grid = kb.make_grid(basis, width)
    x, coef, wb, _, _ = _operands(batch, width, basis.size, dtype)
    m_kernel = _timing.memory_mib(_layer_fns(basis, grid, "kernel", interpret=not on_device), (x, coef, wb))
    m_naive = _timing.memory_mib(_layer_fns(basis, grid, "naive", interpret=False), (x, coef, wb))
    out.append((g, basis.size, m_kernel, m_naive))
    print(f"| {g} | {basis.size} | {m_kernel:.1f} | {m_naive:.1f} | {m_naive / m_kernel:.1f} |", flush=True)
  return out


def main():
  platform = _timing.platform()
  on_device = platform in ("gpu", "tpu")
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batches", type=int, nargs="+",
                      default=[1024, 4096, 16384, 65536] if on_device else [1024, 4096])
  parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024] if on_device else [64, 256])
  parser.add_argument("--reps", type=int, default=20 if on_device else 5)
  parser.add_argument("--memory-batch", type=int, default=16384 if on_device else 2048)
  parser.add_argument("--memory-width", type=int, default=256 if on_device else 128)
  args = parser.parse_args()
  dtype = jnp.bfloat16 if on_device else jnp.float32
  print(f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}")
  if not on_device:
    print("CPU: small sizes; the kernel runs only in the Pallas interpreter, so its time is not measured (nan) and "
          "its memory is that of the interpreted kernel compiled for CPU (a proxy: the same blocked buffers).")
  run_sweep(args.batches, args.widths, args.reps, dtype)
  run_memory_vs_basis(args.memory_batch, args.memory_width, dtype)


if __name__ == "__main__":
  main()
