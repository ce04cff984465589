"""Layer-wise Regularized Adversarial Training with the Layers Sustainability Analysis (LSA) framework.

Paper: Khalooei, Homayounpour, Amirmazlaghani, "Layer-wise Regularized Adversarial Training using Layers
Sustainability Analysis (LSA) framework" (2022, arXiv 2202.02626); PGD-AT: Madry et al. (2018).

LSA probes the outputs ``phi_l`` of a model's layers on clean inputs ``x`` and adversarial ones ``x'`` and scores each
layer by its relative error ``RE_l = ||phi_l(x') - phi_l(x)||_2 / ||phi_l(x)||_2`` (per example, averaged). The
most vulnerable layers (MVL) are those whose RE is above a threshold (``mean + std`` over the layers, or the top
``k``). AT-LR trains on ``CE(f(x'), y) + gamma * sum_{l in MVL} ||phi_l(x') - phi_l(x)||^2`` (plus the base AT's
clean term when it has one), so the vulnerable layers learn to keep adversarial perturbations small.

Layers are read with Flax ``capture_intermediates`` (no change to the model): by default every submodule output but
the model's last one (its logits). For ``zoo.core.MLP`` these are the hidden ``Dense`` outputs, i.e. the
pre-activations: the MLP applies its ReLU as a function, which ``capture_intermediates`` does not see (the
official code hooks ReLU modules; the ReLU of a probed pre-activation is a fixed function of it).

Public names:

* :func:`layer_outputs` ``(model, variables, x) -> {layer: [batch, ...]}``.
* :func:`layer_relative_errors` ``(model, variables, x, x_adv) -> {layer: RE [batch]}``.
* :func:`most_vulnerable_layers` ``(errors, rule='mean_std' | 'topk', k=1) -> [layer names]`` (host side) and
  :func:`mvl_mask` (the same as a jittable ``[layers]`` 0/1 mask).
* :func:`at_lr_loss`: the AT-LR objective for one batch.
* :class:`ATLR`: the procedure (``procedure.name = 'lsa.ATLR'``): each step attacks the batch with PGD-Linf
  (``zoo.attacks.pgd_linf``, random start), recomputes the MVL on it, and descends the AT-LR loss. The mechanism
  flag is ``layer_reg`` (``False``: plain PGD-AT, the paper's baseline and the ablation). The MVL is recomputed at
  every step from the current batch (the paper recomputes it once per epoch).
* :func:`robust_accuracy` ``(logits_fn, x, y, eps_grid, ...) -> [len(eps_grid)]`` PGD accuracy over an eps grid, and
  :func:`rg_score` ``(eps_grid, accuracies)``: the robustness-over-epsilon score, the normalised area under the
  accuracy-vs-eps curve (trapezoid rule; the mean accuracy over a uniform grid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import attacks
from zoo.recipes.procedures import backprop

__all__ = ["ATLR", "at_lr_loss", "layer_outputs", "layer_relative_errors", "most_vulnerable_layers", "mvl_mask",
           "rg_score", "robust_accuracy"]


def _default_filter(module, method_name):
  return method_name == "__call__" and module.scope is not None and len(module.scope.path) >= 1


def layer_outputs(model, variables, x, *, filter_fn: Callable | None = None, include_last: bool = False):
  """``(logits, {layer name: output [batch, ...]})``, the model's submodule outputs in call order."""
  logits, state = model.apply(variables, x, capture_intermediates=filter_fn or _default_filter,
                              mutable=["intermediates"])
  flat = {}

  def walk(tree, prefix):
    for k, v in tree.items():
      if k == "__call__":
        flat[prefix] = v[0]
      elif isinstance(v, dict) or hasattr(v, "items"):
        walk(v, f"{prefix}/{k}" if prefix else k)
  walk(state["intermediates"], "")
  flat.pop("", None)  # the model's own output
  names = list(flat)
  if not include_last and names:
    names = names[:-1]  # the logits layer
  if not names:
    raise ValueError(f"layer_outputs: {type(model).__name__} has no probed intermediate layer.")
  return logits, {k: flat[k] for k in names}


def _re(a, b):
  a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
  return jnp.linalg.norm(b - a, axis=1) / jnp.maximum(jnp.linalg.norm(a, axis=1), 1e-12)


def layer_relative_errors(model, variables, x, x_adv, **kw) -> dict[str, jax.Array]:
  """``{layer: ||phi_l(x_adv) - phi_l(x)|| / ||phi_l(x)|| [batch]}``."""
  _, clean = layer_outputs(model, variables, x, **kw)
  _, adv = layer_outputs(model, variables, x_adv, **kw)
  return {k: _re(clean[k], adv[k]) for k in clean}


def mvl_mask(errors: jax.Array, *, rule: str = "mean_std", k: int = 1) -> jax.Array:
  """``errors [layers]`` (mean REs) -> a 0/1 mask of the most vulnerable layers (jittable)."""
  if rule == "mean_std":
    return (errors > jnp.mean(errors) + jnp.std(errors)).astype(jnp.float32)
  if rule == "topk":
    if not 1 <= k <= errors.shape[0]:
      raise ValueError(f"mvl: k must be in [1, {errors.shape[0]}]; got {k}.")
    return (errors >= jnp.sort(errors)[-k]).astype(jnp.float32)
  raise ValueError(f"mvl: rule must be 'mean_std' or 'topk'; got {rule!r}.")


