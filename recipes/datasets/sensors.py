"""Planted sensor data for fault detection (the application section of the deep learning review, arXiv:1905.13294).

``sensors``: 8 sensor channels driven by 2 hidden latent phases ``theta in [-1, 1]^2``. Channel ``j`` reads
``g_j * sin(pi/2 * w_j . theta + b_j) + noise`` with fixed random ``w_j``, ``b_j``, ``g_j`` (the same for every
split of a seed), so normal readings lie near a curved 2-d surface in R^8 that no 2-d linear subspace contains.

* ``train``: normal operation only, ``theta`` uniform on the square (what a detector may learn from).
* ``test``: one time series whose phases wander (a reflected random walk, ``walk_step`` per sample); faults are
  injected in segments of 20-60 samples (``fault_fraction`` of the samples), each on one random channel, of one
  of three kinds:

  - ``stuck`` (1): the channel freezes at its reading at the onset of the fault,
  - ``drift`` (2): an offset growing linearly from 0 to ``fault_magnitude`` over the segment,
  - ``bias`` (3): a constant offset of ``fault_magnitude`` (uniform in the range, random sign).

``noise`` is the standard deviation of the Gaussian reading noise (signal amplitudes ``g_j`` are 0.5-1.5);
``frequency`` scales ``w_j`` and so the curvature of the surface. Early samples of a drift or of a stuck channel
differ from normal readings by less than the noise, so no detector reaches an ROC-AUC of 1 here.

Every example: ``x`` float32 ``[8]``, ``fault`` int64 (0 normal, 1 faulty), ``fault_type`` int64 (0 none, or the
kinds above), ``theta`` float32 ``[2]`` (the hidden phases, for analysis only).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["FAULT_TYPES", "sensors"]

FAULT_TYPES = ("none", "stuck", "drift", "bias")
NUM_CHANNELS = 8


def _readings(theta, w, b, g, noise, rng):
  clean = g * np.sin(0.5 * np.pi * theta @ w.T + b)
  return clean + noise * rng.normal(size=clean.shape)


def _random_walk(rng, n: int, step: float) -> np.ndarray:
  theta = np.empty((n, 2))
  theta[0] = rng.uniform(-1, 1, size=2)
  for t in range(1, n):
    nxt = theta[t - 1] + step * rng.normal(size=2)
    nxt = np.where(nxt > 1, 2 - nxt, nxt)  # reflect at the walls of [-1, 1]^2
    theta[t] = np.where(nxt < -1, -2 - nxt, nxt)
  return theta


def _inject(rng, x: np.ndarray, fault_fraction: float, min_len: int, max_len: int, magnitude: tuple[float, float]):
  """Faulty copy of the series ``x [n, channels]`` and per-sample ``fault_type``."""
  n = len(x)
  x = x.copy()
  kind = np.zeros(n, np.int64)
  mean_len = 0.5 * (min_len + max_len)
  mean_gap = mean_len * (1.0 - fault_fraction) / max(fault_fraction, 1e-6)
  t = int(rng.integers(0, int(mean_gap) + 1))
  while t < n:
    length = int(rng.integers(min_len, max_len + 1))
    end = min(t + length, n)
    channel = int(rng.integers(0, x.shape[1]))
    k = int(rng.integers(1, 4))
    size = rng.uniform(*magnitude) * rng.choice([-1.0, 1.0])
    if k == 1:
      x[t:end, channel] = x[t, channel]
    elif k == 2:
      x[t:end, channel] += size * np.arange(1, end - t + 1) / length
    else:
      x[t:end, channel] += size
    kind[t:end] = k
    t = end + int(rng.integers(int(0.5 * mean_gap), int(1.5 * mean_gap) + 2))
  return x, kind


@data.register("sensors", version="1.0.0")
def sensors(n_train: int = 4000, n_test: int = 4000, noise: float = 0.05, fault_fraction: float = 0.3,
            walk_step: float = 0.15, fault_magnitude: tuple[float, float] = (0.4, 1.0), frequency: float = 0.6,
            seed: int = 0) -> data.Generated:
  """8 sensor channels on a curved 2-d surface; normal ``train`` split, ``test`` series with injected faults."""
  if not 0.0 <= fault_fraction < 1.0:
    raise ValueError(f"sensors: `fault_fraction` must be in [0, 1); got {fault_fraction}.")
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(NUM_CHANNELS, 2)) * frequency
  b = rng.uniform(0, 2 * np.pi, size=NUM_CHANNELS)
  g = rng.uniform(0.5, 1.5, size=NUM_CHANNELS)

  theta_train = rng.uniform(-1, 1, size=(n_train, 2))
  x_train = _readings(theta_train, w, b, g, noise, rng)
  theta_test = _random_walk(rng, n_test, walk_step)
  x_test, kind = _inject(rng, _readings(theta_test, w, b, g, noise, rng), fault_fraction, 20, 60,
                         tuple(fault_magnitude))

  def split(x, theta, kind):
    return {"x": x.astype(np.float32), "fault": (kind > 0).astype(np.int64), "fault_type": kind.astype(np.int64),
            "theta": theta.astype(np.float32)}

  return data.Generated({"train": split(x_train, theta_train, np.zeros(n_train, np.int64)),
                         "test": split(x_test, theta_test, kind)},
                        metadata={"channels": NUM_CHANNELS, "latent_dim": 2, "fault_types": list(FAULT_TYPES)})
