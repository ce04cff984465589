"""Monotone deep Boltzmann machines: mean-field inference with a unique fixed point, implicit gradients, training.

Paper: "Monotone deep Boltzmann machines" (Feng, Winston, Kolter, 2023, arXiv 2307.04990). A Boltzmann machine
over ``n`` categorical variables (blocks of ``k`` one-hot states) with symmetric pairwise couplings ``W [n k, n k]``
(no coupling of a block with itself) and biases ``b [n k]`` has mean-field marginals ``q`` (one point of the simplex
per block) at the fixed points of ``q = softmax_blocks(W q + b)``. In general there are many. The paper restricts
``W`` so that ``I - W >= m I`` (the monotone-operator condition of monotone DEQs); then the mean-field problem is
strongly monotone and has exactly one solution, found by forward-backward splitting

  ``z <- prox^alpha_f(z - alpha ((I - W) z - b))``,  ``f(z) = sum z log z - 1/2 ||z||^2`` on each block's simplex,

whose fixed point is ``z = softmax_blocks(W z + b)`` (``prox^1_f`` is the softmax; ``prox^alpha_f`` for ``alpha in (0,
1)`` is the paper's "proxsoftmax": per block, ``(1 - alpha) z_i + alpha log z_i = v_i - c`` with ``c`` such that the
block sums to 1, solved here by Newton steps in ``log z`` inside a bisection on ``c``; its derivative is the
implicit one, ``dz = h (dv - <h, dv> / sum h)``, ``h = z / ((1 - alpha) z + alpha)``, not the bisection's).

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

* :func:`group_coupling` ``(a [r, units], groups, m=0.1, monotone=True)``: the same coupling for blocks of mixed
  sizes, ``groups = ((count, states), ...)`` (e.g. 80 binary blocks and one 10-state label block);
  :func:`group_block_mask` ``(groups)`` -> ``[units, units]``.
* :func:`mean_field_solve` ``(w, b, clamp_value [units], clamp_mask [units], groups, alpha, tol, max_iter,
  anderson=0)`` -> ``q [units]``: the splitting with the clamped units held fixed (``anderson > 0``: Anderson
  acceleration with that memory), differentiable in ``w, b`` by ``jax.custom_vjp``: the backward pass solves the
  adjoint fixed point ``u = J^T u + g`` of the splitting map's Jacobian at the solution (implicit function
  theorem; the forward loop is not unrolled).
* :class:`MonotoneDBM` ``(num_pixels=64, num_classes=10, num_hidden=32, rank=64, m=0.1, alpha=0.125, tol=1e-2,
  max_iter=50, hide_fraction=0.5, monotone=True)``: binary pixel and hidden blocks plus a label block; ``image
  [batch, ...]`` -> label log-marginals ``[batch, num_classes]``, with a random half of the binarised pixels
  hidden and the rest clamped; sows the hidden pixels' cross-entropy as ``losses/completion``.
  ``marginals(image, observed [batch, num_pixels])`` -> ``(pixels [batch, num_pixels, 2], label [batch,
  num_classes])``. Trained by ``zoo.recipes.procedures.monotone_dbm.JointCompletion``. (The paper's deeper,
  convolutional DBM is not built: one fully connected layer of hidden blocks.)
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.layers import check_shape

__all__ = ["MonotoneDBM", "group_block_mask", "group_coupling", "mean_field_fixed_point", "mean_field_solve",
           "monotone_coupling", "naive_mean_field", "prox_softmax"]


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


def _inv_g(t, alpha, newton=12):
  """``log z`` solving ``(1 - alpha) z + alpha log z = t`` (Newton from the right of the root: monotone steps)."""
  start_big = jnp.log(jnp.maximum(t, 1e-30) / (1.0 - alpha))
  u = jnp.where(t >= 1.0 - alpha, start_big, t / alpha)

  def step(_, u):
    ez = jnp.exp(u)
    return u - ((1.0 - alpha) * ez + alpha * u - t) / ((1.0 - alpha) * ez + alpha)
  return jax.lax.fori_loop(0, newton, step, u)


def prox_softmax(v, alpha, *, bisect: int = 32) -> jax.Array:
  """``argmin_z 1/2 ||z - v||^2 + alpha f(z)`` per block (last axis); ``f = sum z log z - 1/2 ||z||^2`` (simplex)."""
  check_shape(v, "v", "... blocks states", where="prox_softmax", dtype="floating")
  if not isinstance(alpha, jax.core.Tracer) and not (0.0 < alpha < 1.0):
    raise ValueError(f"prox_softmax: `alpha` must be in (0, 1); got {alpha!r}.")
  return _prox(v, jnp.asarray(alpha, v.dtype), bisect)


def _prox_solve(v, alpha, bisect):
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


@jax.custom_jvp
def _prox(v, alpha, bisect):
  return _prox_solve(v, alpha, bisect)


@_prox.defjvp
def _prox_jvp(primals, tangents):
  # Implicit derivative of (1 - alpha) z_i + alpha log z_i = v_i - c, sum z = 1 (differentiating through the
  # bisection would miss dc/dv): dz = h * (dv - dc), h = z / ((1 - alpha) z + alpha), dc = <h, dv> / sum h.
  v, alpha, bisect = primals
  dv = tangents[0]
  z = _prox_solve(v, alpha, bisect)
  h = z / ((1.0 - alpha) * z + alpha)
  dc = jnp.sum(h * dv, -1, keepdims=True) / jnp.sum(h, -1, keepdims=True)
  return z, h * (dv - dc)


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


# --------------------------------------------------------------------------- blocks of mixed sizes, implicit backward


def _group_sizes(groups):
  out = []
  for count, size in groups:
    if not (isinstance(count, (int, np.integer)) and count >= 1 and isinstance(size, (int, np.integer)) and size >= 2):
      raise ValueError(f"`groups` must be ((count >= 1, states >= 2), ...); got {groups!r}.")
    out.append((int(count), int(size)))
  return tuple(out)


def group_block_mask(groups) -> np.ndarray:
  """``[units, units]`` 1 where two units belong to the same categorical block (``groups = ((count, states), ...)``)."""
  ids = np.concatenate([np.repeat(np.arange(c) + sum(g[0] for g in groups[:i]), s)
                        for i, (c, s) in enumerate(groups)])
  return (ids[:, None] == ids[None, :]).astype(np.float32)


def group_coupling(a, groups, m: float = 0.1, *, monotone: bool = True) -> jax.Array:
  """:func:`monotone_coupling` for blocks of mixed sizes: each block of columns of ``A`` rescaled to ``||.||^2 <=
  1 - m``, ``W = blockdiag(A^T A) - A^T A`` (``monotone=False``: no rescaling)."""
  groups = _group_sizes(groups)
  units = sum(c * s for c, s in groups)
  check_shape(a, "a", "rank units", where="group_coupling", dtype="floating", units=units)
  if not (0.0 < m < 1.0):
    raise ValueError(f"group_coupling: `m` (the monotonicity margin) must be in (0, 1); got {m!r}.")
  if monotone:
    parts, start = [], 0
    for c, s in groups:
      cols = a[:, start:start + c * s].reshape(a.shape[0], c, s).transpose(1, 0, 2)  # [c, r, s]
      norms = jnp.linalg.norm(cols, ord=2, axis=(1, 2))
      scale = jnp.minimum(1.0, jnp.sqrt(1.0 - m) / jnp.maximum(norms, 1e-12))
      parts.append((cols * scale[:, None, None]).transpose(1, 0, 2).reshape(a.shape[0], c * s))
      start += c * s
    a = jnp.concatenate(parts, axis=1)
  gram = a.T @ a
  return gram * jnp.asarray(group_block_mask(groups)) - gram


def _group_prox(v, groups, alpha):
  out, start = [], 0
  for c, s in groups:
    out.append(prox_softmax(v[start:start + c * s].reshape(c, s), alpha).reshape(-1))
    start += c * s
  return jnp.concatenate(out)


def _fb_map(z, w, b, clamp_value, clamp_mask, groups, alpha):
  """One forward-backward step with the clamped units held at their values."""
  new = _group_prox(z - alpha * (z - w @ z - b), groups, alpha)
  return jnp.where(clamp_mask > 0, clamp_value, new)


def _fb_loop(w, b, clamp_value, clamp_mask, groups, alpha, tol, max_iter, anderson):
  z0 = jnp.where(clamp_mask > 0, clamp_value, jnp.concatenate([jnp.full((c * s,), 1.0 / s) for c, s in groups]))
  f = lambda z: _fb_map(z, w, b, clamp_value, clamp_mask, groups, alpha)  # noqa: E731
  if not anderson:
    def body(c):
      z, i, _ = c
      new = f(z)
      return new, i + 1, jnp.max(jnp.abs(new - z))
    z, i, res = jax.lax.while_loop(lambda c: (c[1] < max_iter) & (c[2] > tol), body,
                                   (z0, jnp.int32(0), jnp.float32(jnp.inf)))
    return z, i, res
  return _anderson(f, z0, tol, max_iter, anderson)


def _anderson(f, z0, tol, max_iter, memory, reg=1e-5):
  """Anderson acceleration (type II, memory ``memory``) of ``z <- f(z)``; the result is projected by one ``f``."""
  n = z0.shape[0]
  xs = jnp.zeros((memory, n)).at[0].set(z0)
  fs = jnp.zeros((memory, n)).at[0].set(f(z0))

  def body(c):
    xs, fs, i, _ = c
    k = jnp.minimum(i, memory)
    valid = jnp.arange(memory) < k
    g = jnp.where(valid[:, None], fs - xs, 0.0)
    gram = g @ g.T + reg * jnp.eye(memory)
    gram = jnp.where(valid[:, None] & valid[None, :], gram, jnp.eye(memory))
    rhs = valid.astype(jnp.float32)
    coef = jnp.linalg.solve(gram, rhs)
    coef = jnp.where(valid, coef, 0.0)
    coef = coef / coef.sum()
    x = coef @ fs
    fx = f(x)
    slot = i % memory
    return xs.at[slot].set(x), fs.at[slot].set(fx), i + 1, jnp.max(jnp.abs(fx - x))
  xs, fs, i, res = jax.lax.while_loop(lambda c: (c[2] < max_iter) & (c[3] > tol), body,
                                      (xs, fs, jnp.int32(1), jnp.float32(jnp.inf)))
  last = (i - 1) % memory
  return fs[last], i, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def mean_field_solve(w, b, clamp_value, clamp_mask, groups, alpha, tol, max_iter, anderson=0):
  """The mean-field marginals ``z [units]`` with clamped units, differentiable in ``w`` and ``b`` implicitly.

  Forward: forward-backward splitting (``anderson > 0``: Anderson acceleration with that memory). Backward: the
  adjoint fixed point ``u = J^T u + g`` of the same map's Jacobian ``J`` at the solution, solved by the same number
  of iterations, then ``(dw, db) = vjp_(w, b)(u)`` (implicit function theorem; no unrolling of the forward loop).
  """
  return _fb_loop(w, b, clamp_value, clamp_mask, groups, alpha, tol, max_iter, anderson)[0]


def _solve_fwd(w, b, clamp_value, clamp_mask, groups, alpha, tol, max_iter, anderson):
  z = _fb_loop(w, b, clamp_value, clamp_mask, groups, alpha, tol, max_iter, anderson)[0]
  return z, (w, b, clamp_value, clamp_mask, z)


def _solve_bwd(groups, alpha, tol, max_iter, anderson, saved, g):
  w, b, clamp_value, clamp_mask, z = saved
  _, vjp_z = jax.vjp(lambda zz: _fb_map(zz, w, b, clamp_value, clamp_mask, groups, alpha), z)

  def body(c):
    u, i, _ = c
    new = vjp_z(u)[0] + g
    return new, i + 1, jnp.max(jnp.abs(new - u))
  u, _, _ = jax.lax.while_loop(lambda c: (c[1] < 4 * max_iter) & (c[2] > tol * 1e-2), body,
                               (g, jnp.int32(0), jnp.float32(jnp.inf)))
  _, vjp_p = jax.vjp(lambda ww, bb: _fb_map(z, ww, bb, clamp_value, clamp_mask, groups, alpha), w, b)
  dw, db = vjp_p(u)
  return dw, db, jnp.zeros_like(clamp_value), jnp.zeros_like(clamp_mask)


mean_field_solve.defvjp(_solve_fwd, _solve_bwd)


# ----------------------------------------------------------------------------------------------------- the module


class MonotoneDBM(nn.Module):
  """A monotone DBM over binary pixels, binary hidden units and one categorical label, trained by joint completion.

  Units: ``num_pixels + num_hidden`` 2-state blocks (one-hot ``[off, on]``) and one ``num_classes``-state label
  block; couplings :func:`group_coupling` of a learned ``A [rank, units]`` (hollow, symmetric, ``I - W >= m I``
  when ``monotone``), biases ``b [units]``. A call binarises ``image [batch, ...]`` (``> 0.5``), clamps the
  observed pixels and solves for the marginals of everything else (:func:`mean_field_solve`, implicit backward).
  The hidden pixels are a random ``hide_fraction`` of each image: drawn with the ``'noise'`` rng when given, else a
  fixed pattern (``mask_seed``) so evaluation is deterministic.

  ``self.sow('losses', 'completion', ce)``: the mean cross-entropy of the hidden pixels' marginals (the paper's
  joint completion loss; the procedure adds it to the label's cross-entropy).

  Call: ``image [batch, ...]`` float -> label log-marginals ``[batch, num_classes]`` (usable as logits).

  Sharding: the vmapped solver's stopping test (any example unconverged) becomes an all-reduce inside the while
  loop when the batch is sharded; on a CPU host with fewer cores than (simulated) devices that deadlocks, so run it
  with the batch replicated (``mesh.data = 1``; see ``recipes/configs/monotone_dbm_digits.py``).
  """
  num_pixels: int = 64
  num_classes: int = 10
  num_hidden: int = 32
  rank: int = 64
  m: float = 0.1
  alpha: float = 0.125
  tol: float = 1e-2
  max_iter: int = 50
  anderson: int = 0
  hide_fraction: float = 0.5
  mask_seed: int = 0
  monotone: bool = True

  @property
  def groups(self):
    return ((self.num_pixels + self.num_hidden, 2), (1, self.num_classes))

  @property
  def units(self):
    return 2 * (self.num_pixels + self.num_hidden) + self.num_classes

  def setup(self):
    self.a = self.param("a", layers.partitioned(nn.initializers.normal(1.0 / np.sqrt(self.units)), (None, None)),
                        (self.rank, self.units))
    self.b = self.param("b", layers.partitioned(nn.initializers.zeros, (None,)), (self.units,))

  def marginals(self, image, observed):
    """``(pixel marginals [batch, num_pixels, 2], label marginals [batch, num_classes])`` given ``observed [batch,
    num_pixels]`` (1 = clamped to the binarised pixel)."""
    where = "MonotoneDBM"
    if not hasattr(image, "ndim") or image.ndim < 2:
      raise ValueError(f"{where}: `image` must be an array [batch, ...]; got {getattr(image, 'shape', image)!r}.")
    check_shape(image.reshape(image.shape[0], -1), "image", "batch pixels", where=where, dtype="floating")
    x = image.reshape(image.shape[0], -1)
    if x.shape[1] != self.num_pixels:
      raise ValueError(f"{where}: `image` must have {self.num_pixels} pixels per example; got shape {image.shape}.")
    check_shape(observed, "observed", "batch pixels", where=where, batch=x.shape[0], pixels=self.num_pixels)
    if not 0.0 < self.alpha < 1.0:
      raise ValueError(f"{where}: `alpha` must be in (0, 1); got {self.alpha!r}.")
    units, b = self.units, self.b
    w = group_coupling(self.a, self.groups, self.m, monotone=self.monotone)
    on = (x > 0.5).astype(jnp.float32)
    pix = jnp.stack([1.0 - on, on], -1).reshape(x.shape[0], -1)  # [batch, 2 pixels]
    obs = jnp.repeat(observed.astype(jnp.float32), 2, axis=1)
    rest = units - 2 * self.num_pixels
    value = jnp.concatenate([pix, jnp.zeros((x.shape[0], rest))], 1)
    mask = jnp.concatenate([obs, jnp.zeros((x.shape[0], rest))], 1)
    solve = lambda v, mk: mean_field_solve(w, b, v, mk, self.groups, float(self.alpha), float(self.tol),  # noqa
                                           int(self.max_iter), int(self.anderson))
    z = jax.vmap(solve)(value, mask)
    return z[:, :2 * self.num_pixels].reshape(-1, self.num_pixels, 2), z[:, -self.num_classes:]

  def __call__(self, image, *, train: bool = False):  # pylint: disable=unused-argument
    if not 0.0 <= self.hide_fraction < 1.0:
      raise ValueError(f"MonotoneDBM: `hide_fraction` must be in [0, 1); got {self.hide_fraction!r}.")
    n = image.shape[0]
    key = self.make_rng("noise") if self.has_rng("noise") else jax.random.key(self.mask_seed)
    observed = jax.random.uniform(key, (n, self.num_pixels)) >= self.hide_fraction
    q_pix, q_label = self.marginals(image, observed)
    on = (image.reshape(n, -1) > 0.5).astype(jnp.int32)
    logp = jnp.log(jnp.maximum(jnp.take_along_axis(q_pix, on[..., None], -1)[..., 0], 1e-6))
    hidden = 1.0 - observed.astype(jnp.float32)
    self.sow("losses", "completion", -jnp.sum(logp * hidden) / jnp.maximum(hidden.sum(), 1.0))
    return jnp.log(jnp.maximum(q_label, 1e-6))
