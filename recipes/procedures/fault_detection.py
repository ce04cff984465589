"""Fault detection with an autoencoder trained on normal data only (the application section of "A Review of Deep
Learning with Special Emphasis on Architectures, Applications and Recent Trends", Sengupta et al., 2019,
arXiv:1905.13294).

The detector learns to reconstruct normal operation; a sample it reconstructs badly is flagged:

* :func:`train_ae_detector` ``(model, normal_data, ...)`` trains any autoencoder (``zoo.core.Autoencoder`` and
  friends) with the one trainer (``zoo.recipes.train.fit``, task ``reconstruction``) on normal examples only, and
  sets the alarm threshold from the training scores. Returns a :class:`FaultDetector`.
* :func:`fault_scores` ``(model, variables, x) -> [n]``: the anomaly score ``||x - x_hat||^2`` of each example.
* :func:`fit_threshold` ``(scores, method='quantile' | 'mean_std', q=0.99, k=3)``: the ``q``-quantile of normal
  scores, or ``mean + k * std``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import numpy as np

from zoo import core
from zoo.recipes import tasks
from zoo.recipes import train as train_lib

__all__ = ["FaultDetector", "fault_scores", "fit_threshold", "train_ae_detector"]


def fault_scores(model: nn.Module, variables, x, *, batch_size: int = 4096) -> np.ndarray:
  """``||x - model(x)||^2`` per example (float32 ``[n]``), computed in chunks of ``batch_size``.

  Args:
    model: an autoencoder whose output has its input's shape.
    variables: its variables.
    x: ``[n, ...]`` float examples.
  """
  x = np.asarray(x)
  if x.ndim < 2 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"fault_scores: `x` must be a float array [n, ...] (rank >= 2); got shape {x.shape}, "
                     f"dtype {x.dtype}.")
  chunks = [np.asarray(core.reconstruction_error(model, variables, x[i:i + batch_size]))
            for i in range(0, len(x), batch_size)]
  return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)


def fit_threshold(scores, method: str = "quantile", q: float = 0.99, k: float = 3.0) -> float:
  """Alarm threshold from the scores of normal examples.

  Args:
    scores: ``[n]`` scores of normal (training) data.
    method: ``'quantile'`` (the ``q``-quantile, so about ``1 - q`` of normal data raises an alarm) or
      ``'mean_std'`` (``mean + k * std``, the 3-sigma rule by default).
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1 or scores.size == 0:
    raise ValueError(f"fit_threshold: `scores` must be a non-empty 1-d array; got shape {scores.shape}.")
  if method == "quantile":
    if not 0.0 < q < 1.0:
      raise ValueError(f"fit_threshold: `q` must be in (0, 1); got {q}.")
    return float(np.quantile(scores, q))
  if method == "mean_std":
    return float(scores.mean() + k * scores.std())
  raise ValueError(f"fit_threshold: `method` must be 'quantile' or 'mean_std'; got {method!r}.")


@dataclasses.dataclass
class FaultDetector:
  """A trained autoencoder and its alarm threshold.

  Attributes:
    model, variables: the autoencoder.
    threshold: scores above it are faults.
    train_scores: the scores of the normal training data the threshold came from.
    fit: the trainer's :class:`zoo.recipes.train.FitResult` (history, state).
  """
  model: nn.Module
  variables: Any
  threshold: float
  train_scores: np.ndarray
  fit: Any = None

  def scores(self, x) -> np.ndarray:
    """Anomaly scores ``[n]`` of ``x [n, ...]``."""
    return fault_scores(self.model, self.variables, x)

  def predict(self, x) -> np.ndarray:
    """Boolean ``[n]``: True where the score exceeds the threshold."""
    return self.scores(x) > self.threshold


def train_ae_detector(model: nn.Module, normal_data, *, input_key: str = "x", steps: int = 2000,
                      batch_size: int = 64, optimizer=None, method: str = "quantile", q: float = 0.99,
                      k: float = 3.0, seed: int = 0, mesh=None, **fit_kwargs) -> FaultDetector:
  """Trains ``model`` to reconstruct ``normal_data`` and sets the threshold from its training scores.

  Args:
    model: an autoencoder (``zoo.core.Autoencoder``, ``DenoisingAutoencoder``, ``SparseAutoencoder`` ...).
    normal_data: ``[n, ...]`` float array of normal examples, or a dict holding it under ``input_key``.
    input_key: the batch key of the examples.
    steps, batch_size, optimizer, seed, mesh: passed to ``zoo.recipes.train.fit`` (optimizer default
      ``optax.adam(1e-3)``, the review's choice).
    method, q, k: how the threshold is set (:func:`fit_threshold`).
    **fit_kwargs: other ``fit`` arguments (``log_every``, ``progress`` ...).
  """
  if isinstance(normal_data, Mapping):
    if input_key not in normal_data:
      raise KeyError(f"train_ae_detector: `normal_data` has no key {input_key!r}; it has {sorted(normal_data)}.")
    x = np.asarray(normal_data[input_key])
  else:
    x = np.asarray(normal_data)
  if x.ndim < 2 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"train_ae_detector: `normal_data` must be a float array [n, ...] (rank >= 2); got shape "
                     f"{x.shape}, dtype {x.dtype}.")
  result = train_lib.fit(model, {input_key: x}, task=tasks.Reconstruction(input_key=input_key), steps=steps,
                         batch_size=batch_size, optimizer=optimizer, seed=seed, mesh=mesh, **fit_kwargs)
  train_scores = fault_scores(model, result.variables, x)
  threshold = fit_threshold(train_scores, method=method, q=q, k=k)
  return FaultDetector(model=model, variables=result.variables, threshold=threshold, train_scores=train_scores,
                       fit=result)
