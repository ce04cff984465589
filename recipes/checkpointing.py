"""Atomic, resumable checkpoints of a run's state and config (Orbax ``CheckpointManager``).

Orbax writes a save to ``<step>.orbax-checkpoint-tmp*`` and renames it when complete, so a run killed mid-save
leaves the last finished checkpoint intact (the unfinished one is ignored and cleaned up). Every checkpoint holds
the state and the run's config; resuming with a config that builds a different model, data or procedure, or from a
checkpoint Orbax cannot read, is an error that names the problem instead of overwriting the earlier work.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "IncompatibleCheckpointError", "RUN_LENGTH_KEYS"]

_log = logging.getLogger(__name__)

# Config keys a resumed run may change: they say how long and how verbosely to run, not what is trained.
RUN_LENGTH_KEYS = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "progress_bar")


class IncompatibleCheckpointError(ValueError):
  """The work directory holds a checkpoint this run cannot resume from."""


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


class Checkpointer:
  """Saves and restores ``{'state': pytree, 'config': json}`` under ``<workdir>/checkpoints``.

  Args:
    workdir: the run's directory.
    config: the run's config as a JSON-able dict, saved with every checkpoint and checked on resume.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, workdir: str, config: dict[str, Any], *, max_to_keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.config = json.loads(json.dumps(config))  # normalise tuples to lists, as they come back from JSON
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "config"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """The state saved at ``step`` (default: the latest), laid out as ``abstract_state`` (shapes + shardings).

    Raises:
      IncompatibleCheckpointError: the checkpoint's config trains something else, or it cannot be read.
    """
    step = self.latest_step() if step is None else step
    where = os.path.join(self.directory, str(step))
    try:
      saved_config = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    except Exception as e:  # orbax raises many types for a damaged directory
      raise IncompatibleCheckpointError(
          f"The checkpoint {where} cannot be read ({type(e).__name__}: {e}). It is left untouched: move it away or "
          "use a new --workdir.") from e
    diffs = _config_diff(saved_config or {}, self.config)
    if diffs:
      raise IncompatibleCheckpointError(
          f"The work directory holds a checkpoint ({where}) of a different run, so it cannot be resumed:\n  "
          + "\n  ".join(diffs) + "\nUse a new --workdir, or change only " + ", ".join(RUN_LENGTH_KEYS) + ".")
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise IncompatibleCheckpointError(
          f"The checkpoint {where} does not match this run's state ({type(e).__name__}: {e}). It is left "
          "untouched: move it away or use a new --workdir.") from e
    return restored.state

  def save(self, step: int, state) -> None:
    """Starts an (asynchronous, atomic) save of ``state`` at ``step``."""
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     config=ocp.args.JsonSave(self.config)))

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state, shardings):
  """``ShapeDtypeStruct``s of ``state`` carrying ``shardings`` (what a restore lays the arrays out as)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
