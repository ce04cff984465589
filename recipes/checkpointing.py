"""Atomic, verified, resumable checkpoints of a run's state and config (Orbax ``CheckpointManager``), and the lock
that keeps one run per work directory.

Orbax writes a save to ``<step>.orbax-checkpoint-tmp*`` and renames it when complete, so a run killed mid-save
leaves the last finished checkpoint intact (the unfinished one is ignored and cleaned up). Every checkpoint holds
the state, the run's config and a checksum of every state leaf (``integrity``: two 32-bit fingerprints of each
leaf's bits, computed before the save, independent of the mesh). A restore recomputes the checksums and
compares them, so a damaged file can neither restore silently nor be trusted:

* a damaged latest checkpoint (unreadable, or restored values that differ from their checksums) is reported, moved
  to ``<workdir>/damaged_checkpoints/<step>`` (never deleted), and the run resumes from the newest intact step;
* with no intact checkpoint at all, nothing is moved and the error lists what is wrong with each step;
* resuming with a config that builds a different model, data or procedure is an error that names the difference
  instead of overwriting the earlier work.

:class:`WorkdirLock` is an exclusive lock (``<workdir>/run.lock``, an ``flock`` plus the holder's pid, host and
command) held for the whole run: a second run in the same work directory fails at once naming the holder; a lock
left by a dead process on this host is taken over; the file is removed when the run ends.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "DamagedCheckpointError", "IncompatibleCheckpointError", "RUN_LENGTH_KEYS",
           "WorkdirLock", "WorkdirLockedError", "fingerprints"]

_log = logging.getLogger(__name__)

# Config keys a resumed run may change: they say how long and how verbosely to run, not what is trained.
RUN_LENGTH_KEYS = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "progress_bar",
                   "stop_on_nonfinite", "allow_schedule_change")

_ALGORITHM = "zoo-fingerprint-v1"


class IncompatibleCheckpointError(ValueError):
  """The work directory holds a checkpoint this run cannot resume from."""


class DamagedCheckpointError(IncompatibleCheckpointError):
  """A checkpoint cannot be read, or its restored values do not match the checksums saved with it."""


class WorkdirLockedError(RuntimeError):
  """Another run holds the work directory."""


def _config_diff(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if not prefix and key in RUN_LENGTH_KEYS:
      continue
    a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += _config_diff(a, b, f"{prefix}{key}.")
    elif a != b:
      diffs.append(f"{prefix}{key}: checkpoint {a!r} != now {b!r}")
  return diffs


# ----------------------------------------------------------------------------------------------- fingerprints


def _fmix(h):
  """murmur3's 32-bit finaliser (uint32 -> uint32, a bijection that spreads every bit); jnp or numpy arrays."""
  h = h ^ (h >> 16)
  h = h * np.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * np.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _sums(w, xp):
  """The two fingerprint words of the uint32 vector ``w`` (``xp``: jnp on device, np on the host)."""
  i = xp.arange(w.size, dtype=xp.uint32)
  a = xp.sum(_fmix(w ^ _fmix(i * np.uint32(0x9E3779B9) + np.uint32(1))), dtype=xp.uint32)
  b = xp.sum(_fmix((w + np.uint32(0x7F4A7C15)) * np.uint32(0x27D4EB2F) ^ i), dtype=xp.uint32)
  return a, b  # wrap-around sums: exact and order-free, so any sharding gives the same numbers


def _words(x):
  """The bits of ``x`` as a flat uint32 vector."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32).ravel()
  size = np.dtype(x.dtype).itemsize
  if size in (1, 2):
    return jax.lax.bitcast_convert_type(x, jnp.uint8 if size == 1 else jnp.uint16).astype(jnp.uint32).ravel()
  return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()  # 4 bytes; 8 bytes gain a trailing axis of 2


def _leaf_fingerprint(x):
  return jnp.stack(_sums(_words(x), jnp))


def _paths(tree) -> list[str]:
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


_fingerprint_fns: dict[Any, Any] = {}


def _host_words(x: np.ndarray) -> np.ndarray:
  """:func:`_words` in numpy (the same uint32 words, in the same order)."""
  if x.dtype == np.bool_:
    return x.astype(np.uint32).ravel()
  size = x.dtype.itemsize
  view = {1: np.uint8, 2: np.uint16}.get(size, np.uint32)
  return np.ascontiguousarray(x).view(view).astype(np.uint32).ravel()


def _host_leaf_fingerprint(x) -> tuple[int, int]:
  """:func:`_leaf_fingerprint` in numpy (uint32 arithmetic wraps around exactly as on device)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  with np.errstate(over="ignore"):
    a, b = _sums(_host_words(np.asarray(x)), np)
  return int(a), int(b)


