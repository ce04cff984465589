"""PDE solution operators as datasets, generated offline with scipy (sparse direct solves), deterministic by seed.

The benchmark problems of neural-operator papers (FNO, Li et al. 2021, arXiv:2010.08895; MgNO, He, Liu and Xu 2024,
arXiv:2310.19809), solved on the fly with second-order finite differences and ``scipy.sparse.linalg`` on the unit
square. Each dataset maps an input field ``x`` to the solution ``y`` on the same grid, both
``[n, n, channels]`` float32, and is registered with ``zoo.recipes.data.register`` (prepared once as TFDS
array_record in the cache, then read back through TFDS).

* ``darcy``: ``-div(a grad u) = 1`` in (0, 1)^2, ``u = 0`` on the boundary. The coefficient is piecewise constant,
  ``a = 12`` where a Gaussian random field ``psi ~ N(0, (-Laplacian + tau^2)^(-alpha))`` (Neumann cosine basis,
  ``alpha = 2``, ``tau = 3``, FNO's setting) is >= 0 and ``a = 3`` elsewhere. Five-point scheme on the
  ``n x n`` interior nodes (``h = 1/(n+1)``), arithmetic means of ``a`` on the cell faces. ``x = (a - 7.5) / 4.5``
  (so +-1), ``y = u / y_scale``.
* ``poisson``: ``-Laplacian u = f`` with ``f`` a Gaussian random field. ``boundary='dirichlet'``: ``u = 0`` on the
  boundary, ``n x n`` interior nodes (``h = 1/(n+1)``), ``f`` in the sine basis. ``boundary='periodic'``: the
  periodic unit square, ``n x n`` nodes (``h = 1/n``), ``f`` and ``u`` with zero mean (the bordered system
  ``[[L, 1], [1^T, 0]]`` is solved directly). ``x = f / x_scale``, ``y = u / y_scale``.
* ``helmholtz``: ``-Laplacian u - (omega / c(x))^2 u = 0`` in (0, 1)^2 with a zero normal derivative on three
  sides and a boundary source ``du/dn = 1`` on the middle third of the top side (the Helmholtz benchmark of de
  Hoop et al. 2022 used by MgNO, at a lower frequency): ``c = 20 + tanh(psi)`` with ``psi`` a Gaussian random
  field, ``n x n`` nodes including the boundary (``h = 1/(n-1)``, ghost-node Neumann conditions). ``x = c - 20``,
  ``y = u / y_scale``.

``y_scale`` and ``x_scale`` (the training split's RMS) are in the dataset's metadata; relative L2 errors do not
depend on them. :class:`RelativeL2` is the operator-learning task (config ``task.name = 'datasets.pde.RelativeL2'``):
the mean relative L2 error ``|pred - y| / |y|`` per example as the loss (MgNO's and FNO's training loss).

The sizes are small by default so that generation takes seconds (64 x 64 Darcy: about 300 samples per second on
one core).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from zoo.recipes import data, tasks

__all__ = ["RelativeL2", "darcy", "darcy_coefficient", "gaussian_random_field", "helmholtz", "poisson", "solve_darcy"]


@dataclasses.dataclass(frozen=True)
class RelativeL2(tasks.Regression):
  """Regression whose loss is the relative L2 error ``|pred - y| / |y|`` per example; metrics as ``Regression``."""

  def loss(self, outputs, batch):
    y = tasks._flat(tasks._get(batch, self.target_key, "RelativeL2"))  # pylint: disable=protected-access
    err = tasks._flat(outputs) - y  # pylint: disable=protected-access
    return jnp.linalg.norm(err, axis=-1) / jnp.maximum(jnp.linalg.norm(y, axis=-1), 1e-12)


def gaussian_random_field(rng: np.random.Generator, n: int, count: int, *, alpha: float = 2.0, tau: float = 3.0,
                          basis: str = "cosine", modes: int | None = None, nodes: np.ndarray | None = None):
  """Samples of ``N(0, (-Laplacian + tau^2)^(-alpha))`` on the unit square, ``[count, n, n]``.

  Args:
    basis: ``'cosine'`` (Neumann eigenfunctions ``cos(pi k x)``), ``'sine'`` (Dirichlet, ``sin(pi k x)``) or
      ``'fourier'`` (periodic, ``cos/sin(2 pi k x)``).
    modes: eigenfunctions per axis (default ``n``).
    nodes: the 1D grid coordinates (default: ``n`` interior nodes ``(i + 1) / (n + 1)``; periodic: ``i / n``).
  """
  modes = modes or n
  if nodes is None:
    nodes = np.arange(n) / n if basis == "fourier" else (np.arange(n) + 1) / (n + 1)
  k = np.arange(modes)
  if basis == "cosine":
    phi, freq = np.cos(np.pi * np.outer(nodes, k)), np.pi * k
  elif basis == "sine":
    phi, freq = np.sin(np.pi * np.outer(nodes, k + 1)), np.pi * (k + 1)
  elif basis == "fourier":
    j = k // 2 + (k % 2)  # 0, 1, 1, 2, 2, ...: a constant, then cos/sin pairs
    phi = np.where(k % 2 == 0, np.cos(2 * np.pi * np.outer(nodes, j)), np.sin(2 * np.pi * np.outer(nodes, j)))
    freq = 2 * np.pi * j
  else:
    raise ValueError(f"gaussian_random_field: `basis` must be 'cosine', 'sine' or 'fourier'; got {basis!r}.")
  lam = (freq[:, None] ** 2 + freq[None, :] ** 2 + tau ** 2) ** (-alpha / 2)  # sqrt of the covariance eigenvalues
  xi = rng.standard_normal((count, modes, modes)) * lam
  return np.einsum("ik,ckl,jl->cij", phi, xi, phi) * tau ** (alpha - 1)  # rescaled so the field is O(1)


def darcy_coefficient(rng: np.random.Generator, n: int, count: int, *, high: float = 12.0, low: float = 3.0):
  """FNO's piecewise-constant Darcy coefficients on the ``(n + 2)^2`` nodes (boundary included): ``[count, n+2, n+2]``.
  """
  nodes = np.arange(n + 2) / (n + 1)
  psi = gaussian_random_field(rng, n + 2, count, basis="cosine", nodes=nodes)
  return np.where(psi >= 0, high, low)


def _laplacian_1d(n: int, periodic: bool = False):
  main = 2.0 * np.ones(n)
  off = -np.ones(n - 1)
  m = sp.diags([off, main, off], [-1, 0, 1], format="lil")
  if periodic:
    m[0, n - 1] = m[n - 1, 0] = -1.0
  return m.tocsr()


def solve_darcy(a: np.ndarray, forcing: float = 1.0) -> np.ndarray:
  """Solves ``-div(a grad u) = forcing``, ``u = 0`` on the boundary, for ``a`` on the ``(n+2)^2`` nodes.

  Returns ``u`` on the ``n x n`` interior nodes (five-point scheme, face coefficients = arithmetic means).
  """
  m = a.shape[0]
  n = m - 2
  h = 1.0 / (n + 1)
  ax = 0.5 * (a[1:, 1:-1] + a[:-1, 1:-1])  # faces between rows i and i+1 (interior columns): [n+1, n]
  ay = 0.5 * (a[1:-1, 1:] + a[1:-1, :-1])  # faces between columns j and j+1: [n, n+1]
  idx = np.arange(n * n).reshape(n, n)
  diag = (ax[:-1] + ax[1:] + ay[:, :-1] + ay[:, 1:]).ravel()
  rows, cols, vals = [idx.ravel()], [idx.ravel()], [diag]
  rows += [idx[1:].ravel(), idx[:-1].ravel()]
  cols += [idx[:-1].ravel(), idx[1:].ravel()]
  vals += [-ax[1:-1].ravel()] * 2
  rows += [idx[:, 1:].ravel(), idx[:, :-1].ravel()]
  cols += [idx[:, :-1].ravel(), idx[:, 1:].ravel()]
  vals += [-ay[:, 1:-1].ravel()] * 2
  mat = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))
  u = spla.spsolve(mat, np.full(n * n, forcing * h * h))
  return u.reshape(n, n)


def _splits(x, y, num_train: int, y_scale=None, x_scale=None, extra_meta=None) -> data.Generated:
  y_scale = float(np.sqrt(np.mean(y[:num_train] ** 2))) if y_scale is None else y_scale
  meta = {"y_scale": y_scale, **(extra_meta or {})}
  if x_scale is not None:
    meta["x_scale"] = x_scale
  x = x.astype(np.float32)[..., None]
  y = (y / y_scale).astype(np.float32)[..., None]
  return data.Generated({"train": {"x": x[:num_train], "y": y[:num_train]},
                         "test": {"x": x[num_train:], "y": y[num_train:]}}, metadata=meta)


def _check_sizes(where, n, num_train, num_test, minimum=4):
  if n < minimum or num_train < 1 or num_test < 1:
    raise ValueError(f"{where}: need resolution >= {minimum} and num_train, num_test >= 1; got resolution={n}, "
                     f"num_train={num_train}, num_test={num_test}.")


@data.register("darcy", version="1.0.0")
def darcy(resolution: int = 32, num_train: int = 400, num_test: int = 100, seed: int = 0) -> data.Generated:
  """2D Darcy flow (FNO's piecewise-constant coefficients): ``x`` = (a - 7.5) / 4.5, ``y`` = u / y_scale, [n, n, 1]."""
  _check_sizes("darcy", resolution, num_train, num_test)
  rng = np.random.default_rng(seed)
  total = num_train + num_test
  a = darcy_coefficient(rng, resolution, total)
  u = np.stack([solve_darcy(ai) for ai in a])
  x = (a[:, 1:-1, 1:-1] - 7.5) / 4.5
  return _splits(x, u, num_train, extra_meta={"equation": "-div(a grad u) = 1, u = 0 on the boundary",
                                              "a": "12 where GRF >= 0, else 3", "grid": "interior nodes"})


@data.register("poisson", version="1.0.0")
def poisson(resolution: int = 32, boundary: str = "dirichlet", num_train: int = 400, num_test: int = 100,
            seed: int = 0, alpha: float = 2.0, tau: float = 3.0) -> data.Generated:
  """2D Poisson ``-Laplacian u = f`` with GRF sources: ``x`` = f / x_scale, ``y`` = u / y_scale, [n, n, 1]."""
  _check_sizes("poisson", resolution, num_train, num_test)
  if boundary not in ("dirichlet", "periodic"):
    raise ValueError(f"poisson: `boundary` must be 'dirichlet' or 'periodic'; got {boundary!r}.")
  rng = np.random.default_rng(seed)
  n, total = resolution, num_train + num_test
  periodic = boundary == "periodic"
  f = gaussian_random_field(rng, n, total, alpha=alpha, tau=tau, basis="fourier" if periodic else "sine")
  h = 1.0 / n if periodic else 1.0 / (n + 1)
  lap = _laplacian_1d(n, periodic)
  eye = sp.identity(n, format="csr")
  mat = (sp.kron(lap, eye) + sp.kron(eye, lap)) / h ** 2
  rhs = f.reshape(total, -1).T
  if periodic:
    rhs = rhs - rhs.mean(0, keepdims=True)  # solvable: zero-mean sources
    ones = np.ones((n * n, 1))
    mat = sp.bmat([[mat, sp.csr_matrix(ones)], [sp.csr_matrix(ones.T), None]])  # pins the mean of u to zero
    rhs = np.vstack([rhs, np.zeros((1, total))])
  u = spla.splu(sp.csc_matrix(mat)).solve(rhs)[:n * n].T.reshape(total, n, n)
  f = rhs[:n * n].T.reshape(total, n, n)
  x_scale = float(np.sqrt(np.mean(f[:num_train] ** 2)))
  return _splits(f / x_scale, u, num_train, x_scale=x_scale,
                 extra_meta={"equation": "-Laplacian u = f", "boundary": boundary,
                             "grid": "periodic nodes" if periodic else "interior nodes"})


@data.register("helmholtz", version="1.0.0")
def helmholtz(resolution: int = 33, omega: float = 60.0, num_train: int = 400, num_test: int = 100,
              seed: int = 0) -> data.Generated:
  """2D Helmholtz with a variable wave speed and Neumann boundaries: ``x`` = c - 20, ``y`` = u / y_scale, [n, n, 1]."""
  _check_sizes("helmholtz", resolution, num_train, num_test)
  rng = np.random.default_rng(seed)
  n, total = resolution, num_train + num_test
  h = 1.0 / (n - 1)
  nodes = np.arange(n) * h
  c = 20.0 + np.tanh(gaussian_random_field(rng, n, total, basis="cosine", nodes=nodes))
  # -Laplacian with ghost-node Neumann conditions: the boundary rows double the inward neighbour.
  lap = _laplacian_1d(n).tolil()
  lap[0, 1] = lap[n - 1, n - 2] = -2.0
  lap = lap.tocsr() / h ** 2
  eye = sp.identity(n, format="csr")
  lap2 = sp.kron(lap, eye) + sp.kron(eye, lap)
  source = np.zeros((n, n))
  top = (nodes >= 1 / 3) & (nodes <= 2 / 3)
  source[0, top] = 2.0 / h  # du/dn = 1 on the top side, through its ghost node
  u = np.empty((total, n, n))
  for s in range(total):
    k2 = (omega / c[s]) ** 2
    u[s] = spla.spsolve(sp.csc_matrix(lap2 - sp.diags(k2.ravel())), source.ravel()).reshape(n, n)
  return _splits(c - 20.0, u, num_train, extra_meta={"equation": "-Laplacian u - (omega/c)^2 u = 0, Neumann",
                                                     "omega": omega, "grid": "nodes including the boundary"})
