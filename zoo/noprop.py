"""NoProp: denoising blocks that are trained without end-to-end back-propagation.

Paper: Qinyu Li, Yee Whye Teh, Razvan Pascanu, "NoProp: Training Neural Networks without Back-propagation or
Forward-propagation" (2025), arXiv:2503.24322. The training procedures are in ``zoo.recipes.procedures.noprop``; this module
holds the networks, the class embeddings and the noise schedules the procedures and the inference chains share.

The idea: a label ``y`` has an embedding ``u_y`` (a row of ``W_embed``). A fixed Gaussian process noises it,
``q(z_t | y) = N(sqrt(abar_t) u_y, (1 - abar_t) I)``, from ``z_T`` (almost clean) down to ``z_0`` (almost pure noise).
Block ``t`` is a denoiser ``u_hat_t(z_{t-1}, x) = softmax(logits_t(z_{t-1}, x)) W_embed``: it sees the image and a
noisy label embedding and predicts the clean embedding. Each block is trained on its own noisy sample of its own
level, so no block needs another block's output or gradient. At inference the blocks run as a denoising chain from
``z_0 ~ N(0, I)``: ``z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t``, and a linear classifier
``p(y | z_T)`` reads the label out of ``z_T``.

Public names:

* :func:`cosine_alpha_bar` ``(num_blocks, s=0.008, max_beta=0.999) -> [T + 1]``: ``abar_0 .. abar_T`` of the
  cosine schedule (Nichol & Dhariwal, 2021) in NoProp's direction (``abar`` grows with ``t``).
* :func:`snr` ``(alpha_bar) -> same shape``: ``abar / (1 - abar)``.
* :func:`dt_coefficients` ``(alpha_bar [T + 1]) -> (a, b, c)``, each ``[T]``: the Gaussian posterior
  ``q(z_t | z_{t-1}, y) = N(a_t u_y + b_t z_{t-1}, c_t I)`` that the inference chain imitates.
* :func:`time_embedding` ``(t [batch], features) -> [batch, features]``: sinusoidal features of ``t`` in [0, 1].
* :func:`class_prototypes` ``(x [n, ...], labels [n], num_classes) -> [num_classes, prod(...)]``: for each class the
  example with the smallest median distance to the other examples of its class (the "prototype" embedding).
* :class:`ClassEmbedding` ``(num_classes, kind='onehot' | 'learned' | 'prototype', features=None)``: the label
  embedding matrix ``W_embed [num_classes, features]``; ``__call__(prototypes=None)`` returns it.
* :class:`NoPropBlock` ``(num_classes, encoder, hidden=256, head=128, norm='batch', time_features=0,
  output='embedding')``: one denoising block, ``(x [batch, ...], z [batch, d], w_embed [classes, d], t [batch] |
  None) -> (u_hat [batch, d], logits [batch, classes])``. With ``output='vector'`` it returns an unconstrained
  vector ``[batch, d]`` instead of ``softmax(logits) W_embed`` (the flow-matching velocity) and ``logits`` is None.
* :class:`LearnedSNR` ``(gamma_0=7, gamma_1=-4, hidden=1024)``: a monotone ``gamma(t)`` (VDM, Kingma et al.,
  2021), ``SNR(t) = exp(-gamma(t))`` increasing in ``t``; ``__call__(t) -> (gamma [batch], dgamma/dt [batch])``.
* :class:`NoPropDTNet`: NoProp-DT, ``num_blocks`` (T = 10) blocks with stacked parameters (one ``blocks`` subtree
  with a leading axis of size T), the class embedding and the classifier ``p(y | z_T)``.
  ``__call__(x [batch, ...]) -> logits [batch, classes]`` runs the denoising chain; methods ``embed``,
  ``denoise_each(x, z [T, batch, d]) -> (u_hat [T, batch, d], logits [T, batch, classes])`` (every block on its own
  input, in parallel: what training uses), ``sample(x) -> z [T + 1, batch, d]`` (the chain), ``classify(z)``.
* :class:`NoPropCTNet`: NoProp-CT, one time-conditioned block ``u_hat(z_t, x, t)``, a learned noise schedule
  (:class:`LearnedSNR`), the class embedding and the classifier; ``__call__(x) -> logits`` integrates the
  probability-flow ODE (``sampler='ode'``, DDIM steps) or runs the ancestral chain (``sampler='ancestral'``) over
  ``inference_steps``; methods ``embed``, ``gamma(t)``, ``denoise(x, z, t)``, ``sample(x)``, ``classify(z)``.
* :class:`NoPropFMNet`: NoProp-FM, one time-conditioned block whose output is the velocity ``v(z_t, x, t)`` of the
  path ``z_t = t u_y + (1 - t) z_0``; ``__call__(x) -> logits = -||z_1 - u_c||^2`` after Euler integration of the
  ODE over ``inference_steps``; methods ``embed``, ``velocity(x, z, t)``, ``sample(x)``, ``classify(z)``.

The x-encoder of a block is any zoo model that maps ``x`` to a feature vector ``[batch, features]`` (its last layer
is the paper's "FC 256" after the convolutions): ``encoder='core.MLP'`` with ``encoder_kwargs={'features': (256,)}``
or ``encoder='core.ConvNet'`` with ``{'num_classes': 256, 'hidden': ()}``, or a Linen module instance. The default
is ``core.MLP((hidden,))``. Block architecture (the paper's Figure 6, "FC" = dense): x-path ``encoder -> norm``;
z-path ``FC -> norm -> ReLU``, then a residual ``FC -> norm -> ReLU -> FC -> norm``; for CT/FM a time path
``sinusoid(t) -> FC``; the paths are concatenated, then ``FC(hidden) -> norm -> ReLU -> FC(head) -> norm -> ReLU ->
FC(classes)``. ``norm='batch'`` is the paper's BatchNorm (momentum 0.9, i.e. PyTorch's 0.1); ``'layer'`` or
``None`` are options.

Noise schedule of NoProp-DT: the paper says "cosine"; the cosine schedule puts ``abar = 1`` (infinite SNR) at its
clean end, which the SNR-difference weights cannot use. Here the T + 1 latents ``z_0 .. z_T`` take the values
``abar^cos(s)`` of a cosine schedule of T + 1 steps at ``s = T + 1 - t`` (so ``z_T`` sits one step from clean data,
as DDPM's ``x_1``), with DDPM's clip of each step's ``beta`` at ``max_beta``: for T = 10, ``abar_T = 0.977``
(SNR 41) and ``abar_0 = 2e-5``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from zoo.layers import check_shape, dense, layer_norm, partitioned

__all__ = ["ClassEmbedding", "LearnedSNR", "NoPropBlock", "NoPropCTNet", "NoPropDTNet", "NoPropFMNet",
           "class_prototypes", "cosine_alpha_bar", "dt_coefficients", "snr", "time_embedding"]

Dtype = Any

EMBEDDINGS = ("onehot", "learned", "prototype")

# ---------------------------------------------------------------------------------------------------- schedules


def cosine_alpha_bar(num_blocks: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """``abar_0 .. abar_T`` (float64 ``[T + 1]``, increasing) for NoProp-DT with ``T = num_blocks``.

  ``abar_t = abar^cos(T + 1 - t)`` where ``abar^cos(s) = f(s) / f(0)``, ``f(s) = cos^2((s / (T + 1) + s0) /
  (1 + s0) * pi / 2)`` is the cosine schedule of Nichol & Dhariwal (2021) over T + 1 steps, with each step's
  ``beta = 1 - abar^cos(s) / abar^cos(s - 1)`` clipped at ``max_beta`` as they do.
  """
  if num_blocks < 1:
    raise ValueError(f"cosine_alpha_bar: `num_blocks` must be >= 1; got {num_blocks}.")
  steps = num_blocks + 1
  f = lambda k: np.cos((k / steps + s) / (1 + s) * np.pi / 2) ** 2
  k = np.arange(steps + 1, dtype=np.float64)
  betas = np.clip(1.0 - f(k[1:]) / f(k[:-1]), 0.0, max_beta)
  abar_ddpm = np.cumprod(1.0 - betas)  # abar^cos(1) .. abar^cos(T + 1)
  return abar_ddpm[::-1].copy()        # t = 0 .. T  <->  s = T + 1 .. 1


def snr(alpha_bar):
  """Signal-to-noise ratio ``abar / (1 - abar)`` (numpy or jax, any shape)."""
  return alpha_bar / (1.0 - alpha_bar)


def dt_coefficients(alpha_bar) -> tuple[Any, Any, Any]:
  """``(a, b, c)``, each ``[T]`` for ``t = 1 .. T``, of ``q(z_t | z_{t-1}, y) = N(a_t u_y + b_t z_{t-1}, c_t I)``.

  With ``alpha_{t-1} = abar_{t-1} / abar_t`` (the variance-preserving step from ``z_t`` to ``z_{t-1}``):
  ``a_t = sqrt(abar_t) (1 - alpha_{t-1}) / (1 - abar_{t-1})``, ``b_t = sqrt(alpha_{t-1}) (1 - abar_t) /
  (1 - abar_{t-1})``, ``c_t = (1 - abar_t) (1 - alpha_{t-1}) / (1 - abar_{t-1})``. If ``z_{t-1} ~ q(z_{t-1} | y)``
  then ``a_t u_y + b_t z_{t-1} + sqrt(c_t) eps ~ q(z_t | y)``.

  Args:
    alpha_bar: ``[T + 1]`` (numpy or jax), increasing.
  """
  xp = jnp if isinstance(alpha_bar, jax.Array) else np
  prev, cur = alpha_bar[:-1], alpha_bar[1:]
  alpha = prev / cur
  a = xp.sqrt(cur) * (1.0 - alpha) / (1.0 - prev)
  b = xp.sqrt(alpha) * (1.0 - cur) / (1.0 - prev)
  c = (1.0 - cur) * (1.0 - alpha) / (1.0 - prev)
  return a, b, c


def time_embedding(t, features: int, max_period: float = 10_000.0):
  """Sinusoidal features of ``t: [batch]`` in [0, 1], scaled by 1000 like DDPM's steps: ``[batch, features]``."""
  check_shape(t, "t", "batch", where="time_embedding", dtype="floating")
  if features < 2 or features % 2:
    raise ValueError(f"time_embedding: `features` must be an even number >= 2; got {features}.")
  half = features // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def class_prototypes(x, labels, num_classes: int):
  """Per class, the example of ``x`` with the smallest median distance to the other examples of that class.

  Args:
    x: ``[n, ...]`` float examples (flattened inside).
    labels: ``[n]`` int in ``[0, num_classes)``.
    num_classes: number of classes.

  Returns:
    ``[num_classes, prod(x.shape[1:])]`` float32; a class absent from ``x`` gets the mean of all examples.
  """
  check_shape(x, "x", "... features", where="class_prototypes", dtype="floating")
  if x.ndim < 2:
    raise ValueError(f"class_prototypes: `x` must have shape [n, ...] (rank >= 2); got {tuple(x.shape)}.")
  check_shape(labels, "labels", "n", where="class_prototypes", dtype="integer", n=x.shape[0])
  flat = x.reshape(x.shape[0], -1).astype(jnp.float32)
  sq = jnp.sum(flat ** 2, axis=-1)
  dist = jnp.sqrt(jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0))  # [n, n]
  member = labels[None, :] == jnp.arange(num_classes)[:, None]                      # [classes, n]
  # Median over the other members of the row's class (NaN elsewhere), per class.
  same = member[:, :, None] & member[:, None, :] & ~jnp.eye(x.shape[0], dtype=bool)[None]
  med = jnp.nanmedian(jnp.where(same, dist[None], jnp.nan), axis=-1)                 # [classes, n]
  med = jnp.where(member & ~jnp.isnan(med), med, jnp.inf)
  # A lone member has no others: it is its class's prototype.
  med = jnp.where(member & (member.sum(-1, keepdims=True) == 1), 0.0, med)
  best = jnp.argmin(med, axis=-1)
  present = member.any(-1)
  return jnp.where(present[:, None], flat[best], flat.mean(0)[None, :])


