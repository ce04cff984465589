"""Chains of pretrained layers: test-time depth adaptation by skipping and looping layers (CoLa).

Paper: "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs", Li, Li and Zhou, 2025 (arXiv
2507.07996). A pretrained stack of ``N`` layers ``f_0 .. f_{N-1}`` normally computes ``f_{N-1} o ... o f_0``. A
chain-of-layers (CoLa) is any sequence of layer indices ``(i_1, ..., i_T)``: a layer left out is *skipped*, a layer
that appears twice in a row is *looped* (run as a recurrent block), and the model computes ``f_{i_T} o ... o f_{i_1}``
with the pretrained weights unchanged (no finetuning). The per-sample search over chains is
``zoo.recipes.procedures.cola.search_cola``.

Execution: the ``N`` layers' parameters are stacked along a leading axis, and a chain is a *padded index array*
``chain [T_max]`` (entries ``0 .. N-1``, and ``-1`` = padding, which is the identity). :func:`run_chain` is a
``lax.scan`` over the chain that gathers each step's layer parameters, so one compiled function serves every chain
of length ``<= T_max``, and candidate chains are evaluated together under ``jax.vmap``.

Public names (``b`` batch, ``l`` length, ``e`` features, ``N`` layers, ``T`` chain steps):

* :data:`PAD` ``= -1``: the padding entry of a chain (an identity step).
* :func:`run_chain` ``(stacked_params {leaf [N, ...]}, layer_fn, chain [T] int, x) -> x'``: ``x`` through the chain.
* :func:`stack_layers` ``(params [N trees]) -> tree of [N, ...]``: stacks per-layer parameter trees.
* :func:`chain_length` ``(chain [..., T]) -> [...]``: the number of non-padding steps (layers executed).
* :func:`default_chain` ``(num_layers, max_steps) -> [max_steps]``: ``0, 1, .., N-1`` then padding (the original
  model).
* :class:`ChainTransformer` ``(tokens [b, l] int, chain [T] int | None) -> logits [b, classes]``: the zoo's
  pre-norm causal transformer blocks (``zoo.transformer.EncoderBlock``), read out at the last non-padding token;
  with ``chain`` the blocks run as that chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo import transformer

__all__ = ["PAD", "ChainTransformer", "chain_length", "default_chain", "run_chain", "stack_layers"]

Array = jax.Array
PAD = -1


def stack_layers(params: Sequence[Any]) -> Any:
  """``[tree_0, ..., tree_{N-1}]`` (same structure and shapes) -> one tree whose leaves are ``[N, ...]``."""
  if not params:
    raise ValueError("stack_layers: `params` must hold at least one layer's parameters; got an empty sequence.")
  params = [nn.meta.unbox(p) for p in params]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)


def _num_layers(stacked_params: Any, where: str) -> int:
  sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else None for leaf in jax.tree.leaves(stacked_params)}
  if not sizes or None in sizes or len(sizes) != 1:
    raise ValueError(f"{where}: `stacked_params` must be a tree whose leaves all have the same leading (layer) axis "
                     f"[num_layers, ...]; got leading sizes {sorted(s for s in sizes if s is not None)} "
                     f"{'and scalars' if None in sizes else ''}.")
  return sizes.pop()


def _check_chain(chain: Any, num_layers: int, where: str) -> tuple[Array, bool]:
  """Checks dtype / rank / emptiness always, the range when concrete. Returns (chain, checked)."""
  if not hasattr(chain, "dtype"):
    chain = np.asarray(chain)
  if not jnp.issubdtype(chain.dtype, jnp.integer):
    raise TypeError(f"{where}: `chain` must hold integer layer indices (-1 = padding); got dtype {chain.dtype}.")
  if chain.ndim != 1:
    raise ValueError(f"{where}: `chain` must be one padded index array [steps]; got shape {tuple(chain.shape)} "
                     "(vmap the call over candidate chains).")
  if chain.shape[0] == 0:
    raise ValueError(f"{where}: `chain` is empty (shape (0,)); give at least one step (all -1 = the identity).")
  try:  # padding (-1) is allowed; real entries must be layer indices in [0, num_layers)
    values = np.asarray(chain)
  except jax.errors.TracerArrayConversionError:
    return chain, False
  bad = (values < PAD) | (values >= num_layers)
  if bad.any():
    first = int(np.argwhere(bad)[0][0])
    raise ValueError(f"{where}: `chain` entries must be layer indices in [0, {num_layers}) or -1 (padding); "
                     f"{int(bad.sum())} of {values.size} are outside (first: {int(values[first])} at step {first}).")
  checked = True
  return jnp.asarray(chain), checked


def run_chain(stacked_params: Any, layer_fn: Callable[[Any, Array], Array], chain: Any, x: Array) -> Array:
  """Runs ``x`` through the layers named by ``chain``, one gathered layer per ``lax.scan`` step.

  Args:
    stacked_params: a pytree whose leaves are ``[num_layers, ...]`` (see :func:`stack_layers`).
    layer_fn: ``layer_fn(params_of_one_layer, x) -> x`` (same shape and dtype), e.g. a block's ``apply``.
    chain: ``[steps]`` integer; entry ``i`` in ``[0, num_layers)`` runs layer ``i``, ``-1`` (:data:`PAD`) leaves
      the state unchanged. Skipping = leaving an index out, looping = repeating it.
    x: any array (pytree leaves are not supported: one hidden-state array).

  Returns:
    ``x`` after the chain, same shape/dtype. Concrete out-of-range entries raise a ValueError; traced ones (inside
    ``jit``/``vmap``) make the whole output NaN, never a silently clipped gather.
  """
  where = "run_chain"
  num_layers = _num_layers(stacked_params, where)
  chain, checked = _check_chain(chain, num_layers, where)
  chain = chain.astype(jnp.int32)

  def step(h, idx):
    p = jax.tree.map(lambda a: a[jnp.clip(idx, 0, num_layers - 1)], stacked_params)
    out = layer_fn(p, h)
    if out.shape != h.shape:
      raise ValueError(f"{where}: `layer_fn` must keep the state's shape; {h.shape} -> {out.shape}.")
    return jnp.where(idx >= 0, out.astype(h.dtype), h), None

  y = jax.lax.scan(step, x, chain)[0]
  if not checked:
    bad = jnp.any((chain < PAD) | (chain >= num_layers))
    y = jnp.where(bad, jnp.nan, y) if jnp.issubdtype(y.dtype, jnp.floating) else y
  return y


def chain_length(chain: Array) -> Array:
  """``chain [..., steps]`` -> ``[...]`` int32: the layers a chain executes (its non-padding entries)."""
  return jnp.sum(jnp.asarray(chain) >= 0, axis=-1).astype(jnp.int32)


def default_chain(num_layers: int, max_steps: int) -> np.ndarray:
  """The pretrained model's own chain ``0, 1, ..., N-1`` padded with ``-1`` to ``max_steps`` (int32)."""
  if max_steps < num_layers:
    raise ValueError(f"default_chain: `max_steps` ({max_steps}) must be >= num_layers ({num_layers}).")
  return np.concatenate([np.arange(num_layers), np.full(max_steps - num_layers, PAD)]).astype(np.int32)


