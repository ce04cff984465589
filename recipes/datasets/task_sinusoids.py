"""Sinusoid regression families for hypernetworks: one function per task id, or per continuous condition gamma.

``task_sinusoids`` (hypernet_review): ``num_tasks`` fixed tasks ``y = A_t sin(x + phi_t)`` with ``A_t ~ U[0.5, 2]``,
``phi_t ~ U[0, pi]`` (drawn once from ``seed``), ``x ~ U[-4, 4]``. Keys: ``x [1]`` float32, ``y [1]`` float32,
``task []`` int32. Metadata: ``num_tasks``, ``amplitude``, ``phase``.

``gamma_sinusoid`` (mip_hypernet, Ortiz et al. 2023's toy setting): ``gamma ~ U[0, 1]`` per example and
``y = sin(x + 2 pi gamma) (1 + gamma)``, ``x ~ U[-pi, pi]``. Keys: ``gamma [1]``, ``x [1]``, ``y [1]`` float32.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["gamma_sinusoid", "sinusoid_tasks", "task_sinusoids"]


def sinusoid_tasks(num_tasks: int, seed: int):
  """The tasks' ``(amplitude, phase)``, each ``[num_tasks]``."""
  rng = np.random.default_rng(seed)
  return rng.uniform(0.5, 2.0, num_tasks), rng.uniform(0.0, np.pi, num_tasks)


@data.register("task_sinusoids", version="1.0.0")
def task_sinusoids(num_tasks: int = 10, n_train: int = 200, n_test: int = 100, seed: int = 0) -> data.Generated:
  """``num_tasks`` sinusoids, ``n_train`` / ``n_test`` points per task (module docstring)."""
  if num_tasks < 1 or n_train < 1 or n_test < 1:
    raise ValueError(f"task_sinusoids: need num_tasks, n_train, n_test >= 1; got {num_tasks}, {n_train}, {n_test}.")
  amplitude, phase = sinusoid_tasks(num_tasks, seed)
  rng = np.random.default_rng(seed + 1)

  def split(n):
    task = np.repeat(np.arange(num_tasks), n)
    x = rng.uniform(-4.0, 4.0, task.shape[0])
    y = amplitude[task] * np.sin(x + phase[task])
    return {"x": x[:, None].astype(np.float32), "y": y[:, None].astype(np.float32), "task": task.astype(np.int32)}
  return data.Generated({"train": split(n_train), "test": split(n_test)},
                        metadata={"num_tasks": num_tasks, "amplitude": amplitude.tolist(), "phase": phase.tolist()})


@data.register("gamma_sinusoid", version="1.0.0")
def gamma_sinusoid(n_train: int = 4096, n_test: int = 1024, seed: int = 0) -> data.Generated:
  """``y = sin(x + 2 pi gamma)(1 + gamma)`` with ``gamma ~ U[0, 1]`` per example (module docstring)."""
  if n_train < 1 or n_test < 1:
    raise ValueError(f"gamma_sinusoid: need n_train, n_test >= 1; got {n_train}, {n_test}.")
  rng = np.random.default_rng(seed)

  def split(n):
    gamma, x = rng.uniform(0.0, 1.0, n), rng.uniform(-np.pi, np.pi, n)
    y = np.sin(x + 2 * np.pi * gamma) * (1 + gamma)
    return {k: v[:, None].astype(np.float32) for k, v in (("gamma", gamma), ("x", x), ("y", y))}
  return data.Generated({"train": split(n_train), "test": split(n_test)}, metadata={})