# ----------------------------------------------------------------------------------------------------- embedding


class ClassEmbedding(nn.Module):
  """The label embedding matrix ``W_embed [num_classes, features]`` (``u_y`` is row ``y``).

  Attributes:
    num_classes: number of classes.
    kind: ``'onehot'`` (fixed identity, ``features = num_classes``), ``'learned'`` (a parameter, orthogonal rows
      at init when ``features >= num_classes``, else N(0, 1/features)) or ``'prototype'`` (a parameter initialised
      with one example per class, see :func:`class_prototypes`; ``features`` is the flattened input size).
    features: the embedding width; None = ``num_classes`` for one-hot/learned, the prototypes' width otherwise.

  Call: ``(prototypes: [num_classes, features] | None) -> W [num_classes, features]`` float32. ``prototypes`` is
  needed (only) when a ``'prototype'`` embedding is initialised.
  """
  num_classes: int
  kind: str = "onehot"
  features: int | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, prototypes=None):
    if self.kind not in EMBEDDINGS:
      raise ValueError(f"ClassEmbedding: `kind` must be one of {EMBEDDINGS}; got {self.kind!r}.")
    if self.kind == "onehot":
      if self.features not in (None, self.num_classes):
        raise ValueError(f"ClassEmbedding: a one-hot embedding has features = num_classes = {self.num_classes}; "
                         f"got features={self.features}.")
      return jnp.eye(self.num_classes, dtype=jnp.float32)
    if self.kind == "learned":
      features = self.features or self.num_classes
      init = (nn.initializers.orthogonal() if features >= self.num_classes
              else nn.initializers.normal(1.0 / math.sqrt(features)))
      return self.param("embedding", partitioned(init, ("classes", "embed")), (self.num_classes, features),
                        self.param_dtype)
    if prototypes is None:
      if not self.has_variable("params", "embedding"):
        raise ValueError("ClassEmbedding: a 'prototype' embedding must be initialised with `prototypes` "
                         f"[num_classes={self.num_classes}, features] (see class_prototypes).")
      # The initialiser needs the prototypes, so an existing table is read rather than re-declared.
      return nn.unbox(self.get_variable("params", "embedding"))
    check_shape(prototypes, "prototypes", "classes features", where="ClassEmbedding", dtype="floating",
                classes=self.num_classes, features=self.features)
    init = lambda *_: jnp.asarray(prototypes, self.param_dtype)
    return self.param("embedding", partitioned(init, ("classes", "embed")))


