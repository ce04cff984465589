r"""Attention speed and memory: zoo's Pallas kernel against XLA, jax.nn and jax's own Pallas op, in one run.

    python benchmarks/attention.py                      # the device's default sweep
    python benchmarks/attention.py --lengths 512 1024 --head-dims 64 --causal

Implementations, all on the same inputs (layout [batch, length, heads, head_dim], bfloat16 on GPU/TPU, float32 on
CPU), timed after a warm-up call, median of ``--reps`` runs:

* ``zoo``        ``zoo.kernels.attention.attention(impl='pallas')``: Triton on GPU, Mosaic on TPU, the Pallas
                 interpreter on CPU (so CPU times say only that it runs; they are not a speed measurement).
* ``xla``        ``zoo.kernels.attention.reference``: plain jnp, materialises the [length, length] logits.
* ``jax.nn``     ``jax.nn.dot_product_attention``: ``implementation='cudnn'`` on CUDA GPUs, XLA elsewhere.
* ``jax-pallas`` jax's own Pallas op: ``ops.gpu.attention.mha`` (GPU), ``ops.tpu.flash_attention`` (TPU, its
                 [batch, heads, length, dim] layout prepared outside the timing), ``mha`` interpreted on CPU.

For each it prints the forward and forward+backward (gradients of q, k, v) time, the achieved TFLOP/s
(FlashAttention-2's count: forward 4 * batch * heads * q_len * kv_len * head_dim, halved when causal; backward 2.5x
the forward), the compiled temporary memory of forward+backward (``memory_analysis().temp_size_in_bytes``,
inputs and outputs excluded, identical for all), and time ratios against ``zoo`` (``>1``: zoo is faster).
A section after the table compiles (without running) forward+backward of ``zoo`` and ``xla`` up to 16k tokens
and prints their temporary memory: O(length) against O(length^2).

Targets (issue 4), on an H100: zoo at least at parity with jax-pallas, within 1.5x of cudnn, O(length) memory.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import _timing  # benchmarks/_timing.py
from zoo.kernels import attention as attn


def _jax_pallas(platform: str, causal: bool):
  """jax's own Pallas attention for ``platform``, as a function of [b, t, h, d] inputs (None if unavailable)."""
  if platform == "gpu" or platform == "cpu":
    from jax.experimental.pallas.ops.gpu import attention as gpu_attn  # pylint: disable=g-import-not-at-top
    interpret = platform == "cpu"
    return lambda q, k, v: gpu_attn.mha(q, k, v, None, sm_scale=q.shape[-1] ** -0.5, causal=causal,
                                        interpret=interpret)
  if platform == "tpu":
    from jax.experimental.pallas.ops.tpu import flash_attention as tpu_attn  # pylint: disable=g-import-not-at-top
    return lambda q, k, v: tpu_attn.flash_attention(q, k, v, causal=causal, sm_scale=q.shape[-1] ** -0.5)
  return None


def _impls(platform: str, causal: bool):
  impls = {
      "zoo": lambda q, k, v: attn.attention(q, k, v, is_causal=causal, impl="pallas"),
      "xla": lambda q, k, v: attn.reference(q, k, v, is_causal=causal),
      "jax.nn": lambda q, k, v: jax.nn.dot_product_attention(
          q, k, v, is_causal=causal, implementation="cudnn" if platform == "gpu" else None),
      "jax-pallas": _jax_pallas(platform, causal),
  }
  return {k: v for k, v in impls.items() if v is not None}


def _flops(b, t, h, d, causal):
  fwd = 4 * b * h * t * t * d * (0.5 if causal else 1.0)
  return fwd, 3.5 * fwd


def _measure(name, fn, platform, b, t, h, d, dtype, causal, reps):
  """(fwd seconds, fwd+bwd seconds, fwd+bwd temp bytes), with 'error' strings where a run fails."""
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(kk, (b, t, h, d), jnp.float32).astype(dtype) for kk in keys[:3])
  ct = jax.random.normal(keys[3], (b, t, h, d), jnp.float32).astype(dtype)
  if name == "jax-pallas" and platform == "tpu":  # its layout is [b, h, t, d]; transposed outside the timing
    q, k, v, ct = (x.transpose(0, 2, 1, 3) for x in (q, k, v, ct))
  fwd = jax.jit(fn)
  loss = lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * ct.astype(jnp.float32))
  bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  out = []
  for f in (fwd, bwd):
    try:
      out.append(_timing.median_seconds(f, (q, k, v), reps))
    except Exception as e:  # pylint: disable=broad-except
      out.append(f"{type(e).__name__}")
  try:
    out.append(bwd.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes)
  except Exception as e:  # pylint: disable=broad-except
    out.append(f"{type(e).__name__}")
  return out


def _fmt_time(s):
  return f"{s * 1e3:10.2f}" if isinstance(s, float) else f"{s[:10]:>10}"


