"""Global optimisation of two-layer ReLU networks through their convex reformulation.

Papers: "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial
Training" (Bai, Gautam, Sojoudi, SIAM J. Math. Data Science 2023, arXiv 2201.01965), on "Neural Networks are Convex
Regularizers" (Pilanci & Ergen, ICML 2020, arXiv 2002.10553).

A two-layer ReLU net ``f(x) = sum_j relu(x . u_j) alpha_j`` trained with squared loss and weight decay,
``1/2 ||f(X) - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2)``, has the same optimum as the convex program over the
activation patterns ``D_i = diag(1[X h_i >= 0])`` of the data ``X [n, d]``::

    min_{v, w}  1/2 || sum_i D_i X (v_i - w_i) - y ||^2 + beta sum_i (||v_i||_2 + ||w_i||_2)
    s.t.        (2 D_i - I) X v_i >= 0,  (2 D_i - I) X w_i >= 0           (the cone constraints)

and an optimal network is recovered from it (``u = v / sqrt(||v||)``, ``alpha = +sqrt(||v||)``, and ``-sqrt`` for
``w``) once the patterns include every pattern of the arrangement (exact enumeration; :func:`enumerate_patterns_2d`
for ``d = 2`` without bias), or approximately with sampled ones (:func:`sample_patterns`).

Public names (shapes: ``x [n, d]``, ``y [n]``, ``patterns [n, P]`` boolean):

* :func:`sample_patterns` ``(x, num, key) -> [n, P]``: ``1[x h >= 0]`` for ``h ~ N(0, I)``, duplicates removed.
* :func:`enumerate_patterns_2d` ``(x) -> [n, P]``: every pattern of the arrangement of ``n`` lines through the
  origin in the plane (at most ``2n``), from one direction strictly inside each of its angular sectors.
* :func:`convex_objective` ``(x, y, patterns, v, w, beta)`` and :func:`cone_violation`: the program above.
* :func:`admm_solve` ``(x, y, patterns, beta, rho, iters) -> ADMMResult``: Bai et al.'s ADMM. Splitting
  ``u = (v, w)`` into a copy ``z`` (group soft-thresholding, the ``beta`` term) and slacks ``s = G u >= 0``
  (``G = blockdiag((2 D_i - I) X)``, the cone constraints), the ``u``-step is the least-squares system
  ``(F^T F + rho I + rho G^T G) u = ...``, whose matrix does not change: it is Cholesky-factorised **once** and every
  iteration is matrix-vector products and two triangular solves (``O((P d)^2)``, the paper's quadratic time),
  jitted in one ``lax.scan``. ``G^T G = I_{2P} (x) X^T X`` because ``(2 D_i - I)^2 = I``.
  ``constrained=False`` drops the cone constraints: the *unconstrained* relaxation (a group lasso; the paper's
  Section 4 "SCP"-style relaxation without the constraint set), the ablation of the constraints.
* :func:`scp_solve`: :func:`admm_solve` with ``constrained=False``.
* :func:`recover_network` ``(v, w) -> (u [d, m], alpha [m])`` and :func:`network_objective` ``(x, y, u, alpha,
  beta)``: the nonconvex network and its regularised loss; :class:`TwoLayerReLU`, the network as a Linen module
  (``x [batch, d] -> [batch]``), to train by gradient descent as the baseline.

The adversarially robust counterpart (the paper's Section 5, "convex adversarial training"; hinge loss, labels
``y`` in {-1, +1}, ``||delta_k||_inf <= eps`` on the ``perturbed`` leading features)::

    min_{v, w}  sum_k (1 - y_k sum_i d_ik x_k . (v_i - w_i) + eps ||sum_i d_ik (v_i - w_i)||_1)_+
                + beta sum_i (||v_i||_2 + ||w_i||_2)
    s.t.        (2 D_i - I) X v_i >= eps ||v_i||_1,  (2 D_i - I) X w_i >= eps ||w_i||_1

(the constraints hold every pattern over every ball, so there the network is linear and the first term is its exact
worst-case hinge loss, with the dual norm ``||.||_1`` of the weights):

* :func:`robust_admm_solve` ``(x, y, patterns, beta, eps, rho, iters, perturbed) -> ADMMResult``: ADMM of the same
  kind (a fixed system Cholesky-factorised once, matvec iterations in one ``lax.scan``): the ``l_1`` terms are
  written linearly through epigraph variables (``t >= |v_i|``, ``tau_k >= |c_k|``), so every constraint is a
  linear ``G theta >= 0`` (slack projection) and the hinge acts on a linear map (its proximal map is closed form);
  :func:`robust_admm_system` / :func:`robust_admm_init` / :func:`robust_admm_iterate` are its pieces (the
  procedure ``zoo.recipes.procedures.convex_relu.RobustConvexReLU`` runs them through the loop).
  ``eps = 0``: the standard convex program with the hinge loss (the ablation).
* :func:`robust_objective`, :func:`robust_violation`: the program above; :func:`robust_directions` and
  ``sample_patterns(..., eps=...)``: sampled directions whose hyperplane keeps distance ``eps`` from every example
  (their pattern's robust cone is not ``{0}``; most random patterns' robust cones are, on dense data).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from zoo.layers import check_shape
from zoo.layers import partitioned

__all__ = ["ADMMResult", "RobustSystem", "TwoLayerReLU", "admm_solve", "cone_violation", "convex_objective",
           "enumerate_patterns_2d", "network_objective", "recover_network", "robust_admm_init", "robust_admm_iterate",
           "robust_admm_solve", "robust_admm_system", "robust_directions", "robust_objective", "robust_violation",
           "sample_patterns", "scp_solve"]


def _check_xy(x, y, where):
  check_shape(x, "x", "batch features", where=where, dtype="floating")
  if y is not None:
    check_shape(y, "y", "batch", where=where, dtype="floating", batch=x.shape[0])


def _check_patterns(x, patterns, where):
  check_shape(patterns, "patterns", "batch patterns", where=where, batch=x.shape[0])
  if patterns.shape[1] == 0:
    raise ValueError(f"{where}: `patterns` holds no activation pattern (shape {patterns.shape}).")
  if np.dtype(patterns.dtype) != np.bool_:
    raise TypeError(f"{where}: `patterns` must be boolean 1[X h >= 0]; got dtype {np.dtype(patterns.dtype)}.")


def _unique_columns(d) -> np.ndarray:
  d = np.asarray(d, dtype=bool)
  _, first = np.unique(d.T, axis=0, return_index=True)
  return d[:, np.sort(first)]


def robust_directions(x, h, eps, perturbed=None):
  """``[P]`` boolean: direction ``h [d, P]`` keeps ``l_inf`` distance ``eps`` from every example, i.e.
  ``|x_k . h| >= eps ||h[:perturbed]||_1`` for all ``k``, so its pattern holds over every ball and ``h`` itself
  satisfies the robust cone constraint (the pattern's robust cone is not just ``{0}``)."""
  dp = x.shape[1] if perturbed is None else perturbed
  return jnp.min(jnp.abs(x @ h), axis=0) >= eps * jnp.sum(jnp.abs(h[:dp]), axis=0)


def sample_patterns(x, num: int, key, *, unique: bool = True, eps: float = 0.0,
                    perturbed: int | None = None) -> np.ndarray:
  """``num`` patterns ``1[x h >= 0]``, ``h ~ N(0, I_d)`` -> ``[n, P <= num]`` boolean (host array).

  ``eps > 0`` (for the robust program): only the directions that :func:`robust_directions` keeps (rejection
  sampling among the ``num`` draws); an error if none is kept.
  """
  _check_xy(x, None, "sample_patterns")
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
    raise ValueError(f"sample_patterns: num must be an integer >= 1; got {num!r}.")
  _check_eps(eps, "sample_patterns")
  dp = _perturbed_count(x, perturbed, "sample_patterns")
  h = jax.random.normal(key, (x.shape[1], num), x.dtype)
  if eps > 0:
    h = h[:, np.asarray(robust_directions(jnp.asarray(x), h, eps, dp))]
    if h.shape[1] == 0:
      raise ValueError(f"sample_patterns: none of the {num} directions keeps l_inf distance eps={eps} from every "
                       "example; draw more (num) or lower eps.")
  d = np.asarray(jnp.asarray(x) @ h >= 0)
  return _unique_columns(d) if unique else d


def enumerate_patterns_2d(x) -> np.ndarray:
  """Every activation pattern of ``x [n, 2]`` (no bias) -> ``[n, P]`` boolean, ``P <= 2n`` (host array).

  The sign of ``x_k . h`` changes where ``h`` is orthogonal to ``x_k``: the ``2n`` angles ``atan2(x_k) +- pi/2``
  cut the circle of directions into sectors of constant pattern; one direction at each sector's midpoint gives
  each pattern once (a direction on a boundary repeats a neighbouring sector's pattern).
  """
  _check_xy(x, None, "enumerate_patterns_2d")
  x = np.asarray(x, dtype=np.float64)
  if x.shape[1] != 2:
    raise ValueError(f"enumerate_patterns_2d: `x` must have shape [n, 2]; got {x.shape}.")
  nonzero = np.linalg.norm(x, axis=1) > 0
  theta = np.arctan2(x[nonzero, 1], x[nonzero, 0])
  cuts = np.sort(np.mod(np.concatenate([theta + np.pi / 2, theta - np.pi / 2]), 2 * np.pi))
  if len(cuts) == 0:
    return np.ones((len(x), 1), bool)
  mids = (cuts + np.diff(np.concatenate([cuts, cuts[:1] + 2 * np.pi])) / 2)
  h = np.stack([np.cos(mids), np.sin(mids)])
  return _unique_columns(x @ h >= 0)


def _pack(x, patterns):
  """``F [n, 2Pd]`` (``u -> sum_i D_i X (v_i - w_i)``) and the signs ``S = 2 D - 1`` ``[n, P]``."""
  dx = patterns.T[:, :, None] * x[None]  # [P, n, d]
  fv = jnp.transpose(dx, (1, 0, 2)).reshape(x.shape[0], -1)  # [n, P d]
  return jnp.concatenate([fv, -fv], axis=1), 2.0 * patterns.astype(x.dtype) - 1.0


def convex_objective(x, y, patterns, v, w, beta):
  """The convex program's objective at ``v, w [P, d]`` (the cone constraints are not checked here)."""
  d = patterns.astype(x.dtype)
  pred = jnp.einsum("np,nd,pd->n", d, x, v - w)
  return 0.5 * jnp.sum((pred - y) ** 2) + beta * (jnp.sum(jnp.linalg.norm(v, axis=1)) +
                                                   jnp.sum(jnp.linalg.norm(w, axis=1)))


def cone_violation(x, patterns, v, w):
  """``max(0, -(2 D_i - I) X v_i)`` and the same for ``w``, maximised over ``i`` and the examples (0 if feasible)."""
  s = 2.0 * patterns.astype(x.dtype) - 1.0
  gv, gw = s * (x @ v.T), s * (x @ w.T)
  return jnp.maximum(jnp.max(jnp.maximum(-gv, 0.0)), jnp.max(jnp.maximum(-gw, 0.0)))


class ADMMResult(NamedTuple):
  """``v, w [P, d]``: the solution (the soft-thresholded copy ``z``, exactly sparse by groups); ``objective``:
  ``[iters]`` the convex objective at every iterate; ``violation``: the final cone violation; ``residual``:
  ``[iters]`` the primal residual ``||u - z|| + ||G u - s||``."""
  v: jax.Array
  w: jax.Array
  objective: jax.Array
  violation: jax.Array
  residual: jax.Array


def admm_solve(x, y, patterns, beta: float = 1e-2, *, rho: float = 0.1, iters: int = 2000,
               constrained: bool = True) -> ADMMResult:
  """Bai et al.'s ADMM for the convex program (see the module docstring); one Cholesky, then matvec iterations."""
  _check_xy(x, y, "admm_solve")
  _check_patterns(x, patterns, "admm_solve")
  if not beta > 0 or not rho > 0:
    raise ValueError(f"admm_solve: beta and rho must be > 0; got beta={beta!r}, rho={rho!r}.")
  if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
    raise ValueError(f"admm_solve: iters must be an integer >= 1; got {iters!r}.")
  return _admm(jnp.asarray(x), jnp.asarray(y), jnp.asarray(patterns), beta, rho, int(iters), bool(constrained))


@functools.partial(jax.jit, static_argnums=(5, 6))
def _admm(x, y, patterns, beta, rho, iters, constrained):
  n, dim = x.shape
  p = patterns.shape[1]
  f, sign = _pack(x, patterns)
  gram = x.T @ x
  # The u-system's matrix F^T F + rho I + rho G^T G, with G^T G = I_2P (x) X^T X; factorised once.
  a = f.T @ f + rho * jnp.eye(2 * p * dim, dtype=x.dtype)
  if constrained:
    a = a + rho * jnp.kron(jnp.eye(2 * p, dtype=x.dtype), gram)
  chol = jsl.cho_factor(a, lower=True)
  fty = f.T @ y
  signs = jnp.concatenate([sign, sign], axis=1)  # [n, 2P]: the same pattern for v_i and w_i

  def g(u):  # [2P, d] -> [n, 2P]: (2 D_i - I) X u_i
    return signs * (x @ u.T)

  def gt(s):  # the adjoint, [n, 2P] -> [2P, d]
    return (signs * s).T @ x

  def group_shrink(a_):
    norms = jnp.linalg.norm(a_, axis=1, keepdims=True)
    return a_ * jnp.maximum(1.0 - (beta / rho) / jnp.maximum(norms, 1e-30), 0.0)

  def body(carry, _):
    z, s, lam, nu = carry
    rhs = fty + rho * (z - lam).reshape(-1)
    if constrained:
      rhs = rhs + rho * gt(s - nu).reshape(-1)
    u = jsl.cho_solve(chol, rhs).reshape(2 * p, dim)
    z = group_shrink(u + lam)
    lam = lam + u - z
    res = jnp.linalg.norm(u - z)
    if constrained:
      gu = g(u)
      s = jnp.maximum(gu + nu, 0.0)
      nu = nu + gu - s
      res = res + jnp.linalg.norm(gu - s)
    obj = convex_objective(x, y, patterns, z[:p], z[p:], beta)
    return (z, s, lam, nu), (obj, res)

  zeros = jnp.zeros((2 * p, dim), x.dtype)
  slack = jnp.zeros((n, 2 * p), x.dtype)
  (z, _, _, _), (objective, residual) = jax.lax.scan(body, (zeros, slack, zeros, slack), None, length=iters)
  v, w = z[:p], z[p:]
  return ADMMResult(v=v, w=w, objective=objective, violation=cone_violation(x, patterns, v, w), residual=residual)


def scp_solve(x, y, patterns, beta: float = 1e-2, *, rho: float = 0.1, iters: int = 2000) -> ADMMResult:
  """The relaxation without the cone constraints (a group lasso over ``D_i X``), solved by the same ADMM."""
  return admm_solve(x, y, patterns, beta, rho=rho, iters=iters, constrained=False)


def recover_network(v, w, *, tol: float = 1e-8):
  """Convex solution ``v, w [P, d]`` -> network ``u [d, m]``, ``alpha [m]`` (one neuron per nonzero group).

  ``u = v_i / sqrt(||v_i||)``, ``alpha = sqrt(||v_i||)`` for the ``v`` groups and ``-sqrt(||w_i||)`` for ``w``, so
  that ``beta/2 (||u||^2 + alpha^2) = beta ||v_i||``: the network's weight decay equals the group norm.
  """
  v, w = np.asarray(v), np.asarray(w)
  if v.ndim != 2 or v.shape != w.shape:
    raise ValueError(f"recover_network: v and w must both have shape [P, d]; got {v.shape} and {w.shape}.")
  us, alphas = [], []
  for groups, sign in ((v, 1.0), (w, -1.0)):
    norms = np.linalg.norm(groups, axis=1)
    keep = norms > tol
    us.append(groups[keep] / np.sqrt(norms[keep])[:, None])
    alphas.append(sign * np.sqrt(norms[keep]))
  return np.concatenate(us).T, np.concatenate(alphas)


def network_objective(x, y, u, alpha, beta):
  """``1/2 ||relu(x u) alpha - y||^2 + beta/2 (||u||_F^2 + ||alpha||^2)`` for ``u [d, m]``, ``alpha [m]``."""
  pred = jax.nn.relu(x @ u) @ alpha
  return 0.5 * jnp.sum((pred - y) ** 2) + 0.5 * beta * (jnp.sum(u ** 2) + jnp.sum(alpha ** 2))


class TwoLayerReLU(nn.Module):
  """``f(x) = relu(x U) alpha`` without biases (the convex program's network). ``x [batch, d] -> [batch]``.

  Attributes:
    width: hidden neurons ``m``.
  """
  width: int = 32

  @nn.compact
  def __call__(self, x):
    check_shape(x, "x", "batch features", where="TwoLayerReLU", dtype="floating")
    u = self.param("u", partitioned(nn.initializers.lecun_normal(), ("embed", "mlp")), (x.shape[-1], self.width),
                   x.dtype)
    alpha = self.param("alpha", partitioned(nn.initializers.normal(1.0 / np.sqrt(self.width)), ("mlp",)),
                       (self.width,), x.dtype)
    return jax.nn.relu(x @ u) @ alpha


# ----------------------------------------------------------------------------------------------------------------
# The adversarially robust counterpart (Bai, Gautam, Sojoudi, Section 5 / "Convex Adversarial Training").


def _check_eps(eps, where):
  if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) or not eps >= 0:
    raise ValueError(f"{where}: eps must be a number >= 0; got {eps!r}.")


