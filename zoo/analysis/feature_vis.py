"""Multifaceted feature visualisation: activation maximisation started from the mean image of each facet of a class.

Paper: "Multifaceted Feature Visualization: Uncovering the Different Types of Features Learned By Each Neuron in
Deep Neural Networks" (Nguyen, Yosinski, Clune, ICML 2016 Visualization workshop, arXiv 1602.03616). A class unit
responds to several different kinds of images (its *facets*: a bell pepper whole, sliced, in a bowl). Plain
activation maximisation (AM) from random noise finds one mixture of them. The paper (§2):

1. embeds the training images of class ``c`` with the penultimate layer (fc7), reduces the embeddings (PCA, then
   t-SNE in the paper; PCA only here) and clusters them with k-means (k = 10); facets are ranked by cluster size;
2. per facet, runs AM on the class's pre-softmax unit, ``x* = argmax_x a_c(x) - lambda ||x||^2``, starting from the
   *mean image* of the facet's images (mean-image initialisation), with the regularisers of Yosinski et al. (2015):
   random jitter of the image at each step, a Gaussian blur every few steps and clipping to the valid pixel range;
3. center-biased regularisation (§2.3): optimise the whole image first, then update only a central window that
   shrinks step by step, so one centred object is drawn instead of repeated fragments.

Public names (``images: [batch, height, width, channels]`` float, the inputs of a zoo classifier whose
``model.apply(variables, x)`` returns logits ``[batch, classes]``):

* :func:`activation_maximization` ``(model, variables, x0, cls, *, steps=200, learning_rate=0.05, l2=1e-3,
  jitter=1, blur_every=4, blur_sigma=0.5, clip=(0, 1), window=None, optimizer='sgd', seed=0)`` -> ``(x [batch, h,
  w, c], activation [batch])``: optax ascent (``'sgd'``: the paper's plain gradient ascent, or ``'adam'``) on
  ``a_cls(jitter(x)) - l2 ||x||^2`` from ``x0``, jitted (one compile per model, shapes and step count; the
  variables are arguments, so any trained copy reuses it). ``window``:
  per-step update masks ``[steps, h, w]`` (:func:`center_biased_schedule`).
* :func:`center_biased_schedule` ``(steps, height, width, *, full_fraction=0.5, stages=3, min_fraction=0.5)`` ->
  ``[steps, height, width]`` 0/1 masks: all ones for the first ``full_fraction`` of the steps, then ``stages``
  centred windows shrinking linearly to ``min_fraction`` of each side.
* :func:`class_facets` ``(model, variables, images, labels, cls, *, k=10, layer=None, n_components=10, seed=0)``
  -> :class:`Facets`: k-means facets of class ``cls`` on PCA-reduced post-ReLU penultimate embeddings
  (``capture_intermediates``, as ``zoo.analysis.repsim.unit_activations``; ``layer`` defaults to the last hidden
  dense layer of ``zoo.core.ConvNet``/``MLP``), largest facet first.
* :func:`multifaceted_visualization` ``(model, variables, images, labels, cls, *, k=10, mean_image_init=True,
  center_bias=True, seed=0, noise=0.05, facets=None, **am_kwargs)`` -> ``(x [k, h, w, c], Facets)``: one AM image
  per facet, ranked as the facets; ``mean_image_init=False`` starts every facet from :func:`random_start` instead
  (the ablation: the paper's random-initialisation AM).
* :func:`random_start` ``(shape, images, *, seed, noise, clip)``: the data's mean pixel value plus N(0, noise^2).
* :func:`gaussian_blur` ``(x [batch, h, w, c], sigma)`` -> the same shape (separable kernel, zero padding).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import threadpoolctl

from zoo.layers import check_shape

__all__ = ["Facets", "activation_maximization", "center_biased_schedule", "class_facets", "gaussian_blur",
           "multifaceted_visualization", "random_start"]


def _gaussian_kernel(sigma: float) -> np.ndarray:
  radius = max(1, int(math.ceil(2 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  return (k / k.sum()).astype(np.float32)


def gaussian_blur(x, sigma: float) -> jax.Array:
  """Separable Gaussian blur of each channel of ``x [batch, h, w, c]`` ('SAME' size, zero padding)."""
  check_shape(x, "x", "batch height width channels", where="gaussian_blur", dtype="floating")
  if not sigma > 0:
    raise ValueError(f"gaussian_blur: `sigma` must be > 0; got {sigma!r}.")
  k = jnp.asarray(_gaussian_kernel(float(sigma)))
  c = x.shape[-1]
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(k[:, None, None, None], (1, 1, 1, c))
  kw = jnp.tile(k[None, :, None, None], (1, 1, 1, c))
  y = jax.lax.conv_general_dilated(x, kh.astype(x.dtype), (1, 1), "SAME", dimension_numbers=dn,
                                   feature_group_count=c)
  return jax.lax.conv_general_dilated(y, kw.astype(x.dtype), (1, 1), "SAME", dimension_numbers=dn,
                                      feature_group_count=c)


def center_biased_schedule(steps: int, height: int, width: int, *, full_fraction: float = 0.5, stages: int = 3,
                           min_fraction: float = 0.5) -> np.ndarray:
  """Per-step update masks ``[steps, height, width]``: the full image, then centred windows that shrink."""
  where = "center_biased_schedule"
  for name, v in (("steps", steps), ("height", height), ("width", width), ("stages", stages)):
    if not (isinstance(v, (int, np.integer)) and v >= 1):
      raise ValueError(f"{where}: `{name}` must be a positive integer; got {v!r}.")
  if not 0.0 <= full_fraction <= 1.0:
    raise ValueError(f"{where}: `full_fraction` must be in [0, 1]; got {full_fraction!r}.")
  if not 0.0 < min_fraction <= 1.0:
    raise ValueError(f"{where}: `min_fraction` must be in (0, 1]; got {min_fraction!r}.")
  masks = np.ones((steps, height, width), np.float32)
  start = int(round(full_fraction * steps))
  rest = steps - start
  for s in range(stages):
    lo_step, hi_step = start + (rest * s) // stages, start + (rest * (s + 1)) // stages
    frac = 1.0 - (1.0 - min_fraction) * (s + 1) / stages
    h, w = max(1, int(round(frac * height))), max(1, int(round(frac * width)))
    top, left = (height - h) // 2, (width - w) // 2
    window = np.zeros((height, width), np.float32)
    window[top:top + h, left:left + w] = 1.0
    masks[lo_step:hi_step] = window
  return masks


_OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


@functools.partial(jax.jit, static_argnames=("model", "steps", "jitter", "blur_every", "blur_sigma", "optimizer"))
def _ascend(model, variables, x0, masks, cls, key, learning_rate, l2, lo, hi, *, steps, jitter, blur_every,
            blur_sigma, optimizer):
  opt = _OPTIMIZERS[optimizer](learning_rate)

  def objective(x, shift):
    # The same jitter for every image of the batch: roll by (dy, dx) pixels, as the paper's regulariser.
    xj = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2)) if jitter else x
    act = model.apply(variables, xj)[:, cls]
    return jnp.sum(act - l2 * jnp.sum(x * x, axis=(1, 2, 3))), act

  def step(carry, inputs):
    x, state = carry
    t, mask, k = inputs
    shift = jax.random.randint(k, (2,), -jitter, jitter + 1)
    grad, _ = jax.grad(objective, has_aux=True)(x, shift)
    updates, state = opt.update(-grad, state, x)  # ascent: minimise the negated objective
    x = x + updates * mask[None, :, :, None]
    if blur_every:
      x = jnp.where((t + 1) % blur_every == 0, gaussian_blur(x, blur_sigma), x)
    return (jnp.clip(x, lo, hi), state), None

  keys = jax.random.split(key, steps)
  (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), (jnp.arange(steps), masks, keys))
  return x, model.apply(variables, x)[:, cls]


def activation_maximization(model: nn.Module, variables: Any, x0, cls: int, *, steps: int = 200,
                            learning_rate: float = 0.05, l2: float = 1e-3, jitter: int = 1, blur_every: int = 4,
                            blur_sigma: float = 0.5, clip: tuple[float, float] = (0.0, 1.0), window=None,
                            optimizer: str = "sgd", seed: int = 0):
  """Maximise ``a_cls(x) - l2 ||x||^2`` from ``x0 [batch, h, w, c]``: ``(x, activation [batch])``."""
  where = "activation_maximization"
  check_shape(x0, "x0", "batch height width channels", where=where, dtype="floating")
  if not (isinstance(steps, (int, np.integer)) and steps >= 1):
    raise ValueError(f"{where}: `steps` must be a positive integer; got {steps!r}.")
  if not (isinstance(jitter, (int, np.integer)) and jitter >= 0):
    raise ValueError(f"{where}: `jitter` (pixels) must be an integer >= 0; got {jitter!r}.")
  if not (isinstance(blur_every, (int, np.integer)) and blur_every >= 0):
    raise ValueError(f"{where}: `blur_every` must be an integer >= 0 (0: no blur); got {blur_every!r}.")
  if optimizer not in _OPTIMIZERS:
    raise ValueError(f"{where}: `optimizer` must be one of {sorted(_OPTIMIZERS)}; got {optimizer!r}.")
  lo, hi = clip
  if not lo < hi:
    raise ValueError(f"{where}: `clip` must be (low, high) with low < high; got {clip!r}.")
  if l2 < 0:
    raise ValueError(f"{where}: `l2` must be >= 0; got {l2!r}.")
  logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x0[:1])
  if len(logits.shape) != 2:
    raise ValueError(f"{where}: the model must return logits [batch, classes]; got shape {logits.shape}.")
  if not (isinstance(cls, (int, np.integer)) and 0 <= cls < logits.shape[1]):
    raise ValueError(f"{where}: `cls` must be a class index in [0, {logits.shape[1]}); got {cls!r}.")
  _, h, w, _ = x0.shape
  masks = np.ones((steps, h, w), np.float32) if window is None else np.asarray(window, np.float32)
  if masks.shape != (steps, h, w):
    raise ValueError(f"{where}: `window` must have shape [steps={steps}, height={h}, width={w}]; got {masks.shape}.")
  return _ascend(model, variables, jnp.asarray(x0, jnp.float32), jnp.asarray(masks), int(cls),
                 jax.random.key(seed), jnp.float32(learning_rate), jnp.float32(l2), jnp.float32(lo),
                 jnp.float32(hi), steps=int(steps), jitter=int(jitter), blur_every=int(blur_every),
                 blur_sigma=float(blur_sigma), optimizer=optimizer)


@dataclasses.dataclass(frozen=True)
class Facets:
  """The k-means facets of one class, largest first.

  Attributes:
    indices: per facet, the indices (into the ``images`` given to :func:`class_facets`) of its images.
    sizes: ``[k]`` number of images per facet (descending).
    means: ``[k, h, w, c]`` the mean image of each facet.
    embeddings: ``[n_class, n_components]`` the PCA-reduced penultimate embeddings of the class's images.
    assignment: ``[n_class]`` the facet rank of each of the class's images (order of ``class_indices``).
    class_indices: ``[n_class]`` indices of the class's images in ``images``.
  """
  indices: list[np.ndarray]
  sizes: np.ndarray
  means: np.ndarray
  embeddings: np.ndarray
  assignment: np.ndarray
  class_indices: np.ndarray


def _default_layer(model):
  hidden = getattr(model, "hidden", None)
  if hidden:
    return f"dense_{len(hidden) - 1}"
  features = getattr(model, "features", None)
  if type(model).__name__ == "MLP" and features and len(features) >= 2:
    return f"dense_{len(features) - 2}"
  raise ValueError(f"class_facets: pass `layer`, the name of {type(model).__name__}'s penultimate submodule.")


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _embed(model, variables, x, layer):
  # repsim.unit_activations' capture, jitted (one compile per model and shape, not one per primitive).
  _, state = model.apply(variables, x, capture_intermediates=lambda m, _: m.name == layer, mutable=["intermediates"])
  inter = state.get("intermediates", {})
  if layer not in inter:
    raise ValueError(f"class_facets: no submodule named {layer!r} at the top level of {type(model).__name__}; "
                     f"available: {sorted(inter)}.")
  value = jax.nn.relu(inter[layer]["__call__"][0])
  return value.reshape(-1, value.shape[-1])


def class_facets(model: nn.Module, variables: Any, images, labels, cls: int, *, k: int = 10, layer: str | None = None,
                 n_components: int = 10, seed: int = 0) -> Facets:
  """k-means facets of class ``cls``'s images on their PCA-reduced post-ReLU penultimate-layer embeddings."""
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  where = "class_facets"
  check_shape(images, "images", "batch height width channels", where=where, dtype="floating")
  check_shape(labels, "labels", "batch", where=where, dtype="integer", batch=images.shape[0])
  images, labels = np.asarray(images, np.float32), np.asarray(labels)
  class_indices = np.flatnonzero(labels == cls)
  if not (isinstance(k, (int, np.integer)) and k >= 1):
    raise ValueError(f"{where}: `k` (number of facets) must be a positive integer; got {k!r}.")
  if class_indices.size < k:
    raise ValueError(f"{where}: class {cls!r} has {class_indices.size} images, fewer than k={k} facets.")
  layer = layer or _default_layer(model)
  emb = np.asarray(_embed(model, variables, jnp.asarray(images[class_indices]), layer))
  # One BLAS/OpenMP thread: on a few hundred points the thread start-up and contention cost far more than they save.
  with threadpoolctl.threadpool_limits(1):
    emb = PCA(n_components=min(n_components, *emb.shape), random_state=seed).fit_transform(emb)
    raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)
  sizes = np.bincount(raw, minlength=k)
  order = np.argsort(-sizes, kind="stable")
  rank = np.empty(k, np.int64)
  rank[order] = np.arange(k)
  assignment = rank[raw]
  indices = [class_indices[assignment == r] for r in range(k)]
  means = np.stack([images[i].mean(0) for i in indices])
  return Facets(indices=indices, sizes=sizes[order], means=means, embeddings=emb, assignment=assignment,
                class_indices=class_indices)