# --------------------------------------------------------------------------------------------------------- block


def _takes_train(module: nn.Module) -> bool:
  return "train" in inspect.signature(type(module).__call__).parameters


def _tuples(value):
  if isinstance(value, (list, tuple)):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, Mapping):
    return FrozenDict({k: _tuples(v) for k, v in value.items()})
  return value


def build_encoder(encoder, encoder_kwargs, hidden: int) -> nn.Module:
  """The x-encoder a block uses: a module instance (cloned, unbound), a ``'family.Class'`` name, or None."""
  if encoder is None:
    from zoo import core  # pylint: disable=g-import-not-at-top
    return core.MLP((hidden,))
  if isinstance(encoder, nn.Module):
    return encoder.clone(parent=None)
  if isinstance(encoder, str):
    from zoo import registry  # pylint: disable=g-import-not-at-top
    return registry.build_model(encoder, **dict(encoder_kwargs or {}))
  raise TypeError(f"NoProp: `encoder` must be a Linen module, a 'family.Class' name or None; got {encoder!r}.")


class NoPropBlock(nn.Module):
  """One NoProp denoising block (the paper's Figure 6): ``u_hat(z, x[, t]) = softmax(logits(z, x[, t])) W_embed``.

  Attributes:
    num_classes: number of classes (the width of ``logits``).
    encoder: the x-encoder (an unbound Linen module mapping ``x -> [batch, features]``).
    hidden: width of the z-path and of the first combined layer (paper: 256).
    head: width of the second combined layer (paper: 128).
    norm: ``'batch'`` (paper), ``'layer'`` or None.
    time_features: width of the sinusoidal time embedding; 0 = no time input (NoProp-DT).
    output: ``'embedding'`` (``softmax(logits) W_embed``, DT/CT) or ``'vector'`` (a dense ``[batch, d]`` output,
      the flow-matching velocity).

  Call: ``(x [batch, ...], z [batch, d] float, w_embed [num_classes, d], t [batch] | None, *, train=False)
  -> (out [batch, d], logits [batch, num_classes] | None)``.
  """
  num_classes: int
  encoder: nn.Module
  hidden: int = 256
  head: int = 128
  norm: str | None = "batch"
  time_features: int = 0
  output: str = "embedding"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def _norm(self, x, train: bool, name: str):
    if self.norm is None:
      return x
    if self.norm == "layer":
      return layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)(x)
    if self.norm == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                          param_dtype=self.param_dtype,
                          scale_init=partitioned(nn.initializers.ones_init(), ("norm",)),
                          bias_init=partitioned(nn.initializers.zeros_init(), ("norm",)), name=name)(x)
    raise ValueError(f"NoPropBlock: `norm` must be 'batch', 'layer' or None; got {self.norm!r}.")

  def _dense(self, features: int, name: str, axes=("embed", "mlp")):
    return dense(features, axes=axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x, z, w_embed, t=None, *, train: bool = False):
    if self.output not in ("embedding", "vector"):
      raise ValueError(f"NoPropBlock: `output` must be 'embedding' or 'vector'; got {self.output!r}.")
    check_shape(w_embed, "w_embed", "classes embed", where="NoPropBlock", dtype="floating",
                classes=self.num_classes)
    d = w_embed.shape[-1]
    check_shape(z, "z", "batch embed", where="NoPropBlock", dtype="floating", embed=d)
    if x.shape[0] != z.shape[0]:
      raise ValueError(f"NoPropBlock: `x` and `z` must have the same batch size; got x {tuple(x.shape)} and z "
                       f"{tuple(z.shape)}.")
    enc_kw = {"train": train} if _takes_train(self.encoder) else {}
    hx = self.encoder(x, **enc_kw)
    hx = self._norm(hx.reshape(hx.shape[0], -1), train, "x_norm")

    hz = nn.relu(self._norm(self._dense(self.hidden, "z_in")(z), train, "z_norm_0"))
    r = nn.relu(self._norm(self._dense(self.hidden, "z_res_0", ("mlp", "embed"))(hz), train, "z_norm_1"))
    hz = hz + self._norm(self._dense(self.hidden, "z_res_1")(r), train, "z_norm_2")
    parts = [hx, hz]

    if self.time_features:
      if t is None:
        raise ValueError("NoPropBlock: a time-conditioned block (time_features > 0) needs `t` [batch].")
      check_shape(t, "t", "batch", where="NoPropBlock", dtype="floating", batch=z.shape[0])
      parts.append(self._dense(self.hidden, "t_in")(time_embedding(t, self.time_features)))
    elif t is not None:
      raise ValueError("NoPropBlock: `t` was given to a block without time conditioning (time_features=0).")

    h = jnp.concatenate(parts, axis=-1)
    h = nn.relu(self._norm(self._dense(self.hidden, "fc_0")(h), train, "norm_0"))
    h = nn.relu(self._norm(self._dense(self.head, "fc_1", ("mlp", "embed"))(h), train, "norm_1"))
    if self.output == "vector":
      return self._dense(d, "out")(h).astype(jnp.float32), None
    logits = self._dense(self.num_classes, "logits", ("embed", "classes"))(h).astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1) @ w_embed.astype(jnp.float32), logits


