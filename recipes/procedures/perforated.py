"""Perforated Backpropagation: neuron phases and dendrite phases, in cycles, for any zoo model.

Paper: Brenner & Itti, "Perforated Backpropagation: A Neuroscience Inspired Extension to Artificial Neural
Networks" (2025, arXiv 2501.18018); reference API github.com/PerforatedAI/PerforatedAI. The dendrite-augmented
model is ``zoo.dendrites.Perforated`` (any zoo model whose ``Dense``/``Conv`` neurons get dendrite nodes).

Training alternates two phases (:func:`switch_schedule`):

1. **Neuron phase**: ordinary backprop of the task loss into the neurons (the wrapped model's weights) and the
   dendrite-to-neuron weights ``c_k``; the dendrites' own weights are frozen and no error flows into or through
   them (``stop_gradient``, the "perforation").
2. **Dendrite phase** ``k``: the neurons are frozen and dendrite ``k`` of every neuron ``n`` (input weights and
   cascade weights from the earlier dendrites) is trained by gradient ascent on the cascade-correlation score

       S = sum_n | mean_p (d_{n,p} - mean_p d_n) (E_{n,p} - mean_p E_n) |

   where ``p`` runs over the examples of the batch (and positions, for a convolution), ``d`` is the dendrite's
   output and ``E_n = dL/dy_n`` the neuron's remaining error, the gradient of the (per-example) loss with respect
   to the neuron's pre-activation with the ``k`` earlier dendrites switched in. ``E`` is a constant for this
   objective, so only dendrite ``k``'s weights move (their gradients elsewhere are exactly 0).
3. The dendrite is then frozen and switched in with ``c_k = 0`` (the reference's default), and the next neuron
   phase learns ``c_k`` with the neurons. Cycles repeat up to ``num_cycles`` (<= the model's ``num_dendrites``).

The schedule is state the step reads (the phase is a function of the step count), so the procedure runs in the one
loop (``zoo.recipes.train``: CLI, checkpoints, resume). Every phase starts with a fresh optimizer state, as the
reference re-creates its optimizer at every switch. The paper also keeps a cycle only if validation improves;
that decision needs held-out data between loop calls, so it is :func:`train_cycles`: a short sequence of
``run_loop`` calls (one per cycle) with a validation check after each, reverting to the state before a cycle that
did not improve and stopping there.

The mechanism flag ``train_dendrites`` (default True, the paper's method) switches the correlation training off: the
ablation of ``tests/papers/test_perforated_bp.py`` (dendrites added and switched in, but random and never trained).

Deviations from the paper and the reference: phase lengths are fixed step counts (the reference switches when
validation plateaus); one candidate dendrite per neuron and phase (the reference's default, ``global_candidates=1``);
the correlation uses means over the batch (the same direction as the reference's sums, any batch size).

Public names:

* :class:`PerforatedBackprop`: the procedure (``procedure.name = 'perforated.PerforatedBackprop'``), built from a
  ``zoo.dendrites.Perforated`` model.
* :func:`switch_schedule` ``(neuron_steps, dendrite_steps, num_cycles, cycle_neuron_steps) -> [Phase]``.
* :func:`correlation_score` ``(dendrites, errors) -> S`` for one layer (``[..., features]`` each).
* :func:`neuron_phase`, :func:`dendrite_phase`: one update of each kind (what ``step`` dispatches to).
* :func:`train_cycles`: the cycles as loop calls with the validation check; returns a :class:`CycleResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import dendrites as dendrites_lib
from zoo.recipes.procedures.backprop import sown_losses

__all__ = ["CycleResult", "Phase", "PerforatedBackprop", "PerforatedState", "correlation_score", "dendrite_phase",
           "neuron_phase", "switch_schedule", "train_cycles"]

NEURON, DENDRITE = 0, 1


class Phase(NamedTuple):
  """One phase: ``kind`` (0 neuron, 1 dendrite) over steps ``[start, end)`` with ``active`` dendrites switched in;
  a dendrite phase trains dendrite ``active`` (the candidate)."""
  kind: int
  start: int
  end: int
  active: int


def switch_schedule(neuron_steps: int, dendrite_steps: int, num_cycles: int,
                    cycle_neuron_steps: int | None = None) -> list[Phase]:
  """The phases: a neuron phase, then ``num_cycles`` x (dendrite phase, neuron phase).

  The last neuron phase has no end (``end = -1``): a run longer than the schedule keeps training the neurons.
  """
  if neuron_steps < 1 or dendrite_steps < 1 or num_cycles < 0:
    raise ValueError(f"switch_schedule: need neuron_steps >= 1, dendrite_steps >= 1, num_cycles >= 0; got "
                     f"{neuron_steps}, {dendrite_steps}, {num_cycles}.")
  cycle_neuron_steps = cycle_neuron_steps or neuron_steps
  phases, t = [Phase(NEURON, 0, neuron_steps, 0)], neuron_steps
  for k in range(num_cycles):
    phases.append(Phase(DENDRITE, t, t + dendrite_steps, k))
    t += dendrite_steps
    phases.append(Phase(NEURON, t, t + cycle_neuron_steps, k + 1))
    t += cycle_neuron_steps
  phases[-1] = phases[-1]._replace(end=-1)
  return phases


def correlation_score(dendrites, errors):
  """``sum_n |cov_p(d_n, E_n)|`` for one layer; ``dendrites`` and ``errors`` ``[..., features]``."""
  d = dendrites.reshape(-1, dendrites.shape[-1]).astype(jnp.float32)
  e = errors.reshape(-1, errors.shape[-1]).astype(jnp.float32)
  cov = jnp.mean((d - d.mean(0)) * (e - e.mean(0)), 0)
  return jnp.sum(jnp.abs(cov))


class PerforatedState(flax.struct.PyTreeNode):
  """What a Perforated Backpropagation run carries.

  Attributes:
    step: int32 scalar.
    params: the ``Perforated`` model's parameters (neurons and dendrites).
    opt_state: one optimizer state, reset at the start of every phase.
    model_state: the model's other collections (``'perforation'``: the number of active dendrites, kept equal to
      the current phase's, so ``variables(state)`` is the model as trained so far).
    rng: PRNG key (``fold_in(rng, step)`` per step).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array


def _path_keys(path) -> list[str]:
  return [str(getattr(p, "key", getattr(p, "name", p))) for p in path]


def _slot_of(path) -> int | None:
  for key in _path_keys(path):
    if key.startswith("slot_"):
      return int(key.split("_")[1])
  return None


def _is_cascade(path) -> bool:
  return bool(_path_keys(path)) and _path_keys(path)[-1] == "cascade"


def neuron_mask(params):
  """1.0 on what a neuron phase trains (the wrapped model and ``to_neuron``), 0.0 on dendrite weights."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x) if dendrites_lib.is_dendrite_weight(p) else jnp.ones_like(x), params)


def candidate_mask(params, candidate):
  """1.0 on dendrite ``candidate``'s weights (its slot and its cascade row), 0.0 elsewhere."""
  def mask(path, x):
    if not dendrites_lib.is_dendrite_weight(path):
      return jnp.zeros_like(x)
    if _is_cascade(path):  # [K, K, features]: row `candidate` is the candidate's input from earlier dendrites
      return jnp.broadcast_to((jnp.arange(x.shape[0]) == candidate)[:, None, None], x.shape).astype(x.dtype)
    return jnp.broadcast_to(_slot_of(path) == candidate, x.shape).astype(x.dtype)
  return jax.tree_util.tree_map_with_path(mask, params)


def _mul(tree, mask):
  return jax.tree.map(lambda a, m: a * m.astype(a.dtype), tree, mask)


