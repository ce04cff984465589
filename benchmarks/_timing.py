"""What every benchmark script measures the same way: median wall or CPU time of a jitted call, compiled memory,
platform.

The scripts run as ``python benchmarks/<name>.py`` (this folder is then on ``sys.path``) and import it as
``import _timing``.
"""

from __future__ import annotations

import statistics
import time

import jax

__all__ = ["median_cpu_seconds", "median_seconds", "memory_mib", "platform"]


def platform() -> str:
  """The default device's platform: ``'cpu'``, ``'gpu'`` or ``'tpu'``."""
  return jax.devices()[0].platform


def median_seconds(fn, args, reps: int) -> float:
  """Median wall time of ``fn(*args)`` over ``reps`` runs, after one call that compiles and warms up."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def median_cpu_seconds(fn, args, reps: int) -> float:
  """Median process CPU time (all threads) of ``fn(*args)`` over ``reps`` runs after a warm-up call: steadier than
  wall time on a shared CPU."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    start = time.process_time()
    jax.block_until_ready(fn(*args))
    times.append(time.process_time() - start)
  return statistics.median(times)


def memory_mib(fn, args) -> float:
  """Compiled temporaries + outputs of jitted ``fn`` at ``args`` in MiB (compiles, does not run); NaN if unknown."""
  stats = fn.lower(*args).compile().memory_analysis()
  if stats is None:
    return float("nan")
  return (stats.temp_size_in_bytes + stats.output_size_in_bytes) / 2**20