def _fmt_rate(flops, s):
  return f"{flops / s / 1e12:8.3f}" if isinstance(s, float) else f"{'-':>8}"


def _ratio(s, ref):
  return f"{s / ref:6.2f}" if isinstance(s, float) and isinstance(ref, float) else f"{'-':>6}"


def run_table(platform, lengths, head_dims, tokens, heads_dim, dtype, causal_modes, reps):
  print(f"\n{'impl':>10} {'len':>6} {'d':>4} {'b':>3} {'h':>3} {'causal':>6} | {'fwd ms':>10} {'TFLOP/s':>8} "
        f"{'x zoo':>6} | {'fwd+bwd ms':>10} {'TFLOP/s':>8} {'x zoo':>6} | {'temp MiB':>9}")
  summary = []
  for causal in causal_modes:
    for d in head_dims:
      for t in lengths:
        b, h = max(1, tokens // t), max(1, heads_dim // d)
        f_fwd, f_all = _flops(b, t, h, d, causal)
        results = {name: _measure(name, fn, platform, b, t, h, d, dtype, causal, reps)
                   for name, fn in _impls(platform, causal).items()}
        zf, zb, _ = results["zoo"]
        for name, (sf, sb, mem) in results.items():
          mem_s = f"{mem / 2**20:9.1f}" if isinstance(mem, int) else f"{mem[:9]:>9}"
          print(f"{name:>10} {t:6d} {d:4d} {b:3d} {h:3d} {str(causal):>6} | {_fmt_time(sf)} {_fmt_rate(f_fwd, sf)} "
                f"{_ratio(sf, zf)} | {_fmt_time(sb)} {_fmt_rate(f_all, sb)} {_ratio(sb, zb)} | {mem_s}")
        summary.append((t, d, causal, results))
        sys.stdout.flush()
  return summary


def memory_sweep(lengths, d, dtype, causal=True):
  """Compiled temp memory of forward+backward (b=1, h=2), compiled only: zoo's kernel vs the XLA reference."""
  print(f"\nforward+backward temporary memory, compiled (not run): batch 1, heads 2, head_dim {d}, "
        f"{jnp.dtype(dtype).name}, causal={causal}")
  print(f"{'len':>6} | {'zoo MiB':>9} {'xla MiB':>10} {'xla/zoo':>8}")
  interpret = _timing.platform() not in ("gpu", "tpu")
  zoo = lambda q, k, v: attn.flash_attention(q, k, v, is_causal=causal, interpret=interpret,
                                             backend="tpu" if _timing.platform() == "tpu" else "gpu")
  ref = lambda q, k, v: attn.reference(q, k, v, is_causal=causal)
  rows = []
  for t in lengths:
    spec = jax.ShapeDtypeStruct((1, t, 2, d), dtype)
    mem = []
    for fn in (zoo, ref):
      grad = jax.jit(jax.grad(lambda q, k, v, fn=fn: jnp.sum(fn(q, k, v).astype(jnp.float32)), argnums=(0, 1, 2)))
      mem.append(grad.lower(spec, spec, spec).compile().memory_analysis().temp_size_in_bytes)
    rows.append((t, *mem))
    print(f"{t:6d} | {mem[0] / 2**20:9.2f} {mem[1] / 2**20:10.2f} {mem[1] / mem[0]:8.1f}")
    sys.stdout.flush()
  return rows


def main(argv=None):
  platform = _timing.platform()
  accel = platform in ("gpu", "tpu")
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--lengths", type=int, nargs="+",
                 default=[512, 1024, 2048, 4096, 8192, 16384] if accel else [128, 256])
  p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128] if accel else [64])
  p.add_argument("--tokens", type=int, default=16384 if accel else 256, help="batch = tokens // length")
  p.add_argument("--heads-dim", type=int, default=2048 if accel else 128, help="heads = heads_dim // head_dim")
  p.add_argument("--causal", choices=["both", "yes", "no"], default="both")
  p.add_argument("--dtype", default="bfloat16" if accel else "float32")
  p.add_argument("--reps", type=int, default=10 if accel else 2)
  p.add_argument("--memory-lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384])
  args = p.parse_args(argv)
  dtype = jnp.dtype(args.dtype)
  causal_modes = {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]
  print(f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}, dtype {dtype.name}")
  if not accel:
    print("NOTE: no GPU/TPU: 'zoo' and 'jax-pallas' run in the Pallas interpreter, so their times only show that "
          "the kernels run; they say nothing about kernel speed. The memory columns are XLA's compiled estimates.")
  run_table(platform, args.lengths, args.head_dims, args.tokens, args.heads_dim, dtype, causal_modes, args.reps)
  memory_sweep(args.memory_lengths, 64, dtype)


if __name__ == "__main__":
  main()
