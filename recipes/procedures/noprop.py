"""NoProp training procedures: NoProp-DT, NoProp-CT and NoProp-FM, with their inference in ``evaluate``.

Paper: Qinyu Li, Yee Whye Teh, Razvan Pascanu, "NoProp: Training Neural Networks without Back-propagation or
Forward-propagation" (2025), arXiv:2503.24322. The networks, the class embeddings and the schedules are in
``zoo.noprop``; a config selects a procedure with ``procedure.name = 'noprop.NoPropDT'`` (``'noprop.NoPropCT'``,
``'noprop.NoPropFM'``) and a model of the matching family (``model.name = 'noprop.NoPropDTNet'`` ...).

**NoProp-DT** (:class:`NoPropDT`) minimises the paper's objective

    L = E_q(z_T|y)[-log p(y | z_T)] + KL(q(z_0 | y) || N(0, I))
        + (T / 2) eta E_{t ~ U{1..T}} [(SNR(t) - SNR(t-1)) ||u_hat_t(z_{t-1}, x) - u_y||^2],   z_{t-1} ~ q(z_{t-1} | y)

with ``eta = 0.1`` (the paper's value for NoProp-DT) and the cosine schedule of ``zoo.noprop.cosine_alpha_bar``.
Every step draws one ``z_{t-1}`` per block and example and evaluates the expectation over ``t`` exactly (all T
terms, each weighted 1/T) instead of sampling one ``t``: the same objective, every block updated every step. The
blocks' outputs never feed each other during training (no forward pass through the stack) and block t's term is the
only one that depends on block t's parameters, so block t's gradient comes from its own denoising loss alone. The
optimizer is applied to each block separately (``jax.vmap`` over the block axis of the stacked parameters and of
the optimizer state), so even a global-norm clip or an adaptive statistic never mixes blocks; the shared
parameters (the classifier ``p(y | z_T)`` and a learned/prototype embedding) have their own optimizer state and
learn from the classifier and KL terms and from every block's term through ``u_y`` and ``W_embed``, as in the
paper. ``evaluate`` runs the denoising chain from ``z_0 ~ N(0, I)`` and reports the accuracy of the classifier
``p(y | z_T)`` (``accuracy``, the paper's prediction) and of the nearest class embedding to ``z_T``
(``accuracy_nearest``) and to the chain's midpoint ``z_{T/2}`` (``accuracy_half``).

**NoProp-CT** (:class:`NoPropCT`): one time-conditioned block, ``t ~ U[0, 1]``, a learned monotone noise schedule
(``abar(t) = sigmoid(-gamma(t))``), and

    L = E[-log p(y | z_1)] + KL(q(z_0 | y) || N(0, I)) + (eta / 2) E_t [SNR'(t) ||u_hat(z_t, x, t) - u_y||^2]

with ``eta = 1`` (the CT value of the paper's hyperparameter table as transcribed by the community JAX port,
github.com/bayesianempirimancer/jax-noprop; not re-checked against the PDF). ``evaluate`` integrates the
probability-flow ODE of the learned schedule from ``t = 0`` to ``1`` over the model's ``inference_steps`` (or runs
the ancestral chain, ``model.sampler``).

**NoProp-FM** (:class:`NoPropFM`): ``z_t = t u_y + (1 - t) z_0``, the block regresses the velocity ``u_y - z_0``:
``L = E ||v(z_t, x, t) - (u_y - z_0)||^2``, plus, when the embedding is learned (learned/prototype), the
cross-entropy of ``p(y | z1_hat) = softmax(-||z1_hat - u_c||^2)`` at the extrapolated ``z1_hat = z_t + (1 - t) v``,
which keeps the embeddings from collapsing. ``evaluate`` integrates ``dz/dt = v`` with Euler steps and predicts the
nearest class embedding.

Deviations from the paper, on purpose: the expectation over ``t`` in NoProp-DT is computed over all blocks each step
(above); the paper's image encoders (convolutions, dropout) are replaced by any zoo model given as the blocks'
``encoder`` (``zoo.core.MLP`` or ``zoo.core.ConvNet`` in the configs); NoProp-FM's block has a dense velocity
output rather than ``softmax(logits) W_embed``, which cannot represent ``u_y - z_0``; the CT schedule is VDM's
monotone network.

Measured on the bundled digits (``tests/papers/test_noprop.py`` and ``recipes/configs/noprop_*_digits.py``), see the
test module's docstring for the numbers.

Public names: :class:`NoPropDT`, :class:`NoPropCT`, :class:`NoPropFM`; :func:`split_blocks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import noprop as noprop_lib
from zoo.recipes.procedures.backprop import TrainState

__all__ = ["NoPropCT", "NoPropDT", "NoPropFM", "split_blocks"]


def split_blocks(params) -> tuple[Any, dict[str, Any]]:
  """``params -> (params['blocks'], the other top-level entries)``: per-block and shared parameters."""
  shared = {k: v for k, v in params.items() if k != "blocks"}
  return params["blocks"], shared


def _kl_to_standard_normal(u, alpha_bar):
  """``KL(N(sqrt(abar) u, (1 - abar) I) || N(0, I))`` per example: ``u [batch, d] -> [batch]``."""
  d = u.shape[-1]
  return 0.5 * (alpha_bar * jnp.sum(u ** 2, axis=-1) - d * alpha_bar - d * jnp.log1p(-alpha_bar))


def _nearest(z, embed):
  """``-||z - u_c||^2``: the nearest-class-embedding readout, ``[batch, d] -> [batch, classes]``."""
  return -jnp.sum((z[:, None, :] - embed) ** 2, axis=-1)


def _accuracy(logits, labels):
  return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class _NoPropBase:
  """What the three procedures share: batch access, initialisation, variables."""
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  eval_noise_seed: int = 0

  _model_type = nn.Module

  def __post_init__(self):
    if not isinstance(self.model, self._model_type):
      raise TypeError(f"{type(self).__name__} trains a zoo.noprop.{self._model_type.__name__}; got "
                      f"{type(self.model).__name__}. Set config.model.name = 'noprop.{self._model_type.__name__}'.")

  def _xy(self, batch):
    x = self.task.inputs(batch)
    labels = batch[self.task.target_key]
    return x, labels.astype(jnp.int32)

  def _init_variables(self, rng, batch):
    x, labels = self._xy(batch)
    prototypes = None
    if self.model.embedding == "prototype":
      prototypes = noprop_lib.class_prototypes(x, labels, self.model.num_classes)
    params_rng, noise_rng = jax.random.split(rng)
    variables = dict(self.model.init({"params": params_rng, "noise": noise_rng, "dropout": noise_rng}, x,
                                     prototypes=prototypes))
    params = variables.pop("params")
    return params, variables

  def variables(self, state: TrainState):
    return {"params": state.params, **state.model_state}

  def _embedding(self, params, model_state):
    return self.model.apply({"params": params, **model_state}, method="embed")

  def _eval_sample(self, state, x):
    return self.model.apply(self.variables(state), x, method="sample",
                            rngs={"noise": jax.random.key(self.eval_noise_seed)})


# ---------------------------------------------------------------------------------------------------- NoProp-DT


@dataclasses.dataclass(frozen=True)
class NoPropDT(_NoPropBase):
  """NoProp-DT: T denoising blocks trained each on its own noise level (see the module docstring).

  Attributes:
    model: a ``zoo.noprop.NoPropDTNet``.
    task: a classification task (``task.inputs(batch)``, labels under ``task.target_key``).
    optimizer: an optax transformation, applied to every block separately and to the shared parameters.
    eta: the weight of the denoising terms (paper: 0.1).
    per_block_noise: True (the paper's method): block t learns to denoise ``z_{t-1} ~ q(z_{t-1} | y)`` at its own
      noise level of the schedule, so the blocks form the label-embedding diffusion chain. False (the ablation):
      every block is trained on ``z ~ q(z_0 | y)`` (almost pure noise, ``abar_0 ~ 2e-5``): the blocks cannot learn to
      use the chain's intermediate ``z`` and become T independent denoisers of ``x`` alone, which the inference
      recursion averages.
    eval_noise_seed: seed of the inference chain's noise in ``evaluate``.
  """
  eta: float = 0.1
  per_block_noise: bool = True

  _model_type = noprop_lib.NoPropDTNet

  def init(self, rng, batch) -> TrainState:
    params_rng, state_rng = jax.random.split(rng)
    params, model_state = self._init_variables(params_rng, batch)
    blocks, shared = split_blocks(params)
    opt_state = {"blocks": jax.vmap(self.optimizer.init)(blocks), "shared": self.optimizer.init(shared)}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, model_state=model_state,
                      rng=state_rng)

  def weights(self):
    """``(alpha_bar [T + 1], w [T])``: the schedule and the SNR differences ``SNR(t) - SNR(t-1)``."""
    ab = self.model.alpha_bar()
    snr = noprop_lib.snr(ab)
    return jnp.asarray(ab, jnp.float32), jnp.asarray(snr[1:] - snr[:-1], jnp.float32)

  def terms(self, params, model_state, batch, rng):
    """The objective's terms: ``({'denoise': [T], 'classifier': [], 'kl': []}, (new model_state, mse [T]))``.

    ``denoise[t-1] = (T / 2) eta (SNR(t) - SNR(t-1)) mean_batch ||u_hat_t(z_{t-1}, x) - u_y||^2`` is block t's
    loss; it depends on block t's parameters and on the shared ones only.
    """
    x, labels = self._xy(batch)
    t_blocks = self.model.num_blocks
    ab, w = self.weights()
    variables = {"params": params, **model_state}
    embed = self._embedding(params, model_state)
    u = embed[labels]                                                  # [batch, d]
    z_rng, top_rng = jax.random.split(rng)
    dropout_rng = jax.random.fold_in(rng, 1)  # only an encoder with dropout uses it
    eps = jax.random.normal(z_rng, (t_blocks, *u.shape), jnp.float32)
    ab_z = ab[:-1] if self.per_block_noise else jnp.full((t_blocks,), ab[0])  # block t's noise level abar_{t-1}
    z = jnp.sqrt(ab_z)[:, None, None] * u + jnp.sqrt(1.0 - ab_z)[:, None, None] * eps  # z_{t-1}, t = 1..T
    (u_hat, _), updates = self.model.apply(variables, x, z, train=True, method="denoise_each",
                                           mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    mse = jnp.mean(jnp.sum((u_hat - u) ** 2, axis=-1), axis=-1)        # [T]
    denoise = 0.5 * t_blocks * self.eta * w * mse
    z_top = jnp.sqrt(ab[-1]) * u + jnp.sqrt(1.0 - ab[-1]) * jax.random.normal(top_rng, u.shape, jnp.float32)
    logits = self.model.apply(variables, z_top, method="classify")
    classifier = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    kl = jnp.mean(_kl_to_standard_normal(u, ab[0]))
    new_state = {**model_state, **updates}
    return {"denoise": denoise, "classifier": classifier, "kl": kl}, (new_state, mse)

  def objective(self, params, model_state, batch, rng):
    """``classifier + kl + mean_t denoise_t`` and ``(new model_state, metrics)``."""
    terms, (new_state, mse) = self.terms(params, model_state, batch, rng)
    total = terms["classifier"] + terms["kl"] + jnp.mean(terms["denoise"])
    metrics = {"loss": total, "classifier_loss": terms["classifier"], "kl": terms["kl"],
               "denoise_loss": jnp.mean(terms["denoise"]), "mse_first_block": mse[0], "mse_last_block": mse[-1]}
    return total, (new_state, metrics)

  def step(self, state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, (model_state, metrics) = jax.grad(self.objective, has_aux=True)(state.params, state.model_state, batch,
                                                                           rng)
    g_blocks, g_shared = split_blocks(grads)
    p_blocks, p_shared = split_blocks(state.params)
    u_blocks, os_blocks = jax.vmap(self.optimizer.update)(g_blocks, state.opt_state["blocks"], p_blocks)
    u_shared, os_shared = self.optimizer.update(g_shared, state.opt_state["shared"], p_shared)
    params = optax.apply_updates(state.params, {"blocks": u_blocks, **u_shared})
    metrics = {**metrics, "grad_norm_blocks": optax.tree.norm(g_blocks)}
    return state.replace(step=state.step + 1, params=params, opt_state={"blocks": os_blocks, "shared": os_shared},
                         model_state=model_state), metrics

  def evaluate(self, state: TrainState, batch):
    x, labels = self._xy(batch)
    variables = self.variables(state)
    zs = self._eval_sample(state, x)                                   # [T + 1, batch, d]
    logits = self.model.apply(variables, zs[-1], method="classify")
    embed = self.model.apply(variables, method="embed")
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "accuracy": _accuracy(logits, labels),
            "accuracy_nearest": _accuracy(_nearest(zs[-1], embed), labels),
            "accuracy_half": _accuracy(_nearest(zs[self.model.num_blocks // 2], embed), labels)}


# ------------------------------------------------------------------------------------------------ NoProp-CT / FM


@dataclasses.dataclass(frozen=True)
class _SingleNetwork(_NoPropBase):
  """One network trained on a per-example random time: one optimizer over all its parameters."""

  def init(self, rng, batch) -> TrainState:
    params_rng, state_rng = jax.random.split(rng)
    params, model_state = self._init_variables(params_rng, batch)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                      model_state=model_state, rng=state_rng)

  def step(self, state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, (model_state, metrics) = jax.grad(self.objective, has_aux=True)(state.params, state.model_state, batch,
                                                                           rng)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics

  def _evaluate_logits(self, state, x):
    variables = self.variables(state)
    zs = self._eval_sample(state, x)
    embed = self.model.apply(variables, method="embed")
    return (self.model.apply(variables, zs[-1], method="classify"),
            _nearest(zs[self.model.inference_steps // 2], embed))

  def evaluate(self, state: TrainState, batch):
    x, labels = self._xy(batch)
    logits, half = self._evaluate_logits(state, x)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "accuracy": _accuracy(logits, labels), "accuracy_half": _accuracy(half, labels)}


@dataclasses.dataclass(frozen=True)
class NoPropCT(_SingleNetwork):
  """NoProp-CT: one block ``u_hat(z_t, x, t)`` with a learned noise schedule (see the module docstring).

  Attributes:
    model: a ``zoo.noprop.NoPropCTNet``.
    task: a classification task.
    optimizer: an optax transformation (the block, schedule, classifier and embedding together).
    eta: the weight of the denoising term (paper: 1.0).
    eval_noise_seed: seed of ``z_0`` (and of the ancestral sampler's noise) in ``evaluate``.
  """
  eta: float = 1.0

  _model_type = noprop_lib.NoPropCTNet

  def objective(self, params, model_state, batch, rng):
    x, labels = self._xy(batch)
    variables = {"params": params, **model_state}
    u = self._embedding(params, model_state)[labels]
    t_rng, z_rng, top_rng = jax.random.split(rng, 3)
    dropout_rng = jax.random.fold_in(rng, 1)
    batch_size = u.shape[0]
    t = jax.random.uniform(t_rng, (batch_size,), jnp.float32)
    gamma, dgamma = self.model.apply(variables, t, method="gamma")
    abar = jax.nn.sigmoid(-gamma)[:, None]
    snr_slope = -dgamma * jnp.exp(-gamma)                               # SNR'(t) > 0
    z = jnp.sqrt(abar) * u + jnp.sqrt(1.0 - abar) * jax.random.normal(z_rng, u.shape, jnp.float32)
    (u_hat, _), updates = self.model.apply(variables, x, z, t, train=True, method="denoise", mutable=["batch_stats"],
                                           rngs={"dropout": dropout_rng})
    sq = jnp.sum((u_hat - u) ** 2, axis=-1)
    denoise = jnp.mean(0.5 * self.eta * snr_slope * sq)
    ends, _ = self.model.apply(variables, jnp.array([0.0, 1.0], jnp.float32), method="gamma")
    abar_0, abar_1 = jax.nn.sigmoid(-ends[0]), jax.nn.sigmoid(-ends[1])
    z_top = jnp.sqrt(abar_1) * u + jnp.sqrt(1.0 - abar_1) * jax.random.normal(top_rng, u.shape, jnp.float32)
    logits = self.model.apply(variables, z_top, method="classify")
    classifier = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    kl = jnp.mean(_kl_to_standard_normal(u, abar_0))
    total = classifier + kl + denoise
    metrics = {"loss": total, "classifier_loss": classifier, "kl": kl, "denoise_loss": denoise,
               "mse": jnp.mean(sq), "snr_0": jnp.exp(-ends[0]), "snr_1": jnp.exp(-ends[1])}
    return total, ({**model_state, **updates}, metrics)


@dataclasses.dataclass(frozen=True)
class NoPropFM(_SingleNetwork):
  """NoProp-FM: one block regressing the flow-matching velocity (see the module docstring).

  Attributes:
    model: a ``zoo.noprop.NoPropFMNet``.
    task: a classification task.
    optimizer: an optax transformation.
    classify_weight: weight of the anti-collapse cross-entropy at the extrapolated ``z1_hat`` (used only when the
      embedding is learned or prototype-initialised; the one-hot embedding cannot collapse).
    eval_noise_seed: seed of ``z_0`` in ``evaluate``.
  """
  classify_weight: float = 1.0

  _model_type = noprop_lib.NoPropFMNet

  def objective(self, params, model_state, batch, rng):
    x, labels = self._xy(batch)
    variables = {"params": params, **model_state}
    embed = self._embedding(params, model_state)
    u = embed[labels]
    t_rng, z_rng = jax.random.split(rng)
    dropout_rng = jax.random.fold_in(rng, 1)
    t = jax.random.uniform(t_rng, (u.shape[0],), jnp.float32)
    z0 = jax.random.normal(z_rng, u.shape, jnp.float32)
    z = t[:, None] * u + (1.0 - t[:, None]) * z0
    v, updates = self.model.apply(variables, x, z, t, train=True, method="velocity", mutable=["batch_stats"],
                                  rngs={"dropout": dropout_rng})
    flow = jnp.mean(jnp.sum((v - (u - z0)) ** 2, axis=-1))
    total, metrics = flow, {"flow_loss": flow}
    if self.model.embedding != "onehot":
      z1_hat = z + (1.0 - t[:, None]) * v
      logits = -jnp.sum((z1_hat[:, None, :] - embed) ** 2, axis=-1)
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
      total = total + self.classify_weight * ce
      metrics["classifier_loss"] = ce
    metrics["loss"] = total
    return total, ({**model_state, **updates}, metrics)
