"""Split-digits: sklearn's 8x8 digits cut into tasks of consecutive classes, for task-incremental continual learning.

``split_digits(num_tasks=5)``: the ten digits are split into ``num_tasks`` groups of consecutive classes
(``np.array_split``: 5 tasks are {0,1}, {2,3}, ..., 3 tasks are {0-3}, {4-6}, {7-9}). Each example carries its
task id and its label *within* the task (``digit - first digit of the group``), so one shared head of
``max group size`` outputs serves every task (task-incremental: the task id is known at test time, as in von Oswald
et al. 2020 and Chandra et al. 2023). Train/test split as the ``digits`` dataset (same ``seed``).

Keys: ``image [8, 8, 1]`` float32 in [0, 1], ``label []`` int32 (within task), ``task []`` int32, ``digit []``
int32. Metadata: ``num_tasks``, ``num_classes`` (largest group), ``groups``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data
from zoo.recipes.datasets import sklearn_sets

__all__ = ["split_digits", "task_groups"]


def task_groups(num_tasks: int) -> list[list[int]]:
  """The digits of each task: consecutive classes, ``np.array_split(range(10), num_tasks)``."""
  if not 1 <= num_tasks <= 10:
    raise ValueError(f"split_digits: `num_tasks` must be in [1, 10]; got {num_tasks}.")
  return [g.tolist() for g in np.array_split(np.arange(10), num_tasks)]


@data.register("split_digits", version="1.0.0")
def split_digits(num_tasks: int = 5, seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """Digits split into ``num_tasks`` tasks of consecutive classes (module docstring)."""
  groups = task_groups(num_tasks)
  task_of = np.concatenate([np.full(len(g), t) for t, g in enumerate(groups)])
  first = np.array([g[0] for g in groups])
  base = sklearn_sets.digits(seed=seed, test_fraction=test_fraction)
  splits = {}
  for name, arrays in base.splits.items():
    digit = np.asarray(arrays["label"]).astype(np.int32)
    task = task_of[digit].astype(np.int32)
    splits[name] = {"image": arrays["image"], "label": (digit - first[task]).astype(np.int32), "task": task,
                    "digit": digit}
  return data.Generated(splits, metadata={"num_tasks": num_tasks, "num_classes": max(len(g) for g in groups),
                                          "groups": groups})
