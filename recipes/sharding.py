"""The mesh, the one table from logical axis names to mesh axes, and global batches.

Mesh axes are ``('data', 'fsdp', 'tensor')``, built from every device of every process. Data parallelism shards
the batch over ``data`` and ``fsdp``; FSDP shards parameters (and the optimizer state that mirrors them) over
``fsdp`` by their logical names; ``tensor`` splits wide layers. Models only name logical axes (``zoo.layers``);
:data:`LOGICAL_RULES` is the one place that maps them to the mesh (as in MaxText).

A dimension whose size the mesh axes do not divide is replicated instead (a 10-class output layer on an fsdp axis
of 8), so every model runs on every mesh; the run logs which parameters that happened to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

__all__ = ["LOGICAL_RULES", "MESH_AXES", "batch_sharding", "device_dtype", "global_batch", "jit_batch", "make_mesh",
           "process_rows", "state_shardings"]

_log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axes. Names not listed here are replicated.
LOGICAL_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("conv_in", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("conv_out", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("length", None),
    ("classes", None),
    ("norm", None),
)


def make_mesh(axis_sizes: Mapping[str, int] | None = None, devices=None) -> Mesh:
  """A mesh ``('data', 'fsdp', 'tensor')`` over ``devices`` (default: all devices of all processes).

  Args:
    axis_sizes: ``{'data': -1, 'fsdp': 1, 'tensor': 1}`` style sizes; one may be ``-1`` for "the rest".
  """
  sizes = {"data": -1, "fsdp": 1, "tensor": 1, **dict(axis_sizes or {})}
  unknown = set(sizes) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"mesh: unknown axis {sorted(unknown)}; the axes are {MESH_AXES}.")
  devices = jax.devices() if devices is None else list(devices)
  shape = [sizes[a] for a in MESH_AXES]
  if shape.count(-1) > 1:
    raise ValueError(f"mesh: at most one axis may be -1; got {sizes}.")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"mesh: {sizes} does not divide the {len(devices)} devices.")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(f"mesh: {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices; there are "
                     f"{len(devices)}. Use -1 for one axis to take the rest.")
  mesh_devices = np.asarray(devices).reshape(shape)
  return Mesh(mesh_devices, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def _fit_spec(spec: P, shape, mesh: Mesh) -> P:
  """Drops mesh axes from dimensions they do not divide."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = math.prod(mesh.shape[a] for a in names)
    out.append(axes if size == 1 or dim % size == 0 else None)
  return P(*out)


def state_shardings(abstract_state, mesh: Mesh, rules=LOGICAL_RULES):
  """Shardings for a state pytree whose parameters may carry logical axis names (``nn.LogicallyPartitioned``).

  Returns a pytree shaped like the *unboxed* state, of ``NamedSharding``s.
  """
  logical = nn.get_partition_spec(abstract_state)
  mesh_specs = nn.logical_to_mesh(logical, rules)
  shapes = nn.unbox(abstract_state)
  dropped = []

  def fit(path, spec, leaf):
    fitted = _fit_spec(spec, leaf.shape, mesh)
    if fitted != spec and any(spec):
      dropped.append(jax.tree_util.keystr(path))
    return NamedSharding(mesh, fitted)

  shardings = jax.tree_util.tree_map_with_path(fit, mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))
  if dropped:
    _log.info("replicated along axes that do not divide them: %s", ", ".join(dropped[:8]) +
              (" ..." if len(dropped) > 8 else ""))
  return shardings


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batch arrays: the leading (example) axis over ``('data', 'fsdp')``, the rest replicated."""
  return NamedSharding(mesh, P(("data", "fsdp")))


def process_rows(global_batch_size: int, sharding: NamedSharding) -> slice:
  """The rows of a global batch that this process's devices hold (a contiguous block, in mesh order)."""
  shards = math.prod(sharding.mesh.shape[a] for a in ("data", "fsdp"))
  if global_batch_size % shards:
    raise ValueError(f"batch size {global_batch_size} must be divisible by the data-parallel size "
                     f"data*fsdp = {shards}.")
  index_map = sharding.addressable_devices_indices_map((global_batch_size,))
  starts = sorted({idx[0].start or 0 for idx in index_map.values()})
  stops = sorted({idx[0].stop if idx[0].stop is not None else global_batch_size for idx in index_map.values()})
  start, stop = starts[0], stops[-1]
  if stop - start != sum(b - a for a, b in zip(starts, stops)):
    raise ValueError("this process's devices do not hold a contiguous block of the batch; order the mesh devices "
                     "by process.")
  return slice(start, stop)


def device_dtype(dtype) -> np.dtype:
  """The dtype an array of ``dtype`` has on device: 64-bit types narrow to 32 bits unless x64 is enabled."""
  dtype = np.dtype(dtype)
  if jax.config.jax_enable_x64 or dtype.itemsize < 8 or dtype.kind not in "iuf":
    return dtype
  return np.dtype({"i": np.int32, "u": np.uint32, "f": np.float32}[dtype.kind])


def global_batch(local_batch: Mapping[str, np.ndarray], sharding: NamedSharding, global_batch_size: int):
  """Builds global ``jax.Array``s from this process's rows (``process_rows``) of every batch array."""
  def put(x):
    x = np.asarray(x)
    x = x.astype(device_dtype(x.dtype), copy=False)
    return jax.make_array_from_process_local_data(sharding, x, (global_batch_size, *x.shape[1:]))
  return {k: put(v) for k, v in local_batch.items()}


def jit_batch(local_batch: Mapping[str, np.ndarray], sharding: NamedSharding, global_batch_size: int):
  """A batch as a function jitted with ``in_shardings`` of ``sharding`` takes it, by the cheapest path.

  In one process, the host arrays themselves (narrowed to their device dtypes): jit's dispatch copies them onto the
  mesh by its ``in_shardings`` at a fraction of :func:`global_batch`'s cost (on a 2-core CPU ~50 us a batch against
  ~260 us; the train loop of a small model spends a fifth of its time there otherwise, issue 13). Across processes,
  :func:`global_batch`'s global arrays. The values reaching the jitted function are the same either way.
  """
  if jax.process_count() > 1:
    return global_batch(local_batch, sharding, global_batch_size)
  out = {}
  for k, v in local_batch.items():
    x = np.asarray(v)
    if x.shape[:1] != (global_batch_size,):
      raise ValueError(f"batch array {k!r} has shape {x.shape}; expected [{global_batch_size}, ...] (the global "
                       "batch size) in a one-process run.")
    out[k] = x.astype(device_dtype(x.dtype), copy=False)
  return out