def fingerprints(state) -> dict[str, str]:
  """``{leaf path: 16 hex digits}``: a checksum of every leaf's bits (same on any mesh or process count)."""
  leaves = jax.tree.leaves(state)
  if all(getattr(x, "is_fully_addressable", True) for x in leaves):
    # One process holds every value: checksum on the host. (The jitted form below costs a compile per state
    # structure, seconds for a model of a few hundred leaves, more than the save it guards.)
    values = [_host_leaf_fingerprint(x) for x in leaves]
    return {p: f"{a:08x}{b:08x}" for p, (a, b) in zip(_paths(state), values)}
  return _device_fingerprints(state)


def _device_fingerprints(state) -> dict[str, str]:
  """:func:`fingerprints` computed where the values are (a process sees only its shards)."""
  leaves = jax.tree.leaves(state)
  mesh = next((x.sharding.mesh for x in leaves if isinstance(getattr(x, "sharding", None),
                                                              jax.sharding.NamedSharding)), None)
  key = (jax.tree.structure(state), mesh)
  if key not in _fingerprint_fns:
    out = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()) if mesh is not None else None
    _fingerprint_fns[key] = jax.jit(lambda t: [_leaf_fingerprint(x) for x in jax.tree.leaves(t)],
                                    out_shardings=out)
  values = jax.device_get(_fingerprint_fns[key](state))
  return {p: f"{int(v[0]):08x}{int(v[1]):08x}" for p, v in zip(_paths(state), values)}


# ---------------------------------------------------------------------------------------------- checkpointer

# Orbax splits the save of a replicated array across its replicas ("replica-parallel"), which pays off for large
# arrays on many hosts; for small ones every slice is an eager dispatch compiled once per device (a 2-step run of a
# 400-leaf model on 8 CPU devices spent 7 s in 224 such compiles). Arrays are split only when each replica writes at
# least this many bytes. The checkpoint format is unchanged (PyTree, as StandardSave writes it).
_MIN_REPLICA_SLICE_BYTES = 1 << 20


def _state_type_handlers():
  handlers = ocp.type_handlers
  return handlers.create_type_handler_registry(
      (int, handlers.ScalarHandler()), (float, handlers.ScalarHandler()), (bytes, handlers.ScalarHandler()),
      (np.number, handlers.ScalarHandler()), (np.ndarray, handlers.NumpyHandler()),
      (jax.Array, handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=_MIN_REPLICA_SLICE_BYTES)),
      (str, handlers.StringHandler()))