def random_start(shape, images, *, seed: int = 0, noise: float = 0.05, clip: tuple[float, float] = (0.0, 1.0)):
  """The random initialisation of plain AM: a uniform image at the data's mean pixel value plus Gaussian noise."""
  if noise < 0:
    raise ValueError(f"random_start: `noise` must be >= 0; got {noise!r}.")
  x = float(np.mean(images)) + noise * np.random.default_rng(seed).standard_normal(shape)
  return np.clip(x, clip[0], clip[1]).astype(np.float32)


def multifaceted_visualization(model: nn.Module, variables: Any, images, labels, cls: int, *, k: int = 10,
                               mean_image_init: bool = True, center_bias: bool = True, layer: str | None = None,
                               seed: int = 0, steps: int = 200, clip: tuple[float, float] = (0.0, 1.0),
                               noise: float = 0.05, facets: Facets | None = None, **am_kwargs):
  """One activation-maximisation image per facet of class ``cls``: ``(x [k, h, w, c], Facets)``.

  ``facets``: reuse the result of :func:`class_facets` for these arguments instead of clustering again.
  """
  if facets is None:
    facets = class_facets(model, variables, images, labels, cls, k=k, layer=layer, seed=seed)
  if mean_image_init:
    x0 = facets.means
  else:
    x0 = random_start(facets.means.shape, images, seed=seed, noise=noise, clip=clip)
  _, h, w, _ = facets.means.shape
  window = center_biased_schedule(steps, h, w) if center_bias else None
  x, _ = activation_maximization(model, variables, jnp.asarray(x0), cls, steps=steps, clip=clip, window=window,
                                 seed=seed, **am_kwargs)
  return np.asarray(x), facets
