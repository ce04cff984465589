"""Adversarial attacks on any classifier: FGSM, PGD under an L-infinity or an L2 budget.

FGSM: "Explaining and Harnessing Adversarial Examples" (Goodfellow, Shlens, Szegedy, 2015, arXiv 1412.6572).
PGD: "Towards Deep Learning Models Resistant to Adversarial Attacks" (Madry et al., 2018, arXiv 1706.06083).

Every attack takes ``logits_fn(x) -> logits [batch, classes]`` (e.g. ``lambda x: model.apply(variables, x)`` for any
zoo classifier), inputs ``x [batch, ...]`` float and integer labels ``y [batch]``, and returns adversarial inputs of
the shape of ``x``. The attacks maximise the softmax cross-entropy of each example (per-example gradients of the
summed loss), keep ``x_adv`` inside the budget ball around ``x`` and, when ``clip`` is given, inside the valid input
range. They are pure jax: ``jax.jit`` them (``eps``/``step_size`` may be traced; ``steps`` must be static) and
``jax.vmap`` them (e.g. over a grid of ``eps``).

* :func:`fgsm` ``(logits_fn, x, y, eps)``: ``x + eps * sign(grad)``.
* :func:`pgd_linf` ``(logits_fn, x, y, eps, step_size, steps, key=None)``: ``steps`` signed-gradient ascent
  steps projected on ``||x_adv - x||_inf <= eps``, from a uniform random start in the ball when ``key`` is given.
* :func:`pgd_l2` ``(logits_fn, x, y, eps, step_size, steps, key=None)``: steps along the per-example normalised
  gradient, projected on ``||x_adv - x||_2 <= eps`` (norms over all non-batch axes).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["fgsm", "pgd_l2", "pgd_linf"]


def _check(x, y, where):
  if not hasattr(x, "shape") or jnp.ndim(x) < 2 or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(f"{where}: `x` must be a float array [batch, ...]; got {getattr(x, 'dtype', type(x))} with shape "
                    f"{getattr(x, 'shape', None)}.")
  if x.shape[0] == 0:
    raise ValueError(f"{where}: `x` has an empty batch (shape {x.shape}).")
  if not hasattr(y, "shape") or tuple(y.shape) != (x.shape[0],) or not jnp.issubdtype(jnp.result_type(y),
                                                                                         jnp.integer):
    raise ValueError(f"{where}: `y` must be integer labels of shape [{x.shape[0]}]; got "
                     f"{getattr(y, 'dtype', type(y))} {getattr(y, 'shape', None)}.")


def _grad(logits_fn, x, y):
  def loss(xx):
    logits = logits_fn(xx)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
      raise ValueError(f"attacks: logits_fn must return logits [batch={x.shape[0]}, classes]; got {logits.shape}.")
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y))
  return jax.grad(loss)(x)


def _clip(x, clip):
  return x if clip is None else jnp.clip(x, clip[0], clip[1])


def _per_example_norm(d):
  return jnp.sqrt(jnp.sum(d.reshape(d.shape[0], -1) ** 2, axis=1)).reshape((-1,) + (1,) * (d.ndim - 1))


def fgsm(logits_fn: Callable, x, y, eps, *, clip: tuple[float, float] | None = None):
  """Fast gradient sign method: ``clip(x + eps * sign(grad_x CE))``."""
  _check(x, y, "fgsm")
  return jax.lax.stop_gradient(_clip(x + eps * jnp.sign(_grad(logits_fn, x, y)), clip))


def pgd_linf(logits_fn: Callable, x, y, eps, step_size, steps: int = 10, key=None, *,
             clip: tuple[float, float] | None = None):
  """Projected gradient ascent in the L-infinity ball of radius ``eps`` (Madry et al.)."""
  _check(x, y, "pgd_linf")
  x_adv = x if key is None else _clip(x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps, clip)

  def body(_, xa):
    xa = xa + step_size * jnp.sign(_grad(logits_fn, xa, y))
    return _clip(x + jnp.clip(xa - x, -eps, eps), clip)
  return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x_adv))


def pgd_l2(logits_fn: Callable, x, y, eps, step_size, steps: int = 10, key=None, *,
           clip: tuple[float, float] | None = None):
  """Projected gradient ascent in the per-example L2 ball of radius ``eps``."""
  _check(x, y, "pgd_l2")

  def project(xa):
    d = xa - x
    return _clip(x + d * jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(d), 1e-12)), clip)

  x_adv = x
  if key is not None:
    d = jax.random.normal(key, x.shape, x.dtype)
    x_adv = project(x + d / jnp.maximum(_per_example_norm(d), 1e-12) * eps * jax.random.uniform(
        jax.random.fold_in(key, 1), (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype))

  def body(_, xa):
    g = _grad(logits_fn, xa, y)
    return project(xa + step_size * g / jnp.maximum(_per_example_norm(g), 1e-12))
  return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x_adv))
