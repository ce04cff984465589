"""Multitasking Hebbian networks learning from examples: diluted patterns, hierarchical and parallel retrieval.

Paper: "Parallel Learning by Multitasking Neural Networks" (Agliari, Alessandrelli, Barra, Ricci-Tersenghi, J. Stat.
Mech. 2023, arXiv 2308.04106). ``K`` ground-truth patterns ``xi^mu in {-1, 0, +1}^N`` are *diluted*: each entry is
blank (0) with probability ``d`` and ``+-1`` otherwise. The network never sees them, only ``M`` noisy examples per
pattern, ``eta^{mu,a} = chi^{mu,a} xi^mu`` with ``P(chi_i = +1) = (1 + r)/2`` (``r`` the dataset quality). Hebbian
couplings are built from the examples, with or without a teacher:

  unsupervised ``J = 1/(N M) sum_{mu, a} eta^{mu,a} eta^{mu,a}^T``,
  supervised   ``J = 1/N sum_mu etabar^mu etabar^mu^T``,  ``etabar^mu = 1/M sum_a eta^{mu,a}`` (the class means),

with ``J_ii = 0``, and the neurons ``sigma in {-1, +1}^N`` follow ``sigma_i <- sign(sum_j J_ij sigma_j)``
(asynchronous, zero temperature) or Glauber's heat bath at inverse temperature ``beta``. The readout is the Mattis
magnetisation ``m_mu = xi^mu . sigma / N``. Because a blank entry of one pattern leaves its neuron free to serve
another, the network retrieves several patterns at once: at low storage and moderate dilution in the *hierarchical*
state ``m_k = (1 - d) d^{k-1}``, which by signal-to-noise is stable for ``K = 3`` only while ``m_1 > m_2 + m_3``,
i.e. ``d < (sqrt(5) - 1)/2 ~ 0.618``; beyond it the signals equalise (the *parallel* regime). Supervised and
unsupervised couplings give the same states (the paper's protocol independence, at large ``M``).

Public names (jit-able, vmap-able jax functions; patterns and states are float32 arrays of -1/0/+1 values):

* :func:`diluted_patterns` ``(key, num_patterns, num_neurons, dilution, *, dilute=True)`` -> ``xi [K, N]``;
  ``dilute=False`` keeps the same signs but fills every blank with a random sign (the same patterns made dense, the
  ablation: a classical Hopfield network).
* :func:`noisy_examples` ``(key, patterns [K, N], num_examples, quality)`` -> ``eta [K, M, N]``.
* :func:`hebbian_couplings` ``(examples [K, M, N], mode='unsupervised' | 'supervised')`` -> ``J [N, N]``.
* :func:`zero_t_dynamics` ``(J, sigma [N], key, *, sweeps=10, asynchronous=True)`` -> ``sigma [N]`` (a zero field
  keeps the neuron's state; asynchronous sweeps visit the neurons in a fresh random order each time).
* :func:`glauber_dynamics` ``(J, sigma, key, *, beta, sweeps=10)`` -> ``sigma``: asynchronous heat bath,
  ``P(sigma_i = +1) = 1 / (1 + exp(-2 beta h_i))``.
* :func:`mattis` ``(patterns [K, N], sigma [..., N])`` -> ``m [..., K]``.
* :func:`hierarchical_magnetisations` ``(dilution, num_patterns)`` -> the theory ``(1 - d) d^{k-1}``, ``k = 1..K``.
* :func:`near_pattern_state` ``(key, pattern [N])`` -> ``sigma``: the pattern's signs, a random sign on its blanks.
* :class:`HebbianNetwork` ``(num_neurons, sweeps=10)``: the network as a Linen module for the trainer; its
  ``'params'`` hold the couplings ``J [N, N]`` (zeros at init; ``zoo.recipes.procedures.hebbian`` sets them from
  examples, no gradients); call ``sigma: [batch, N]`` (+-1 floats) -> the states after ``sweeps`` asynchronous
  zero-temperature sweeps ``[batch, N]`` (neuron order from the ``'noise'`` rng when given).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers import check_shape, param_shape, partitioned

__all__ = ["HebbianNetwork", "diluted_patterns", "glauber_dynamics", "hebbian_couplings", "hierarchical_magnetisations",
           "mattis", "near_pattern_state", "noisy_examples", "zero_t_dynamics"]

MODES = ("unsupervised", "supervised")


def _check_prob(value, name, where, *, closed=True):
  if isinstance(value, jax.core.Tracer):
    return
  ok = np.isfinite(value) and (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0)
  if not ok:
    raise ValueError(f"{where}: `{name}` must be a probability in [0, 1{']' if closed else ')'}; got {value!r}.")


def _check_count(value, name, where):
  if not (isinstance(value, (int, np.integer)) and value >= 1):
    raise ValueError(f"{where}: `{name}` must be an integer >= 1; got {value!r}.")


def _random_signs(key, shape):
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("shape", "dilute"))
def _patterns(key, dilution, shape, dilute):
  sign_key, blank_key = jax.random.split(key)
  signs = _random_signs(sign_key, shape)
  if not dilute:
    return signs
  return jnp.where(jax.random.bernoulli(blank_key, dilution, signs.shape), 0.0, signs)


def diluted_patterns(key, num_patterns: int, num_neurons: int, dilution, *, dilute: bool = True) -> jax.Array:
  """``xi [K, N]``: each entry 0 with probability ``dilution``, else +-1 with equal odds."""
  where = "diluted_patterns"
  _check_count(num_patterns, "num_patterns", where)
  _check_count(num_neurons, "num_neurons", where)
  _check_prob(dilution, "dilution", where, closed=False)
  return _patterns(key, dilution, (num_patterns, num_neurons), bool(dilute))


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _examples(key, patterns, quality, num_examples):
  k, n = patterns.shape
  chi = jnp.where(jax.random.bernoulli(key, (1.0 + quality) / 2.0, (k, num_examples, n)), 1.0, -1.0)
  return chi.astype(patterns.dtype) * patterns[:, None, :]


def noisy_examples(key, patterns, num_examples: int, quality) -> jax.Array:
  """``eta [K, M, N] = chi * xi`` with independent ``chi = +1`` w.p. ``(1 + r)/2``, else -1."""
  where = "noisy_examples"
  check_shape(patterns, "patterns", "patterns neurons", where=where, dtype="floating")
  _check_count(num_examples, "num_examples", where)
  _check_prob(quality, "quality", where)
  return _examples(key, patterns, quality, num_examples)


@functools.partial(jax.jit, static_argnames=("mode",))
def _couplings(examples, mode):
  k, m, n = examples.shape
  if mode == "unsupervised":
    flat = examples.reshape(k * m, n)
    j = flat.T @ flat / (n * m)
  else:
    means = examples.mean(axis=1)  # the teacher groups the examples by pattern
    j = means.T @ means / n
  return j * (1.0 - jnp.eye(n, dtype=j.dtype))


def hebbian_couplings(examples, mode: str = "unsupervised") -> jax.Array:
  """The Hebbian coupling matrix ``J [N, N]`` (zero diagonal) of the examples, without or with a teacher."""
  where = "hebbian_couplings"
  check_shape(examples, "examples", "patterns examples neurons", where=where, dtype="floating")
  if mode not in MODES:
    raise ValueError(f"{where}: `mode` must be one of {MODES}; got {mode!r}.")
  return _couplings(examples, mode)


def _check_state(j, sigma, where):
  check_shape(j, "J", "neurons neurons2", where=where, dtype="floating")
  if j.shape[0] != j.shape[1]:
    raise ValueError(f"{where}: `J` must be square [N, N]; got shape {tuple(j.shape)}.")
  check_shape(sigma, "sigma", "neurons", where=where, dtype="floating", neurons=j.shape[0])


@functools.partial(jax.jit, static_argnames=("sweeps", "asynchronous"))
def _zero_t(j, sigma, key, sweeps, asynchronous):
  n = sigma.shape[0]

  def flip(s, h):
    return jnp.where(h > 0, 1.0, jnp.where(h < 0, -1.0, s)).astype(s.dtype)

  if not asynchronous:
    return jax.lax.fori_loop(0, sweeps, lambda _, s: flip(s, j @ s), sigma)

  def sweep(t, s):
    order = jax.random.permutation(jax.random.fold_in(key, t), n)
    return jax.lax.fori_loop(0, n, lambda u, s: s.at[order[u]].set(flip(s[order[u]], j[order[u]] @ s)), s)
  return jax.lax.fori_loop(0, sweeps, sweep, sigma)


def zero_t_dynamics(j, sigma, key, *, sweeps: int = 10, asynchronous: bool = True) -> jax.Array:
  """``sweeps`` rounds of ``sigma_i <- sign(h_i)``, ``h = J sigma`` (a zero field keeps ``sigma_i``)."""
  _check_state(j, sigma, "zero_t_dynamics")
  _check_count(sweeps, "sweeps", "zero_t_dynamics")
  return _zero_t(j, sigma, key, sweeps, bool(asynchronous))


@functools.partial(jax.jit, static_argnames=("sweeps",))
def _glauber(j, sigma, key, beta, sweeps):
  n = sigma.shape[0]

  def sweep(t, s):
    k_order, k_noise = jax.random.split(jax.random.fold_in(key, t))
    order = jax.random.permutation(k_order, n)
    noise = jax.random.uniform(k_noise, (n,))

    def update(u, s):
      i = order[u]
      p_up = jax.nn.sigmoid(2.0 * beta * (j[i] @ s))
      return s.at[i].set(jnp.where(noise[u] < p_up, 1.0, -1.0).astype(s.dtype))
    return jax.lax.fori_loop(0, n, update, s)
  return jax.lax.fori_loop(0, sweeps, sweep, sigma)


def glauber_dynamics(j, sigma, key, *, beta, sweeps: int = 10) -> jax.Array:
  """Asynchronous heat-bath sweeps at inverse temperature ``beta``: ``P(sigma_i = +1) = sigmoid(2 beta h_i)``."""
  _check_state(j, sigma, "glauber_dynamics")
  _check_count(sweeps, "sweeps", "glauber_dynamics")
  if not isinstance(beta, jax.core.Tracer) and not (np.isfinite(beta) and beta >= 0):
    raise ValueError(f"glauber_dynamics: `beta` must be a finite number >= 0; got {beta!r}.")
  return _glauber(j, sigma, key, jnp.asarray(beta, jnp.float32), sweeps)


def mattis(patterns, sigma) -> jax.Array:
  """Mattis magnetisations ``m_mu = xi^mu . sigma / N``: ``[..., K]``."""
  check_shape(patterns, "patterns", "patterns neurons", where="mattis", dtype="floating")
  check_shape(sigma, "sigma", "... neurons", where="mattis", dtype="floating", neurons=patterns.shape[1])
  return sigma @ patterns.T / patterns.shape[1]


def hierarchical_magnetisations(dilution, num_patterns: int) -> np.ndarray:
  """The hierarchical state's ``m_k = (1 - d) d^{k-1}``, ``k = 1..K`` (float64 numpy)."""
  _check_prob(dilution, "dilution", "hierarchical_magnetisations", closed=False)
  _check_count(num_patterns, "num_patterns", "hierarchical_magnetisations")
  return (1.0 - dilution) * dilution ** np.arange(num_patterns, dtype=np.float64)


