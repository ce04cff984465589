"""Scalable neural network kernels (SNNK): a dense layer whose inputs and weights meet only in a dot product of
random features, the universal random features (URFs) that build them, bundling into a closed-form ridge fit, and
SNNK adapters on the zoo transformer.

Paper: "Scalable Neural Network Kernels", Sehanobish, Choromanski, Zhao, Dubey and Likhosherstov, ICLR 2024
(arXiv 2310.13225). Reference code: github.com/arijitthegame/neural-network-kernels.

A feed-forward layer ``y_j = f(w_j^T x + b_j)`` is replaced by ``y_j ~ Phi(x~)^T Psi(w~_j)`` with ``x~ = [x, 1]``
and ``w~_j = [w_j, b_j]`` (the bias is folded into the dot product), and ``Phi``, ``Psi`` random feature maps built
on one shared Gaussian matrix ``G [m, d + 1]`` (rows ``g_k ~ N(0, I)``, optionally orthogonal blocks). The layer
is then linear in ``Psi(W) [m, out]``, which becomes its trainable parameter (initialised from a dense layer's
weights through the same map), so the input side ``Phi(x)`` is computed once and the parameters never see ``x``.

Random features (``x [..., d]``, ``g [m, d]`` -> ``[..., m]``):

* :func:`relu_rf` ``ReLU(G x) / sqrt(m)``: ``E[relu_rf(x) . relu_rf(w)] = m^{-1} sum_k ...`` converges to the
  order-1 arc-cosine kernel :func:`arccos_kernel` (ReLU-SNNK).
* :func:`positive_rf` ``exp(G x - |x|^2 / 2) / sqrt(m)``: positive random features of ``f = exp``,
  ``E[Phi(x) . Phi(w)] = exp(x^T w)``; ``norm_correction=False`` drops the ``-|x|^2/2`` term (the ablation: the
  estimate is then biased, ``exp(|x + w|^2 / 2)``, and its error no longer falls with ``m``).
* :func:`urf` ``A(xi_k) exp(a(xi_k) g_k^T x - a(xi_k)^2 |x|^2 / 2) / sqrt(m)``: the paper's URF family. For
  ``f(z) = int tau(xi) exp(i xi z) dxi`` take ``a(xi) = sqrt(i xi)``, ``xi ~ p`` and amplitudes with
  ``A_Phi(xi) A_Psi(xi) = tau(xi) / p(xi)``; then ``E[Phi(x) . Psi(w)] = f(x^T w)`` (no complex conjugate: the
  product is bilinear). ``f = exp`` is ``a = 1``, ``A = 1`` (:func:`positive_rf`).

Modules and functions:

* :func:`gaussian_matrix` ``(rng, m, d, orthogonal) -> [m, d]``.
* :func:`psi_from_dense` ``(kernel [d, out], bias [out] | None, g [m, d + 1], kind) -> Psi [m, out]``: the weight
  side of the map; an SNNK layer initialised with it approximates that dense layer.
* :class:`SNNKDense` ``(x [..., d]) -> [..., features]``: the drop-in layer; ``kind`` is ``'relu'`` (ReLU-SNNK),
  ``'exp'`` (the exp/softmax SNNK) or ``'linear'`` (the ablation: ``Phi(x) = x~``, no random features, i.e. a plain
  linear layer). :class:`ReLUSNNKDense` is ``SNNKDense(kind='relu')``. ``features(x) -> Phi(x~) [..., m]``.
* :func:`init_from_dense` ``(variables, kernel, bias) -> variables`` with ``psi = psi_from_dense(...)``.
* :class:`SNNKClassifier` ``(image [b, ...]) -> logits [b, classes]``: flatten + one :class:`SNNKDense` (the fully
  bundled network: linear in ``Phi``).
* :func:`bundle` ``(psi, kernels, biases) -> (psi', bias')``: an SNNK layer followed by linear layers collapses to
  one model linear in ``Phi(x)``: ``Phi psi W_2 ... + b'``.
* :func:`bundle_closed_form` ``(features [n, m], targets [n, k], l2) -> [m, k]``: the MSE-optimal (ridge) parameters
  of a fully bundled network, with no backprop (``zoo.recipes.procedures.snnk.BundledRidge`` runs it in the loop).
* :class:`SNNKAdapter` ``(x [..., e]) -> x + SNNKDense(e)(x)`` with ``Psi = 0`` at init (the adapter starts as the
  identity; ``m e`` trainable parameters).
* :class:`AdapterViT` ``(image) -> logits``: ``zoo.transformer.ViT`` with an :class:`SNNKAdapter` after every
  encoder block, built from the transformer's own blocks (``zoo/transformer.py`` is unchanged); its parameter tree
  is the ViT's plus ``encoder/adapter_i``, so a trained ViT's parameters load as they are, and
  :func:`adapter_mask` marks what fine-tuning trains (adapters + head).

Frozen random matrices live in the ``'random_features'`` collection (carried and checkpointed, never trained).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer as tf
from zoo.random_features import fit_ridge

__all__ = [
    "KINDS", "AdapterViT", "ReLUSNNKDense", "SNNKAdapter", "SNNKClassifier", "SNNKDense", "adapter_mask",
    "arccos_kernel", "bundle", "bundle_closed_form", "gaussian_matrix", "init_from_dense", "positive_rf",
    "psi_from_dense", "relu_rf", "urf",
]

Array = jax.Array

KINDS = ("relu", "exp", "linear")
"""Feature maps of :class:`SNNKDense`: ReLU-SNNK, exp-SNNK (positive random features), and the linear ablation."""


def _check_pair(x, g, where: str) -> None:
  layers.check_shape(g, "g", "m d", where=where, dtype="floating")
  layers.check_shape(x, "x", "... d", where=where, dtype="floating", d=g.shape[1])


def relu_rf(x: Array, g: Array) -> Array:
  """ReLU random features ``ReLU(x G^T) / sqrt(m)``: ``x [..., d]``, ``g [m, d]`` -> ``[..., m]``."""
  _check_pair(x, g, "relu_rf")
  return jax.nn.relu(x @ g.T) / math.sqrt(g.shape[0])


def positive_rf(x: Array, g: Array, *, norm_correction: bool = True) -> Array:
  """Positive random features of ``exp(x^T w)``: ``exp(x G^T - |x|^2 / 2) / sqrt(m)`` -> ``[..., m]``.

  ``norm_correction=False`` drops ``-|x|^2/2`` (ablation: the estimator becomes biased).
  """
  _check_pair(x, g, "positive_rf")
  proj = x @ g.T
  if norm_correction:
    proj = proj - 0.5 * jnp.sum(x * x, axis=-1, keepdims=True)
  return jnp.exp(proj) / math.sqrt(g.shape[0])


def urf(x: Array, g: Array, A_fn: Callable[[Array], Array],  # pylint: disable=invalid-name
        a_fn: Callable[[Array], Array], xis: Array) -> Array:
  """Universal random features ``A(xi_k) exp(a(xi_k) g_k^T x - a(xi_k)^2 |x|^2 / 2) / sqrt(m)``.

  Args:
    x: ``[..., d]`` real.
    g: ``[m, d]`` Gaussian rows.
    A_fn: amplitude ``A(xi)`` (elementwise; may be complex).
    a_fn: scale ``a(xi)`` (elementwise; may be complex, e.g. ``sqrt(i xi)`` for a Fourier representation).
    xis: ``[m]`` one sample ``xi_k`` per feature.

  Returns:
    ``[..., m]``, complex when ``A`` or ``a`` is.
  """
  _check_pair(x, g, "urf")
  layers.check_shape(xis, "xis", "m", where="urf", m=g.shape[0])
  a, amp = a_fn(xis), A_fn(xis)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return amp * jnp.exp(a * (x @ g.T) - 0.5 * a * a * sq) / math.sqrt(g.shape[0])


def arccos_kernel(x: Array, w: Array) -> Array:
  """Order-1 arc-cosine kernel ``E_g[ReLU(g^T x) ReLU(g^T w)] = |x||w| (sin t + (pi - t) cos t) / (2 pi)``
  (Cho and Saul, 2009), ``t`` the angle between ``x`` and ``w``: ``x [n, d]``, ``w [k, d]`` -> ``[n, k]``."""
  layers.check_shape(x, "x", "n d", where="arccos_kernel", dtype="floating")
  layers.check_shape(w, "w", "k d", where="arccos_kernel", dtype="floating", d=x.shape[1])
  nx, nw = jnp.linalg.norm(x, axis=-1)[:, None], jnp.linalg.norm(w, axis=-1)[None, :]
  cos = jnp.clip((x @ w.T) / jnp.maximum(nx * nw, 1e-30), -1.0, 1.0)
  t = jnp.arccos(cos)
  return nx * nw * (jnp.sin(t) + (jnp.pi - t) * cos) / (2 * jnp.pi)


def gaussian_matrix(rng: Array, m: int, d: int, *, orthogonal: bool = False) -> Array:
  """``[m, d]`` rows ``g_k ~ N(0, I_d)``; ``orthogonal``: blocks of ``d`` exactly orthogonal rows, each rescaled to
  the norm of an independent Gaussian vector (orthogonal random features: same marginals, lower variance)."""
  if m < 1 or d < 1:
    raise ValueError(f"gaussian_matrix: `m` and `d` must be >= 1; got m={m}, d={d}.")
  if not orthogonal:
    return jax.random.normal(rng, (m, d), jnp.float32)
  blocks = -(-m // d)
  k_q, k_n = jax.random.split(rng)
  q, r = jnp.linalg.qr(jax.random.normal(k_q, (blocks, d, d), jnp.float32))   # [blocks, d, d] orthogonal columns
  # Haar-distributed Q needs the signs of R's diagonal: LAPACK's convention alone fixes the sign of some entries
  # (every column's first entry would share a sign), which biases features that are not sign-symmetric (ReLU).
  q = q * jnp.sign(jnp.diagonal(r, axis1=1, axis2=2))[:, None, :]
  rows = jnp.swapaxes(q, 1, 2).reshape(blocks * d, d)[:m]
  norms = jnp.linalg.norm(jax.random.normal(k_n, (m, d), jnp.float32), axis=-1, keepdims=True)
  return rows * norms


def _augment(x: Array, use_bias: bool) -> Array:
  if not use_bias:
    return x
  return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


def _feature_map(x: Array, g: Array | None, kind: str, norm_correction: bool) -> Array:
  if kind == "linear":
    return x
  if kind == "relu":
    return relu_rf(x, g)
  return positive_rf(x, g, norm_correction=norm_correction)


def _check_kind(kind: str, where: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"{where}: `kind` must be one of {KINDS}; got {kind!r}.")


def psi_from_dense(kernel: Array, bias: Array | None, g: Array | None, kind: str = "relu", *,
                   norm_correction: bool = True) -> Array:
  """The weight side ``Psi(w~_j)`` of a dense layer ``x @ kernel + bias``: ``kernel [d, out]``, ``bias [out]`` or
  None, ``g [m, d + 1]`` (``[m, d]`` without bias; None for ``kind='linear'``) -> ``Psi [m, out]`` (``[d(+1), out]``
  for ``'linear'``)."""
  _check_kind(kind, "psi_from_dense")
  layers.check_shape(kernel, "kernel", "d out", where="psi_from_dense", dtype="floating")
  w = kernel.T
  if bias is not None:
    layers.check_shape(bias, "bias", "out", where="psi_from_dense", out=kernel.shape[1])
    w = jnp.concatenate([w, bias[:, None].astype(w.dtype)], axis=-1)
  return _feature_map(w, g, kind, norm_correction).T


class SNNKDense(nn.Module):
  """The SNNK drop-in for ``f(x W + b)``: ``y = Phi(x~) Psi`` (module docstring).

  Attributes:
    features: outputs ``out``.
    num_random_features: ``m``.
    kind: ``'relu'`` (ReLU-SNNK, default), ``'exp'`` (exp-SNNK) or ``'linear'`` (ablation: no random features).
    use_bias: fold a bias into the kernel (``x~ = [x, 1]``).
    orthogonal: orthogonal random features for ``G``.
    norm_correction: the URF ``-|x|^2/2`` term of ``'exp'`` (False: the biased ablation).
    kernel_init: init of the dense layer that ``Psi`` is drawn from (``Psi = psi_from_dense(W0, 0, G)``).
    zero_init: start from ``Psi = 0`` instead (adapters).
  """
  features: int
  num_random_features: int = 256
  kind: str = "relu"
  use_bias: bool = True
  orthogonal: bool = False
  norm_correction: bool = True
  kernel_init: Callable = layers.default_kernel_init
  zero_init: bool = False
  param_dtype: Any = jnp.float32

  def _projection(self, d_in: int):
    if self.kind == "linear":
      return None

    def init():
      g = gaussian_matrix(self.make_rng("params"), self.num_random_features, d_in, orthogonal=self.orthogonal)
      return layers.partitioned(lambda *_: g, (None, "embed"))(None)

    g = nn.unbox(self.variable("random_features", "projection", init).value)
    if g.shape[1] != d_in:
      raise ValueError(f"{type(self).__name__}: the random features were drawn for inputs of width "
                       f"{g.shape[1] - int(self.use_bias)} (projection {tuple(g.shape)}); got width "
                       f"{d_in - int(self.use_bias)}.")
    return g

  def _check(self, x):
    where = type(self).__name__
    _check_kind(self.kind, where)
    if self.features < 1 or self.num_random_features < 1:
      raise ValueError(f"{where}: `features` and `num_random_features` must be >= 1; got {self.features}, "
                       f"{self.num_random_features}.")
    layers.check_shape(x, "x", "... features", where=where, dtype="floating")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., d]`` -> ``[..., features]``."""
    self._check(x)
    xa = _augment(x.astype(jnp.float32), self.use_bias)
    g = self._projection(xa.shape[-1])
    width = xa.shape[-1] if g is None else g.shape[0]

    def psi_init(rng, shape, dtype):
      if self.zero_init:
        return jnp.zeros(shape, dtype)
      w0 = self.kernel_init(rng, (x.shape[-1], self.features), dtype)
      b0 = jnp.zeros((self.features,), dtype) if self.use_bias else None
      return psi_from_dense(w0, b0, g, self.kind, norm_correction=self.norm_correction).astype(dtype)

    psi = self.param("psi", layers.partitioned(psi_init, (None, "mlp")), (width, self.features), self.param_dtype)
    if psi.shape[0] != width:
      raise ValueError(f"{type(self).__name__}: `psi` has {psi.shape[0]} rows; the feature map gives {width}.")
    return _feature_map(xa, g, self.kind, self.norm_correction) @ psi

  def features_of(self, x: Array) -> Array:
    """``Phi(x~) [..., m]`` (``__call__`` is ``features_of(x) @ psi``); ``apply(..., method='features_of')``."""
    self._check(x)
    xa = _augment(x.astype(jnp.float32), self.use_bias)
    g = None
    if self.kind != "linear":
      g = self.get_variable("random_features", "projection")
      if g is None:
        raise ValueError(f"{type(self).__name__}.features_of needs initialised variables (run `init` first).")
      g = nn.unbox(g)
    return _feature_map(xa, g, self.kind, self.norm_correction)


class ReLUSNNKDense(SNNKDense):
  """:class:`SNNKDense` with ``kind='relu'`` (ReLU-SNNK)."""
  kind: str = "relu"


def init_from_dense(model: SNNKDense, variables, kernel: Array, bias: Array | None = None):
  """``variables`` of ``model`` with ``psi`` set from a trained dense layer ``x @ kernel + bias`` (the paper's
  initialisation); ``kernel [d, features]``, ``bias [features]`` (required iff ``model.use_bias``)."""
  if (bias is None) == model.use_bias:
    raise ValueError(f"init_from_dense: pass `bias` exactly when the layer has use_bias=True (use_bias="
                     f"{model.use_bias}, bias given: {bias is not None}).")
  g = None if model.kind == "linear" else nn.unbox(variables["random_features"]["projection"])
  psi = psi_from_dense(jnp.asarray(kernel, jnp.float32), None if bias is None else jnp.asarray(bias, jnp.float32), g,
                       model.kind, norm_correction=model.norm_correction)
  old = variables["params"]["psi"]
  if tuple(jnp.shape(nn.unbox(old))) != psi.shape:
    raise ValueError(f"init_from_dense: `kernel` {tuple(kernel.shape)} gives psi {psi.shape}; the layer has "
                     f"{tuple(jnp.shape(nn.unbox(old)))}.")
  new_psi = old.replace_boxed(psi) if isinstance(old, nn.meta.AxisMetadata) else psi
  return {**variables, "params": {**variables["params"], "psi": new_psi}}


