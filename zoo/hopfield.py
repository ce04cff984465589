"""Modern Hopfield networks: the continuous update rule, its energy, and the Hopfield layers.

Paper: Ramsauer et al., "Hopfield Networks is All You Need", ICLR 2021 (arXiv 2008.02217, 2020). Reference
implementation (read to match its defaults, not copied): github.com/ml-jku/hopfield-layers (``hflayers``).

The modern Hopfield network stores ``N`` patterns ``X = (x_1, ..., x_N)`` (rows of ``stored``) and retrieves from a
state (query) pattern ``xi`` with the update rule

    xi_new = softmax(beta * xi X^T) X,

which minimises (never increases) the energy

    E(xi) = -1/beta log sum_i exp(beta x_i^T xi) + 1/2 xi^T xi + 1/beta log N + 1/2 M^2,   M = max_i ||x_i||.

At large ``beta`` one update retrieves a well-separated stored pattern (exponentially many patterns fit in ``d``
dimensions); at small ``beta`` the fixed point is the average of all patterns, and in between it is a metastable
state averaging a cluster of similar patterns. The update is exactly attention, so every function and layer here
computes it with the zoo's one attention function, ``zoo.kernels.attention.attention`` (layout
``[batch, length, heads, head_dim]``; a Pallas kernel on GPU/TPU). Only :func:`association` and :func:`energy`
compute the softmax weights / log-sum-exp themselves, because they return them.

Functions (any number of leading axes ``...``, broadcast between ``query`` and ``stored``):

* :func:`retrieve` ``(query [..., q, d], stored [..., n, d], *, beta, steps=1) -> [..., q, d]``: the update rule,
  applied ``steps`` times.
* :func:`association` ``(query [..., q, d], stored [..., n, d], *, beta, mask=None) -> [..., q, n]``: the softmax
  weights ``softmax(beta * query stored^T)`` of one update (for plots and analysis).
* :func:`energy` ``(xi [..., q, d], stored [..., n, d], *, beta) -> [..., q]``: the energy above.

Layers (Flax Linen; the paper's Eq. 10: ``Z = softmax(beta R W_Q W_K^T Y^T) Y W_K W_V``, then an output projection):

* :class:`Hopfield`: state patterns ``R`` and stored patterns ``Y`` (and optionally separate pattern projections)
  are inputs: ``(state [batch, q, d_r], stored [batch, n, d_y] = state, projection [batch, n, d_v] = stored)
  -> [batch, q, features]``.
* :class:`HopfieldPooling`: ``quantity`` learned static state patterns pool a set:
  ``stored [batch, n, d] -> [batch, quantity * features]``.
* :class:`HopfieldLayer`: ``quantity`` learned stored patterns (and optionally separate learned targets); the input
  is the state pattern: ``state [batch, q, d] -> [batch, q, features]``.

Defaults follow the reference implementation: ``beta = 1/sqrt(head_dim)``; LayerNorm (with scale and bias) on the
stored patterns, the state patterns and the pattern projections; no LayerNorm in the Hopfield (projected) space;
``head_dim = d_r / num_heads``, ``pattern_dim = head_dim``, ``features = d_r``; projections initialised
N(0, 0.02^2) with zero biases; one update (``update_steps_max=0``); learned state/stored patterns N(0, 0.02^2).

Models for the trainer:

* :class:`HopfieldClassifier`: ``image [batch, H, W, C] -> logits [batch, num_classes]`` (patch tokens, a Hopfield
  self-association block, HopfieldPooling, a linear head); the model of ``recipes/configs/hopfield_digits.py``.
* :class:`HopfieldMIL`: ``instances [batch, bag, features] -> logits [batch, num_classes]``, multiple-instance
  learning with ``pooling='hopfield' | 'mean' | 'max'`` (the same network with a different pooling).

Differences from the reference implementation, on purpose:

* Masks use the zoo's convention, ``True`` = may attend (``hflayers`` uses ``True`` = ignore).
* ``update_steps_max`` must be finite (``None`` = "until convergence" would need a data-dependent loop). Iteration
  runs as a ``lax.scan`` of ``update_steps_max`` steps with a per-(example, head) converged flag, so it is
  differentiable and jit/vmap friendly. An (example, head) stops when its state pattern changes by at most
  ``update_steps_eps`` (Frobenius norm over queries and features); the reference compares consecutive softmax
  matrices and takes the maximum over the batch, which would couple examples of a batch.
* The static-pattern options, ``add_zero_association``, ``concat_bias_pattern`` and ``association_activation`` of
  ``hflayers`` are not ported; ``scaling`` is one float for all heads.
* A batch of 1 in ``state`` or ``stored`` broadcasts against the other (learned patterns are projected once, not
  once per example).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.kernels.attention import attention
from zoo import layers
from zoo.layers import check_shape, dense, layer_norm, partitioned

__all__ = ["Hopfield", "HopfieldClassifier", "HopfieldLayer", "HopfieldMIL", "HopfieldPooling", "association",
           "energy", "retrieve"]

Array = jax.Array


# ------------------------------------------------------------------------------------------------- functions


def _check_beta(beta, where: str):
  if isinstance(beta, bool) or not (isinstance(beta, (int, float)) or np.ndim(beta) == 0):
    raise TypeError(f"{where}: `beta` must be a positive scalar; got {type(beta).__name__} "
                    f"with shape {np.shape(beta)}.")
  if isinstance(beta, (int, float)) and beta <= 0:
    raise ValueError(f"{where}: `beta` must be > 0; got {beta}.")


def _check_pair(query, stored, where: str, qname: str = "query") -> tuple[int, ...]:
  """Checks ``query [..., q, d]`` and ``stored [..., n, d]``; returns their broadcast leading shape."""
  check_shape(query, qname, "... queries features", where=where, dtype="floating")
  check_shape(stored, "stored", "... patterns features", where=where, dtype="floating", features=query.shape[-1])
  try:
    return tuple(np.broadcast_shapes(tuple(query.shape[:-2]), tuple(stored.shape[:-2])))
  except ValueError:
    raise ValueError(f"{where}: the leading axes of `{qname}` {tuple(query.shape)} and `stored` "
                     f"{tuple(stored.shape)} (all but the last two) must broadcast.") from None


def retrieve(query: Array, stored: Array, *, beta: float, steps: int = 1) -> Array:
  """The modern Hopfield update ``xi <- softmax(beta * xi X^T) X``, applied ``steps`` times.

  Computed with the zoo's attention function (query = state pattern, key = value = stored patterns).

  Args:
    query: state patterns ``xi``, ``[..., q, d]`` (floating).
    stored: stored patterns ``X``, ``[..., n, d]``; leading axes broadcast against ``query``'s.
    beta: inverse temperature (> 0), a scalar.
    steps: number of updates (>= 0; 0 returns ``query``).

  Returns:
    The updated state patterns, ``[..., q, d]`` in the dtype ``query`` and ``stored`` promote to.
  """
  lead = _check_pair(query, stored, "retrieve")
  _check_beta(beta, "retrieve")
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
    raise TypeError(f"retrieve: `steps` must be an int; got {type(steps).__name__}.")
  if steps < 0:
    raise ValueError(f"retrieve: `steps` must be >= 0; got {steps}.")
  dtype = jnp.result_type(query, stored)
  query, stored = jnp.asarray(query, dtype), jnp.asarray(stored, dtype)
  (q, d), n, b = query.shape[-2:], stored.shape[-2], math.prod(lead)
  if math.prod(stored.shape[:-2]) == 1:
    # One memory for every query: fold the query's leading axes into its length instead of copying the memory.
    xi = jnp.broadcast_to(query, (*lead, q, d)).reshape(1, b * q, 1, d)
    keys = stored.reshape(1, n, 1, d)
  else:
    xi = jnp.broadcast_to(query, (*lead, q, d)).reshape(b, q, 1, d)
    keys = jnp.broadcast_to(stored, (*lead, n, d)).reshape(b, n, 1, d)

  def update(_, state):
    return attention(state, keys, keys, scale=beta)

  if steps == 1:
    xi = update(0, xi)
  elif steps > 1:
    xi = jax.lax.fori_loop(0, steps, update, xi)
  return xi.reshape(*lead, q, d)


def association(query: Array, stored: Array, *, beta: float, mask: Array | None = None) -> Array:
  """The softmax weights of one update, ``softmax(beta * query stored^T)`` (for plots and analysis).

  Args:
    query: state patterns ``[..., q, d]``.
    stored: stored patterns ``[..., n, d]``.
    beta: inverse temperature (> 0).
    mask: optional bool, broadcastable to ``[..., q, n]``; ``True`` = may attend. Fully masked rows are uniform.

  Returns:
    ``[..., q, n]`` float32 weights; each row sums to 1.
  """
  _check_pair(query, stored, "association")
  _check_beta(beta, "association")
  logits = jnp.einsum("...qd,...nd->...qn", query, stored, preferred_element_type=jnp.float32) * beta
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def energy(xi: Array, stored: Array, *, beta: float) -> Array:
  """The modern Hopfield energy (the paper's Eq. 2) of state patterns ``xi``.

  ``E = -1/beta logsumexp(beta X xi) + 1/2 xi^T xi + 1/beta log N + 1/2 M^2`` with ``M = max_i ||x_i||``;
  :func:`retrieve` never increases it (it is the CCCP step), and ``E >= 0``.

  Args:
    xi: state patterns ``[..., q, d]``.
    stored: stored patterns ``[..., n, d]``.
    beta: inverse temperature (> 0).

  Returns:
    ``[..., q]`` float32 energies.
  """
  _check_pair(xi, stored, "energy", qname="xi")
  _check_beta(beta, "energy")
  xi32, x32 = jnp.asarray(xi, jnp.float32), jnp.asarray(stored, jnp.float32)
  n = stored.shape[-2]
  lse = jax.nn.logsumexp(beta * jnp.einsum("...qd,...nd->...qn", xi32, x32), axis=-1)
  m2 = jnp.max(jnp.sum(x32 * x32, axis=-1), axis=-1)[..., None]
  return -lse / beta + 0.5 * jnp.sum(xi32 * xi32, axis=-1) + math.log(n) / beta + 0.5 * m2


# ---------------------------------------------------------------------------------------------------- layers


def _normal(std: float = 0.02):
  return nn.initializers.normal(stddev=std)


class _HeadProjection(nn.Module):
  """``x [..., d] -> [..., num_heads, features]``: kernel ``[d, heads, features]`` N(0, 0.02^2), zero bias."""
  num_heads: int
  features: int
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # Not nn.DenseGeneral: it initialises a flattened 2-D kernel, which a 3-D logical partitioning rejects.
    kernel = self.param("kernel", partitioned(_normal(), ("embed", "heads", "kv")),
                        (x.shape[-1], self.num_heads, self.features), self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros_init(), ("heads", "kv")),
                      (self.num_heads, self.features), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jnp.einsum("...d,dhk->...hk", x, kernel)
    return y if bias is None else y + bias


class _OutProjection(nn.Module):
  """``x [..., heads, k] -> [..., features]``: kernel ``[heads, k, features]`` N(0, 0.02^2), zero bias."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", partitioned(_normal(), ("heads", "kv", "embed")),
                        (*x.shape[-2:], self.features), self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros_init(), ("embed",)), (self.features,),
                      self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jnp.einsum("...hk,hkf->...f", x, kernel)
    return y if bias is None else y + bias