def _perturbed_count(x, perturbed, where):
  d = x.shape[1]
  if perturbed is None:
    return d
  if isinstance(perturbed, bool) or not isinstance(perturbed, (int, np.integer)) or not 1 <= perturbed <= d:
    raise ValueError(f"{where}: perturbed must be an integer in [1, {d}] (the leading features in the ball) or None; "
                     f"got {perturbed!r}.")
  return int(perturbed)


def _check_signs(y, where):
  if not np.all(np.isin(np.asarray(y), (-1.0, 1.0))):
    raise ValueError(f"{where}: `y` must hold labels -1 / +1 (the hinge loss).")


def robust_objective(x, y, patterns, v, w, beta, eps, perturbed=None):
  """The robust program's objective: the worst-case hinge loss over ``||delta_k||_inf <= eps`` (patterns fixed)::

      sum_k (1 - y_k sum_i d_ik x_k . (v_i - w_i) + eps || sum_i d_ik (v_i - w_i)[:perturbed] ||_1)_+
        + beta sum_i (||v_i||_2 + ||w_i||_2)

  (``y`` in {-1, +1}; the robust cone constraints are checked by :func:`robust_violation`).
  """
  dp = x.shape[1] if perturbed is None else perturbed
  d = patterns.astype(x.dtype)
  c = d @ (v - w)  # [n, d]: the gradient of the (pattern-fixed) network at each example
  margin = y * jnp.sum(x * c, axis=1) - eps * jnp.sum(jnp.abs(c[:, :dp]), axis=1)
  return jnp.sum(jnp.maximum(1.0 - margin, 0.0)) + beta * (jnp.sum(jnp.linalg.norm(v, axis=1)) +
                                                            jnp.sum(jnp.linalg.norm(w, axis=1)))


