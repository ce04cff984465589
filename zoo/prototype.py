"""The prototype network: an autoencoder whose code space holds learned prototypes that the classifier reads through
their distances, so every prediction is explained by the nearest prototypes (which decode to images).

Paper: "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its Predictions",
Li, Liu, Chen and Rudin, AAAI 2018 (arXiv 1710.04806). Reference code: github.com/OscarcarLi/PrototypeDL.

:class:`ProtoAE` ``(image [b, H, W, C] in [0, 1]) -> logits [b, num_classes]``:

* encoder ``f``: ``len(features)`` 3x3 stride-2 'SAME' convolutions with ReLU (the paper: 32/32/32/10 maps on MNIST,
  a 40-d code); the code ``z = f(x)`` is flattened to ``[b, code_dim]``;
* decoder ``g``: the mirrored 3x3 stride-2 transposed convolutions, ReLU between and a sigmoid output, cropped to
  ``H x W`` (stride 2 doubles sizes; 28 -> 14 -> 7 -> 4 -> 2 comes back as 32);
* prototype layer: ``m`` prototypes ``p_j [code_dim]`` (``U(0, 1)`` init); ``d_j(x) = |f(x) - p_j|^2``;
* classifier: ``logits = d W``, ``W [m, K]`` (``U(0, 1)`` init) and no bias, as in the paper (a negative
  ``W_jk`` means being close to ``p_j`` raises class ``k``).

The loss (the paper's eq. 1): ``lambda_class CE + lambda R + lambda_1 R1 + lambda_2 R2`` with
``R = mean_i |g(f(x_i)) - x_i|^2`` (summed over pixels), ``R1 = mean_j min_i |p_j - f(x_i)|^2`` (every prototype
near some encoded input: decoded prototypes look like data) and ``R2 = mean_i min_j |f(x_i) - p_j|^2`` (every
input near some prototype); defaults ``20, 1, 1, 1``. The model sows ``R``, ``R1``, ``R2`` times
``lambda / lambda_class`` (``'losses'`` collection); the classification task's CE is the remaining term, so the
backprop total is the paper's loss divided by ``lambda_class`` (the same Adam updates). ``lambda_1 = 0`` is the
ablation of the prototype-to-data term.

Functions: :func:`proto_losses` ``(model, variables, image) -> {'R', 'R1', 'R2'}`` (unweighted);
:func:`decode_prototypes` ``(model, variables) -> [m, H, W, C]`` (``g(p_j)``, the explanation images);
:func:`explain` ``(model, variables, image, k) -> (indices [b, k], distances [b, k])`` (nearest prototypes);
:func:`prototype_classes` ``(variables) -> [m]`` (for each prototype, the class whose weight is most negative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers

__all__ = ["ProtoAE", "decode_prototypes", "explain", "proto_losses", "prototype_classes"]

Array = jax.Array


def _uniform(key, shape, dtype=jnp.float32):
  return jax.random.uniform(key, shape, dtype)


class ProtoAE(nn.Module):
  """Autoencoder + prototype layer + linear head (module docstring).

  Attributes:
    num_classes: ``K``.
    num_prototypes: ``m`` (15 in the paper).
    features: encoder maps per stride-2 conv (the paper: ``(32, 32, 32, 10)``).
    image_shape: ``(H, W, C)`` the decoder restores (set from the input at init; needed by ``decode``).
    lambda_class, lambda_ae, lambda_1, lambda_2: the loss weights (20, 1, 1, 1).
  """
  num_classes: int = 10
  num_prototypes: int = 15
  features: Sequence[int] = (32, 32, 32, 10)
  image_shape: Sequence[int] = (28, 28, 1)
  lambda_class: float = 20.0
  lambda_ae: float = 1.0
  lambda_1: float = 1.0
  lambda_2: float = 1.0

  def _code_shape(self):
    h, w, _ = self.image_shape
    n = len(self.features)
    return (math.ceil(h / 2 ** n), math.ceil(w / 2 ** n), self.features[-1])

  def setup(self):
    if not self.features:
      raise ValueError("ProtoAE: `features` must name at least one conv layer.")
    if self.num_prototypes < 1 or self.num_classes < 1:
      raise ValueError(f"ProtoAE: `num_prototypes` and `num_classes` must be >= 1; got {self.num_prototypes}, "
                       f"{self.num_classes}.")
    self.encoder = [layers.conv(f, (3, 3), strides=2, name=f"enc_{i}") for i, f in enumerate(self.features)]
    channels = list(self.features[:-1])[::-1] + [self.image_shape[2]]
    self.decoder = [nn.ConvTranspose(c, (3, 3), strides=(2, 2), padding="SAME", name=f"dec_{i}")
                    for i, c in enumerate(channels)]
    code_dim = math.prod(self._code_shape())
    self.prototypes = self.param("prototypes", layers.partitioned(_uniform, (None, "embed")),
                                 (self.num_prototypes, code_dim))
    self.head = self.param("head", layers.partitioned(_uniform, (None, "classes")),
                           (self.num_prototypes, self.num_classes))

  def _check(self, image):
    layers.check_shape(image, "image", "batch height width channels", where="ProtoAE", dtype="floating",
                       height=self.image_shape[0], width=self.image_shape[1], channels=self.image_shape[2])

  def encode(self, image: Array) -> Array:
    """``f(x)``: ``image [b, H, W, C]`` -> ``[b, code_dim]``."""
    self._check(image)
    z = image.astype(jnp.float32)
    for conv in self.encoder:
      z = jax.nn.relu(conv(z))
    return z.reshape(z.shape[0], -1)

  def decode(self, code: Array) -> Array:
    """``g(z)``: ``code [b, code_dim]`` -> ``[b, H, W, C]`` in (0, 1)."""
    z = code.reshape((code.shape[0],) + self._code_shape())
    for i, deconv in enumerate(self.decoder):
      z = deconv(z)
      z = jax.nn.sigmoid(z) if i == len(self.decoder) - 1 else jax.nn.relu(z)
    return z[:, :self.image_shape[0], :self.image_shape[1]]

  def distances(self, code: Array) -> Array:
    """``d [b, m]``: squared distances of codes to the prototypes."""
    return jnp.sum((code[:, None, :] - self.prototypes[None]) ** 2, axis=-1)

  def losses(self, image: Array) -> dict[str, Array]:
    """The unweighted ``R``, ``R1``, ``R2`` on a batch."""
    code = self.encode(image)
    d = self.distances(code)
    recon = self.decode(code)
    r = jnp.mean(jnp.sum((recon - image) ** 2, axis=(1, 2, 3)))
    return {"R": r, "R1": jnp.mean(jnp.min(d, axis=0)), "R2": jnp.mean(jnp.min(d, axis=1))}

  def __call__(self, image: Array) -> Array:
    """``image [b, H, W, C]`` -> logits ``[b, num_classes]``; sows the weighted ``R``, ``R1``, ``R2``."""
    code = self.encode(image)
    d = self.distances(code)
    if not self.is_initializing():
      terms = self.losses(image)
      for name, lam in (("R", self.lambda_ae), ("R1", self.lambda_1), ("R2", self.lambda_2)):
        self.sow("losses", name, lam / self.lambda_class * terms[name])
    else:
      self.decode(code)  # creates the decoder's parameters
    return d @ self.head

  def decode_prototypes(self) -> Array:
    """``g(p_j)`` ``[m, H, W, C]``."""
    return self.decode(self.prototypes)


def proto_losses(model: ProtoAE, variables, image: Array) -> dict[str, Array]:
  """``{'R', 'R1', 'R2'}`` unweighted, for ``image [b, H, W, C]``."""
  return model.apply(variables, image, method="losses")


def decode_prototypes(model: ProtoAE, variables) -> Array:
  """The prototypes decoded to images ``[m, H, W, C]``."""
  return model.apply(variables, method="decode_prototypes")


def explain(model: ProtoAE, variables, image: Array, k: int = 3) -> tuple[Array, Array]:
  """The ``k`` nearest prototypes of each input: ``(indices [b, k], squared distances [b, k])``."""
  if not 1 <= k <= model.num_prototypes:
    raise ValueError(f"explain: `k` must be in [1, num_prototypes={model.num_prototypes}]; got {k}.")
  d = model.apply(variables, image, method=lambda m, x: m.distances(m.encode(x)))
  neg, idx = jax.lax.top_k(-d, k)
  return idx, -neg


def prototype_classes(variables) -> Array:
  """``[m]``: for each prototype, the class whose head weight is most negative (the class it supports)."""
  return jnp.argmin(nn.unbox(variables["params"]["head"]), axis=-1)