class _HopfieldOptions(nn.Module):
  """The options every Hopfield layer shares (the fields of :class:`Hopfield`)."""
  features: int | None = None
  num_heads: int = 1
  head_dim: int | None = None
  pattern_dim: int | None = None
  scaling: float | None = None
  update_steps_max: int = 0
  update_steps_eps: float = 1e-4
  normalize_stored_pattern: bool = True
  normalize_stored_pattern_affine: bool = True
  normalize_state_pattern: bool = True
  normalize_state_pattern_affine: bool = True
  normalize_pattern_projection: bool = True
  normalize_pattern_projection_affine: bool = True
  normalize_hopfield_space: bool = False
  normalize_hopfield_space_affine: bool = False
  norm_eps: float = 1e-5
  use_bias: bool = True
  disable_out_projection: bool = False
  dropout_rate: float = 0.0
  uniform_association: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def _hopfield_kwargs(self) -> dict[str, Any]:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(_HopfieldOptions)
            if f.init and f.name not in ("parent", "name")}


class Hopfield(_HopfieldOptions):
  """The Hopfield layer: ``Z = softmax(beta R W_Q W_K^T Y^T) Y W_K W_V``, then an output projection.

  Per head, the state patterns ``R`` are projected to the Hopfield space ``xi = R W_Q``, the stored patterns to
  ``K = Y W_K`` and the pattern projections to ``V = P W_V`` (``P = Y`` unless given). ``xi`` is updated
  ``update_steps_max`` times with ``xi <- softmax(beta xi K^T) K`` (until it moves less than ``update_steps_eps``),
  then ``softmax(beta xi K^T) V`` of all heads is projected to ``features``.

  Attributes:
    features: output size; ``None`` = the state patterns' size ``d_r``.
    num_heads: parallel association heads.
    head_dim: size of the Hopfield (association) space per head; ``None`` = ``d_r // num_heads``.
    pattern_dim: size of the projected patterns (values) per head; ``None`` = ``head_dim``.
    scaling: ``beta``; ``None`` = ``1 / sqrt(head_dim)``.
    update_steps_max: extra updates of the state pattern in the Hopfield space before the retrieval (0 = one
      association, as attention).
    update_steps_eps: an (example, head) stops updating when its state pattern moves by at most this much.
    normalize_stored_pattern, normalize_state_pattern, normalize_pattern_projection: LayerNorm on ``Y``, ``R``,
      ``P`` before the projections; ``*_affine`` adds the learned scale and bias.
    normalize_hopfield_space: LayerNorm on the projected ``xi`` and ``K`` (per head, shared parameters).
    norm_eps: the LayerNorms' epsilon.
    use_bias: biases in the projections (the reference's ``input_bias``).
    disable_out_projection: return the concatenated heads ``[batch, q, num_heads * pattern_dim]``.
    dropout_rate: dropout on the association (softmax) matrix during training (rng ``'dropout'``).
    uniform_association: the ablation of the paper's mechanism (default ``False``, the paper's layer): every
      (unmasked) stored pattern gets the same weight ``1/n`` (``beta -> 0``), so the layer averages the projected
      patterns instead of retrieving; with :class:`HopfieldPooling` it is mean pooling through the same layer.
    dtype: computation dtype (``None``: inferred from inputs and parameters); param_dtype: parameter dtype.

  Call: ``(state, stored=None, projection=None, *, stored_mask=None, association_mask=None, train=False)``

    state: ``R``, ``[batch, q, d_r]``.
    stored: ``Y``, ``[batch, n, d_y]``; ``None`` = ``state`` (self-association). A batch of 1 in ``state`` or
      ``stored`` broadcasts.
    projection: ``P``, ``[batch, n, d_v]``; ``None`` = ``stored``.
    stored_mask: bool ``[batch, n]``, ``True`` = a real stored pattern (False = padding).
    association_mask: bool, broadcastable to ``[batch, num_heads, q, n]``; ``True`` = may associate.
    returns: ``[batch, q, features]``.

  Apply with ``mutable=['intermediates']`` to also get the final association matrix
  ``[batch, num_heads, q, n]`` (sown as ``'association'``).
  """

  @nn.compact
  def __call__(self, state: Array, stored: Array | None = None, projection: Array | None = None, *,
               stored_mask: Array | None = None, association_mask: Array | None = None, train: bool = False) -> Array:
    where = type(self).__name__
    stored = state if stored is None else stored
    projection = stored if projection is None else projection
    check_shape(state, "state", "batch queries features", where=where, dtype="floating",
                features=layers.dim(layers.param_shape(self, "query", "kernel"), 0))
    batch = state.shape[0]
    check_shape(stored, "stored", "batch patterns features", where=where, dtype="floating",
                batch=None if batch == 1 or stored.shape[0] == 1 else batch,
                features=layers.dim(layers.param_shape(self, "key", "kernel"), 0))
    n = stored.shape[1]
    if projection is not stored:
      check_shape(projection, "projection", "batch patterns features", where=where, dtype="floating",
                  batch=stored.shape[0], patterns=n,
                  features=layers.dim(layers.param_shape(self, "value", "kernel"), 0))
    out_batch = max(batch, stored.shape[0])
    if stored_mask is not None:
      check_shape(stored_mask, "stored_mask", "batch patterns", where=where, batch=out_batch, patterns=n)
      if stored_mask.dtype != jnp.bool_:
        raise TypeError(f"{where}: `stored_mask` must be bool (True = a real stored pattern); got {stored_mask.dtype}.")
    q_len = state.shape[1]
    if association_mask is not None:
      _check_mask(association_mask, (out_batch, self.num_heads, q_len, n), where)
    self._check_options(state.shape[-1])

    head_dim = self.head_dim or state.shape[-1] // self.num_heads
    pattern_dim = self.pattern_dim or head_dim
    beta = (1.0 / math.sqrt(head_dim)) if self.scaling is None else float(self.scaling)

    def norm(enabled, affine, name):
      if not enabled:
        return lambda x: x
      return layer_norm(use_scale=affine, use_bias=affine, epsilon=self.norm_eps, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=name)

    def project(features, name):
      return _HeadProjection(self.num_heads, features, use_bias=self.use_bias, dtype=self.dtype,
                             param_dtype=self.param_dtype, name=name)

    if stored_mask is not None:
      # Padding must not contaminate: a NaN/inf in a masked-out pattern would reach every row through the
      # zero-weighted matmul (0 * nan = nan), so masked patterns are zeroed before anything reads them.
      keep = stored_mask[..., None]
      stored = jnp.where(keep, stored, jnp.zeros((), stored.dtype))
      projection = jnp.where(keep, projection, jnp.zeros((), projection.dtype))
    normed_stored = norm(self.normalize_stored_pattern, self.normalize_stored_pattern_affine, "stored_norm")(stored)
    # With self-association (R = Y = P) each role still has its own LayerNorm, as in the reference.
    normed_state = norm(self.normalize_state_pattern, self.normalize_state_pattern_affine, "state_norm")(state)
    normed_proj = norm(self.normalize_pattern_projection, self.normalize_pattern_projection_affine,
                       "projection_norm")(projection)
    xi = project(head_dim, "query")(normed_state)       # [b_r, q, h, head_dim]
    keys = project(head_dim, "key")(normed_stored)      # [b_y, n, h, head_dim]
    values = project(pattern_dim, "value")(normed_proj)  # [b_y, n, h, pattern_dim]
    if self.normalize_hopfield_space:
      space_norm = norm(True, self.normalize_hopfield_space_affine, "hopfield_space_norm")
      xi, keys = space_norm(xi), space_norm(keys)
    xi = jnp.broadcast_to(xi, (out_batch, *xi.shape[1:]))
    keys = jnp.broadcast_to(keys, (out_batch, *keys.shape[1:]))
    values = jnp.broadcast_to(values, (out_batch, *values.shape[1:]))
    if xi.dtype != keys.dtype:
      dtype = jnp.result_type(xi, keys)
      xi, keys, values = xi.astype(dtype), keys.astype(dtype), values.astype(dtype)

    mask = None
    if stored_mask is not None:
      mask = stored_mask[:, None, None, :]
    if association_mask is not None:
      mask = association_mask if mask is None else jnp.logical_and(mask, association_mask)

    if self.uniform_association:
      beta = 0.0  # the ablation: softmax(0 * logits) is uniform over the unmasked stored patterns
    elif self.update_steps_max > 0:
      xi = _iterate(xi, keys, beta=beta, mask=mask, steps=self.update_steps_max, eps=self.update_steps_eps)

    dropout = self.dropout_rate if train else 0.0
    rng = self.make_rng("dropout") if dropout > 0.0 else None
    out = attention(xi, keys, values, scale=beta, mask=mask, dropout_rate=dropout, dropout_rng=rng)
    if self.is_mutable_collection("intermediates") and not self.is_initializing():
      # For analysis only, when asked at apply time: sown during init it would land in the variables, and a trainer
      # that applies with every non-param collection mutable would recompute it on every step (issue 13).
      # The weights the attention call above used, [batch, heads, q, n].
      full_mask = None if mask is None else jnp.broadcast_to(mask, (out_batch, self.num_heads, q_len, n))
      sown = xi if beta else jnp.zeros_like(xi)  # uniform_association: a zero state pattern associates uniformly
      self.sow("intermediates", "association",
               association(sown.transpose(0, 2, 1, 3), keys.transpose(0, 2, 1, 3), beta=beta or 1.0, mask=full_mask))
    if self.disable_out_projection:
      return out.reshape(*out.shape[:2], self.num_heads * pattern_dim)
    features = self.features or state.shape[-1]
    return _OutProjection(features, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                          name="out")(out)

  def _check_options(self, state_features: int) -> None:
    where = type(self).__name__
    if self.num_heads < 1:
      raise ValueError(f"{where}: `num_heads` must be >= 1; got {self.num_heads}.")
    if self.head_dim is None and state_features % self.num_heads:
      raise ValueError(f"{where}: the state patterns' size {state_features} must be divisible by num_heads="
                       f"{self.num_heads} (or set head_dim).")
    if self.update_steps_max < 0:
      raise ValueError(f"{where}: `update_steps_max` must be >= 0 (finite); got {self.update_steps_max}.")
    if self.update_steps_eps <= 0:
      raise ValueError(f"{where}: `update_steps_eps` must be > 0; got {self.update_steps_eps}.")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"{where}: `dropout_rate` must be in [0, 1); got {self.dropout_rate}.")
    if self.scaling is not None and self.scaling <= 0:
      raise ValueError(f"{where}: `scaling` (beta) must be > 0; got {self.scaling}.")