def _check_batched(x, where: str) -> None:
  if getattr(x, "ndim", 0) < 2:
    raise ValueError(f"{where}: `x` must have shape [batch, ...] (rank >= 2); got shape {getattr(x, 'shape', x)}.")
  if x.shape[0] == 0:
    raise ValueError(f"{where}: `x` has an empty batch (shape {x.shape}); pass at least one example.")
  layers.check_shape(x.reshape(x.shape[0], -1), "x (flattened)", "batch features", where=where, dtype="floating")


class SNNKClassifier(nn.Module):
  """Flatten + one :class:`SNNKDense`: logits linear in ``Phi(x~)`` (the fully bundled network).

  Attributes: ``num_classes``; ``num_random_features``, ``kind``, ``orthogonal`` of the layer.
  """
  num_classes: int = 10
  num_random_features: int = 256
  kind: str = "relu"
  orthogonal: bool = False

  def setup(self):
    self.snnk = SNNKDense(self.num_classes, self.num_random_features, kind=self.kind, orthogonal=self.orthogonal)

  def __call__(self, x: Array) -> Array:
    """``x [batch, ...]`` float -> logits ``[batch, num_classes]``."""
    _check_batched(x, type(self).__name__)
    return self.snnk(x.reshape(x.shape[0], -1))

  def features_of(self, x: Array) -> Array:
    """``Phi(x~) [batch, m]``; ``apply(variables, x, method='features_of')``."""
    _check_batched(x, type(self).__name__)
    return self.snnk.features_of(x.reshape(x.shape[0], -1))