def most_vulnerable_layers(errors: dict, *, rule: str = "mean_std", k: int = 1) -> list[str]:
  """The names of the layers whose mean RE is above the threshold (``mean + std`` over layers, or the top ``k``)."""
  names = list(errors)
  means = jnp.asarray([jnp.mean(errors[n]) for n in names])
  mask = np.asarray(mvl_mask(means, rule=rule, k=k))
  return [n for n, m in zip(names, mask) if m]


def at_lr_loss(model, params, x, x_adv, y, *, gamma: float, mask: jax.Array | None = None,
               clean_weight: float = 0.0):
  """``CE(f(x'), y) + clean_weight * CE(f(x), y) + gamma * sum_{l in MVL} mean ||phi_l(x') - phi_l(x)||^2``.

  Returns ``(loss, (mean REs [layers], ce_adv))``; ``mask [layers]`` selects the MVL (all layers if None).
  """
  variables = {"params": params}
  logits_clean, clean = layer_outputs(model, variables, x)
  logits_adv, adv = layer_outputs(model, variables, x_adv)
  names = list(clean)
  ce_adv = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_adv.astype(jnp.float32), y))
  loss = ce_adv
  if clean_weight:
    loss = loss + clean_weight * jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits_clean.astype(jnp.float32), y))
  sq = jnp.stack([jnp.mean(jnp.sum((adv[n] - clean[n]).reshape(x.shape[0], -1) ** 2, axis=1)) for n in names])
  res = jnp.stack([jnp.mean(_re(jax.lax.stop_gradient(clean[n]), jax.lax.stop_gradient(adv[n]))) for n in names])
  mask = jnp.ones(len(names)) if mask is None else mask
  return loss + gamma * jnp.sum(mask * sq), (res, ce_adv)


@dataclasses.dataclass(frozen=True)
class ATLR(backprop.Backprop):
  """PGD adversarial training with LSA's layer-wise regularisation (AT-LR); ``layer_reg=False`` is PGD-AT.

  Attributes:
    eps: the L-infinity budget of training attacks; step_size, pgd_steps: PGD's.
    gamma: the weight of the layer-wise term.
    layer_reg: the mechanism flag (default True: AT-LR; False: PGD-AT).
    mvl_rule, mvl_k: how the MVL is chosen (``'mean_std'`` or ``'topk'``).
    clean_weight: weight of a clean cross-entropy term (0: Madry's PGD-AT, adversarial loss only).
    clip: the valid input range (``(0, 1)`` for images in [0, 1]; None: unbounded).
    input_key, target_key: batch keys.
  """
  eps: float = 0.1
  step_size: float = 0.025
  pgd_steps: int = 7
  gamma: float = 0.1
  layer_reg: bool = True
  mvl_rule: str = "mean_std"
  mvl_k: int = 1
  clean_weight: float = 0.0
  clip: tuple[float, float] | None = (0.0, 1.0)

  def _xy(self, batch):
    return self.task.inputs(batch), batch[self.task.target_key]

  def step(self, state, batch):
    x, y = self._xy(batch)
    key = jax.random.fold_in(state.rng, state.step)
    clip = None if self.clip is None else tuple(self.clip)
    x_adv = attacks.pgd_linf(lambda xx: self.model.apply({"params": state.params}, xx), x, y, self.eps,
                             self.step_size, self.pgd_steps, key, clip=clip)
    # The MVL of this batch, from the current parameters.
    _, (res, _) = at_lr_loss(self.model, state.params, x, x_adv, y, gamma=0.0)
    mask = mvl_mask(res, rule=self.mvl_rule, k=self.mvl_k)
    gamma = self.gamma if self.layer_reg else 0.0
    grad_fn = jax.value_and_grad(lambda p: at_lr_loss(self.model, p, x, x_adv, y, gamma=gamma, mask=mask,
                                                      clean_weight=self.clean_weight), has_aux=True)
    (loss, (res, ce_adv)), grads = grad_fn(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "adv_loss": ce_adv, "mvl_size": jnp.sum(mask),
               "mvl_relative_error": jnp.sum(mask * res) / jnp.maximum(jnp.sum(mask), 1.0)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def robust_accuracy(logits_fn: Callable, x, y, eps_grid: Sequence[float], *, step_size_ratio: float = 0.25,
                    steps: int = 10, key=None, clip=(0.0, 1.0)) -> jax.Array:
  """PGD-Linf accuracy ``[len(eps_grid)]`` at each eps (step size ``step_size_ratio * eps``), vmapped over eps."""
  def at(eps):
    x_adv = attacks.pgd_linf(logits_fn, x, y, eps, step_size_ratio * eps, steps, key, clip=clip)
    return jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == y)
  return jax.vmap(at)(jnp.asarray(eps_grid, jnp.float32))


def rg_score(eps_grid: Sequence[float], accuracies: Sequence[float]) -> float:
  """Normalised area under accuracy(eps) over the grid (trapezoid rule; in [0, 1])."""
  eps, acc = np.asarray(eps_grid, np.float64), np.asarray(accuracies, np.float64)
  if eps.shape != acc.shape or eps.ndim != 1 or len(eps) < 2 or np.any(np.diff(eps) <= 0):
    raise ValueError(f"rg_score: need an increasing eps grid of >= 2 points and one accuracy each; got {eps.shape} "
                     f"and {acc.shape}.")
  return float(np.trapezoid(acc, eps) / (eps[-1] - eps[0]))