def _check_mask(mask, target, where: str) -> None:
  if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
    raise TypeError(f"{where}: `association_mask` must be a bool array broadcastable to [batch, heads, queries, "
                    f"patterns] = {list(target)}; got {type(mask).__name__}.")
  if mask.dtype != jnp.bool_:
    raise TypeError(f"{where}: `association_mask` must be bool (True = may associate); got {mask.dtype}.")
  try:
    if mask.ndim > 4 or np.broadcast_shapes(tuple(mask.shape), target) != target:
      raise ValueError
  except ValueError:
    raise ValueError(f"{where}: `association_mask` must be broadcastable to [batch, heads, queries, patterns] = "
                     f"{list(target)}; got shape {tuple(mask.shape)}.") from None


def _iterate(xi, keys, *, beta, mask, steps: int, eps: float):
  """``steps`` updates ``xi <- softmax(beta xi K^T) K`` in the Hopfield space, each (example, head) stopping once
  its state moves by at most ``eps``. ``xi``: [b, q, h, d], ``keys``: [b, n, h, d]."""
  active = jnp.ones((xi.shape[0], 1, xi.shape[2], 1), bool)

  def step(carry, _):
    state, active = carry
    new = attention(state, keys, keys, scale=beta, mask=mask)
    moved = jnp.sum(jnp.square((new - state).astype(jnp.float32)), axis=(1, 3), keepdims=True) > eps * eps
    return (jnp.where(active, new, state), jnp.logical_and(active, moved)), None

  (xi, _), _ = jax.lax.scan(step, (xi, active), None, length=steps)
  return xi


class HopfieldPooling(_HopfieldOptions):
  """Hopfield pooling: ``quantity`` learned static state patterns retrieve from a set (the stored patterns).

  The state patterns are parameters ``pooling_weights [quantity, d]`` initialised N(0, 0.02^2) (as in the
  reference); the result of all of them is flattened.

  Attributes (besides :class:`Hopfield`'s):
    quantity: number of learned state patterns (pooled outputs).
    trainable: whether the state patterns are learned (otherwise they stay at their random initial value).

  Call: ``(stored, projection=None, *, stored_mask=None, association_mask=None, train=False)``

    stored: the set to pool, ``[batch, n, d]``.
    projection: ``[batch, n, d_v]``; ``None`` = ``stored``.
    stored_mask: bool ``[batch, n]``, ``True`` = a real set element.
    association_mask: bool, broadcastable to ``[batch, num_heads, quantity, n]``.
    returns: ``[batch, quantity * features]`` (``features`` defaults to ``d``).
  """
  quantity: int = 1
  trainable: bool = True

  @nn.compact
  def __call__(self, stored: Array, projection: Array | None = None, *, stored_mask: Array | None = None,
               association_mask: Array | None = None, train: bool = False) -> Array:
    where = type(self).__name__
    if self.quantity < 1:
      raise ValueError(f"{where}: `quantity` must be >= 1; got {self.quantity}.")
    check_shape(stored, "stored", "batch patterns features", where=where, dtype="floating",
                features=layers.dim(layers.param_shape(self, "pooling_weights"), 1))
    weights = self.param("pooling_weights", partitioned(_normal(), (None, "embed")),
                         (self.quantity, stored.shape[-1]), self.param_dtype)
    if not self.trainable:
      weights = jax.lax.stop_gradient(weights)
    out = Hopfield(**self._hopfield_kwargs(), name="hopfield")(
        weights[None], stored, projection, stored_mask=stored_mask, association_mask=association_mask, train=train)
    return out.reshape(out.shape[0], -1)


