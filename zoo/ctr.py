"""Click-through-rate (CTR) models: feature embeddings over categorical fields, DIN and FinalMLP.

Papers:

* "Deep Interest Network for Click-Through Rate Prediction" (Zhou et al., KDD 2018, arXiv 1706.06978): a local
  activation unit weighs each behaviour in the user's history by its relevance to the candidate ad, without a
  softmax, so the pooled interest keeps its intensity; Dice, a data-adaptive PReLU; the mini-batch-aware L2
  penalty that only touches the embedding rows a batch uses.
* "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction" (Mao et al., AAAI 2023, arXiv 2304.00902): two
  MLP streams fed by stream-specific feature gates, fused by a multi-head bilinear layer; DualMLP is the same
  model with no gates and a linear fusion.

Embedding tables: every categorical field's rows live in one table ``[rows, dim]`` (field ``f``'s ids are offset
by the sizes of the fields before it, padded up to a multiple of 8 rows). The rows carry the logical axis
``'embed'`` (a table is a dense layer over one-hot inputs: its rows are that layer's input features), so a large
table shards its rows over ``fsdp`` by ``zoo.recipes.sharding.LOGICAL_RULES``; the small width is replicated.

Public names (``b`` batch, ``F`` fields, ``D`` embedding width, ``L`` history length):

* :class:`FeatureEmbedding` ``ids [..., F] int -> [..., F, D]``; out-of-range ids are errors (checked on
  concrete inputs; inside ``jit`` they cannot be, and the gather clamps them).
* :class:`Dice` ``[..., H] -> [..., H]``: ``p * s + (1 - p) * alpha * s``, ``p = sigmoid(BN(s))`` (batch statistics
  in training, moving averages at inference; no affine; ``alpha`` learned, initialised to 0).
* :class:`LocalActivationUnit` ``(target [b, E], behaviours [b, L, E], mask [b, L]) -> (pooled [b, E],
  weights [b, L])``: ``a_j = MLP([v_a, e_j, v_a - e_j, v_a * e_j])`` (FuxiCTR's order), ``v_U = sum_j a_j e_j``.
* :class:`DIN` and :class:`EmbMLPBase` (DIN's sum-pooling base model): inputs a dict ``{'item' [b], 'cate' [b],
  'hist_item' [b, L], 'hist_cate' [b, L], 'hist_mask' [b, L]}`` plus optional ``'user' [b]`` -> logits ``[b]``.
* :func:`mba_l2_penalty` ``(table [rows, D], ids [...], counts [rows]) -> scalar``.
* :class:`FeatureSelection` ``(emb [b, F*D], ids [b, F]) -> (h1, h2)`` each ``[b, F*D]``.
* :class:`InteractionAggregation` ``(o1 [b, d1], o2 [b, d2]) -> logits [b]``.
* :class:`FinalMLP` and :class:`DualMLP` ``ids [b, F] int -> logits [b]``; :class:`FieldMLP` (one MLP over the
  concatenated embeddings, the single-stream baseline).
* Metrics: :func:`auc` and :func:`logloss` (scikit-learn), :func:`gauc` (impression-weighted per-user AUC) and
  :func:`rela_impr` (DIN's relative improvement).

Models return logits; the probability is ``sigmoid(logit)`` and the loss binary cross-entropy (the task
``zoo.recipes.procedures.ctr.Click``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.layers import check_shape

__all__ = ["DIN", "Dice", "DualMLP", "EmbMLPBase", "FeatureEmbedding", "FeatureSelection", "FieldMLP", "FinalMLP",
           "InteractionAggregation", "LocalActivationUnit", "auc", "gauc", "logloss", "mba_l2_penalty",
           "rela_impr"]

Dtype = Any
_ROW_MULTIPLE = 8  # table rows are padded to a multiple of this, so the row axis divides common fsdp sizes


def _activation(name):
  if callable(name):
    return name
  if name == "dice":
    return "dice"
  fn = getattr(nn, name, None)
  if fn is None:
    raise ValueError(f"ctr: unknown activation {name!r}; use 'dice' or a flax.linen function name ('relu' ...).")
  return fn


def _check_ids_in_range(ids, high, name: str, where: str) -> None:
  """Errors on out-of-range ids when ``ids`` is concrete (eager calls); under ``jit`` the values are unknown."""
  if isinstance(ids, jax.core.Tracer):
    return
  values = np.asarray(ids)
  if values.size == 0:
    raise ValueError(f"{where}: `{name}` is empty (shape {values.shape}).")
  high = np.asarray(high)
  if values.min() < 0 or np.any(values >= high):
    bad = values[(values < 0) | (values >= np.broadcast_to(high, values.shape))]
    raise ValueError(f"{where}: `{name}` holds out-of-range ids (e.g. {int(bad.flat[0])}); ids must be in "
                     f"[0, vocab) with vocab {high.tolist() if high.ndim else int(high)}.")


# ------------------------------------------------------------------------------------------------ embeddings


class FeatureEmbedding(nn.Module):
  """One embedding per categorical field, stored as one row-sharded table.

  Attributes:
    vocab_sizes: the number of ids of every field; field ``f``'s ids are in ``[0, vocab_sizes[f])``.
    features: the embedding width ``D`` (FuxiCTR's default 10).
    init_scale: embedding rows start ``N(0, init_scale^2)`` (FuxiCTR: 1e-4; the models here pass 0.1: with a
      tiny start the products the models must learn sit at a saddle for a random number of steps).

  Call: ``ids [..., F]`` int -> ``[..., F, D]``. ``offsets`` (``[F]``) maps field ids to table rows.
  """
  vocab_sizes: Sequence[int]
  features: int = 10
  init_scale: float = 0.01
  param_dtype: Dtype = jnp.float32

  @property
  def offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int32)

  @property
  def rows(self) -> int:
    total = int(np.sum(self.vocab_sizes))
    return -(-total // _ROW_MULTIPLE) * _ROW_MULTIPLE

  def setup(self):
    if not self.vocab_sizes or min(self.vocab_sizes) < 1:
      raise ValueError(f"FeatureEmbedding: `vocab_sizes` must list >= 1 field of >= 1 id; got {self.vocab_sizes}.")
    self.table = self.param("table", layers.partitioned(nn.initializers.normal(self.init_scale), ("embed", None)),
                            (self.rows, self.features), self.param_dtype)

  def table_rows(self, ids):
    """Table rows of field ids ``[..., F]`` (no checks)."""
    return ids.astype(jnp.int32) + jnp.asarray(self.offsets)

  def __call__(self, ids):
    check_shape(ids, "ids", "... fields", where="FeatureEmbedding", dtype="integer", fields=len(self.vocab_sizes))
    _check_ids_in_range(ids, np.asarray(self.vocab_sizes), "ids", "FeatureEmbedding")
    return jnp.take(self.table, self.table_rows(ids), axis=0)


def mba_l2_penalty(table, ids, counts=None, mask=None):
  """DIN's mini-batch-aware L2 (§4.3): ``sum_{j in batch} ||w_j||^2 / n_j`` over the table rows the batch uses.

  Only rows that occur in ``ids`` are penalised (each once, however often it occurs), scaled by the inverse of its
  frequency ``n_j`` in the training data, so the cost is O(batch), not O(table), and rare features are not shrunk
  by every batch. Multiply by the paper's ``lambda``.

  Args:
    table: ``[rows, D]`` embedding table.
    ids: int rows of ``table``, any shape.
    counts: ``[rows]`` occurrence counts ``n_j`` (None: every ``n_j = 1``, the plain in-batch L2).
    mask: bool, same shape as ``ids``: False entries (padding) are not counted.
  """
  check_shape(table, "table", "rows features", where="mba_l2_penalty", dtype="floating")
  flat = jnp.reshape(ids, (-1,)).astype(jnp.int32)
  weight = jnp.ones(flat.shape, jnp.float32) if mask is None else jnp.reshape(mask, (-1,)).astype(jnp.float32)
  # occurrences of each row in this batch, so that a row used k times contributes k * (1/k) = once
  seen = jnp.zeros((table.shape[0],), jnp.float32).at[flat].add(weight)
  per = weight / jnp.maximum(seen[flat], 1.0)
  if counts is not None:
    check_shape(counts, "counts", "rows", where="mba_l2_penalty", rows=table.shape[0])
    per = per / jnp.maximum(jnp.asarray(counts, jnp.float32)[flat], 1.0)
  rows = jnp.take(table, flat, axis=0).astype(jnp.float32)
  return jnp.sum(per * jnp.sum(rows ** 2, axis=-1))


# ------------------------------------------------------------------------------------------------------ DIN


class Dice(nn.Module):
  """Dice (DIN Eq. 7): ``f(s) = p * s + (1 - p) * alpha * s``, ``p = sigmoid((s - E[s]) / sqrt(Var[s] + eps))``.

  ``E``/``Var`` are batch statistics over every leading axis in training and moving averages at inference
  (a BatchNorm without scale or bias, in the ``'batch_stats'`` collection); ``alpha [H]`` starts at 0.

  Attributes:
    epsilon: the paper's 1e-8 (FuxiCTR uses 1e-9).
    momentum: moving-average decay (0.99 = PyTorch/FuxiCTR momentum 0.01).

  Call: ``s [..., H]``, ``train`` -> ``[..., H]``.
  """
  epsilon: float = 1e-8
  momentum: float = 0.99

  @nn.compact
  def __call__(self, s, *, train: bool = False):
    check_shape(s, "s", "... features", where="Dice", dtype="floating")
    alpha = self.param("alpha", layers.partitioned(nn.initializers.zeros_init(), ("mlp",)), (s.shape[-1],))
    normed = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                          use_bias=False, use_scale=False, name="bn")(s)
    p = jax.nn.sigmoid(normed)
    return p * s + (1.0 - p) * alpha * s


class _Tower(nn.Module):
  """Hidden layers ``widths`` with ``activation`` (a flax function or ``'dice'``), then an optional linear output."""
  widths: Sequence[int]
  activation: Any = "relu"
  out: int | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    act = _activation(self.activation)
    for i, w in enumerate(self.widths):
      x = layers.dense(w, axes=("embed", "mlp") if i % 2 == 0 else ("mlp", "embed"), param_dtype=self.param_dtype,
                       name=f"dense_{i}")(x)
      x = Dice(name=f"dice_{i}")(x, train=train) if act == "dice" else act(x)
    if self.out is not None:
      x = layers.dense(self.out, axes=("embed", None) if len(self.widths) % 2 == 0 else ("mlp", None),
                       param_dtype=self.param_dtype, name="out")(x)
    return x


class LocalActivationUnit(nn.Module):
  """DIN's local activation unit (Eq. 3): candidate-dependent weights of the behaviours, no softmax.

  ``a_j = MLP([v_a, e_j, v_a - e_j, v_a * e_j])`` (hidden ``hidden``, one linear output), ``v_U = sum_j m_j a_j e_j``
  with the history mask ``m``. The official code's hidden widths are 80-40 with sigmoid activations.

  Attributes:
    hidden: hidden widths of the attention MLP (official code: (80, 40)).
    activation: their activation: a flax function name or ``'dice'`` (official: sigmoid; FuxiCTR: Dice).
    local_activation: the mechanism flag. True (the paper): the weight of a behaviour depends on the candidate.
      False (ablation): ``a_j = MLP(e_j)``, a learned candidate-independent weighting of the history.
    softmax: normalise the weights over the history (the paper argues against it; default False).

  Call: ``target [b, E]``, ``behaviours [b, L, E]``, ``mask [b, L]`` -> ``(pooled [b, E], weights [b, L])``.
  """
  hidden: Sequence[int] = (80, 40)
  activation: Any = "sigmoid"
  local_activation: bool = True
  softmax: bool = False

  @nn.compact
  def __call__(self, target, behaviours, mask, *, train: bool = False):
    check_shape(behaviours, "behaviours", "batch length features", where="LocalActivationUnit", dtype="floating")
    b, l, e = behaviours.shape
    check_shape(target, "target", "batch features", where="LocalActivationUnit", dtype="floating", batch=b,
                features=e)
    check_shape(mask, "mask", "batch length", where="LocalActivationUnit", batch=b, length=l)
    if self.local_activation:
      t = jnp.broadcast_to(target[:, None, :], behaviours.shape)
      x = jnp.concatenate([t, behaviours, t - behaviours, t * behaviours], axis=-1)
    else:
      x = behaviours
    scores = _Tower(tuple(self.hidden), self.activation, out=1, name="mlp")(x, train=train)[..., 0]
    valid = mask.astype(bool)
    if self.softmax:
      scores = jax.nn.softmax(jnp.where(valid, scores, -1e9), axis=-1)
    weights = jnp.where(valid, scores, 0.0)
    return jnp.einsum("bl,ble->be", weights, behaviours), weights


_DIN_KEYS = ("item", "cate", "hist_item", "hist_cate", "hist_mask")


class DIN(nn.Module):
  """Deep Interest Network: embeddings, attention pooling of the behaviour history, an MLP head with Dice.

  Goods are ``goods_id ⊕ cate_id`` (two tables of width ``embed_dim``, concatenated: ``E = 2 * embed_dim``). The
  head sees ``[user profile, v_U, v_a]`` (the user id embedding when ``num_users`` > 0) and outputs one logit
  (the official code's two-way softmax, reparametrised as one sigmoid logit).

  Attributes:
    num_items, num_cates: vocabulary sizes; num_users: 0 for no user profile field.
    embed_dim: width of each id embedding (official Amazon code: 64 per table).
    head: hidden widths of the head MLP (paper: 200-80, then the output).
    head_activation: ``'dice'`` (the paper) or a flax function name (``'prelu'`` is not in flax; use ``'relu'``).
    attention_hidden, attention_activation, softmax: :class:`LocalActivationUnit`.
    attention: True: DIN's activation unit; False: sum pooling (:class:`EmbMLPBase`).
    local_activation: :class:`LocalActivationUnit`'s mechanism flag (attention on, candidate-independent weights).
    embed_init: the embedding rows' initial standard deviation.
    l2: the mini-batch-aware L2's lambda (0: off), sown into ``'losses'`` as ``'mba_l2'``.
    item_counts: ``n_j`` of every item id (``[num_items]``) for the L2; None: 1. Category and user rows use 1.

  Call: ``inputs`` dict (module docstring), ``train`` -> logits ``[b]``. ``attention_weights(inputs)`` returns the
  unit's ``[b, L]`` weights (zeros for sum pooling's padding).
  """
  num_items: int
  num_cates: int
  num_users: int = 0
  embed_dim: int = 64
  head: Sequence[int] = (200, 80)
  head_activation: Any = "dice"
  attention_hidden: Sequence[int] = (80, 40)
  attention_activation: Any = "sigmoid"
  softmax: bool = False
  attention: bool = True
  local_activation: bool = True
  l2: float = 0.0
  item_counts: Sequence[int] | None = None
  embed_init: float = 0.1

  def setup(self):
    sizes = [self.num_items, self.num_cates] + ([self.num_users] if self.num_users else [])
    self.embedding = FeatureEmbedding(tuple(sizes), self.embed_dim, init_scale=self.embed_init, name="embedding")
    if self.attention:
      self.unit = LocalActivationUnit(tuple(self.attention_hidden), self.attention_activation,
                                      local_activation=self.local_activation, softmax=self.softmax, name="unit")
    self.mlp = _Tower(tuple(self.head), self.head_activation, out=1, name="head")

  def _check(self, inputs):
    if not isinstance(inputs, Mapping):
      raise TypeError(f"{type(self).__name__}: `inputs` must be a dict with keys {_DIN_KEYS} (+ 'user'); got "
                      f"{type(inputs).__name__}.")
    missing = [k for k in _DIN_KEYS + (("user",) if self.num_users else ()) if k not in inputs]
    if missing:
      raise KeyError(f"{type(self).__name__}: `inputs` lacks {missing}; it has {sorted(inputs)}.")
    where = type(self).__name__
    check_shape(inputs["hist_item"], "inputs['hist_item']", "batch length", where=where, dtype="integer")
    b, l = inputs["hist_item"].shape
    if b == 0 or l == 0:
      raise ValueError(f"{where}: empty batch or history (hist_item shape {(b, l)}).")
    for k in ("hist_cate", "hist_mask"):
      check_shape(inputs[k], f"inputs[{k!r}]", "batch length", where=where, batch=b, length=l)
    for k in ("item", "cate") + (("user",) if self.num_users else ()):
      check_shape(inputs[k], f"inputs[{k!r}]", "batch", where=where, dtype="integer", batch=b)
    check_shape(inputs["hist_cate"], "inputs['hist_cate']", "batch length", where=where, dtype="integer")
    for k, high in (("item", self.num_items), ("hist_item", self.num_items), ("cate", self.num_cates),
                    ("hist_cate", self.num_cates), ("user", self.num_users or None)):
      if high:
        _check_ids_in_range(inputs[k], high, f"inputs[{k!r}]", where)

  def _encode(self, inputs):
    offsets = self.embedding.offsets
    table = self.embedding.table

    def goods(item, cate):  # goods_id ⊕ cate_id
      rows = jnp.stack([item.astype(jnp.int32) + offsets[0], cate.astype(jnp.int32) + offsets[1]], axis=-1)
      return jnp.take(table, rows, axis=0).reshape(*item.shape, 2 * self.embed_dim), rows
    target, target_rows = goods(inputs["item"], inputs["cate"])
    hist, hist_rows = goods(inputs["hist_item"], inputs["hist_cate"])
    mask = inputs["hist_mask"].astype(bool)
    return target, hist, mask, target_rows, hist_rows

  def _pool(self, target, hist, mask, train):
    if self.attention:
      return self.unit(target, hist, mask, train=train)
    weights = mask.astype(hist.dtype)
    return jnp.einsum("bl,ble->be", weights, hist), weights

  def attention_weights(self, inputs):
    """The pooling weights ``[b, L]`` of each history position (inference mode)."""
    self._check(inputs)
    target, hist, mask, _, _ = self._encode(inputs)
    return self._pool(target, hist, mask, False)[1]

  def __call__(self, inputs, *, train: bool = False):
    self._check(inputs)
    target, hist, mask, target_rows, hist_rows = self._encode(inputs)
    pooled, _ = self._pool(target, hist, mask, train)
    parts = [pooled, target]
    ids, used = [target_rows.reshape(-1), hist_rows.reshape(-1)], [jnp.ones(target_rows.size, bool),
                                                                   jnp.repeat(mask.reshape(-1), 2)]
    if self.num_users:
      user_rows = inputs["user"].astype(jnp.int32) + self.embedding.offsets[2]
      parts.insert(0, jnp.take(self.embedding.table, user_rows, axis=0))
      ids.append(user_rows)
      used.append(jnp.ones(user_rows.shape, bool))
    if self.l2 and train:
      counts = jnp.ones((self.embedding.rows,), jnp.float32)
      if self.item_counts is not None:
        counts = counts.at[:self.num_items].set(jnp.asarray(self.item_counts, jnp.float32))
      self.sow("losses", "mba_l2", self.l2 * mba_l2_penalty(self.embedding.table, jnp.concatenate(ids), counts,
                                                            jnp.concatenate(used)))
    return self.mlp(jnp.concatenate(parts, axis=-1), train=train)[..., 0]


class EmbMLPBase(DIN):
  """DIN's base model (Embedding & MLP): the same network with the history sum-pooled (``attention=False``)."""
  attention: bool = False


# ----------------------------------------------------------------------------------------------- FinalMLP


class FeatureSelection(nn.Module):
  """FinalMLP's stream-specific feature gating (§3.2): ``h_s = 2 sigmoid(MLP_s(c_s)) ⊙ e`` for streams s = 1, 2.

  The gate acts per coordinate of the flat embedding ``e [b, F*D]`` (as the paper's equation and FuxiCTR). Its
  context ``c_s`` is the concatenated embeddings of the fields ``context_s`` (user or item fields), or, when that
  is empty, a learned vector (global gating). Deliberate choices (see docs): the learned context starts
  ``N(0, 1)`` rather than FuxiCTR's zeros (with zeros and zero hidden biases the ReLU passes no gradient, and the
  gate degenerates to a per-coordinate constant ``2 sigmoid(b)``), and the gate's output layer starts at zero, so
  every gate is exactly 1 (identity) at initialisation, the near-identity start the factor 2 is there for.

  Attributes:
    num_fields, features: ``F`` and ``D``.
    hidden: the gate MLP's hidden widths (FuxiCTR default (64,)), ReLU.
    context1, context2: field indices of each stream's context (``()``: global gating).

  Call: ``emb [b, F*D]``, ``field_emb [b, F, D]`` -> ``(h1, h2, g1, g2)``, the gated inputs and the gates, all
  ``[b, F*D]``.
  """
  num_fields: int
  features: int
  hidden: Sequence[int] = (64,)
  context1: Sequence[int] = ()
  context2: Sequence[int] = ()

  @nn.compact
  def __call__(self, emb, field_emb):
    b = emb.shape[0]
    out = []
    for s, ctx_fields in ((1, tuple(self.context1)), (2, tuple(self.context2))):
      if ctx_fields:
        ctx = field_emb[:, jnp.asarray(ctx_fields)].reshape(b, -1)
      else:
        ctx = self.param(f"context{s}", layers.partitioned(nn.initializers.normal(1.0), ("embed",)),
                         (self.features,))
        ctx = jnp.broadcast_to(ctx, (b, self.features))
      x = ctx
      for i, w in enumerate(self.hidden):
        x = nn.relu(layers.dense(w, name=f"gate{s}_dense_{i}")(x))
      g = layers.dense(self.num_fields * self.features, axes=("mlp", "embed"), kernel_init=nn.initializers.zeros,
                       name=f"gate{s}_out")(x)
      gate = 2.0 * jax.nn.sigmoid(g)
      out.append((gate * emb, gate))
    (h1, g1), (h2, g2) = out
    return h1, h2, g1, g2


def _bilinear_init(heads: int, d1: int, d2: int):
  # FuxiCTR: xavier_normal_ on the flat [heads * d1 * d2, 1] weight: std = sqrt(2 / (heads * d1 * d2 + 1)).
  std = float(np.sqrt(2.0 / (heads * d1 * d2 + 1)))
  return lambda key, shape, dtype=jnp.float32: std * jax.random.normal(key, shape, dtype)


class InteractionAggregation(nn.Module):
  """FinalMLP's multi-head bilinear fusion (§3.3): ``logit = b + w1^T o1 + w2^T o2 + sum_j o1_j^T W3_j o2_j``.

  ``o1`` and ``o2`` are split into ``heads`` chunks; each head has its own ``W3_j [d1/k, d2/k]`` (Xavier-normal);
  the first-order terms and the bias are global, not per head (as FuxiCTR). ``bilinear=False`` keeps only the
  first-order terms: DualMLP's linear fusion.

  Call: ``o1 [b, d1]``, ``o2 [b, d2]`` -> logits ``[b]``.
  """
  heads: int = 1
  bilinear: bool = True

  @nn.compact
  def __call__(self, o1, o2):
    check_shape(o1, "o1", "batch features", where="InteractionAggregation", dtype="floating")
    check_shape(o2, "o2", "batch features", where="InteractionAggregation", dtype="floating", batch=o1.shape[0])
    d1, d2, k = o1.shape[-1], o2.shape[-1], self.heads
    if d1 % k or d2 % k:
      raise ValueError(f"InteractionAggregation: heads={k} must divide both stream widths {d1} and {d2}.")
    # two linear layers with a bias each (FuxiCTR's w_x, w_y): the biases add up to b
    out = layers.dense(1, axes=("mlp", None), name="w1")(o1)[..., 0] + layers.dense(1, axes=("mlp", None),
                                                                                    name="w2")(o2)[..., 0]
    if self.bilinear:
      w3 = self.param("w3", layers.partitioned(_bilinear_init(k, d1 // k, d2 // k), ("heads", None, None)),
                      (k, d1 // k, d2 // k))
      out = out + jnp.einsum("bhi,hij,bhj->b", o1.reshape(-1, k, d1 // k), w3, o2.reshape(-1, k, d2 // k))
    return out


class FinalMLP(nn.Module):
  """FinalMLP: field embeddings -> stream-specific gates -> two MLPs -> multi-head bilinear fusion -> logit.

  Attributes:
    vocab_sizes: ids per field; embed_dim: ``D`` (FuxiCTR 10).
    mlp1, mlp2: the streams' hidden widths (FuxiCTR [64, 64, 64], ReLU).
    gate_hidden: the gates' hidden widths ([64]); context1/context2: the gates' context fields.
    heads: bilinear fusion heads (FuxiCTR default 1).
    feature_selection: mechanism flag 1 (the gates; False = both streams see ``e``).
    bilinear: mechanism flag 2 (the bilinear term; False = linear fusion). DualMLP is both off.
    embed_init: the embedding rows' initial standard deviation (FuxiCTR: 1e-4; see the docs).

  Call: ``ids [b, F]`` int -> logits ``[b]``. ``gates(ids)`` returns ``(g1, g2)`` each ``[b, F, D]``.
  """
  vocab_sizes: Sequence[int]
  embed_dim: int = 10
  mlp1: Sequence[int] = (64, 64, 64)
  mlp2: Sequence[int] = (64, 64, 64)
  gate_hidden: Sequence[int] = (64,)
  context1: Sequence[int] = ()
  context2: Sequence[int] = ()
  heads: int = 1
  feature_selection: bool = True
  bilinear: bool = True
  embed_init: float = 0.1

  def setup(self):
    f = len(self.vocab_sizes)
    for c in tuple(self.context1) + tuple(self.context2):
      if not 0 <= c < f:
        raise ValueError(f"{type(self).__name__}: context field {c} is not one of the {f} fields.")
    self.embedding = FeatureEmbedding(tuple(self.vocab_sizes), self.embed_dim, init_scale=self.embed_init,
                                      name="embedding")
    if self.feature_selection:
      self.gate = FeatureSelection(f, self.embed_dim, tuple(self.gate_hidden), tuple(self.context1),
                                   tuple(self.context2), name="feature_selection")
    self.stream1 = _Tower(tuple(self.mlp1), "relu", name="mlp1")
    self.stream2 = _Tower(tuple(self.mlp2), "relu", name="mlp2")
    self.fusion = InteractionAggregation(self.heads, self.bilinear, name="fusion")

  def _inputs(self, ids):
    field_emb = self.embedding(ids)
    emb = field_emb.reshape(field_emb.shape[0], -1)
    if self.feature_selection:
      return self.gate(emb, field_emb)
    ones = jnp.ones_like(emb)
    return emb, emb, ones, ones

  def gates(self, ids):
    """The gate values ``2 sigmoid(g_s)`` of both streams, ``[b, F, D]`` each (ones without gating)."""
    check_shape(ids, "ids", "batch fields", where=type(self).__name__, dtype="integer")
    _, _, g1, g2 = self._inputs(ids)
    return g1.reshape(*ids.shape, -1), g2.reshape(*ids.shape, -1)

  def __call__(self, ids, *, train: bool = False):
    check_shape(ids, "ids", "batch fields", where=type(self).__name__, dtype="integer",
                fields=len(self.vocab_sizes))
    h1, h2, _, _ = self._inputs(ids)
    return self.fusion(self.stream1(h1, train=train), self.stream2(h2, train=train))


class DualMLP(FinalMLP):
  """DualMLP (FinalMLP §3.1): two MLP streams on the same embeddings, summed by a linear fusion; no gates."""
  feature_selection: bool = False
  bilinear: bool = False


class FieldMLP(nn.Module):
  """The single-stream baseline: field embeddings, concatenated, through one ReLU MLP to a logit.

  Call: ``ids [b, F]`` int -> logits ``[b]``.
  """
  vocab_sizes: Sequence[int]
  embed_dim: int = 10
  hidden: Sequence[int] = (64, 64, 64)
  embed_init: float = 0.1

  @nn.compact
  def __call__(self, ids, *, train: bool = False):
    check_shape(ids, "ids", "batch fields", where="FieldMLP", dtype="integer", fields=len(self.vocab_sizes))
    emb = FeatureEmbedding(tuple(self.vocab_sizes), self.embed_dim, init_scale=self.embed_init, name="embedding")(ids)
    return _Tower(tuple(self.hidden), "relu", out=1, name="mlp")(emb.reshape(ids.shape[0], -1), train=train)[..., 0]


# -------------------------------------------------------------------------------------------------- metrics


def _binary(labels, scores, where):
  labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores, np.float64).reshape(-1)
  if labels.shape != scores.shape:
    raise ValueError(f"{where}: labels {labels.shape} and scores {scores.shape} differ in size.")
  if labels.size == 0:
    raise ValueError(f"{where}: no examples.")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"{where}: labels must be 0/1 clicks; got values {np.unique(labels)[:5]}.")
  return labels.astype(np.int64), scores


def auc(labels, scores) -> float:
  """ROC AUC of scores (logits or probabilities) against 0/1 clicks (``sklearn.metrics.roc_auc_score``)."""
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  labels, scores = _binary(labels, scores, "auc")
  return float(metrics.roc_auc_score(labels, scores))


def logloss(labels, logits) -> float:
  """Binary cross-entropy of ``sigmoid(logits)`` (``sklearn.metrics.log_loss``)."""
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  labels, logits = _binary(labels, logits, "logloss")
  return float(metrics.log_loss(labels, 1.0 / (1.0 + np.exp(-logits)), labels=[0, 1]))


def gauc(labels, scores, groups) -> float:
  """DIN's GAUC (Eq. 1): ``sum_u imp_u AUC_u / sum_u imp_u`` over users (``groups``) with both clicks and
  non-clicks (a user with one class has no AUC and is left out, as in the paper's use)."""
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  labels, scores = _binary(labels, scores, "gauc")
  groups = np.asarray(groups).reshape(-1)
  if groups.shape != labels.shape:
    raise ValueError(f"gauc: groups {groups.shape} and labels {labels.shape} differ in size.")
  total, weight = 0.0, 0
  for g in np.unique(groups):
    sel = groups == g
    if labels[sel].min() == labels[sel].max():
      continue
    total += sel.sum() * metrics.roc_auc_score(labels[sel], scores[sel])
    weight += sel.sum()
  if not weight:
    raise ValueError("gauc: no group has both clicks and non-clicks.")
  return float(total / weight)


def rela_impr(auc_model: float, auc_base: float) -> float:
  """DIN's RelaImpr (Eq. 8) in percent: ``((AUC(model) - 0.5) / (AUC(base) - 0.5) - 1) * 100``."""
  if auc_base <= 0.5:
    raise ValueError(f"rela_impr: the base AUC must exceed 0.5 (a random guess); got {auc_base}.")
  return float(((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0)
