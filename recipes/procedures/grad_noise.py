"""Backprop from a deliberately poor initialisation: the setting of "Adding Gradient Noise Improves Learning for Very
Deep Networks" (Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach, Martens, 2015, arXiv 1511.06807).

The paper's rule, ``g_t <- g_t + N(0, sigma_t^2)`` with ``sigma_t^2 = eta / (1 + t)^gamma`` (``gamma = 0.55``,
``eta`` in {0.01, 0.3, 1.0}) and optional gradient clipping, is not in this file: it is the ``grad_noise`` field of
the one optimizer builder (``zoo.recipes.builders.make_optimizer``: ``optax.clip_by_global_norm`` (``clip_norm``),
then ``optax.add_noise(eta, 0.55, noise_seed)``, then the optax alias). ``optax.add_noise``'s step counter starts at
1 on the first update, so its variance at update ``t = 0, 1, ...`` is exactly ``eta / (1 + t)^0.55``.

What this file adds is the paper's experimental condition, the *poor initialisation* of a deep fully-connected net
(20 layers x 50 ReLU units on MNIST in the paper): :class:`BadInitBackprop` is :class:`~.backprop.Backprop` whose
``init`` replaces every parameter of the model by

* ``init_scheme='zeros'``: all weights and biases 0, the extreme case. A ReLU net is then stuck: every hidden activation is
  0, so every hidden gradient is exactly 0 and only the output bias learns (chance accuracy). Gradient noise is the
  only thing that moves the hidden weights off the saddle.
* ``init_scheme='normal'``: weights ``N(0, init_std^2)`` and biases 0 (the paper's "simple init", std 0.1), which in a
  20-layer ReLU net shrinks the signal by ~``(sqrt(50) * 0.1)^20`` and nearly kills the gradient.
* ``init_scheme='model'``: the model's own initialiser (the "good init" control).

The ablation of the paper's mechanism is ``optimizer.grad_noise = 0`` (the same procedure, no noise).
Config: ``procedure.name = 'grad_noise.BadInitBackprop'``, ``procedure.init_scheme = 'zeros'``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from zoo.recipes.procedures import backprop

__all__ = ["BadInitBackprop", "reinitialise"]

INITS = ("zeros", "normal", "model")


def reinitialise(params, rng, *, scheme: str = "zeros", init_std: float = 0.1):
  """``params`` re-drawn by ``scheme`` (see the module docstring); leaves named ``bias`` are set to 0.

  ``params``: any parameter pytree (logical-axis boxes are kept: only their values change).
  """
  if scheme not in INITS:
    raise ValueError(f"reinitialise: scheme must be one of {INITS}; got {scheme!r}.")
  if scheme == "model":
    return params
  if not init_std >= 0:
    raise ValueError(f"reinitialise: init_std must be >= 0; got {init_std!r}.")
  leaves = jax.tree_util.tree_leaves_with_path(params)
  keys = jax.random.split(rng, max(len(leaves), 1))
  by_path = {}
  for (path, leaf), key in zip(leaves, keys):
    names = {str(getattr(k, "key", getattr(k, "name", k))) for k in path}  # a boxed leaf's path ends in '.value'
    if scheme == "zeros" or "bias" in names:
      by_path[path] = jnp.zeros_like(leaf)
    else:
      by_path[path] = (init_std * jax.random.normal(key, leaf.shape)).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(lambda path, _: by_path[path], params)


@dataclasses.dataclass(frozen=True)
class BadInitBackprop(backprop.Backprop):
  """:class:`~.backprop.Backprop` started from a poor initialisation (the gradient-noise paper's setting).

  Attributes:
    init_scheme: ``'zeros'`` (default: every parameter 0), ``'normal'`` (weights ``N(0, init_std^2)``, biases 0) or
      ``'model'`` (the model's own initialiser).
    init_std: the standard deviation of ``init_scheme='normal'`` (the paper's "simple init": 0.1).
  """
  init_scheme: str = "zeros"
  init_std: float = 0.1

  def __post_init__(self):
    if self.init_scheme not in INITS:
      raise ValueError(f"BadInitBackprop: init_scheme must be one of {INITS}; got {self.init_scheme!r}.")
    if not self.init_std >= 0:
      raise ValueError(f"BadInitBackprop: init_std must be >= 0; got {self.init_std!r}.")

  def init(self, rng, batch) -> backprop.TrainState:
    state = super().init(rng, batch)
    params = reinitialise(state.params, jax.random.fold_in(rng, 17), scheme=self.init_scheme, init_std=self.init_std)
    return state.replace(params=params, opt_state=self.optimizer.init(params))
