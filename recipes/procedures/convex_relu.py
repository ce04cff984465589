"""Convex training of a two-layer ReLU net through the one loop: Bai et al.'s ADMM as a procedure.

Paper: "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial
Training" (Bai, Gautam, Sojoudi, 2022, arXiv 2201.01965). The solver lives in ``zoo.convex_nn`` (see it for the
program); :class:`ConvexReLU` runs it through ``zoo.recipes.train``'s loop so the CLI, checkpoints, resume and
metrics work as for any procedure:

* ``init(rng, batch)``: draws ``num_patterns`` directions ``h ~ N(0, I)`` (the sampled patterns
  ``D_i = 1[X h_i >= 0]``) and Cholesky-factorises the ADMM system once, from the batch, which must be the whole
  training set, in a fixed order (``data.batch_size = n`` and ``data.sampler.name = 'sequential'``);
* ``step(state, batch)``: ``iters_per_step`` ADMM iterations (matrix-vector products and triangular solves only);
  metrics: the convex objective, the cone-constraint violation, the primal residual;
* ``variables(state)``: the recovered network as ``zoo.convex_nn.TwoLayerReLU(width=2 * num_patterns)`` parameters
  (``u = z / sqrt(||z||)``, ``alpha = +-sqrt(||z||)``; groups the group lasso zeroed are zero neurons), so
  ``evaluate`` and exports use the model as any other.

``constrained=False`` drops the cone constraints (the relaxation; the ablation of the paper's mechanism). The
optimizer the trainer builds is unused: ADMM is the optimiser.

:class:`RobustConvexReLU`: the adversarially robust counterpart (the paper's Section 5; the program and its ADMM in
``zoo.convex_nn.robust_admm_solve``) through the same loop; ``eps=0`` is its ablation; its ``evaluate`` reports
the accuracy under ``zoo.attacks.pgd_linf``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from zoo import attacks
from zoo import convex_nn
from zoo.recipes.procedures import backprop

__all__ = ["ConvexReLU", "ConvexState", "RobustConvexReLU", "RobustConvexState"]


class ConvexState(flax.struct.PyTreeNode):
  """``h [d, P]`` directions; ``chol`` the factor of the u-system; ``z, lam [2P, d]``; ``s, nu [n, 2P]``."""
  step: jax.Array
  h: jax.Array
  chol: jax.Array
  z: jax.Array
  lam: jax.Array
  s: jax.Array
  nu: jax.Array



def _inputs_and_targets(task, batch, where: str):
  """The task's inputs ``x [n, features]`` float32 and targets ``y [n]`` float32 of a whole-set batch."""
  x = task.inputs(batch).astype(jnp.float32)
  y = batch[task.target_key].astype(jnp.float32).reshape(x.shape[0])
  convex_nn.check_shape(x, "x", "batch features", where=where, dtype="floating")
  return x, y

