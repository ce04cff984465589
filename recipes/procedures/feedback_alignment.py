"""Feedback alignment: back-propagate the error through fixed random matrices instead of the transposed weights.

Paper: Timothy P. Lillicrap, Daniel Cownden, Douglas B. Tweed, Colin J. Akerman, "Random synaptic feedback weights
support error backpropagation for deep learning", Nature Communications 7, 13276 (2016); arXiv:1411.0247 ("Random
feedback weights support learning in deep neural networks", 2014).

Back-propagation sends the error of a layer ``y = x W`` to its input as ``delta_x = delta_y W^T``, which needs the
forward weights in the backward pass ("weight transport"). Feedback alignment sends ``delta_x = delta_y B^T``
through a fixed random matrix ``B`` of ``W``'s shape; the weight gradient stays local, ``dW = x^T delta_y``. The
forward weights come to align with ``B`` and learning works anyway.

:class:`FeedbackAlignment` trains **any** zoo model built from ``nn.Dense`` / ``nn.Conv`` layers (``zoo.core.MLP``,
``zoo.core.ConvNet`` ...): with ``flax.linen.intercept_methods`` every such layer is computed as

    y = f(sg(x), W) + f(x, B) - sg(f(x, B)),

which has the value ``f(x, W)``, the weight gradient ``dL/dW`` of back-propagation at this layer, and sends the
input gradient through ``B`` (``f`` is linear in ``x``; for a convolution ``B`` is a random kernel and the error
goes through its transposed convolution). ``B`` is drawn once at ``init`` for every ``kernel`` parameter,
``N(0, 1 / fan_in)`` like the forward weights' LeCun-normal initialisation, and never changes (it lives in the state
under ``feedback``, beside the parameters). Biases, normalisation layers and activations back-propagate exactly: they
have no weight-transport problem. The last layer's error is the task loss's gradient, as in the paper.

Public names: :class:`FeedbackAlignment`, :class:`FAState`, :func:`feedback_alignment`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo.recipes.procedures.backprop import Backprop, TrainState

__all__ = ["FAState", "FeedbackAlignment", "feedback_alignment"]

_LAYERS = (nn.Dense, nn.Conv)


class FAState(TrainState):
  """:class:`~zoo.recipes.procedures.backprop.TrainState` plus ``feedback``: ``{path: B}`` for every layer kernel (fixed)."""
  feedback: Any = None


def _kernel_paths(params) -> dict[tuple[str, ...], Any]:
  flat = flax.traverse_util.flatten_dict(nn.unbox(params))
  return {path[:-1]: value for path, value in flat.items() if path[-1] == "kernel"}


def random_feedback(params, rng) -> dict[str, Any]:
  """A fixed random ``B ~ N(0, 1/fan_in)`` of each ``kernel``'s shape, keyed by the layer's path ``'a/b/c'``."""
  kernels = _kernel_paths(params)
  keys = jax.random.split(rng, max(len(kernels), 1))
  out = {}
  for key, (path, kernel) in zip(keys, sorted(kernels.items())):
    fan_in = math.prod(kernel.shape[:-1])
    out["/".join(path)] = jax.random.normal(key, kernel.shape, jnp.float32) / math.sqrt(fan_in)
  return out


@contextlib.contextmanager
def feedback_alignment(feedback: dict[str, Any]):
  """Within this context, every ``nn.Dense``/``nn.Conv`` whose path is in ``feedback`` sends its input gradient
  through ``feedback[path]`` instead of its kernel (forward values unchanged)."""
  busy = [False]

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if busy[0] or context.method_name != "__call__" or not isinstance(module, _LAYERS):
      return next_fun(*args, **kwargs)
    b = feedback.get("/".join(module.path))
    if b is None:
      return next_fun(*args, **kwargs)
    x, *rest = args
    y = next_fun(jax.lax.stop_gradient(x), *rest, **kwargs)
    params = dict(module.variables["params"])
    params["kernel"] = b.astype(jnp.asarray(params["kernel"]).dtype)
    if "bias" in params:
      params["bias"] = jnp.zeros_like(params["bias"])
    busy[0] = True
    try:
      y_b = module.clone(parent=None).apply({"params": params}, x, *rest, **kwargs)
    finally:
      busy[0] = False
    return y + (y_b - jax.lax.stop_gradient(y_b))

  with nn.intercept_methods(interceptor):
    yield


@dataclasses.dataclass(frozen=True)
class FeedbackAlignment(Backprop):
  """Backprop's loss and optimizer, with every dense/conv layer's error sent back through fixed random weights.

  Attributes:
    model: any zoo model built from ``nn.Dense`` / ``nn.Conv``.
    task: any task.
    optimizer: an optax transformation.
    feedback_seed: seed of the random feedback matrices.
  """
  feedback_seed: int = 1

  def init(self, rng, batch) -> FAState:
    state = super().init(rng, batch)
    return FAState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(TrainState)},
                   feedback=random_feedback(state.params, jax.random.key(self.feedback_seed)))

  def step(self, state: FAState, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss(params):
      with feedback_alignment(state.feedback):
        return self.loss(params, state.model_state, batch, rng)

    (total, (model_state, metrics)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "total_loss": total, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics
