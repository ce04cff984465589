"""An ensemble of independently initialised nets trained side by side, scored by the paper's rounding step.

"Exact Learning of Permutations for Nonzero Binary Inputs with Logarithmic Training Size and Quadratic Ensemble
Complexity" (Giapitzakis, Back de Luca, Fountoulakis, 2025, arXiv 2502.16763): ``num_models`` copies of the config's
model (``zoo.ntk_ensembles.TwoLayerNTKNet``), each with its own init, all updated in one jitted step (``vmap`` over
the models) by the config's optimizer (the paper: plain GD, ``optax.sgd``) on the MSE ``0.5 ||f(x) - y||^2``.
Evaluation averages the models' outputs and rounds them with ``zoo.ntk_ensembles.round_prediction`` (``rule``):
metrics ``exact_match`` (the whole rounded vector equals the target), ``single_exact_match`` (model 0 alone, the
ablation without an ensemble) and ``mse`` of the ensemble mean.

Config: ``procedure.name = 'perm_ensemble.PermutationEnsemble'``, ``num_models``, ``rule``; task ``'regression'`` with
``input_key='x'``, ``target_key='y'``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import ntk_ensembles

__all__ = ["EnsembleState", "PermutationEnsemble"]


class EnsembleState(flax.struct.PyTreeNode):
  """``params`` stacked over ``[num_models]``, their optimizer state, and the step."""
  step: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class PermutationEnsemble:
  """Trains ``num_models`` copies of ``model`` at once and scores the rounded ensemble mean (module docstring)."""
  model: Any
  task: Any
  optimizer: optax.GradientTransformation
  num_models: int = 16
  rule: str = "midpoint"

  def __post_init__(self):
    if self.num_models < 1:
      raise ValueError(f"PermutationEnsemble: `num_models` must be >= 1; got {self.num_models}.")
    if self.rule not in ntk_ensembles.ROUNDING_RULES:
      raise ValueError(f"PermutationEnsemble: `rule` must be one of {ntk_ensembles.ROUNDING_RULES}; got {self.rule!r}.")

  def init(self, rng, batch) -> EnsembleState:
    x = self.task.inputs(batch)
    params = jax.vmap(lambda k: nn.unbox(self.model.init(k, x))["params"])(jax.random.split(rng, self.num_models))
    return EnsembleState(step=jnp.zeros((), jnp.int32), params=params, opt_state=jax.vmap(self.optimizer.init)(params))

  def _outputs(self, params, x):
    return jax.vmap(lambda p: self.model.apply({"params": p}, x))(params)  # [models, batch, k]

  def step(self, state: EnsembleState, batch):
    x, y = self.task.inputs(batch), batch[self.task.target_key].astype(jnp.float32)

    def loss(p):
      return 0.5 * jnp.mean(jnp.sum((self.model.apply({"params": p}, x) - y) ** 2, axis=1))

    def update(p, s):
      value, grads = jax.value_and_grad(loss)(p)
      updates, s = self.optimizer.update(grads, s, p)
      return optax.apply_updates(p, updates), s, value

    params, opt_state, losses = jax.vmap(update)(state.params, state.opt_state)
    return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
            {"loss": jnp.mean(losses), "max_model_mse": 2 * jnp.max(losses) / y.shape[1]})

  def variables(self, state: EnsembleState):
    return {"params": state.params}

  def evaluate(self, state: EnsembleState, batch):
    x, y = self.task.inputs(batch), batch[self.task.target_key]
    outputs = self._outputs(state.params, x)
    # padded evaluation rows are all-zero inputs; give them a valid binary input (their weight is 0)
    safe_x = jnp.where(jnp.sum(x, axis=1, keepdims=True) > 0, x, jnp.ones_like(x))
    mean = outputs.mean(0)
    return {"exact_match": ntk_ensembles.exact_match(ntk_ensembles.round_prediction(mean, safe_x, self.rule), y),
            "single_exact_match": ntk_ensembles.exact_match(
                ntk_ensembles.round_prediction(outputs[0], safe_x, self.rule), y),
            "mse": jnp.mean((mean - y) ** 2, axis=1)}
