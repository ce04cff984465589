r"""The jnp references of ``attention`` and ``kan_basis`` now against the same files at an earlier commit, one run.

    python benchmarks/references_vs_commit.py --rev 1c15525

For a change to a reference (its dtype handling, its input checks) that must not cost speed: each workload is
jitted forward+backward, timed after a warm-up, median of ``--reps`` runs; ``before / after`` > 1 means the current
code is faster. The last row times what the float64 path now costs (float64 arithmetic, under ``jax_enable_x64``)
against float32 on the same inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import _timing  # benchmarks/_timing.py
from zoo.kernels import attention as new_attention
from zoo.kernels import kan_basis as new_kan_basis


def _load_at(rev: str, path: str, name: str, directory: str):
  source = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
  file = f"{directory}/{name}.py"
  with open(file, "w") as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location(name, file)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rev", required=True, help="the earlier commit")
  p.add_argument("--reps", type=int, default=20)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as d:
    old_attention = _load_at(args.rev, "kernels/attention.py", "_attention_before", d)
    old_kan_basis = _load_at(args.rev, "kernels/kan_basis.py", "_kan_basis_before", d)
  print(f"device: {jax.devices()[0].platform}, jax {jax.__version__}, before = {args.rev}")
  print("| workload | before ms | after ms | before / after |\n|---|---|---|---|")

  def row(name, before, after, *xs):
    b, a = (1e3 * _timing.median_seconds(fn, xs, args.reps) for fn in (before, after))
    print(f"| {name} | {b:.3f} | {a:.3f} | {b / a:.2f} |")

  for length in (256, 1024):
    q = jnp.asarray(rng.normal(size=(2, length, 4, 64)), jnp.float32)
    grad = lambda m: jax.jit(jax.grad(lambda q, k, v: m.reference(q, k, v, is_causal=True).sum(), argnums=(0, 1, 2)))
    row(f"attention reference fwd+bwd, float32, len {length}", grad(old_attention), grad(new_attention), q, q, q)
  for n in (64, 256):
    x = jnp.asarray(rng.uniform(-1, 1, size=(1024, n)), jnp.float32)
    coef = jnp.asarray(rng.normal(size=(8, n, n)), jnp.float32)
    grid = new_kan_basis.make_grid(new_kan_basis.Basis.bspline(5, 3), n)
    grad = lambda m: jax.jit(jax.grad(
        lambda x, c: m.reference(x, c, basis=m.Basis.bspline(5, 3), grid=grid).sum(), argnums=(0, 1)))
    row(f"kan reference fwd+bwd, float32, 1024 x {n} -> {n}", grad(old_kan_basis), grad(new_kan_basis), x, coef)
  with jax.enable_x64(True):
    q = jnp.asarray(rng.normal(size=(2, 256, 4, 64)))
    fwd = jax.jit(lambda q: new_attention.reference(q, q, q))
    f32, f64 = (1e3 * _timing.median_seconds(fwd, (x,), args.reps) for x in (q.astype(jnp.float32), q))
    print(f"| attention reference fwd, len 256, now: float32 {f32:.3f} ms vs float64 {f64:.3f} ms | - | - | "
          f"{f32 / f64:.2f} |")


if __name__ == "__main__":
  main()
