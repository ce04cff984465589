"""MultiModN: sequential modular fusion that skips missing modalities, and the P-Fusion baseline.

Paper: "MultiModN - Multimodal, Multi-Task, Interpretable Modular Networks" (Swamy, Satayeva, Frej et al., 2023,
arXiv 2309.14118). A state ``s_0`` (trainable) is updated by one encoder per modality in sequence,
``s_i = enc_i(s_{i-1}, x_i)``; a modality that is missing (NaN) skips its encoder, ``s_i = s_{i-1}``: nothing is
imputed, so missingness itself carries no signal the model could learn. Task decoders read every state
``s_0 ... s_E``, which gives the per-step prediction trajectory (what each modality contributed).

Inputs: ``x: [batch, modalities, features]`` float, a modality of an example being missing when any of its features
is NaN (modalities of different sizes are padded to ``features``).

Public names:

* :class:`TrainableInitState` ``(state_dim)``: ``batch -> s_0 [batch, state_dim]`` (one learned vector).
* :class:`ModalityEncoder` ``(state_dim, hidden)``: ``(s [b, state_dim], x_i [b, f]) -> [b, state_dim]``, an MLP on
  ``[s; x_i]``.
* :class:`TaskDecoder` ``(num_classes)``: ``s [..., state_dim] -> logits [..., num_classes]`` (linear).
* :class:`MultiModN` ``(task_classes=(10, 2), state_dim, hidden)``: ``x -> {'logits': (per task [b, E + 1,
  classes_j]), 'states': [b, E + 1, state_dim]}``; step 0 is the prediction from ``s_0`` alone.
  ``skip_missing=False`` is the ablation: a missing modality is zero-imputed and encoded like a present one.
* :class:`PFusion` ``(task_classes, hidden)``: the baseline: parallel per-modality encoders on zero-imputed inputs,
  concatenated, one MLP head per task; the same output structure with a single step (``E + 1 = 1``).
* :func:`missing_mask` ``(x) -> [b, modalities] bool``: True where a modality is present.

The loss (``zoo.recipes.procedures.multimodn.MultiModNTask``): ``err_penalty * mean over steps and tasks of the
cross-entropy + 0.01 * state_change_penalty * mean_i ||s_i - s_{i-1}||^2``.

Deviations: encoders and decoders are small MLPs / linear maps (the reference code's default encoders are also
MLPs); the encoder outputs the new state directly (no gating).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from zoo import layers

__all__ = ["ModalityEncoder", "MultiModN", "PFusion", "TaskDecoder", "TrainableInitState", "missing_mask"]

Dtype = Any


def missing_mask(x):
  """``x: [batch, modalities, features]`` -> ``[batch, modalities]`` bool, True where the modality is present."""
  return ~jnp.any(jnp.isnan(x), axis=-1)


def _check(x, where: str, task_classes):
  layers.check_shape(x, "x", "batch modalities features", where=where, dtype="floating")
  if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
    raise ValueError(f"{where}: `x` must be non-empty [batch, modalities, features]; got shape {tuple(x.shape)}.")
  if not task_classes or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in task_classes):
    raise ValueError(f"{where}: `task_classes` must list integers >= 1 (classes per task); got {task_classes!r}.")


class TrainableInitState(nn.Module):
  """The learned initial state ``s_0``. Call: ``batch_size`` (int) -> ``[batch_size, state_dim]``."""
  state_dim: int = 32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, batch_size: int):
    s0 = self.param("s0", layers.partitioned(nn.initializers.zeros_init(), ("embed",)), (self.state_dim,),
                    self.param_dtype)
    return jnp.broadcast_to(s0, (batch_size, self.state_dim))


class ModalityEncoder(nn.Module):
  """``enc_i(s, x_i) = W_2 relu(W_1 [s; x_i])``. Call: ``s [b, state_dim], x [b, f]`` -> ``[b, state_dim]``."""
  state_dim: int = 32
  hidden: int = 64
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, s, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.relu(layers.dense(self.hidden, name="dense_0", **kw)(jnp.concatenate([s, x], -1)))
    return layers.dense(self.state_dim, axes=("mlp", "embed"), name="dense_1", **kw)(h)


class TaskDecoder(nn.Module):
  """Linear decoder of one task. Call: ``s [..., state_dim]`` -> ``[..., num_classes]``."""
  num_classes: int
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, s):
    return layers.dense(self.num_classes, axes=("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="dense")(s)


class MultiModN(nn.Module):
  """Sequential modular fusion (see the module docstring).

  Attributes:
    task_classes: classes of each task (one :class:`TaskDecoder` per task, shared across steps).
    state_dim: width of the state.
    hidden: hidden width of each :class:`ModalityEncoder`.
    skip_missing: True (default, the paper): a missing (NaN) modality leaves the state unchanged. False: the
      ablation, zero-imputation then encoding.

  Call: ``x: [batch, modalities, features]`` float with NaN for missing modalities -> ``{'logits': tuple of
  [batch, modalities + 1, classes_j], 'states': [batch, modalities + 1, state_dim]}``.
  """
  task_classes: Sequence[int] = (10, 2)
  state_dim: int = 32
  hidden: int = 64
  skip_missing: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _check(x, "MultiModN", tuple(self.task_classes))
    present = missing_mask(x)
    filled = jnp.nan_to_num(x, nan=0.0)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    s = TrainableInitState(self.state_dim, param_dtype=self.param_dtype, name="init_state")(x.shape[0])
    states = [s]
    for i in range(x.shape[1]):
      new = ModalityEncoder(self.state_dim, self.hidden, name=f"encoder_{i}", **kw)(s, filled[:, i])
      # Skipping, not imputing: the encoder's output on a missing modality never reaches the state.
      s = jnp.where(present[:, i:i + 1], new, s) if self.skip_missing else new
      states.append(s)
    states = jnp.stack(states, axis=1)  # [b, E + 1, state_dim]
    logits = tuple(TaskDecoder(c, name=f"decoder_{j}", **kw)(states) for j, c in enumerate(self.task_classes))
    return {"logits": logits, "states": states}


class PFusion(nn.Module):
  """Parallel fusion baseline: per-modality MLP encoders on zero-imputed inputs, concatenation, one head per task.

  Attributes:
    task_classes: classes of each task.
    hidden: width of each modality encoder and of each task head.

  Call: ``x: [batch, modalities, features]`` (NaN: missing, imputed by 0) -> ``{'logits': tuple of
  [batch, 1, classes_j], 'states': [batch, 1, modalities * hidden]}``.
  """
  task_classes: Sequence[int] = (10, 2)
  hidden: int = 32
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _check(x, "PFusion", tuple(self.task_classes))
    filled = jnp.nan_to_num(x, nan=0.0)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    parts = [nn.relu(layers.dense(self.hidden, name=f"encoder_{i}", **kw)(filled[:, i])) for i in range(x.shape[1])]
    h = jnp.concatenate(parts, -1)
    logits = []
    for j, c in enumerate(self.task_classes):
      z = nn.relu(layers.dense(self.hidden, name=f"head_{j}_0", **kw)(h))
      logits.append(layers.dense(c, axes=("mlp", "classes"), name=f"head_{j}_1", **kw)(z)[:, None])
    return {"logits": tuple(logits), "states": h[:, None]}