def near_pattern_state(key, pattern) -> jax.Array:
  """``sigma [N]``: the pattern's signs where it is not blank, a random sign where it is."""
  check_shape(pattern, "pattern", "neurons", where="near_pattern_state", dtype="floating")
  return _near(key, pattern)


@jax.jit
def _near(key, pattern):
  return jnp.where(pattern != 0, jnp.sign(pattern), _random_signs(key, pattern.shape))


class HebbianNetwork(nn.Module):
  """The multitasking network: couplings ``J [N, N]`` in ``'params'``, zero-temperature dynamics as its call.

  Attributes:
    num_neurons: ``N``.
    sweeps: asynchronous sweeps per call.
  Call: ``sigma: [batch, N]`` float (+-1) -> ``[batch, N]``.
  """
  num_neurons: int
  sweeps: int = 10

  @nn.compact
  def __call__(self, sigma):
    stored = param_shape(self, "couplings")
    check_shape(sigma, "sigma", "batch neurons", where="HebbianNetwork", dtype="floating",
                neurons=stored[0] if stored else self.num_neurons)
    j = self.param("couplings", partitioned(nn.initializers.zeros, (None, None)),
                   (self.num_neurons, self.num_neurons), jnp.float32)
    key = self.make_rng("noise") if self.has_rng("noise") else jax.random.key(0)
    keys = jax.random.split(key, sigma.shape[0])
    return jax.vmap(lambda s, k: zero_t_dynamics(j, s, k, sweeps=self.sweeps))(sigma.astype(jnp.float32), keys)