def bundle(psi: Array, kernels: Sequence[Array], biases: Sequence[Array | None]) -> tuple[Array, Array]:
  """Collapses an SNNK layer (``Phi psi``) followed by linear layers ``h -> h K_i + b_i`` into one model linear in
  ``Phi``: returns ``(psi' [m, out], bias' [out])`` with ``Phi psi K_1 ... K_L + b' = `` the stack's output."""
  if len(kernels) != len(biases):
    raise ValueError(f"bundle: `kernels` and `biases` must have the same length; got {len(kernels)}, {len(biases)}.")
  layers.check_shape(psi, "psi", "m out", where="bundle", dtype="floating")
  out, bias = psi, jnp.zeros((psi.shape[1],), psi.dtype)
  for i, (k, b) in enumerate(zip(kernels, biases)):
    layers.check_shape(k, f"kernels[{i}]", "d out", where="bundle", dtype="floating", d=out.shape[1])
    out, bias = out @ k, bias @ k
    if b is not None:
      layers.check_shape(b, f"biases[{i}]", "out", where="bundle", out=k.shape[1])
      bias = bias + b
  return out, bias


def bundle_closed_form(features: Array, targets: Array, l2: float = 1e-4) -> Array:
  """MSE-optimal parameters of a fully bundled network ``Phi W``: ``argmin mean |Phi W - Y|^2 + l2 |W|^2``.

  ``features [n, m]``, ``targets [n, k]`` (one-hot labels for classification) -> ``W [m, k]`` (one ridge solve,
  shared by the ``k`` columns; ``zoo.random_features.fit_ridge``).
  """
  layers.check_shape(features, "features", "n m", where="bundle_closed_form", dtype="floating")
  layers.check_shape(targets, "targets", "n k", where="bundle_closed_form", n=features.shape[0])
  if not l2 > 0:
    raise ValueError(f"bundle_closed_form: `l2` must be > 0; got {l2}.")
  return jax.vmap(lambda t: fit_ridge(features, t, float(l2)), in_axes=1, out_axes=1)(jnp.asarray(targets,
                                                                                                  jnp.float32))