@dataclasses.dataclass(frozen=True)
class ConvexReLU:
  """ADMM on the sampled convex program of a two-layer ReLU net (see the module docstring).

  Attributes:
    model: a ``zoo.convex_nn.TwoLayerReLU`` with ``width = 2 * num_patterns``.
    task: a regression task (squared loss; ``input_key``/``target_key`` name the batch keys).
    optimizer: unused (the trainer builds one for every procedure).
    num_patterns: sampled activation patterns ``P``.
    beta: the weight decay of the network (the group-lasso weight).
    rho: the ADMM penalty.
    iters_per_step: ADMM iterations per loop step.
    constrained: keep the cone constraints (the paper's program); False: the relaxation.
  """
  model: nn.Module
  task: Any
  optimizer: Any = None
  num_patterns: int = 64
  beta: float = 1e-2
  rho: float = 0.3
  iters_per_step: int = 50
  constrained: bool = True

  def __post_init__(self):
    width = getattr(self.model, "width", None)
    if not isinstance(self.model, convex_nn.TwoLayerReLU) or width != 2 * self.num_patterns:
      raise ValueError(f"ConvexReLU: model must be zoo.convex_nn.TwoLayerReLU(width=2 * num_patterns = "
                       f"{2 * self.num_patterns}); got {type(self.model).__name__}(width={width}).")
    if not self.beta > 0 or not self.rho > 0 or self.iters_per_step < 1:
      raise ValueError(f"ConvexReLU: need beta > 0, rho > 0, iters_per_step >= 1; got {self.beta}, {self.rho}, "
                       f"{self.iters_per_step}.")

  def _xy(self, batch):
    return _inputs_and_targets(self.task, batch, "ConvexReLU")

  def _system(self, x, h):
    patterns = x @ h >= 0
    f, sign = convex_nn._pack(x, patterns)  # pylint: disable=protected-access
    return patterns, f, jnp.concatenate([sign, sign], axis=1)

  def init(self, rng, batch) -> ConvexState:
    x, _ = self._xy(batch)
    n, d = x.shape
    p = self.num_patterns
    h = jax.random.normal(rng, (d, p), jnp.float32)
    _, f, _ = self._system(x, h)
    a = f.T @ f + self.rho * jnp.eye(2 * p * d, dtype=jnp.float32)
    if self.constrained:
      a = a + self.rho * jnp.kron(jnp.eye(2 * p, dtype=jnp.float32), x.T @ x)
    chol = jsl.cholesky(a, lower=True)
    zeros, slack = jnp.zeros((2 * p, d), jnp.float32), jnp.zeros((n, 2 * p), jnp.float32)
    return ConvexState(step=jnp.zeros((), jnp.int32), h=h, chol=chol, z=zeros, lam=zeros, s=slack, nu=slack)

  def step(self, state: ConvexState, batch):
    x, y = self._xy(batch)
    patterns, f, signs = self._system(x, state.h)
    p, d, rho = self.num_patterns, x.shape[1], self.rho
    fty = f.T @ y

    def body(carry, _):
      z, lam, s, nu = carry
      rhs = fty + rho * (z - lam).reshape(-1)
      if self.constrained:
        rhs = rhs + rho * ((signs * (s - nu)).T @ x).reshape(-1)
      u = jsl.cho_solve((state.chol, True), rhs).reshape(2 * p, d)
      norms = jnp.linalg.norm(u + lam, axis=1, keepdims=True)
      z = (u + lam) * jnp.maximum(1.0 - (self.beta / rho) / jnp.maximum(norms, 1e-30), 0.0)
      lam = lam + u - z
      res = jnp.linalg.norm(u - z)
      if self.constrained:
        gu = signs * (x @ u.T)
        s = jnp.maximum(gu + nu, 0.0)
        nu = nu + gu - s
        res = res + jnp.linalg.norm(gu - s)
      return (z, lam, s, nu), res

    (z, lam, s, nu), res = jax.lax.scan(body, (state.z, state.lam, state.s, state.nu), None,
                                        length=self.iters_per_step)
    metrics = {"objective": convex_nn.convex_objective(x, y, patterns, z[:p], z[p:], self.beta),
               "violation": convex_nn.cone_violation(x, patterns, z[:p], z[p:]), "residual": res[-1]}
    return state.replace(step=state.step + 1, z=z, lam=lam, s=s, nu=nu), metrics

  def variables(self, state: ConvexState):
    p = self.num_patterns
    norms = jnp.linalg.norm(state.z, axis=1)
    u = state.z / jnp.sqrt(jnp.maximum(norms, 1e-30))[:, None]
    alpha = jnp.sqrt(norms) * jnp.concatenate([jnp.ones(p), -jnp.ones(p)])
    return {"params": {"u": u.T, "alpha": alpha}}

  def evaluate(self, state: ConvexState, batch):
    outputs = backprop.call_model(self.model, self.variables(state), self.task.inputs(batch), train=False)
    return self.task.metrics(outputs, batch)


class RobustConvexState(flax.struct.PyTreeNode):
  """``h [d, P]`` directions; ``chol`` the factor of the robust ADMM's ``theta``-system; ``carry`` the ADMM's
  ``(z, s, m, lam_z, lam_s, lam_m)`` (see ``zoo.convex_nn.robust_admm_iterate``)."""
  step: jax.Array
  h: jax.Array
  chol: jax.Array
  carry: Any