# ------------------------------------------------------------------------------------------------- noise schedule


class LearnedSNR(nn.Module):
  """A learned monotone noise schedule (VDM's ``NoiseSchedule_NNet``, Kingma et al., 2021, arXiv:2107.00630).

  ``gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g(t) - g(0)) / (g(1) - g(0))`` with ``g(t) = l1(t) + l3(sigmoid(
  l2(l1(t))))``, every weight of ``l1, l2, l3`` taken in absolute value so ``g`` increases; ``gamma_1 = gamma_0 -
  softplus(gap)`` keeps ``gamma`` decreasing, so ``SNR(t) = exp(-gamma(t))`` and ``abar(t) = sigmoid(-gamma(t))``
  increase from the noisy ``t = 0`` to the clean ``t = 1`` (NoProp's direction). The endpoints are learned.

  Attributes:
    gamma_0: initial ``gamma(0)`` (noisy end; 7 gives ``abar(0) = 9e-4``).
    gamma_1: initial ``gamma(1)`` (clean end; -4 gives ``abar(1) = 0.982``).
    hidden: width of ``l2``.

  Call: ``t: [batch]`` float in [0, 1] -> ``(gamma [batch], dgamma_dt [batch])`` float32.
  """
  gamma_0: float = 7.0
  gamma_1: float = -4.0
  hidden: int = 1024

  @nn.compact
  def __call__(self, t):
    check_shape(t, "t", "batch", where="LearnedSNR", dtype="floating")
    if not self.gamma_1 < self.gamma_0:
      raise ValueError(f"LearnedSNR: need gamma_1 < gamma_0 (SNR grows with t); got {self.gamma_1}, {self.gamma_0}.")
    g0 = self.param("gamma_0", nn.initializers.constant(self.gamma_0), ())
    gap0 = self.gamma_0 - self.gamma_1
    gap = jax.nn.softplus(self.param("gap", nn.initializers.constant(math.log(math.expm1(gap0))), ()))
    w1 = jnp.abs(self.param("l1_kernel", nn.initializers.constant(1.0), ()))
    b1 = self.param("l1_bias", nn.initializers.zeros_init(), ())
    w2 = jnp.abs(self.param("l2_kernel", partitioned(nn.initializers.normal(1.0), ("mlp",)), (self.hidden,)))
    b2 = self.param("l2_bias", partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.hidden,))
    w3 = jnp.abs(self.param("l3_kernel", partitioned(nn.initializers.normal(1.0 / self.hidden), ("mlp",)),
                            (self.hidden,)))

    def g_and_slope(s):  # s: [n] -> g [n], dg/ds [n]
      h = w1 * s + b1
      pre = h[:, None] * w2 + b2
      sig = jax.nn.sigmoid(pre)
      g = h + sig @ w3
      slope = w1 + (sig * (1.0 - sig) * w2 * w1) @ w3
      return g, slope

    t = t.astype(jnp.float32)
    g, slope = g_and_slope(t)
    ends, _ = g_and_slope(jnp.array([0.0, 1.0], jnp.float32))
    span = ends[1] - ends[0]
    gamma = g0 - gap * (g - ends[0]) / span
    return gamma, -gap * slope / span