class HopfieldLayer(_HopfieldOptions):
  """Hopfield lookup layer: the input is the state pattern; ``quantity`` stored patterns are parameters.

  ``lookup_weights [quantity, d]`` are the stored patterns (and, unless ``lookup_weights_as_separated``, also the
  pattern projections); with ``lookup_weights_as_separated`` separate ``target_weights [quantity, d]`` are the
  pattern projections. Both initialised N(0, 0.02^2) as in the reference.

  Attributes (besides :class:`Hopfield`'s):
    quantity: number of learned stored patterns.
    lookup_weights_as_separated: learn separate target patterns (values).
    lookup_targets_as_trainable: whether the separate targets are learned.
    trainable: whether the stored patterns are learned.

  Call: ``(state, *, association_mask=None, train=False)``

    state: ``[batch, q, d]``.
    association_mask: bool, broadcastable to ``[batch, num_heads, q, quantity]``.
    returns: ``[batch, q, features]`` (``features`` defaults to ``d``).
  """
  quantity: int = 1
  lookup_weights_as_separated: bool = False
  lookup_targets_as_trainable: bool = True
  trainable: bool = True

  @nn.compact
  def __call__(self, state: Array, *, association_mask: Array | None = None, train: bool = False) -> Array:
    where = type(self).__name__
    if self.quantity < 1:
      raise ValueError(f"{where}: `quantity` must be >= 1; got {self.quantity}.")
    check_shape(state, "state", "batch queries features", where=where, dtype="floating",
                features=layers.dim(layers.param_shape(self, "lookup_weights"), 1))
    d = state.shape[-1]
    lookup = self.param("lookup_weights", partitioned(_normal(), (None, "embed")), (self.quantity, d),
                        self.param_dtype)
    if not self.trainable:
      lookup = jax.lax.stop_gradient(lookup)
    targets = None
    if self.lookup_weights_as_separated:
      targets = self.param("target_weights", partitioned(_normal(), (None, "embed")), (self.quantity, d),
                           self.param_dtype)
      if not self.lookup_targets_as_trainable:
        targets = jax.lax.stop_gradient(targets)
      targets = targets[None]
    return Hopfield(**self._hopfield_kwargs(), name="hopfield")(
        state, lookup[None], targets, association_mask=association_mask, train=train)


# ---------------------------------------------------------------------------------------------------- models


class HopfieldClassifier(nn.Module):
  """A small Hopfield image classifier: patch tokens -> Hopfield self-association -> HopfieldPooling -> logits.

  The image is cut into ``patch_size x patch_size`` patches (overlapping by default: 3x3 patches at stride 1,
  36 tokens for an 8x8 digit), each embedded to ``width`` with a learned position
  embedding. Each of ``depth`` blocks adds a :class:`Hopfield` self-association (every patch retrieves from all
  patches; the layer's LayerNorms make it pre-norm) and a GELU MLP. :class:`HopfieldPooling` with ``quantity``
  learned state patterns pools the tokens, and a linear head gives the logits.

  Attributes:
    num_classes: outputs.
    patch_size: patch side.
    patch_stride: step between patches (``None`` = ``patch_size``: non-overlapping patches).
    width: token width.
    depth: Hopfield blocks.
    num_heads: heads of every Hopfield layer.
    mlp_ratio: MLP hidden width / ``width`` (0: no MLP).
    quantity: pooling state patterns.
    dropout_rate: dropout on the association matrices during training.
    dtype, param_dtype: computation and parameter dtypes.

  Call: ``image [batch, height, width, channels]`` (floating) ``-> logits [batch, num_classes]``.
  """
  num_classes: int = 10
  patch_size: int = 3
  patch_stride: int | None = 1
  width: int = 64
  depth: int = 1
  num_heads: int = 4
  mlp_ratio: int = 2
  quantity: int = 1
  dropout_rate: float = 0.0
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> Array:
    where = type(self).__name__
    check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    b, h, w, c = image.shape
    p, stride = self.patch_size, self.patch_stride or self.patch_size
    if h < p or w < p or (h - p) % stride or (w - p) % stride:
      raise ValueError(f"{where}: `image` height and width must be patch_size={p} plus a multiple of "
                       f"patch_stride={stride}; got shape {tuple(image.shape)}.")
    # [b, h', w', c * p * p] patches (channel-major features), one token per patch.
    patches = jax.lax.conv_general_dilated_patches(image, (p, p), (stride, stride), "VALID",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    tokens = patches.reshape(b, -1, patches.shape[-1])
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = dense(self.width, axes=(None, "embed"), name="embed", **kw)(tokens)
    pos = self.param("position", partitioned(_normal(), (None, "embed")), x.shape[1:], self.param_dtype)
    x = x + pos.astype(x.dtype)
    for i in range(self.depth):
      x = x + Hopfield(num_heads=self.num_heads, dropout_rate=self.dropout_rate, name=f"hopfield_{i}", **kw)(
          x, train=train)
      if self.mlp_ratio:
        y = layer_norm(name=f"mlp_norm_{i}", **kw)(x)
        y = dense(self.width * self.mlp_ratio, axes=("embed", "mlp"), name=f"mlp_in_{i}", **kw)(y)
        y = dense(self.width, axes=("mlp", "embed"), name=f"mlp_out_{i}", **kw)(nn.gelu(y))
        x = x + y
    pooled = HopfieldPooling(num_heads=self.num_heads, quantity=self.quantity, dropout_rate=self.dropout_rate,
                             name="pooling", **kw)(x, train=train)
    pooled = layer_norm(name="head_norm", **kw)(pooled)
    return dense(self.num_classes, axes=("embed", "classes"), name="head", **kw)(pooled)


class HopfieldMIL(nn.Module):
  """Multiple-instance classifier: an instance encoder, a pooling over the bag, a linear head.

  ``pooling='hopfield'`` pools with :class:`HopfieldPooling` (learned state patterns retrieve the relevant
  instances, as in the paper's MIL experiments); ``'mean'`` and ``'max'`` are the classic poolings, the rest of
  the network being the same, so the three can be compared directly.

  Attributes:
    num_classes: outputs.
    width: instance embedding width.
    hidden: hidden width of the two-layer instance encoder.
    pooling: ``'hopfield'``, ``'mean'`` or ``'max'``.
    num_heads, quantity, scaling, update_steps_max: of the Hopfield pooling.
    uniform_association: the ablation of Hopfield pooling (uniform association weights, see :class:`Hopfield`).
    dropout_rate: dropout on the Hopfield association matrix during training.
    dtype, param_dtype: computation and parameter dtypes.

  Call: ``instances [batch, bag, features]`` (floating) ``-> logits [batch, num_classes]``.
  """
  num_classes: int = 2
  width: int = 32
  hidden: int = 64
  pooling: str = "hopfield"
  num_heads: int = 1
  quantity: int = 1
  scaling: float | None = None
  update_steps_max: int = 0
  uniform_association: bool = False
  dropout_rate: float = 0.0
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, instances: Array, *, train: bool = False) -> Array:
    where = type(self).__name__
    if self.pooling not in ("hopfield", "mean", "max"):
      raise ValueError(f"{where}: `pooling` must be 'hopfield', 'mean' or 'max'; got {self.pooling!r}.")
    check_shape(instances, "instances", "batch bag features", where=where, dtype="floating")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.relu(dense(self.hidden, axes=(None, "mlp"), name="encoder_in", **kw)(instances))
    x = dense(self.width, axes=("mlp", "embed"), name="encoder_out", **kw)(x)
    if self.pooling == "hopfield":
      pooled = HopfieldPooling(num_heads=self.num_heads, quantity=self.quantity, scaling=self.scaling,
                               update_steps_max=self.update_steps_max, dropout_rate=self.dropout_rate,
                               uniform_association=self.uniform_association, name="pooling", **kw)(x, train=train)
    elif self.pooling == "mean":
      pooled = jnp.mean(x, axis=1)
    else:
      pooled = jnp.max(x, axis=1)
    return dense(self.num_classes, axes=("embed", "classes"), name="head", **kw)(nn.relu(pooled))