@dataclasses.dataclass(frozen=True)
class PerforatedBackprop:
  """Perforated Backpropagation of a ``zoo.dendrites.Perforated`` model (module docstring).

  Attributes:
    model: a ``zoo.dendrites.Perforated``.
    task: a task from ``zoo.recipes.tasks`` (per-example losses: the errors ``E`` are per example).
    optimizer: optax transformation used in every phase (its state is reset at every switch).
    neuron_steps: steps of the first neuron phase (training "to a plateau").
    dendrite_steps: steps of every dendrite phase.
    cycle_neuron_steps: steps of the neuron phase after each dendrite phase (0: ``neuron_steps``).
    num_cycles: dendrite cycles (0: the model's ``num_dendrites``).
    train_dendrites: the mechanism (default True): dendrite phases train each candidate on the correlation S.
      False is the ablation: the same schedule, but the dendrites keep their random initial weights (they are still
      switched in, and the next neuron phase still learns their ``c_k``).
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  neuron_steps: int = 1000
  dendrite_steps: int = 500
  cycle_neuron_steps: int = 0
  num_cycles: int = 0
  train_dendrites: bool = True

  def __post_init__(self):
    if not isinstance(self.model, dendrites_lib.Perforated):
      raise TypeError(f"PerforatedBackprop: `model` must be a zoo.dendrites.Perforated (wrap the zoo model: "
                      f"Perforated(base=...)); got {type(self.model).__name__}.")
    if self.num_cycles > self.model.num_dendrites:
      raise ValueError(f"PerforatedBackprop: num_cycles={self.num_cycles} needs a model with at least that many "
                       f"dendrite slots; it has num_dendrites={self.model.num_dendrites}.")
    self.schedule  # validates the step counts  # pylint: disable=pointless-statement

  @property
  def schedule(self) -> list[Phase]:
    return switch_schedule(self.neuron_steps, self.dendrite_steps, self.num_cycles or self.model.num_dendrites,
                           self.cycle_neuron_steps or None)

  def phase_at(self, step):
    """``(kind, start, active)`` of the phase holding ``step`` (jnp scalars; ``step`` may be traced)."""
    phases = self.schedule
    starts = jnp.asarray([p.start for p in phases])
    index = jnp.sum(starts <= step) - 1
    return (jnp.asarray([p.kind for p in phases])[index], starts[index],
            jnp.asarray([p.active for p in phases])[index])

  # ------------------------------------------------------------------------------------------------ protocol

  def init(self, rng, batch) -> PerforatedState:
    params_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng, "noise": dropout_rng},
                                     self.task.inputs(batch), train=False))
    params = variables.pop("params")
    variables.pop("losses", None)
    variables.pop("intermediates", None)
    return PerforatedState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                           model_state=variables, rng=state_rng)

  def _apply(self, params, model_state, batch, rng, active, extra=None, mutable=()):
    dropout_rng, noise_rng = jax.random.split(rng)
    variables = {"params": params, **model_state, **(extra or {})}
    return self.model.apply(variables, self.task.inputs(batch), train=True, active_dendrites=active,
                            rngs={"dropout": dropout_rng, "noise": noise_rng}, mutable=["losses", *mutable])

  def neuron_loss(self, params, model_state, batch, rng, active):
    """Mean task loss + sown losses with ``active`` dendrites switched in."""
    outputs, cols = self._apply(params, model_state, batch, rng, active)
    task_loss = jnp.mean(self.task.loss(outputs, batch))
    return task_loss + sown_losses(cols), task_loss

  def errors(self, params, model_state, batch, rng, active):
    """``({bank: dL/dy [..., features]}, mean task loss)``: every wrapped layer's per-example error."""
    x = self.task.inputs(batch)
    shapes = jax.eval_shape(lambda: self.model.apply(
        {"params": params, **model_state}, x, train=True, active_dendrites=active, mutable=["perturbations"],
        rngs={"dropout": rng, "noise": rng})[1]["perturbations"])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def summed_loss(perturbations):
      outputs, _ = self._apply(params, model_state, batch, rng, active, {"perturbations": perturbations})
      per_example = self.task.loss(outputs, batch)
      # Summed, not averaged: E_p is example p's own error, whatever the batch size.
      return jnp.sum(per_example), jnp.mean(per_example)

    (_, loss), grads = jax.value_and_grad(summed_loss, has_aux=True)(zeros)
    return {bank: g["error"] for bank, g in grads.items()}, loss

  def dendrite_objective(self, params, model_state, batch, rng, active, errors):
    """``(S, per-layer S)``: the correlation of dendrite ``active`` with the (constant) ``errors``, every layer."""
    errors = jax.lax.stop_gradient(errors)
    _, cols = self._apply(params, model_state, batch, rng, active, mutable=["intermediates"])
    per_layer = {}
    for bank, sown in cols["intermediates"].items():
      if bank not in errors:
        continue
      candidate = jnp.take(sown["dendrites"][0], active, axis=0)
      per_layer[bank] = correlation_score(candidate, errors[bank])
    return sum(per_layer.values()), per_layer

  def step(self, state: PerforatedState, batch):
    kind, start, active = self.phase_at(state.step)
    rng = jax.random.fold_in(state.rng, state.step)
    fresh = self.optimizer.init(state.params)
    opt_state = jax.tree.map(lambda new, old: jnp.where(state.step == start, new, old), fresh, state.opt_state)

    def on_neurons(_):
      return neuron_phase(self, state.params, state.model_state, batch, rng, active)

    def on_dendrites(_):
      return dendrite_phase(self, state.params, state.model_state, batch, rng, active)

    grads, mask, metrics = jax.lax.cond(kind == DENDRITE, on_dendrites, on_neurons, None)
    updates, opt_state = self.optimizer.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, _mul(updates, mask))
    model_state = dict(state.model_state)
    model_state["perforation"] = {"active": active.astype(jnp.int32)}
    metrics = {**metrics, "phase": kind.astype(jnp.float32), "active_dendrites": active.astype(jnp.float32),
               "grad_norm": optax.tree.norm(_mul(grads, mask))}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics

  def variables(self, state: PerforatedState):
    return {"params": state.params, **state.model_state}

  def evaluate(self, state: PerforatedState, batch):
    outputs = self.model.apply(self.variables(state), self.task.inputs(batch), train=False)
    return self.task.metrics(outputs, batch)