# ------------------------------------------------------------------------------------------------------ networks


class _NoPropNet(nn.Module):
  """Fields and pieces the three NoProp networks share (see the module docstring)."""
  num_classes: int
  encoder: Any = None
  encoder_kwargs: Any = None
  embedding: str = "onehot"
  embed_dim: int | None = None
  hidden: int = 256
  head: int = 128
  norm: str | None = "batch"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def __post_init__(self):
    # Config dicts/lists become FrozenDict/tuples so the module stays hashable.
    object.__setattr__(self, "encoder_kwargs", _tuples(self.encoder_kwargs))
    super().__post_init__()

  def _check(self):
    if self.num_classes < 2:
      raise ValueError(f"{type(self).__name__}: `num_classes` must be >= 2; got {self.num_classes}.")
    if self.embedding not in EMBEDDINGS:
      raise ValueError(f"{type(self).__name__}: `embedding` must be one of {EMBEDDINGS}; got {self.embedding!r}.")

  def _make_embedding(self):
    return ClassEmbedding(self.num_classes, kind=self.embedding, features=self.embed_dim,
                          param_dtype=self.param_dtype, name="embedding")

  def _make_block(self, name: str, *, time_features: int = 0, output: str = "embedding"):
    return NoPropBlock(self.num_classes, build_encoder(self.encoder, self.encoder_kwargs, self.hidden),
                       hidden=self.hidden, head=self.head, norm=self.norm, time_features=time_features,
                       output=output, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _make_classifier(self):
    return dense(self.num_classes, axes=("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                 name="classifier")

  def embed(self, prototypes=None):
    """``W_embed [num_classes, d]`` (``prototypes`` only when initialising a prototype embedding)."""
    return self.embedding_table(prototypes)

  def _check_x(self, x):
    check_shape(x, "x", "... features", where=type(self).__name__)
    if x.ndim < 2:
      raise ValueError(f"{type(self).__name__}: `x` must have shape [batch, ...] (rank >= 2); got {tuple(x.shape)}.")

  def _noise(self, shape):
    # Inference noise: the 'noise' rng if given, else a fixed key (deterministic predictions).
    key = self.make_rng("noise") if self.has_rng("noise") else jax.random.key(0)
    return jax.random.normal(key, shape, jnp.float32)


class NoPropDTNet(_NoPropNet):
  """NoProp-DT (discrete time): ``num_blocks`` denoising blocks, the label embedding and the classifier.

  Attributes (besides the shared ``num_classes``, ``encoder``, ``encoder_kwargs``, ``embedding``, ``embed_dim``,
  ``hidden``, ``head``, ``norm``, ``dtype``, ``param_dtype``):
    num_blocks: T, the number of blocks (paper: 10).
    schedule_s: the cosine schedule's offset (0.008).

  Parameters: ``blocks`` (every leaf with a leading axis of size T, logical axis ``'blocks'``), ``embedding``
  (learned/prototype only), ``classifier`` (``p(y | z_T)``).

  Call: ``x [batch, ...] -> logits [batch, num_classes]``, the classifier on the end of the denoising chain (the
  ``'noise'`` rng draws the chain's noise; without it a fixed key is used). ``prototypes [classes, d]`` is passed at
  initialisation of a prototype embedding.
  """
  num_blocks: int = 10
  schedule_s: float = 0.008

  def setup(self):
    self._check()
    if self.num_blocks < 1:
      raise ValueError(f"NoPropDTNet: `num_blocks` must be >= 1; got {self.num_blocks}.")
    self.embedding_table = self._make_embedding()
    self.blocks = self._make_block("blocks")
    self.classifier = self._make_classifier()

  def alpha_bar(self) -> np.ndarray:
    """``abar_0 .. abar_T`` ``[T + 1]`` (numpy, static)."""
    return cosine_alpha_bar(self.num_blocks, self.schedule_s)

  def _lift(self, transform, fn, **kw):
    return transform(fn, variable_axes={"params": 0, "batch_stats": 0}, split_rngs={"params": True, "dropout": True},
                     metadata_params={nn.PARTITION_NAME: "blocks"}, **kw)

  def denoise_each(self, x, z, *, train: bool = False, prototypes=None):
    """Block ``t`` on ``z[t-1]``, for every t at once: ``z [T, batch, d] -> (u_hat [T, batch, d], logits [T, batch,
    classes])``. Block t's outputs depend on block t's parameters only."""
    self._check_x(x)
    w = self.embed(prototypes)
    check_shape(z, "z", "blocks batch embed", where="NoPropDTNet.denoise_each", dtype="floating",
                blocks=self.num_blocks, batch=x.shape[0], embed=w.shape[-1])
    f = self._lift(nn.vmap, lambda blk, x, z, w: blk(x, z, w, train=train), in_axes=(None, 0, None), out_axes=0,
                   axis_size=self.num_blocks)
    return f(self.blocks, x, z, w)

  def sample(self, x, *, prototypes=None):
    """The denoising chain ``z_0 ~ N(0, I)``, ``z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t``:
    ``x [batch, ...] -> z [T + 1, batch, d]`` (``z[0]`` the start, ``z[T]`` the end)."""
    self._check_x(x)
    w = self.embed(prototypes)
    a, b, c = (jnp.asarray(v, jnp.float32) for v in dt_coefficients(self.alpha_bar()))
    shape = (x.shape[0], w.shape[-1])
    noise = self._noise((self.num_blocks + 1, *shape))
    z0 = noise[0]

    def body(blk, z, inputs):
      a_t, b_t, c_t, eps = inputs
      u_hat, _ = blk(x, z, w, train=False)
      z = a_t * u_hat + b_t * z + jnp.sqrt(c_t) * eps
      return z, z

    f = self._lift(nn.scan, body, length=self.num_blocks)
    _, zs = f(self.blocks, z0, (a, b, c, noise[1:]))
    return jnp.concatenate([z0[None], zs], axis=0)

  def classify(self, z):
    """``p(y | z)`` logits: ``z [..., d] -> [..., num_classes]``."""
    check_shape(z, "z", "... embed", where="NoPropDTNet.classify", dtype="floating")
    return self.classifier(z).astype(jnp.float32)

  def __call__(self, x, *, train: bool = False, prototypes=None):
    del train  # inference only; training calls denoise_each
    return self.classify(self.sample(x, prototypes=prototypes)[-1])


class _TimeNet(_NoPropNet):
  """Shared by NoProp-CT and NoProp-FM: one time-conditioned block and an inference grid."""
  time_features: int = 64
  inference_steps: int = 1000

  def _check_time(self):
    self._check()
    if self.inference_steps < 1:
      raise ValueError(f"{type(self).__name__}: `inference_steps` must be >= 1; got {self.inference_steps}.")


class NoPropCTNet(_TimeNet):
  """NoProp-CT (continuous time): one block ``u_hat(z_t, x, t)``, a learned noise schedule, embedding, classifier.

  Attributes (besides the shared ones):
    time_features: width of the sinusoidal embedding of ``t``.
    inference_steps: steps of the inference grid on [0, 1] (paper: 1000).
    sampler: ``'ode'`` (deterministic DDIM steps, the probability-flow ODE of the learned schedule) or
      ``'ancestral'`` (the DT posterior step between grid points).
    gamma_0, gamma_1: initial ``gamma`` of :class:`LearnedSNR` at t = 0 and t = 1.

  Call: ``x [batch, ...] -> logits [batch, num_classes]`` (the classifier on ``z_1``).
  """
  sampler: str = "ode"
  gamma_0: float = 7.0
  gamma_1: float = -4.0

  def setup(self):
    self._check_time()
    if self.sampler not in ("ode", "ancestral"):
      raise ValueError(f"NoPropCTNet: `sampler` must be 'ode' or 'ancestral'; got {self.sampler!r}.")
    self.embedding_table = self._make_embedding()
    self.block = self._make_block("block", time_features=self.time_features)
    self.schedule = LearnedSNR(self.gamma_0, self.gamma_1, name="schedule")
    self.classifier = self._make_classifier()

  def gamma(self, t):
    """``t [batch] -> (gamma(t), dgamma/dt)``, each ``[batch]``; ``abar = sigmoid(-gamma)``, ``SNR = exp(-gamma)``."""
    return self.schedule(t)

  def denoise(self, x, z, t, *, train: bool = False, prototypes=None):
    """``(x [batch, ...], z [batch, d], t [batch]) -> (u_hat [batch, d], logits [batch, classes])``."""
    self._check_x(x)
    return self.block(x, z, self.embed(prototypes), t, train=train)

  def classify(self, z):
    """``p(y | z)`` logits: ``z [..., d] -> [..., num_classes]``."""
    check_shape(z, "z", "... embed", where="NoPropCTNet.classify", dtype="floating")
    return self.classifier(z).astype(jnp.float32)

  def sample(self, x, *, prototypes=None):
    """Integrates from ``z_0 ~ N(0, I)`` at t = 0 to t = 1: ``x -> z [inference_steps + 1, batch, d]``."""
    self._check_x(x)
    w = self.embed(prototypes)
    n, batch = self.inference_steps, x.shape[0]
    grid = jnp.linspace(0.0, 1.0, n + 1, dtype=jnp.float32)
    abar = jax.nn.sigmoid(-self.gamma(grid)[0])
    noise = self._noise((n + 1, batch, w.shape[-1]))

    def body(blk, z, inputs):
      t, ab_prev, ab_next, eps = inputs
      u_hat, _ = blk(x, z, w, jnp.full((batch,), t), train=False)
      if self.sampler == "ode":
        eps_hat = (z - jnp.sqrt(ab_prev) * u_hat) / jnp.sqrt(1.0 - ab_prev)
        z = jnp.sqrt(ab_next) * u_hat + jnp.sqrt(1.0 - ab_next) * eps_hat
      else:
        a, b, c = dt_coefficients(jnp.stack([ab_prev, ab_next]))
        z = a[0] * u_hat + b[0] * z + jnp.sqrt(c[0]) * eps
      return z, z

    f = nn.scan(body, variable_broadcast=["params", "batch_stats"], split_rngs={"params": False}, length=n)
    _, zs = f(self.block, noise[0], (grid[:-1], abar[:-1], abar[1:], noise[1:]))
    return jnp.concatenate([noise[0][None], zs], axis=0)

  def __call__(self, x, *, train: bool = False, prototypes=None):
    if self.is_initializing():  # create every parameter, including the block's (scan broadcasts them)
      w = self.embed(prototypes)
      self.denoise(x, jnp.zeros((x.shape[0], w.shape[-1]), jnp.float32), jnp.zeros((x.shape[0],), jnp.float32),
                   train=train)
    return self.classify(self.sample(x, prototypes=prototypes)[-1])


class NoPropFMNet(_TimeNet):
  """NoProp-FM (flow matching): one block ``v(z_t, x, t)`` and the label embedding.

  The path is ``z_t = t u_y + (1 - t) z_0``, ``z_0 ~ N(0, I)``; the block regresses its velocity ``u_y - z_0``
  (``output='vector'``: a dense output, since the velocity is not a mixture of embeddings). ``p(y | z) =
  softmax_c(-||z - u_c||^2)``.

  Attributes (besides the shared ones):
    time_features: width of the sinusoidal embedding of ``t``.
    inference_steps: Euler steps from t = 0 to t = 1 (paper: 1000).

  Call: ``x [batch, ...] -> logits [batch, num_classes]`` (``-||z_1 - u_c||^2``).
  """

  def setup(self):
    self._check_time()
    self.embedding_table = self._make_embedding()
    self.block = self._make_block("block", time_features=self.time_features, output="vector")

  def velocity(self, x, z, t, *, train: bool = False, prototypes=None):
    """``(x [batch, ...], z [batch, d], t [batch]) -> v [batch, d]``."""
    self._check_x(x)
    return self.block(x, z, self.embed(prototypes), t, train=train)[0]

  def classify(self, z, *, prototypes=None):
    """``-||z - u_c||^2``: ``z [..., d] -> [..., num_classes]``."""
    w = self.embed(prototypes)
    check_shape(z, "z", "... embed", where="NoPropFMNet.classify", dtype="floating", embed=w.shape[-1])
    return -jnp.sum((z[..., None, :] - w) ** 2, axis=-1)

  def sample(self, x, *, prototypes=None):
    """Euler integration of ``dz/dt = v(z, x, t)`` from ``z_0 ~ N(0, I)``: ``x -> z [inference_steps + 1, batch,
    d]``."""
    self._check_x(x)
    w = self.embed(prototypes)
    n, batch = self.inference_steps, x.shape[0]
    z0 = self._noise((batch, w.shape[-1]))

    def body(blk, z, t):
      v, _ = blk(x, z, w, jnp.full((batch,), t), train=False)
      z = z + v / n
      return z, z

    f = nn.scan(body, variable_broadcast=["params", "batch_stats"], split_rngs={"params": False}, length=n)
    _, zs = f(self.block, z0, jnp.arange(n, dtype=jnp.float32) / n)
    return jnp.concatenate([z0[None], zs], axis=0)

  def __call__(self, x, *, train: bool = False, prototypes=None):
    if self.is_initializing():
      w = self.embed(prototypes)
      self.velocity(x, jnp.zeros((x.shape[0], w.shape[-1]), jnp.float32), jnp.zeros((x.shape[0],), jnp.float32),
                    train=train)
    return self.classify(self.sample(x, prototypes=prototypes)[-1], prototypes=prototypes)
