"""Image restoration losses and task of MAXIM (Tu et al., "MAXIM: Multi-Axis MLP for Image Processing", CVPR 2022,
arXiv 2201.02973, Sec. 3.4).

* :func:`charbonnier`: ``sqrt((pred - target)^2 + eps^2)`` averaged over pixels and channels, ``eps = 1e-3``.
  ``pred, target: [batch, h, w, c] -> [batch]``.
* :func:`fft_l1`: the frequency loss ``|F(pred) - F(target)|_1``, the 2-D FFT over ``(h, w)``, real and imaginary
  parts each in the L1 (as in the MIMO-UNet frequency loss MAXIM follows), averaged. ``[batch, h, w, c] -> [batch]``.
* :func:`psnr`: ``10 log10(peak^2 / MSE)`` per example. ``[batch, h, w, c] -> [batch]``.
* :class:`Restoration` (``task.name = 'restoration.Restoration'``): the model returns one restored image or a
  sequence of them (MAXIM's stage outputs, coarse to final); the loss is the paper's
  ``sum_s [charbonnier(R_s, Y) + lambda * fft_l1(R_s, Y)]`` with ``lambda = 0.1``. Metrics: ``loss``, ``psnr``
  (of the last output clipped to [0, peak]), ``psnr_input`` (of the degraded input, when it has the target's
  shape) and ``mse``. Training uses the default ``backprop`` procedure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp

from zoo.recipes.tasks import LabelError

__all__ = ["Restoration", "charbonnier", "fft_l1", "psnr"]


def charbonnier(pred, target, eps: float = 1e-3):
  """Charbonnier penalty ``mean sqrt((pred - target)^2 + eps^2)`` per example: ``[b, ...] -> [b]``."""
  d = (pred - target).astype(jnp.float32)
  return jnp.mean(jnp.sqrt(d * d + eps * eps).reshape(d.shape[0], -1), axis=-1)


def fft_l1(pred, target):
  """L1 distance of the 2-D spectra over axes (1, 2) of ``[b, h, w, c]`` (real and imaginary parts): ``-> [b]``."""
  d = jnp.fft.fft2((pred - target).astype(jnp.float32), axes=(1, 2))  # linear: F(p) - F(t) = F(p - t)
  return jnp.mean((jnp.abs(d.real) + jnp.abs(d.imag)).reshape(d.shape[0], -1), axis=-1)


def psnr(pred, target, peak: float = 1.0):
  """Peak signal-to-noise ratio in dB per example: ``[b, ...] -> [b]``."""
  mse = jnp.mean(((pred - target).astype(jnp.float32) ** 2).reshape(pred.shape[0], -1), axis=-1)
  return 10.0 * jnp.log10(peak ** 2 / jnp.maximum(mse, 1e-12))


@dataclasses.dataclass(frozen=True)
class Restoration:
  """Per-stage Charbonnier + ``fft_weight`` * FFT-L1 against ``batch[target_key]`` ``[b, h, w, c]``."""
  input_key: str = "x"
  target_key: str = "y"
  fft_weight: float = 0.1
  eps: float = 1e-3
  peak: float = 1.0

  def inputs(self, batch):
    if self.input_key not in batch:
      raise KeyError(f"Restoration: the batch has no key {self.input_key!r}; it has {sorted(batch)}.")
    return batch[self.input_key]

  def _stages(self, outputs, batch) -> tuple:
    if self.target_key not in batch:
      raise KeyError(f"Restoration: the batch has no key {self.target_key!r}; it has {sorted(batch)}.")
    y = batch[self.target_key]
    stages = tuple(outputs) if isinstance(outputs, Sequence) else (outputs,)
    if not stages:
      raise ValueError("Restoration: the model returned no output images.")
    for s, out in enumerate(stages):
      if tuple(out.shape) != tuple(y.shape):
        raise LabelError(f"Restoration: batch key {self.target_key!r} must have the model output's shape "
                         f"{tuple(out.shape)} (output {s}); got {tuple(y.shape)}.")
    return stages, y

  def loss(self, outputs, batch):
    stages, y = self._stages(outputs, batch)
    return sum(charbonnier(r, y, self.eps) + self.fft_weight * fft_l1(r, y) for r in stages)

  def metrics(self, outputs, batch):
    stages, y = self._stages(outputs, batch)
    final = jnp.clip(stages[-1], 0.0, self.peak)
    out = {"loss": self.loss(outputs, batch), "psnr": psnr(final, y, self.peak),
           "mse": jnp.mean(((final - y) ** 2).reshape(y.shape[0], -1), axis=-1)}
    x = batch.get(self.input_key)
    if x is not None and tuple(x.shape) == tuple(y.shape):
      out["psnr_input"] = psnr(x, y, self.peak)
    return out