def neuron_phase(proc: PerforatedBackprop, params, model_state, batch, rng, active):
  """One neuron-phase gradient: ``(grads, update mask, metrics)``; dendrite weights are masked (and get exactly 0
  gradient anyway, through the stop_gradient)."""
  (_, task_loss), grads = jax.value_and_grad(proc.neuron_loss, has_aux=True)(params, model_state, batch, rng, active)
  return grads, neuron_mask(params), {"loss": task_loss, "correlation": jnp.zeros((), jnp.float32)}


def dendrite_phase(proc: PerforatedBackprop, params, model_state, batch, rng, active):
  """One dendrite-phase gradient (ascent on S for dendrite ``active``): ``(grads, update mask, metrics)``."""
  errors, task_loss = proc.errors(params, model_state, batch, rng, active)
  (score, _), grads = jax.value_and_grad(proc.dendrite_objective, has_aux=True)(
      params, model_state, batch, rng, active, errors)
  grads = jax.tree.map(jnp.negative, grads)  # the optimizer descends; the dendrites ascend S
  mask = candidate_mask(params, active)
  if not proc.train_dendrites:  # the ablation: the candidate keeps its random initial weights
    mask = jax.tree.map(jnp.zeros_like, mask)
  return grads, mask, {"loss": task_loss, "correlation": score}


# ------------------------------------------------------------------------------------------------ the cycles


