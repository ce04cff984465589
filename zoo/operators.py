"""Baseline operator-learning networks on grids: a CNN, a U-Net and a Fourier neural operator (FNO).

The baselines MgNO (He, Liu and Xu, ICLR 2024, arXiv:2310.19809) is compared with:

* :class:`CNN`: ``num_layers`` 3x3 convolutions with GELU (a local operator: its receptive field grows by one node
  per layer).
* :class:`UNet`: Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
  2015, arXiv:1505.04597: two 3x3 convolutions per level, stride-2 convolutions down, transposed convolutions up,
  skip connections by concatenation.
* :class:`FNO`: Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021,
  arXiv:2010.08895: lifting (with the grid coordinates appended), ``num_layers`` Fourier layers
  ``sigma(K u + W u)`` where ``K`` multiplies the lowest ``modes`` Fourier modes per axis by learned complex
  matrices, and a two-layer projection.

All take ``x: [batch, *spatial, in_channels]`` (1D or 2D) and return ``[batch, *spatial, out_features]``, and are
sized for small experiments (a few tens of thousands of parameters by default).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from zoo import layers

__all__ = ["CNN", "FNO", "UNet"]

_gelu = lambda x: nn.gelu(x, approximate=False)


def _check(x, where: str):
  layers.check_shape(x, "x", "... channels", where=where, dtype="floating")
  if x.ndim not in (3, 4):
    raise ValueError(f"{where}: `x` must have shape [batch, length, channels] (1D) or [batch, height, width, "
                     f"channels] (2D); got shape {tuple(x.shape)}.")


class CNN(nn.Module):
  """A stack of 3x3 convolutions with GELU; the last one is linear. ``[batch, *spatial, c] -> [..., out_features]``.

  Attributes:
    features: channels of the hidden layers.
    num_layers: convolutions (the receptive field is ``2 * num_layers + 1`` nodes per axis).
    out_features: output channels.
  """
  features: int = 32
  num_layers: int = 6
  out_features: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    _check(x, "CNN")
    window = (3,) * (x.ndim - 2)
    for i in range(self.num_layers - 1):
      x = _gelu(layers.conv(self.features, window, dtype=self.dtype, name=f"conv_{i}")(x))
    return layers.conv(self.out_features, window, dtype=self.dtype, name="out")(x)


class UNet(nn.Module):
  """A U-Net: ``levels`` resolutions, width doubling per level. Spatial sizes must be divisible by 2^(levels-1).

  Attributes:
    features: channels at the finest level.
    levels: number of resolutions.
    out_features: output channels.
  """
  features: int = 16
  levels: int = 3
  out_features: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    _check(x, "UNet")
    d = x.ndim - 2
    factor = 2 ** (self.levels - 1)
    if any(n % factor for n in x.shape[1:-1]):
      raise ValueError(f"UNet: the spatial sizes of `x` {tuple(x.shape[1:-1])} must be divisible by "
                       f"2^(levels-1) = {factor}.")
    window, stride = (3,) * d, (2,) * d

    def block(x, c, name):
      x = _gelu(layers.conv(c, window, dtype=self.dtype, name=f"{name}_a")(x))
      return _gelu(layers.conv(c, window, dtype=self.dtype, name=f"{name}_b")(x))

    skips = []
    for level in range(self.levels):
      x = block(x, self.features * 2 ** level, f"down_{level}")
      if level < self.levels - 1:
        skips.append(x)
        x = layers.conv(self.features * 2 ** (level + 1), window, strides=stride, dtype=self.dtype,
                        name=f"pool_{level}")(x)
    for level in range(self.levels - 2, -1, -1):
      c = self.features * 2 ** level
      x = nn.ConvTranspose(c, stride, strides=stride, dtype=self.dtype,
                           kernel_init=layers.partitioned(nn.initializers.lecun_normal(),
                                                          (None,) * d + ("conv_in", "conv_out")),
                           bias_init=layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)),
                           name=f"up_{level}")(x)
      x = block(jnp.concatenate([x, skips[level]], axis=-1), c, f"dec_{level}")
    return layers.conv(self.out_features, (1,) * d, dtype=self.dtype, name="out")(x)


class SpectralConv(nn.Module):
  """``K u``: the lowest ``modes`` Fourier modes per axis multiplied by learned complex ``[c_in, c_out]`` matrices."""
  features: int
  modes: int

  @nn.compact
  def __call__(self, x):
    d = x.ndim - 2
    spatial = x.shape[1:-1]
    cin = x.shape[-1]
    axes = tuple(range(1, d + 1))
    x_ft = jnp.fft.rfftn(x.astype(jnp.float32), axes=axes)
    m_last = min(self.modes, spatial[-1] // 2 + 1)
    # Corner blocks of the spectrum: low positive and negative frequencies on the non-last axes.
    corners = [()]
    for n in spatial[:-1]:
      m = min(self.modes, n // 2)
      corners = [c + (s,) for c in corners for s in (slice(0, m), slice(n - m, n))]
    scale = 1.0 / (cin * self.features)
    out = jnp.zeros(x_ft.shape[:-1] + (self.features,), x_ft.dtype)
    for k, corner in enumerate(corners):
      index = (slice(None),) + corner + (slice(0, m_last),)
      block = x_ft[index]
      shape = block.shape[1:-1] + (cin, self.features)
      init = lambda key, s, scale=scale: scale * nn.initializers.uniform(1.0)(key, s)  # FNO's: scale * U[0, 1)
      w = self.param(f"weight_{k}", layers.partitioned(init, (None,) * d + ("conv_in", "conv_out", None)),
                     shape + (2,))
      w = w[..., 0] + 1j * w[..., 1]
      out = out.at[index].set(jnp.einsum("b...i,...io->b...o", block, w))
    return jnp.fft.irfftn(out, s=spatial, axes=axes).astype(x.dtype)


class FNO(nn.Module):
  """A Fourier neural operator. ``[batch, *spatial, c] -> [batch, *spatial, out_features]``.

  Attributes:
    features: width of the Fourier layers.
    modes: Fourier modes kept per axis.
    num_layers: Fourier layers.
    projection: hidden width of the projection.
    out_features: output channels.
  """
  features: int = 16
  modes: int = 8
  num_layers: int = 4
  projection: int = 64
  out_features: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    _check(x, "FNO")
    d = x.ndim - 2
    spatial = x.shape[1:-1]
    grids = jnp.meshgrid(*[jnp.linspace(0.0, 1.0, n) for n in spatial], indexing="ij")
    coords = jnp.broadcast_to(jnp.stack(grids, -1)[None], (x.shape[0],) + tuple(spatial) + (d,)).astype(x.dtype)
    x = layers.dense(self.features, dtype=self.dtype, name="lift")(jnp.concatenate([x, coords], -1))
    for i in range(self.num_layers):
      y = SpectralConv(self.features, self.modes, name=f"spectral_{i}")(x)
      y = y + layers.dense(self.features, axes=("embed", "mlp"), dtype=self.dtype, name=f"pointwise_{i}")(x)
      x = _gelu(y) if i < self.num_layers - 1 else y
    x = _gelu(layers.dense(self.projection, dtype=self.dtype, name="proj_hidden")(x))
    return layers.dense(self.out_features, dtype=self.dtype, name="proj_out")(x)