def robust_violation(x, patterns, v, w, eps, perturbed=None):
  """``max(0, eps ||v_i[:perturbed]||_1 - (2 D_i - I) X v_i)`` (and ``w``) over ``i`` and the examples: 0 iff every
  pattern holds over the whole ball around every example."""
  dp = x.shape[1] if perturbed is None else perturbed
  s = 2.0 * patterns.astype(x.dtype) - 1.0
  gv = s * (x @ v.T) - eps * jnp.sum(jnp.abs(v[:, :dp]), axis=1)
  gw = s * (x @ w.T) - eps * jnp.sum(jnp.abs(w[:, :dp]), axis=1)
  return jnp.maximum(jnp.max(jnp.maximum(-gv, 0.0)), jnp.max(jnp.maximum(-gw, 0.0)))


class RobustSystem(NamedTuple):
  """The robust ADMM's fixed data: ``chol`` the Cholesky factor of ``A^T A`` (factorised once), the example arrays,
  and the static sizes. Built by :func:`robust_admm_system`; iterated by :func:`robust_admm_iterate`."""
  chol: jax.Array
  x: jax.Array
  y: jax.Array
  patterns: jax.Array
  eps: jax.Array


def _robust_sizes(x, patterns, dp):
  n, d = x.shape
  p2 = 2 * patterns.shape[1]
  return n, d, p2, dp


