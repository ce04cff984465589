"""Counter-current learning (CCL): a forward and a feedback network that teach each other layer by layer.

Paper: Chia-Hsiang Kao, Bharath Hariharan, "Counter-Current Learning: A Biologically Plausible Dual Network
Approach for Deep Learning" (NeurIPS 2024), arXiv:2409.19841. Reference code (read, not copied):
github.com/IandRover/CCL-NeurIPS24 (``utils/loss.py``, ``models/layers.py``, ``main_class_mlp.py``).

The model (``zoo.local_learning.CounterCurrentMLP`` or ``CounterCurrentConvNet``) runs two networks: the forward
network on the input, ``a_{l+1} = phi(W_l sg(a_l))``, and the feedback network on the targets, top-down,
``c_l = psi(B_l sg(c_{l+1}))`` with ``c_L`` the one-hot label. Every layer's input is cut from the gradient
(``sg``): nothing is back-propagated across layers, neither network waits for the other's backward pass (no
backward locking), and ``W`` and ``B`` are separate weights (no weight transport). The two streams are paired
anti-parallel, level by level: ``a_l`` (produced by the forward layer ``W_{l-1}``) with ``c_l`` (produced by the
feedback layer ``B_l``), and the pair's loss teaches both of them; the top forward layer learns from the
cross-entropy of its logits. So the forward network learns from targets the feedback network computes, and the
feedback network learns from targets the forward network computes.

The pair loss, as in the reference: the feedback network runs on all ``K`` class one-hots (``c_l: [K, d_l]``), the
forward network on the batch (``a_l: [batch, d_l]``), and

* ``'dot'`` (the reference's MLP loss): ``scale * 256 / d_l * mean_{i,k} ((a_l c_l^T)_{ik} - [y_i = k])^2``;
* ``'cosine'`` (the reference's CNN loss): the same on L2-normalised rows, ``scale * mean((A C^T - Y)^2)``, plus
  ``ssl_scale * (mean((A A^T - I)^2) + mean((C C^T - I)^2))``, which spreads the examples and the classes apart.

The pairs are every level ``l = 0 .. L-1`` (``l = 0`` pairs the input with ``c_0``: only the bottom feedback layer
learns from it). ``filter_target`` (the reference's option, off for the MLP) drops from the pair losses the examples
whose predicted probability of the true class is already within ``filter_target`` of 1.

Optimisation, as in the reference: the optimizer (SGD, learning rate 1, gradient clipping 1 for the MLP) is applied
to the forward and to the feedback parameters separately, so each network is clipped on its own; the feedback
network's updates can be scaled by ``feedback_lr_scale`` (the reference's separate ``lr_B``).

Differences from the reference: the CNN variant has no BatchNorm in the feedback path (the reference's CNN config
normalises after every feedback convolution) and upsamples with nearest neighbours then crops to the forward map's
size; no learning-rate warm-up; the reference keeps the checkpoint with the best validation loss, here the last
one is evaluated.

Measured on the bundled digits (``tests/papers/test_counter_current.py``, ``configs/counter_current_digits.py``):
64-16-16-16-16-10, 500 steps, seeds 0 / 1 / 2: CCL 0.944 / 0.960 / 0.969 against the frozen-feedback ablation
(``learn_feedback=False``) 0.500 / 0.587 / 0.856, backprop 0.949 / 0.953 / 0.960 and feedback alignment 0.856 /
0.776 / 0.858; 64-32-32-10, 1000 steps: CCL 0.973 / 0.969 (seeds 0 / 1), frozen feedback 0.967 (seed 0): in a
shallow net fixed random targets nearly suffice. See the test module for the other settings.

Public names: :class:`CounterCurrent`; :func:`pair_loss`; :func:`split_networks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo.recipes.procedures.backprop import TrainState

__all__ = ["CounterCurrent", "pair_loss", "split_networks"]


def split_networks(params) -> tuple[dict[str, Any], dict[str, Any]]:
  """``params -> (forward, feedback)``: the top-level entries named ``forward*`` and ``feedback*``."""
  forward = {k: v for k, v in params.items() if k.startswith("forward")}
  feedback = {k: v for k, v in params.items() if k.startswith("feedback")}
  other = sorted(set(params) - set(forward) - set(feedback))
  if other:
    raise ValueError(f"CounterCurrent: parameters {other} belong to neither network; a counter-current model names "
                     "its layers 'forward_*' and 'feedback_*' (zoo.local_learning.CounterCurrentMLP).")
  return forward, feedback


def _rows(x):
  return x.reshape(x.shape[0], -1).astype(jnp.float32)


def pair_loss(a, c, labels, *, kind: str = "dot", scale: float = 0.5, ssl_scale: float = 0.5, mask=None):
  """The loss of one anti-parallel pair.

  Args:
    a: forward activity ``[batch, ...]``.
    c: feedback activity for every class ``[classes, ...]`` (same trailing shape as ``a``).
    labels: ``[batch]`` int.
    kind: ``'dot'`` or ``'cosine'`` (see the module docstring).
    scale: the reference's ``loss_scale_C``; ssl_scale: its ``loss_scale_ssl`` (``'cosine'`` only).
    mask: ``[batch]`` float weights of the examples (``filter_target``), or None.

  Returns:
    A scalar.
  """
  a, c = _rows(a), _rows(c)
  if mask is not None:
    a = a * mask[:, None]
  target = jax.nn.one_hot(labels, c.shape[0], dtype=jnp.float32)
  if kind == "dot":
    return scale * 256.0 / a.shape[-1] * jnp.mean((a @ c.T - target) ** 2)
  if kind == "cosine":
    a = a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + 1e-8)
    c = c / (jnp.linalg.norm(c, axis=-1, keepdims=True) + 1e-8)
    loss = scale * jnp.mean((a @ c.T - target) ** 2)
    loss += ssl_scale * jnp.mean((a @ a.T - jnp.eye(a.shape[0])) ** 2)
    return loss + ssl_scale * jnp.mean((c @ c.T - jnp.eye(c.shape[0])) ** 2)
  raise ValueError(f"pair_loss: `kind` must be 'dot' or 'cosine'; got {kind!r}.")


@dataclasses.dataclass(frozen=True)
class CounterCurrent:
  """Counter-current learning of a ``zoo.local_learning`` counter-current model.

  Attributes:
    model: a ``CounterCurrentMLP`` or ``CounterCurrentConvNet`` (any module whose ``__call__(x, targets)`` returns
      ``(activations, signals)`` and whose parameters are named ``forward_*`` / ``feedback_*``).
    task: a classification task.
    optimizer: an optax transformation, applied to each network separately (reference: ``sgd(1.0)`` with
      ``clip_norm=1``).
    loss: ``'dot'`` (reference MLP) or ``'cosine'`` (reference CNN).
    loss_scale: the reference's ``loss_scale_C`` (0.5 for the MLP, 1.0 for the CNN).
    ssl_scale: the reference's ``loss_scale_ssl`` (``'cosine'`` only, 0.5).
    filter_target: 0 = off; else skip, in the pair losses, examples whose true-class probability is within this of 1.
    feedback_lr_scale: multiplies the feedback network's updates (the reference's ``lr_B / lr_F``).
    learn_feedback: True (the paper's method): the feedback network learns from the pair losses. False (the
      ablation): the feedback network stays frozen at its random initialisation (its signals are cut from the
      gradient), so the forward network fits fixed random per-class targets, as in direct random target projection.
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  loss: str = "dot"
  loss_scale: float = 0.5
  ssl_scale: float = 0.5
  filter_target: float = 0.0
  feedback_lr_scale: float = 1.0
  learn_feedback: bool = True

  def __post_init__(self):
    if self.loss not in ("dot", "cosine"):
      raise ValueError(f"CounterCurrent: `loss` must be 'dot' or 'cosine'; got {self.loss!r}.")

  def _xy(self, batch):
    return self.task.inputs(batch), batch[self.task.target_key].astype(jnp.int32)

  def _targets(self):
    return jnp.eye(self._num_classes(), dtype=jnp.float32)

  def _num_classes(self) -> int:
    classes = getattr(self.model, "num_classes", None)
    return int(classes if classes is not None else self.model.features[-1])

  def init(self, rng, batch) -> TrainState:
    x, _ = self._xy(batch)
    params = self.model.init(rng, x, self._targets())["params"]
    forward, feedback = split_networks(params)
    opt_state = {"forward": self.optimizer.init(forward), "feedback": self.optimizer.init(feedback)}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, model_state={},
                      rng=jax.random.key(0))

  def layer_losses(self, params, batch):
    """``(pair losses [L], cross-entropy)``: pair ``l`` matches ``activations[l]`` with ``signals[l]``."""
    x, labels = self._xy(batch)
    activations, signals = self.model.apply({"params": params}, x, self._targets())
    if not self.learn_feedback:
      signals = [jax.lax.stop_gradient(c) for c in signals]
    logits = activations[-1].astype(jnp.float32)
    mask = None
    if self.filter_target:
      p_true = jnp.take_along_axis(jax.nn.softmax(jax.lax.stop_gradient(logits)), labels[:, None], axis=-1)[:, 0]
      mask = (p_true < 1.0 - self.filter_target).astype(jnp.float32)
    pairs = jnp.stack([pair_loss(a, c, labels, kind=self.loss, scale=self.loss_scale, ssl_scale=self.ssl_scale,
                                 mask=mask) for a, c in zip(activations[:-1], signals[:-1])])
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    return pairs, ce

  def objective(self, params, batch):
    pairs, ce = self.layer_losses(params, batch)
    total = jnp.sum(pairs) + ce
    return total, {"loss": ce, "pair_loss": jnp.sum(pairs), "total_loss": total}

  def step(self, state: TrainState, batch):
    grads, metrics = jax.grad(self.objective, has_aux=True)(state.params, batch)
    g_fwd, g_fb = split_networks(grads)
    p_fwd, p_fb = split_networks(state.params)
    u_fwd, os_fwd = self.optimizer.update(g_fwd, state.opt_state["forward"], p_fwd)
    u_fb, os_fb = self.optimizer.update(g_fb, state.opt_state["feedback"], p_fb)
    u_fb = jax.tree.map(lambda u: self.feedback_lr_scale * u, u_fb)
    params = optax.apply_updates(state.params, {**u_fwd, **u_fb})
    metrics = {**metrics, "grad_norm_forward": optax.tree.norm(g_fwd), "grad_norm_feedback": optax.tree.norm(g_fb)}
    return state.replace(step=state.step + 1, params=params,
                         opt_state={"forward": os_fwd, "feedback": os_fb}), metrics

  def variables(self, state: TrainState):
    return {"params": state.params}

  def evaluate(self, state: TrainState, batch):
    x, labels = self._xy(batch)
    logits = self.model.apply(self.variables(state), x).astype(jnp.float32)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}