@dataclasses.dataclass(frozen=True)
class RobustConvexReLU:
  """The adversarially robust convex program (Bai et al., Section 5) by ADMM through the one loop.

  ``zoo.convex_nn.robust_admm_solve``'s program (hinge loss on labels ``y`` in {-1, +1}, the worst case over the
  ``l_inf`` ball of radius ``eps`` on the ``perturbed`` leading features through the dual norm ``||.||_1``, the
  patterns held over every ball), with its solver's pieces (``robust_admm_system`` once in ``init``,
  ``robust_admm_iterate`` in every ``step``). ``init`` draws ``num_patterns`` directions ``h ~ N(0, I)`` as
  ``ConvexReLU`` (the robust constraints zero the neurons of the patterns that cannot hold over the balls).
  ``eps = 0`` is the ablation: the same procedure and patterns with the standard (non-robust) convex hinge program.

  ``evaluate`` adds ``accuracy`` (``sign f(x) = y``) and ``pgd_accuracy``: the accuracy under
  ``zoo.attacks.pgd_linf`` at radius ``attack_eps`` (``attack_steps`` steps of ``attack_eps / 4``, random start)
  on the ``perturbed`` features, the others (a constant bias feature) left alone.

  Attributes:
    model: a ``zoo.convex_nn.TwoLayerReLU`` with ``width = 2 * num_patterns``.
    task: a regression task whose targets are the labels -1 / +1.
    optimizer: unused.
    num_patterns: sampled activation patterns ``P``.
    beta: the group-lasso weight; rho: the ADMM penalty; iters_per_step: ADMM iterations per loop step.
    eps: the training radius (0: the ablation); perturbed: how many leading features the ball perturbs (0: all).
    attack_eps, attack_steps: the PGD evaluation.
  """
  model: nn.Module
  task: Any
  optimizer: Any = None
  num_patterns: int = 32
  beta: float = 1e-2
  rho: float = 0.1
  iters_per_step: int = 50
  eps: float = 0.1
  perturbed: int = 0
  attack_eps: float = 0.1
  attack_steps: int = 20

  def __post_init__(self):
    width = getattr(self.model, "width", None)
    if not isinstance(self.model, convex_nn.TwoLayerReLU) or width != 2 * self.num_patterns:
      raise ValueError(f"RobustConvexReLU: model must be zoo.convex_nn.TwoLayerReLU(width=2 * num_patterns = "
                       f"{2 * self.num_patterns}); got {type(self.model).__name__}(width={width}).")
    if not self.beta > 0 or not self.rho > 0 or self.iters_per_step < 1 or not self.eps >= 0:
      raise ValueError(f"RobustConvexReLU: need beta > 0, rho > 0, iters_per_step >= 1, eps >= 0; got {self.beta}, "
                       f"{self.rho}, {self.iters_per_step}, {self.eps}.")

  def _xy(self, batch):
    return _inputs_and_targets(self.task, batch, "RobustConvexReLU")

  def _dp(self, x):
    return x.shape[1] if self.perturbed in (0, None) else int(self.perturbed)

  def _system(self, x, y, h, chol=None):
    patterns = x @ h >= 0
    if chol is None:
      return convex_nn.robust_admm_system(x, y, patterns, self.eps, perturbed=self._dp(x))
    return convex_nn.RobustSystem(chol=chol, x=x, y=y, patterns=patterns, eps=jnp.asarray(self.eps, x.dtype))

  def init(self, rng, batch) -> RobustConvexState:
    x, y = self._xy(batch)
    h = jax.random.normal(rng, (x.shape[1], self.num_patterns), jnp.float32)
    system = self._system(x, y, h)
    return RobustConvexState(step=jnp.zeros((), jnp.int32), h=h, chol=system.chol,
                             carry=convex_nn.robust_admm_init(system, self._dp(x)))

  def step(self, state: RobustConvexState, batch):
    x, y = self._xy(batch)
    system = self._system(x, y, state.h, state.chol)
    carry, res = convex_nn.robust_admm_iterate(system, state.carry, self.beta, self.rho, self.iters_per_step,
                                               self._dp(x))
    p, d = self.num_patterns, x.shape[1]
    z = carry[0].reshape(2 * p, d)
    metrics = {"objective": convex_nn.robust_objective(x, y, system.patterns, z[:p], z[p:], self.beta, self.eps,
                                                       self._dp(x)),
               "violation": convex_nn.robust_violation(x, system.patterns, z[:p], z[p:], self.eps, self._dp(x)),
               "residual": res[-1]}
    return state.replace(step=state.step + 1, carry=carry), metrics

  def variables(self, state: RobustConvexState):
    z = state.carry[0].reshape(2 * self.num_patterns, -1)
    norms = jnp.linalg.norm(z, axis=1)
    u = z / jnp.sqrt(jnp.maximum(norms, 1e-30))[:, None]
    alpha = jnp.sqrt(norms) * jnp.concatenate([jnp.ones(self.num_patterns), -jnp.ones(self.num_patterns)])
    return {"params": {"u": u.T, "alpha": alpha}}

  def evaluate(self, state: RobustConvexState, batch):
    variables = self.variables(state)
    x, y = self._xy(batch)
    dp = self._dp(x)
    f = lambda xp: backprop.call_model(self.model, variables, jnp.concatenate([xp, x[:, dp:]], axis=1),  # noqa: E731
                                       train=False)
    logits = lambda xp: jnp.stack([-f(xp), f(xp)], axis=1)  # noqa: E731
    labels = (y > 0).astype(jnp.int32)
    key = jax.random.fold_in(jax.random.key(0), state.step)
    x_adv = attacks.pgd_linf(logits, x[:, :dp], labels, self.attack_eps, self.attack_eps / 4, self.attack_steps,
                             key=key)
    outputs = f(x[:, :dp])
    metrics = dict(self.task.metrics(outputs, batch))
    metrics["accuracy"] = (jnp.sign(outputs) == y).astype(jnp.float32)
    metrics["pgd_accuracy"] = (jnp.sign(f(x_adv)) == y).astype(jnp.float32)
    return metrics