def _robust_ops(x, y, patterns, eps, dp):
  """The linear map ``A``: ``theta = (u [2P, d], t [2P, dp], tau [n, dp])`` -> ``(u, g, m)`` with

  * ``u``: the copy that carries the group norms;
  * ``g >= 0``: the robust cone constraints written linearly with the epigraph ``t >= |u|`` of the dual norm,
    ``S_ki x_k . u_i - eps sum_l t_il``, ``t - u``, ``t + u``, and ``tau >= |c|`` of the loss's dual norm,
    ``tau - c``, ``tau + c`` (``c_k = sum_i d_ik (v_i - w_i)[:dp]``);
  * ``m``: the worst-case margins ``y_k (sum_i d_ik x_k . (v_i - w_i)) - eps sum_l tau_kl`` (the hinge's argument).
  """
  n, d, p2, _ = _robust_sizes(x, patterns, dp)
  dm = patterns.astype(x.dtype)
  sign = 2.0 * dm - 1.0
  signs = jnp.concatenate([sign, sign], axis=1)  # [n, 2P]
  nu, nt = p2 * d, p2 * dp

  def split(theta):
    return theta[:nu].reshape(p2, d), theta[nu:nu + nt].reshape(p2, dp), theta[nu + nt:].reshape(n, dp)

  def apply(theta):
    u, t, tau = split(theta)
    c = dm @ (u[:p2 // 2] - u[p2 // 2:])  # [n, d]
    cone = signs * (x @ u.T) - eps * jnp.sum(t, axis=1)  # [n, 2P]
    g = jnp.concatenate([cone.reshape(-1), (t - u[:, :dp]).reshape(-1), (t + u[:, :dp]).reshape(-1),
                         (tau - c[:, :dp]).reshape(-1), (tau + c[:, :dp]).reshape(-1)])
    m = y * jnp.sum(x * c, axis=1) - eps * jnp.sum(tau, axis=1)
    return u.reshape(-1), g, m

  size = nu + nt + n * dp
  return apply, split, size


def robust_admm_system(x, y, patterns, eps, *, perturbed=None) -> RobustSystem:
  """Factorise the robust ADMM's ``theta``-system ``A^T A`` once (``A`` of :func:`_robust_ops`; ``rho`` cancels)."""
  dp = x.shape[1] if perturbed is None else perturbed
  return _robust_system(jnp.asarray(x), jnp.asarray(y), jnp.asarray(patterns), jnp.asarray(eps, x.dtype), dp)


@functools.partial(jax.jit, static_argnums=(4,))
def _robust_system(x, y, patterns, eps, dp):
  apply, _, size = _robust_ops(x, y, patterns, eps, dp)
  zero = jnp.zeros(size, x.dtype)
  adjoint = jax.linear_transpose(apply, zero)
  gram = jax.lax.map(lambda e: adjoint(apply(e))[0], jnp.eye(size, dtype=x.dtype), batch_size=64)
  return RobustSystem(chol=jnp.linalg.cholesky(gram), x=x, y=y, patterns=patterns, eps=eps)


def robust_admm_init(system: RobustSystem, perturbed=None):
  """The zero ADMM carry ``(z, s, m, lam_u, lam_g, lam_m)`` for :func:`robust_admm_iterate`."""
  x, patterns = system.x, system.patterns
  dp = x.shape[1] if perturbed is None else perturbed
  apply, _, size = _robust_ops(x, system.y, patterns, system.eps, dp)
  u, g, m = apply(jnp.zeros(size, x.dtype))
  zu, zg, zm = jnp.zeros_like(u), jnp.zeros_like(g), jnp.zeros_like(m)
  return (zu, zg, zm, zu, zg, zm)


def robust_admm_iterate(system: RobustSystem, carry, beta, rho, iters: int, perturbed=None):
  """``iters`` ADMM iterations on the robust program -> ``(carry, residuals [iters])``.

  Scaled ADMM on ``min beta sum ||z_i|| + 1[s >= 0] + sum_k (1 - m_k)_+  s.t.  A theta = (z, s, m)``: the
  ``theta``-step is two triangular solves with the factor of ``A^T A`` (fixed), the ``z``-step group
  soft-thresholding, the ``s``-step the projection on ``s >= 0``, the ``m``-step the hinge's proximal map; then the
  dual steps. Matrix-vector products only, as the standard program's ADMM.
  """
  x, patterns = system.x, system.patterns
  dp = x.shape[1] if perturbed is None else perturbed
  apply, _, size = _robust_ops(x, system.y, patterns, system.eps, dp)
  adjoint = jax.linear_transpose(apply, jnp.zeros(size, x.dtype))
  p2, d = 2 * patterns.shape[1], x.shape[1]

  def body(c, _):
    z, s, m, lu, lg, lm = c
    rhs = adjoint((z - lu, s - lg, m - lm))[0]
    theta = jsl.cho_solve((system.chol, True), rhs)
    au, ag, am = apply(theta)
    a = (au + lu).reshape(p2, d)
    norms = jnp.linalg.norm(a, axis=1, keepdims=True)
    z = (a * jnp.maximum(1.0 - (beta / rho) / jnp.maximum(norms, 1e-30), 0.0)).reshape(-1)
    s = jnp.maximum(ag + lg, 0.0)
    b = am + lm  # prox of (1 - m)_+ / rho
    m = jnp.where(b >= 1.0, b, jnp.where(b <= 1.0 - 1.0 / rho, b + 1.0 / rho, 1.0))
    lu, lg, lm = lu + au - z, lg + ag - s, lm + am - m
    res = jnp.linalg.norm(au - z) + jnp.linalg.norm(ag - s) + jnp.linalg.norm(am - m)
    return (z, s, m, lu, lg, lm), res

  return jax.lax.scan(body, carry, None, length=iters)


def robust_admm_solve(x, y, patterns, beta: float = 1e-2, eps: float = 0.1, *, rho: float = 1.0,
                      iters: int = 2000, perturbed: int | None = None) -> ADMMResult:
  """ADMM for the adversarially robust convex program (hinge loss, ``l_inf`` ball of radius ``eps``).

  The program (Bai et al.'s robust counterpart: every worst case over the ball written with the dual norm
  ``||.||_1`` of the weights restricted to the ``perturbed`` leading features, e.g. not a constant bias feature)::

      min_{v, w}  sum_k (1 - y_k sum_i d_ik x_k . (v_i - w_i) + eps ||sum_i d_ik (v_i - w_i)||_1)_+
                  + beta sum_i (||v_i||_2 + ||w_i||_2)
      s.t.        (2 D_i - I) X v_i >= eps ||v_i||_1,  (2 D_i - I) X w_i >= eps ||w_i||_1

  The constraints keep each pattern over the whole ball, so there the network is linear and the first term is the
  exact worst-case hinge loss of the recovered network (:func:`recover_network`): an upper bound on its adversarial
  loss. ``eps = 0`` is the standard convex program with the hinge loss. Returns :class:`ADMMResult` with
  ``objective`` = :func:`robust_objective` per iteration and ``violation`` = :func:`robust_violation`.
  """
  _check_xy(x, y, "robust_admm_solve")
  _check_patterns(x, patterns, "robust_admm_solve")
  _check_eps(eps, "robust_admm_solve")
  _check_signs(y, "robust_admm_solve")
  if not beta > 0 or not rho > 0:
    raise ValueError(f"robust_admm_solve: beta and rho must be > 0; got beta={beta!r}, rho={rho!r}.")
  if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
    raise ValueError(f"robust_admm_solve: iters must be an integer >= 1; got {iters!r}.")
  dp = _perturbed_count(x, perturbed, "robust_admm_solve")
  x, y, patterns = jnp.asarray(x), jnp.asarray(y), jnp.asarray(patterns)
  return _robust_solve(x, y, patterns, float(eps), float(beta), float(rho), int(iters), dp)


@functools.partial(jax.jit, static_argnums=(6, 7))
def _robust_solve(x, y, patterns, eps, beta, rho, iters, dp):
  system = _robust_system(x, y, patterns, jnp.asarray(eps, x.dtype), dp)
  p, d = patterns.shape[1], x.shape[1]

  def body(c, _):
    c, res = robust_admm_iterate(system, c, beta, rho, 1, dp)
    z = c[0].reshape(2 * p, d)
    return c, (robust_objective(x, y, patterns, z[:p], z[p:], beta, eps, dp), res[0])

  carry, (objective, residual) = jax.lax.scan(body, robust_admm_init(system, dp), None, length=iters)
  z = carry[0].reshape(2 * p, d)
  v, w = z[:p], z[p:]
  return ADMMResult(v=v, w=w, objective=objective, violation=robust_violation(x, patterns, v, w, eps, dp),
                    residual=residual)