def _quiet_orbax_teardown() -> None:
  """Drops tensorstore's "Event loop is closed" callbacks after a failed restore (Orbax closes its event loop
  while reads of the other arrays are still pending; each late callback would print a traceback)."""
  if getattr(sys.unraisablehook, "_zoo_quiet", False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
      return
    previous(unraisable)

  hook._zoo_quiet = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


def _short(e: Exception, limit: int = 400) -> str:
  text = f"{type(e).__name__}: {e}"
  text = text.split(" [tensorstore_spec=")[0]  # tensorstore appends a page of JSON spec
  return text if len(text) <= limit else text[:limit] + " ..."


class Checkpointer:
  """Saves and restores ``{'state': pytree, 'config': json, 'integrity': json}`` under ``<workdir>/checkpoints``.

  Args:
    workdir: the run's directory.
    config: the run's config as a JSON-able dict, saved with every checkpoint and checked on resume.
    max_to_keep: how many recent checkpoints to keep (``config.keep_checkpoints``, >= 1).
  """

  def __init__(self, workdir: str, config: dict[str, Any], *, max_to_keep: int = 3):
    if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, (int, np.integer)) or max_to_keep < 1:
      raise ValueError(f"config.keep_checkpoints must be an integer >= 1 (a run needs a checkpoint to resume "
                       f"from); got {max_to_keep!r}.")
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self.config = json.loads(json.dumps(config))  # normalise tuples to lists, as they come back from JSON
    self.max_to_keep = int(max_to_keep)
    self.restored_config: dict[str, Any] | None = None  # the config saved with the checkpoint last restored
    self.moved: list[str] = []  # damaged checkpoints moved aside by the last restore_latest
    self.manager = self._manager()

  def _manager(self):
    return ocp.CheckpointManager(
        self.directory,
        item_handlers={"state": ocp.PyTreeCheckpointHandler(type_handler_registry=_state_type_handlers()),
                       "config": ocp.JsonCheckpointHandler(), "integrity": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, abstract_state, step: int | None = None):
    """The state saved at ``step`` (default: the latest), laid out as ``abstract_state``, checked against its
    checksums.

    Raises:
      IncompatibleCheckpointError: the checkpoint's config trains something else.
      DamagedCheckpointError: it cannot be read, or it does not match its checksums (or this run's state).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise DamagedCheckpointError(f"There is no checkpoint in {self.directory}.")
    _quiet_orbax_teardown()
    where = os.path.join(self.directory, str(step))
    try:
      saved_config = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    except Exception as e:  # orbax raises many types for a damaged directory
      raise DamagedCheckpointError(f"{where}: its config cannot be read ({_short(e)}).") from e
    diffs = _config_diff(saved_config or {}, self.config)
    if diffs:
      raise IncompatibleCheckpointError(
          f"The work directory holds a checkpoint ({where}) of a different run, so it cannot be resumed:\n  "
          + "\n  ".join(diffs) + "\nUse a new --workdir, or change only " + ", ".join(RUN_LENGTH_KEYS) + ".")
    expected = None
    if os.path.isdir(os.path.join(where, "integrity")):
      try:
        expected = self.manager.restore(step, args=ocp.args.Composite(integrity=ocp.args.JsonRestore())).integrity
      except Exception as e:
        raise DamagedCheckpointError(f"{where}: its checksums cannot be read ({_short(e)}).") from e
    try:
      restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(abstract_state, restore_args=restore_args)))
    except Exception as e:
      raise DamagedCheckpointError(f"{where}: its state cannot be read, or does not match this run's state "
                                   f"({_short(e)}).") from e
    state = restored.state
    if expected is None:
      _log.warning("checkpoint %s has no checksums (written before they were added); restored unverified", where)
    else:
      if not isinstance(expected, dict) or expected.get("algorithm") != _ALGORITHM:
        raise DamagedCheckpointError(f"{where}: its checksum record is not one this version writes.")
      got = fingerprints(state)
      want = expected.get("leaves", {})
      bad = sorted(p for p in set(got) | set(want) if got.get(p) != want.get(p))
      if bad:
        raise DamagedCheckpointError(
            f"{where}: the restored values of {len(bad)} of {len(want)} state leaves differ from the checksums "
            f"saved with them (first: {', '.join(bad[:3])}); a file of it was damaged after it was written.")
    self.restored_config = saved_config
    return state

  def restore_latest(self, abstract_state) -> tuple[int | None, Any]:
    """``(step, state)`` of the newest intact checkpoint, or ``(None, None)`` when there is none at all.

    Damaged newer checkpoints are reported and moved to ``<workdir>/damaged_checkpoints/`` (never deleted) so that
    new saves do not collide with them.

    Raises:
      IncompatibleCheckpointError: the newest readable config is another run's.
      DamagedCheckpointError: no checkpoint is intact (nothing is moved then).
    """
    steps = self.all_steps()
    if not steps:
      return None, None
    failures = []
    for step in reversed(steps):
      try:
        state = self.restore(abstract_state, step)
      except DamagedCheckpointError as e:
        failures.append((step, e))
        continue
      self._move_aside([s for s, _ in failures])
      for s, e in failures:
        _say(f"WARNING: checkpoint step {s} is damaged: {e}\n  It is kept, moved to "
             f"{os.path.join(self.workdir, 'damaged_checkpoints', str(s))}; resuming from step {step}, the newest "
             "intact one.")
      return step, state
    raise DamagedCheckpointError(
        f"No checkpoint in {self.directory} is intact:\n  " + "\n  ".join(f"step {s}: {e}" for s, e in failures)
        + "\nThey are left untouched: move them away (or restore them from a copy), or use a new --workdir.")

  def _move_aside(self, steps: list[int]) -> None:
    self.moved = []
    if not steps:
      return
    if jax.process_index() == 0:
      target_root = os.path.join(self.workdir, "damaged_checkpoints")
      os.makedirs(target_root, exist_ok=True)
      for step in steps:
        target = os.path.join(target_root, str(step))
        n = 1
        while os.path.exists(target):
          target, n = os.path.join(target_root, f"{step}-{n}"), n + 1
        shutil.move(os.path.join(self.directory, str(step)), target)
        self.moved.append(target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("zoo_checkpoint_move_aside")
    self.manager.close()
    self.manager = self._manager()

  def save(self, step: int, state) -> None:
    """Starts an (asynchronous, atomic) save of ``state`` at ``step``, with the checksums of its leaves."""
    integrity = {"algorithm": _ALGORITHM, "leaves": fingerprints(state)}
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                                     config=ocp.args.JsonSave(self.config),
                                                     integrity=ocp.args.JsonSave(integrity)))

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state, shardings):
  """``ShapeDtypeStruct``s of ``state`` carrying ``shardings`` (what a restore lays the arrays out as)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------ lock


def _start_time(pid: int) -> str | None:
  """The kernel's start time of ``pid`` (Linux), to tell a live holder from a reused pid."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class WorkdirLock:
  """An exclusive lock on a work directory: ``<workdir>/run.lock`` (``flock`` + holder's pid, host, command).

  ``acquire`` raises :class:`WorkdirLockedError` at once if another live run holds it; a lock left by a process
  that no longer runs on this host is taken over (with a note). ``release`` removes the file.
  """

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, "run.lock")
    self._fd: int | None = None

  @staticmethod
  def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
      return json.loads(raw) if raw.strip() else {}
    except ValueError:
      return {"unreadable": raw[:200].decode(errors="replace")}

  @staticmethod
  def describe(holder: dict[str, Any]) -> str:
    if not holder:
      return "a process whose details are not written yet"
    if "unreadable" in holder:
      return f"unknown holder (lock file content {holder['unreadable']!r})"
    return (f"pid {holder.get('pid')} on host {holder.get('host')!r}, started {holder.get('started', '?')}: "
            f"{holder.get('command', '')}").rstrip(": ")

  def _held_elsewhere(self, holder: dict[str, Any]) -> bool:
    """Whether a lock file whose ``flock`` we obtained still names a live holder (locks that ``flock`` cannot see:
    another host on a network file system, or a file system without ``flock``)."""
    if not holder or "unreadable" in holder:
      return False
    if holder.get("host") != socket.gethostname():
      return True  # cannot check a process on another host
    pid = int(holder.get("pid", -1))
    if pid == os.getpid() or pid <= 0 or not _alive(pid):
      return False
    start = holder.get("start_time")
    return start is None or start == _start_time(pid)

  def acquire(self) -> "WorkdirLock":
    os.makedirs(self.workdir, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError:
        holder = self._read(fd)
        os.close(fd)
        raise WorkdirLockedError(
            f"The work directory {self.workdir} is in use by another run: {self.describe(holder)} (lock file "
            f"{self.path}). Wait for it to finish, stop it, or use a new --workdir.") from None
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if not same:  # the holder removed the file between our open and flock: start over on the new file
        os.close(fd)
        continue
      holder = self._read(fd)
      if self._held_elsewhere(holder):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise WorkdirLockedError(
            f"The work directory {self.workdir} is locked by {self.describe(holder)} (lock file {self.path}). "
            "If that run is gone (e.g. its host died), delete the lock file; otherwise use a new --workdir.")
      if holder:
        _say(f"Taking over the stale lock of {self.describe(holder)} (no longer running).")
      info = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": _start_time(os.getpid()),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)}
      os.ftruncate(fd, 0)
      os.lseek(fd, 0, os.SEEK_SET)
      os.write(fd, json.dumps(info).encode())
      os.fsync(fd)
      self._fd = fd
      return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.unlink(self.path)  # while still holding the flock; a waiter on the old file sees the inode change
    except FileNotFoundError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