@dataclasses.dataclass
class CycleResult:
  """What :func:`train_cycles` returns.

  Attributes:
    state: the final (kept) state; variables: ``model.apply`` variables of it.
    kept_cycles: dendrite cycles kept (validation improved after each).
    validation: the validation metric after the first neuron phase and after every cycle tried.
    history: the loop's logged training records.
    trainer: the compiled trainer (``trainer.evaluate(state, source, batch_size)``).
  """
  state: Any
  variables: Any
  kept_cycles: int
  validation: list[float]
  history: list[dict[str, float]]
  trainer: Any


def train_cycles(model: nn.Module, train_data: Mapping[str, np.ndarray], *, val_data: Mapping[str, np.ndarray],
                 task: Any = "classification", optimizer: optax.GradientTransformation | None = None,
                 neuron_steps: int = 1000, dendrite_steps: int = 500, cycle_neuron_steps: int = 0,
                 num_cycles: int = 0, batch_size: int = 64, metric: str = "accuracy", higher_is_better: bool = True,
                 seed: int = 0, mesh=None, eval_batch_size: int | None = None) -> CycleResult:
  """Perforated Backpropagation with the paper's "keep a cycle only if validation improves" rule.

  The same procedure and loop as a config run, called once per phase pair: the first neuron phase, then for each
  cycle (dendrite phase + neuron phase) a ``run_loop`` call followed by a validation evaluation; a cycle that does
  not improve ``metric`` is undone (the state before it is restored) and training stops.
  """
  from zoo.recipes import builders  # pylint: disable=g-import-not-at-top
  from zoo.recipes import data as data_lib  # pylint: disable=g-import-not-at-top
  from zoo.recipes import sharding  # pylint: disable=g-import-not-at-top
  from zoo.recipes import train as train_lib  # pylint: disable=g-import-not-at-top

  if isinstance(task, str):
    task = builders.make_task({"name": task})
  proc = PerforatedBackprop(model=model, task=task, optimizer=optimizer or optax.adam(1e-3),
                            neuron_steps=neuron_steps, dendrite_steps=dendrite_steps,
                            cycle_neuron_steps=cycle_neuron_steps, num_cycles=num_cycles)
  mesh = sharding.make_mesh() if mesh is None else mesh
  source = data_lib.ArraySource(train_data)
  batches = data_lib.Batches(source, batch_size, seed=seed)
  example = {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), sharding.device_dtype(v.dtype))
             for k, v in source.arrays.items()}
  trainer = train_lib.Trainer(proc, mesh, example)
  batches.rows = sharding.process_rows(batch_size, trainer.batch_sharding)
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  eval_bs = eval_batch_size or -(-max(batch_size, 256) // shards) * shards
  val_source = data_lib.ArraySource(val_data)

  def validate(state):
    value = trainer.evaluate(state, val_source, eval_bs)[metric]
    return value if higher_is_better else -value

  history: list[dict[str, float]] = []
  phases = proc.schedule
  state = trainer.init(seed, trainer.put(batches(0), batch_size))
  state = train_lib.run_loop(trainer, state, batches=batches, batch_size=batch_size, start=0,
                             steps=phases[0].end if len(phases) > 1 else neuron_steps, log_every=100,
                             history=history)
  scores = [validate(state)]
  kept = 0
  for k in range(1, len(phases), 2):
    start = phases[k].start
    end = phases[k + 1].end if phases[k + 1].end > 0 else phases[k + 1].start + (cycle_neuron_steps or neuron_steps)
    before = jax.tree.map(jnp.copy, state)  # the step donates its input state
    state = train_lib.run_loop(trainer, state, batches=batches, batch_size=batch_size, start=start, steps=end,
                               log_every=100, history=history)
    scores.append(validate(state))
    if scores[-1] <= scores[kept]:
      state = before
      break
    kept = len(scores) - 1
  sign = 1.0 if higher_is_better else -1.0
  return CycleResult(state=state, variables=proc.variables(state), kept_cycles=kept,
                     validation=[sign * s for s in scores], history=history, trainer=trainer)