class SNNKAdapter(nn.Module):
  """Residual SNNK adapter ``x + Phi(x~) Psi`` with ``Psi = 0`` at init (starts as the identity).

  Attributes: ``num_random_features`` (m), ``kind`` of the feature map.
  """
  num_random_features: int = 16
  kind: str = "relu"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., e]`` -> ``[..., e]``."""
    layers.check_shape(x, "x", "... features", where=type(self).__name__, dtype="floating")
    layer = SNNKDense(x.shape[-1], self.num_random_features, kind=self.kind, zero_init=True, name="snnk")
    return x + layer(x).astype(x.dtype)


class AdapterViT(nn.Module):
  """``zoo.transformer.ViT`` (pre-norm, learned positions, class token) with an :class:`SNNKAdapter` after each
  encoder block; parameter names match the ViT's, plus ``encoder/adapter_i``.

  Attributes: those of ``ViT`` (``num_classes``, ``patch_size``, ``hidden``, ``num_layers``, ``num_heads``,
  ``mlp_dim``), ``adapter_features`` (m of each adapter), ``adapter_kind``, and ``use_adapters`` (False: the ViT).
  """
  num_classes: int = 10
  patch_size: int = 2
  hidden: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  adapter_features: int = 16
  adapter_kind: str = "relu"
  use_adapters: bool = True

  @nn.compact
  def __call__(self, image: Array) -> Array:
    """``image [batch, height, width, channels]`` -> logits ``[batch, num_classes]``."""
    where = type(self).__name__
    layers.check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    x = tf.patch_tokens(image, self.patch_size, self.hidden, where=where)
    cls = self.param("cls", layers.partitioned(nn.initializers.zeros_init(), (None, None, "embed")),
                     (1, 1, self.hidden))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, self.hidden)), x], axis=1)
    x = _AdaptedEncoder(self.num_layers, self.num_heads, self.mlp_dim, self.adapter_features, self.adapter_kind,
                        self.use_adapters, name="encoder")(x)
    return layers.dense(self.num_classes, axes=("embed", "classes"), name="head")(x[:, 0]).astype(jnp.float32)


class _AdaptedEncoder(nn.Module):
  """``zoo.transformer.Encoder`` (learned positions, pre-norm) with adapters between blocks; same parameter names."""
  num_layers: int
  num_heads: int
  mlp_dim: int
  adapter_features: int
  adapter_kind: str
  use_adapters: bool

  @nn.compact
  def __call__(self, x: Array) -> Array:
    length, features = x.shape[1], x.shape[2]
    table = self.param("position_embedding", layers.partitioned(nn.initializers.normal(0.02), ("length", "embed")),
                       (length, features))
    x = x + table[None].astype(x.dtype)
    for i in range(self.num_layers):
      x = tf.EncoderBlock(self.num_heads, self.mlp_dim, name=f"block_{i}")(x)
      if self.use_adapters:
        x = SNNKAdapter(self.adapter_features, self.adapter_kind, name=f"adapter_{i}")(x)
    return layers.layer_norm(name="norm")(x)


def adapter_mask(params) -> Any:
  """A pytree of bools over ``params`` of :class:`AdapterViT`: True for what adapter fine-tuning trains (every
  ``adapter_i`` and the ``head``), for ``optax.masked`` / ``optax.multi_transform``."""
  def trainable(path, _):
    names = [getattr(p, "key", str(p)) for p in path]
    return any(str(n).startswith("adapter_") for n in names) or (names and names[0] == "head")
  return jax.tree_util.tree_map_with_path(trainable, params,
                                          is_leaf=lambda v: isinstance(v, nn.meta.AxisMetadata))

