"""Monotone deep Boltzmann machines: mean-field inference with a unique fixed point (work in progress: inference only).

Paper: "Monotone deep Boltzmann machines" (Feng, Winston, Kolter, 2023, arXiv 2307.04990). A Boltzmann machine
over ``n`` categorical variables (blocks of ``k`` one-hot states) with symmetric pairwise couplings ``W [n k, n k]``
(no coupling of a block with itself) and biases ``b [n k]`` has mean-field marginals ``q`` (one point of the simplex
per block) at the fixed points of ``q = softmax_blocks(W q + b)``. In general there are many. The paper restricts
``W`` so that ``I - W >= m I`` (the monotone-operator condition of monotone DEQs); then the mean-field problem is
strongly monotone and has exactly one solution, found by forward-backward splitting

  ``z <- prox^alpha_f(z - alpha ((I - W) z - b))``,  ``f(z) = sum z log z - 1/2 ||z||^2`` on each block's simplex,

whose fixed point is ``z = softmax_blocks(W z + b)`` (``prox^1_f`` is the softmax; ``prox^alpha_f`` for ``alpha in (0,
1)`` is the paper's "proxsoftmax": per block, ``(1 - alpha) z_i + alpha log z_i = v_i - c`` with ``c`` such that the
block sums to 1, solved here by Newton steps in ``log z`` inside a bisection on ``c``).

Parametrisation used here: ``W = blockdiag(A^T A) - A^T A`` with every block of columns of ``A [r, n k]`` rescaled to
squared spectral norm ``<= 1 - m``. It is symmetric, its diagonal blocks are exactly 0 (hollow), and since
``A^T A >= 0``, ``W <= blockdiag(A^T A) <= (1 - m) I``, so ``I - W >= m I`` for any ``A``. (The paper's §3 states its
own hollowness correction; this construction satisfies the same conditions and is this module's, to be checked
against the paper.) With ``monotone=False`` the block rescaling of ``A`` is skipped: the same symmetric hollow
``W`` without the norm control, the ablation, which can have several mean-field fixed points.

Public names:

* :func:`monotone_coupling` ``(a [r, n k], block_size, m=0.1)`` -> ``W [n k, n k]``.
* :func:`prox_softmax` ``(v [..., n, k], alpha)`` -> ``[..., n, k]`` on the simplex of each block.
* :func:`mean_field_fixed_point` ``(w, b [n k], block_size, *, z0=None, alpha=0.125, tol=1e-6, max_iter=2000)`` ->
  ``(q [n k], iterations, residual)``: forward-backward splitting from ``z0`` (default uniform).
* :func:`naive_mean_field` ``(w, b, block_size, *, z0, damping=0.5, tol=1e-6, max_iter=2000)`` -> the same for the
  damped plain iteration ``q <- (1 - damping) q + damping softmax(W q + b)``, the paper's baseline.

Not built yet (see the helper note): Anderson acceleration, the implicit-differentiation ``custom_vjp`` backward,
the ``MonotoneDBM`` module and its joint completion / classification training.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers import check_shape

__all__ = ["mean_field_fixed_point", "monotone_coupling", "naive_mean_field", "prox_softmax"]


def _check_blocks(size, block_size, where):
  if not (isinstance(block_size, (int, np.integer)) and block_size >= 2):
    raise ValueError(f"{where}: `block_size` (states per variable) must be an integer >= 2; got {block_size!r}.")
  if size % block_size:
    raise ValueError(f"{where}: the {size} units do not split into blocks of {block_size}.")


def _block_diag_mask(size, block_size):
  blocks = jnp.arange(size) // block_size
  return (blocks[:, None] == blocks[None, :]).astype(jnp.float32)


def monotone_coupling(a, block_size: int, m: float = 0.1, *, monotone: bool = True) -> jax.Array:
  """``W = blockdiag(A^T A) - A^T A`` with ``I - W >= m I`` (``monotone=False``: ``A`` not rescaled)."""
  where = "monotone_coupling"
  check_shape(a, "a", "rank units", where=where, dtype="floating")
  _check_blocks(a.shape[1], block_size, where)
  if not (0.0 < m < 1.0):
    raise ValueError(f"{where}: `m` (the monotonicity margin) must be in (0, 1); got {m!r}.")
  mask = _block_diag_mask(a.shape[1], block_size)
  if monotone:
    n = a.shape[1] // block_size
    cols = a.reshape(a.shape[0], n, block_size).transpose(1, 0, 2)  # [n, r, k]
    norms = jnp.linalg.norm(cols, ord=2, axis=(1, 2))  # spectral norm of each block of columns
    scale = jnp.minimum(1.0, jnp.sqrt(1.0 - m) / jnp.maximum(norms, 1e-12))
    a = (cols * scale[:, None, None]).transpose(1, 0, 2).reshape(a.shape)
  gram = a.T @ a
  return gram * mask - gram


def _inv_g(t, alpha, newton=30):
  """``log z`` solving ``(1 - alpha) z + alpha log z = t`` (Newton from the right of the root: monotone steps)."""
  start_big = jnp.log(jnp.maximum(t, 1e-30) / (1.0 - alpha))
  u = jnp.where(t >= 1.0 - alpha, start_big, t / alpha)

  def step(_, u):
    ez = jnp.exp(u)
    return u - ((1.0 - alpha) * ez + alpha * u - t) / ((1.0 - alpha) * ez + alpha)
  return jax.lax.fori_loop(0, newton, step, u)


def prox_softmax(v, alpha, *, bisect: int = 50) -> jax.Array:
  """``argmin_z 1/2 ||z - v||^2 + alpha f(z)`` per block (last axis); ``f = sum z log z - 1/2 ||z||^2`` (simplex)."""
  check_shape(v, "v", "... blocks states", where="prox_softmax", dtype="floating")
  if not isinstance(alpha, jax.core.Tracer) and not (0.0 < alpha < 1.0):
    raise ValueError(f"prox_softmax: `alpha` must be in (0, 1); got {alpha!r}.")
  k = v.shape[-1]
  top = v.max(-1, keepdims=True)
  lo = top - (1.0 - alpha)  # c here makes the largest z_i = 1: the block sums to >= 1
  hi = top - ((1.0 - alpha) / k - alpha * np.log(k))  # c here makes every z_i <= 1/k: the block sums to <= 1

  def body(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) / 2
    total = jnp.exp(_inv_g(v - mid, alpha)).sum(-1, keepdims=True)
    return jnp.where(total > 1.0, mid, lo), jnp.where(total > 1.0, hi, mid)
  lo, hi = jax.lax.fori_loop(0, bisect, body, (lo, hi))
  z = jnp.exp(_inv_g(v - (lo + hi) / 2, alpha))
  return z / z.sum(-1, keepdims=True)


def _check_system(w, b, block_size, where):
  check_shape(w, "w", "units units2", where=where, dtype="floating")
  if w.shape[0] != w.shape[1]:
    raise ValueError(f"{where}: `w` must be square; got shape {tuple(w.shape)}.")
  check_shape(b, "b", "units", where=where, dtype="floating", units=w.shape[0])
  _check_blocks(w.shape[0], block_size, where)


def _softmax_blocks(x, block_size):
  return jax.nn.softmax(x.reshape(-1, block_size), axis=-1).reshape(x.shape)


@functools.partial(jax.jit, static_argnames=("block_size", "max_iter"))
def _fb(w, b, z0, alpha, tol, block_size, max_iter):
  def update(z):
    v = z - alpha * (z - w @ z - b)
    return prox_softmax(v.reshape(-1, block_size), alpha).reshape(z.shape)

  def cond(c):
    return (c[1] < max_iter) & (c[2] > tol)

  def body(c):
    z, i, _ = c
    new = update(z)
    return new, i + 1, jnp.max(jnp.abs(new - z))
  z, i, res = jax.lax.while_loop(cond, body, (z0, jnp.int32(0), jnp.float32(jnp.inf)))
  return z, i, res


@functools.partial(jax.jit, static_argnames=("block_size", "max_iter"))
def _naive(w, b, z0, damping, tol, block_size, max_iter):
  def cond(c):
    return (c[1] < max_iter) & (c[2] > tol)

  def body(c):
    z, i, _ = c
    new = (1.0 - damping) * z + damping * _softmax_blocks(w @ z + b, block_size)
    return new, i + 1, jnp.max(jnp.abs(new - z))
  return jax.lax.while_loop(cond, body, (z0, jnp.int32(0), jnp.float32(jnp.inf)))


def _start(z0, size, block_size, where):
  if z0 is None:
    return jnp.full((size,), 1.0 / block_size, jnp.float32)
  check_shape(z0, "z0", "units", where=where, dtype="floating", units=size)
  return jnp.asarray(z0, jnp.float32)


def mean_field_fixed_point(w, b, block_size: int, *, z0=None, alpha: float = 0.125, tol: float = 1e-6,
                           max_iter: int = 2000):
  """Forward-backward splitting to the mean-field solution: ``(q [n k], iterations, max |z_{t+1} - z_t|)``."""
  where = "mean_field_fixed_point"
  _check_system(w, b, block_size, where)
  if not (0.0 < alpha < 1.0):
    raise ValueError(f"{where}: `alpha` must be in (0, 1); got {alpha!r}.")
  z0 = _start(z0, w.shape[0], block_size, where)
  return _fb(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32), z0, jnp.float32(alpha), jnp.float32(tol),
             int(block_size), int(max_iter))


def naive_mean_field(w, b, block_size: int, *, z0=None, damping: float = 0.5, tol: float = 1e-6,
                     max_iter: int = 2000):
  """The damped plain mean-field iteration ``q <- (1 - damping) q + damping softmax_blocks(W q + b)``."""
  where = "naive_mean_field"
  _check_system(w, b, block_size, where)
  if not (0.0 < damping <= 1.0):
    raise ValueError(f"{where}: `damping` must be in (0, 1]; got {damping!r}.")
  z0 = _start(z0, w.shape[0], block_size, where)
  return _naive(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32), z0, jnp.float32(damping),
                jnp.float32(tol), int(block_size), int(max_iter))