class ChainTransformer(nn.Module):
  """A small causal transformer classifier whose blocks can be run as any chain-of-layers.

  Token embedding + learned positions, ``num_layers`` pre-norm causal :class:`zoo.transformer.EncoderBlock`, a
  final LayerNorm and a linear head read at the last non-padding token (token id 0 is padding), so the model is a
  decoder-only LM answering at its last position. ``__call__(tokens)`` runs the blocks in order (the pretrained
  model); ``__call__(tokens, chain=c)`` runs them as chain ``c`` through :func:`run_chain` (same parameters).

  Attributes:
    vocab_size: token ids in ``[0, vocab_size)``, 0 = padding.
    num_classes: outputs.
    embed_dim, num_layers, num_heads, mlp_dim: sizes of the stack.
    max_length: longest sequence (learned position table).
  """
  vocab_size: int
  num_classes: int
  embed_dim: int = 64
  num_layers: int = 6
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 32
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def _block(self, name: str | None = None, parent: Any = None):
    kwargs = {} if parent is None else {"name": name}
    return transformer.EncoderBlock(self.num_heads, self.mlp_dim, causal=True, dtype=self.dtype,
                                    param_dtype=self.param_dtype, **kwargs)

  @nn.compact
  def __call__(self, tokens: Array, *, chain: Array | None = None, train: bool = False) -> Array:
    """``tokens [batch, length]`` int, ``chain [steps]`` int or None -> logits ``[batch, num_classes]`` float32."""
    where = type(self).__name__
    layers.check_shape(tokens, "tokens", "batch length", where=where, dtype="integer")
    if tokens.shape[1] > self.max_length:
      raise ValueError(f"{where}: `tokens` has length {tokens.shape[1]} > max_length={self.max_length}.")
    valid = tokens != 0
    x = layers.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                     embedding_init=layers.partitioned(nn.initializers.normal(0.02), ("vocab", "embed")),
                     name="embed")(tokens)
    table = self.param("position_embedding", layers.partitioned(nn.initializers.normal(0.02), ("length", "embed")),
                       (self.max_length, self.embed_dim), self.param_dtype)
    x = x + jnp.asarray(table[:tokens.shape[1]], x.dtype)[None]
    blocks = [self._block(f"block_{i}", parent=self) for i in range(self.num_layers)]
    if chain is None or self.is_initializing():
      for block in blocks:
        x = block(x, mask=valid)
    if chain is not None:
      if self.is_initializing():
        _check_chain(chain, self.num_layers, where)
      else:
        stacked = stack_layers([self.variables["params"][f"block_{i}"] for i in range(self.num_layers)])
        template = self._block()
        x = run_chain(stacked, lambda p, h: template.apply({"params": p}, h, mask=valid), chain, x)
    x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    last = jnp.maximum(jnp.sum(valid, axis=1) - 1, 0)
    h = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    return layers.dense(self.num_classes, axes=("embed", "vocab"), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="head")(h).astype(jnp.float32)
