"""Gradient-boosted sequential training (GBNN): the last hidden layer grown in T stages of J units.

Paper: Seyedsaman Emami, Gonzalo Martinez-Munoz, "Sequential Training of Neural Networks with Gradient Boosting"
(2019; IEEE Access 2023), arXiv:1909.12098; reference implementation github.com/GAA-UAM/GBNN (read, not copied).
The model is ``zoo.boosted.BoostedNet`` (a trunk, one hidden layer of T * J units behind a unit mask, a linear
output); a config selects this procedure with ``procedure.name = 'boosting.GradientBoosting'``.

The algorithm (the paper's Algorithm 1), for a loss ``L(y, F)``:

1. ``F_0 = argmin_c sum_i L(y_i, c)``: the mean target (squared loss) or the log class frequencies (softmax
   cross-entropy), written into the output bias.
2. For ``t = 1 .. T``: the pseudo-residuals ``r_i = -dL/dF(x_i)`` at the current ensemble ``F_{t-1}``
   (``y - F`` for the squared loss, ``onehot(y) - softmax(F)`` for softmax cross-entropy) are fitted by a fresh
   one-hidden-layer network ``g_t`` of J logistic units and ``outputs`` linear outputs (its own intercept ``c_t``),
   by least squares on a random subsample (the reference: sklearn's ``MLPRegressor``, L-BFGS, 200 iterations,
   ``subsample = 0.5``). Then one Newton step gives the step length

       squared loss:   rho_t = sum_i <r_i, g_t(x_i)> / sum_i |g_t(x_i)|^2
       softmax CE:     rho_t = sum_ik r_ik g_tk(x_i) / sum_ik g_tk(x_i)^2 p_ik (1 - p_ik)

   and ``F_t = F_{t-1} + eta * rho_t * g_t`` (``eta``: the shrinkage).
3. Assembly: the hidden weights of all stages side by side, the output rows of stage t scaled by ``eta rho_t``,
   the output bias ``F_0 + sum_t eta rho_t c_t``: one network with T * J hidden units that computes ``F_T``.

Here the network is kept assembled throughout. The stage's units ``[t J, (t + 1) J)`` of ``BoostedNet`` *are*
``g_t``'s hidden units, and its output rows and its intercept row ``stage_bias[t]`` hold ``g_t``'s raw output
weights while it is fitted; the units of earlier stages are frozen (``stop_gradient`` inside the loss, so even an
L-BFGS line search cannot move them, and their updates are masked) and the later units are switched off by the
model's unit mask. When the stage's line search ends, its output rows and intercept are multiplied by
``eta rho_t`` and its units are switched on: the assembled network equals the boosted sum at every stage boundary
(``tests/recipes/procedures/test_boosting.py`` checks it to 1e-5), and switching off the stages trained last gives the boosted
sum truncated there.

Phases are state the step reads (a function of the step count; :func:`boosting_schedule`), so the whole algorithm
runs in the one loop of ``zoo.recipes.train`` (CLI, checkpoints, resume):

* ``trunk_steps`` steps of backprop of the task loss through the trunk and a linear probe (only with a trunk:
  the paper's deep variant trains the convolutional part first and then boosts the last layer on its features);
  the trunk is frozen afterwards;
* ``estimate_steps`` steps accumulating the target statistics of ``F_0``;
* per stage: ``stage_steps`` optimizer steps on the stage's least-squares fit (a fresh optimizer state per stage,
  as the reference builds a fresh regressor), then ``estimate_steps`` steps accumulating the Newton sums over
  batches, folded into the network on the last one;
* after the last stage the step changes nothing.

The stage solver (``solver``): ``'lbfgs'`` (the default, the paper's and the reference's: sklearn's MLPRegressor with
``solver='lbfgs'``) fits every stage with ``optax.lbfgs()`` (memory 10, zoom line search; a fresh state per stage);
``'optimizer'`` fits them with the procedure's ``optimizer`` (e.g. Adam: ~10x cheaper per step on CPU, no line
search, and it tolerates minibatches). ``optimizer`` always pre-trains the trunk. L-BFGS needs one fixed objective:
use ``batch_size`` = the training set (the configs and tests for the small bundled sets; the statistics of ``F_0``
and ``rho_t`` are then exact); minibatches make them running estimates and suit ``solver='optimizer'``.

Subsampling, as the reference does it: one subsample per stage. Whether an example is in stage t's subsample is a
pseudo-random function of (the example's input, t, the run's seed): a Bernoulli(``subsample``) draw keyed by a hash
of the input's bits, so the stage sees the same examples at every one of its steps, whatever the batch order or
composition (L-BFGS gets one fixed objective), and each stage draws afresh. Duplicate inputs share their draw; the
subsample's size is binomial (the reference takes exactly half).

The mechanism flag ``fit_residuals`` (default True, the paper's method): False fits every stage to the
pseudo-residuals of the constant model ``F_0`` instead of the current ensemble ``F_{t-1}`` (stages not fitted to
residuals; the Newton step and everything else unchanged), the ablation of ``tests/papers/test_gbnn.py``.

Deviations from the paper and the reference, on purpose:

* the stage's intercept ``c_t`` starts at 0 (the reference's starts uniform like the weights); sklearn's default L2
  penalty ``alpha = 1e-4`` is not applied; the stage runs a fixed number of solver steps (sklearn stops early at
  ``tol = 1e-4``);
* the reference skips the line search for the squared loss (``rho = 1``); here it is computed as for every loss (it
  is 1 when the output layer has converged, since the fit's residual is then orthogonal to ``g_t``);
* ``F_0`` for softmax CE is the log class frequency (the paper's "constant that minimises the average loss"; the
  reference starts at 0); binary classification uses the same 2-output softmax (the reference switches to a
  1-output log-exponential loss for 2 classes).

Public names:

* :class:`GradientBoosting`: the procedure (``init``/``step``/``evaluate``/``variables``).
* :class:`BoostingState`: its state (the model's ``params``, optimizer state, ``model_state`` with the unit mask,
  ``stats`` of the running estimate, ``rho [T]``).
* :func:`boosting_schedule` ``(num_stages, stage_steps, estimate_steps, trunk_steps) -> [Phase]``.
* :func:`stage_output` ``(proc, state, x) -> [batch, outputs]``: the current stage's network ``g_t(x)``
  (raw output weights and intercept), e.g. to check the assembly.

The assembled network exports to a plain ``zoo.core.MLP`` with ``zoo.boosted.to_single_network``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import boosted as boosted_lib
from zoo.recipes import tasks as tasks_lib

__all__ = ["BoostingState", "GradientBoosting", "Phase", "boosting_schedule", "stage_output"]

PRETRAIN, PRIOR, FIT, LINE_SEARCH, DONE = range(5)
PHASE_NAMES = ("pretrain", "prior", "fit", "line_search", "done")


class Phase(NamedTuple):
  """Steps ``[start, end)`` of one phase: ``kind`` (PRETRAIN, PRIOR, FIT, LINE_SEARCH, DONE) of stage ``stage``."""
  kind: int
  start: int
  end: int
  stage: int


def boosting_schedule(num_stages: int, stage_steps: int, estimate_steps: int, trunk_steps: int = 0) -> list[Phase]:
  """The phases of a GBNN run; the final DONE phase has no end (``end = -1``)."""
  if num_stages < 1 or stage_steps < 1 or estimate_steps < 1 or trunk_steps < 0:
    raise ValueError(f"boosting_schedule: need num_stages >= 1, stage_steps >= 1, estimate_steps >= 1 and "
                     f"trunk_steps >= 0; got {num_stages}, {stage_steps}, {estimate_steps}, {trunk_steps}.")
  phases, t = [], 0
  if trunk_steps:
    phases.append(Phase(PRETRAIN, 0, trunk_steps, 0))
    t = trunk_steps
  phases.append(Phase(PRIOR, t, t + estimate_steps, 0))
  t += estimate_steps
  for stage in range(num_stages):
    phases.append(Phase(FIT, t, t + stage_steps, stage))
    t += stage_steps
    phases.append(Phase(LINE_SEARCH, t, t + estimate_steps, stage))
    t += estimate_steps
  phases.append(Phase(DONE, t, -1, num_stages))
  return phases


class BoostingState(flax.struct.PyTreeNode):
  """What a GBNN run carries.

  Attributes:
    step: int32 scalar.
    params: the ``BoostedNet``'s parameters.
    opt_state: ``{'trunk': optimizer state, 'stage': stage solver state}``, fresh at the start of every phase.
    model_state: the model's other collections; ``boosting/mask [T * J]`` marks the units of finished stages.
    rng: PRNG key (``fold_in(rng, step)`` per step).
    stats: running sums of the current estimate phase: ``num``, ``den`` (the Newton step), ``target_sum
      [outputs]`` and ``count`` (``F_0``).
    rho: ``[T]`` the Newton steps ``rho_t`` of finished stages (0 for the others).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  stats: Any
  rho: jax.Array


def _where(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _top(path) -> str:
  return str(getattr(path[0], "key", getattr(path[0], "name", path[0])))


@dataclasses.dataclass(frozen=True)
class GradientBoosting:
  """GBNN (module docstring) for a ``zoo.boosted.BoostedNet`` under a classification or regression task.

  Attributes:
    model: a ``zoo.boosted.BoostedNet`` (T = ``num_stages``, J = ``stage_units``).
    task: ``tasks.Classification`` (softmax cross-entropy) or ``tasks.Regression`` (squared loss).
    optimizer: optax transformation pre-training the trunk, and fitting the stages with ``solver='optimizer'``.
    shrinkage: eta, the learning rate of boosting (the reference's default is 1.0; the paper tunes it).
    stage_steps: solver steps per stage (the reference: at most 200 L-BFGS iterations).
    estimate_steps: batches over which ``F_0`` and each ``rho_t`` are accumulated (1 with full-batch training).
    subsample: the expected fraction of the examples in each stage's subsample (the paper: 0.5; one draw per
      stage, module docstring).
    trunk_steps: backprop steps pre-training the model's trunk with a linear probe (0: no pre-training).
    solver: ``'lbfgs'`` (default, the paper's: ``optax.lbfgs()`` fits each stage) or ``'optimizer'``.
    fit_residuals: the mechanism (default True): stage t fits the pseudo-residuals of ``F_{t-1}``; False fits
      those of the constant ``F_0`` (the ablation: stages not fitted to residuals).
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  shrinkage: float = 1.0
  stage_steps: int = 200
  estimate_steps: int = 1
  subsample: float = 0.5
  trunk_steps: int = 0
  solver: str = "lbfgs"
  fit_residuals: bool = True

  def __post_init__(self):
    if self.solver not in ("lbfgs", "optimizer"):
      raise ValueError(f"GradientBoosting: `solver` must be 'lbfgs' (the paper's) or 'optimizer' (the procedure's "
                       f"optimizer fits the stages); got {self.solver!r}.")
    if not isinstance(self.model, boosted_lib.BoostedNet):
      raise TypeError(f"GradientBoosting: `model` must be a zoo.boosted.BoostedNet (config: model.name = "
                      f"'boosted.BoostedNet'); got {type(self.model).__name__}.")
    if not isinstance(self.task, (tasks_lib.Classification, tasks_lib.Regression)):
      raise TypeError(f"GradientBoosting: `task` must be tasks.Classification (softmax loss) or tasks.Regression "
                      f"(squared loss); got {type(self.task).__name__}.")
    if not 0.0 < self.subsample <= 1.0:
      raise ValueError(f"GradientBoosting: `subsample` must be in (0, 1]; got {self.subsample}.")
    if self.shrinkage <= 0.0:
      raise ValueError(f"GradientBoosting: `shrinkage` must be > 0; got {self.shrinkage}.")
    if self.trunk_steps and self.model.trunk is None:
      raise ValueError("GradientBoosting: `trunk_steps` > 0 pre-trains the model's trunk, but the BoostedNet has no "
                       "trunk.")
    self.schedule  # validates the step counts  # pylint: disable=pointless-statement

  # ------------------------------------------------------------------------------------------------ schedule

  @property
  def classification(self) -> bool:
    return isinstance(self.task, tasks_lib.Classification)

  @property
  def schedule(self) -> list[Phase]:
    return boosting_schedule(self.model.num_stages, self.stage_steps, self.estimate_steps, self.trunk_steps)

  @property
  def stage_optimizer(self) -> optax.GradientTransformation:
    """What fits each stage: ``optax.lbfgs()`` (``solver='lbfgs'``) or ``optimizer``."""
    return optax.lbfgs() if self.solver == "lbfgs" else self.optimizer

  @property
  def total_steps(self) -> int:
    """Steps until the last stage is folded in (``config.steps`` should be at least this)."""
    return self.schedule[-1].start

  def phase_at(self, step):
    """``(kind, start, end, stage)`` of the phase holding ``step`` (jnp scalars; ``step`` may be traced)."""
    phases = self.schedule
    starts = jnp.asarray([p.start for p in phases])
    index = jnp.sum(starts <= step) - 1
    pick = lambda field: jnp.asarray([getattr(p, field) for p in phases])[index]
    return pick("kind"), pick("start"), pick("end"), pick("stage")

  # ------------------------------------------------------------------------------------------------ pieces

  def _targets(self, batch, outputs):
    """The targets as ``[batch, outputs]`` float: one-hot labels or the flattened regression targets."""
    y = batch[self.task.target_key]
    if self.classification:
      return jax.nn.one_hot(y, outputs, dtype=jnp.float32)
    return y.reshape(y.shape[0], -1).astype(jnp.float32)

  def _residuals(self, F, y):
    """``-dL/dF``: ``y - F`` (squared loss) or ``y - softmax(F)`` (softmax CE), and the probabilities."""
    if self.classification:
      p = jax.nn.softmax(F.astype(jnp.float32), axis=-1)
      return y - p, p
    return y - F.astype(jnp.float32), None

  def _stage_units(self, stage):
    """Float ``[T * J]``: 1 on the units of ``stage``."""
    units = jnp.arange(self.model.num_units)
    return (units // self.model.stage_units == stage).astype(jnp.float32)

  def _update_mask(self, params, kind, stage):
    """1.0 on what ``kind`` trains: the trunk and probe (PRETRAIN); stage ``stage``'s hidden units, their output
    rows and its intercept row ``stage_bias[stage]`` (FIT); nothing otherwise."""
    units = self._stage_units(stage)
    rows = (jnp.arange(self.model.num_stages) == stage).astype(jnp.float32)
    fit, pretrain = (kind == FIT).astype(jnp.float32), (kind == PRETRAIN).astype(jnp.float32)

    def mask(path, x):
      top, leaf = _top(path), _top(path[-1:])
      if top == "hidden":  # kernel [in, units], bias [units]
        return jnp.broadcast_to(units, x.shape).astype(x.dtype) * fit
      if top == "readout":  # kernel [units, outputs]; the output bias F_0 is set by the prior phase only
        return (jnp.broadcast_to(units[:, None], x.shape).astype(x.dtype) * fit if leaf == "kernel"
                else jnp.zeros_like(x))
      if top == "stage_bias":  # [T, outputs]
        return jnp.broadcast_to(rows[:, None], x.shape).astype(x.dtype) * fit
      return jnp.full_like(x, pretrain)  # the trunk and the probe
    return jax.tree_util.tree_map_with_path(mask, params)

  def _subsample(self, rng, stage, x):
    """Float ``[batch]``: 1 on the examples in ``stage``'s subsample, a function of (input, stage, ``rng``)."""
    n = x.shape[0]
    if self.subsample >= 1.0:
      return jnp.ones((n,), jnp.float32)
    bits = jax.lax.bitcast_convert_type(x.reshape(n, -1).astype(jnp.float32), jnp.uint32)
    # A random linear hash of the input's bits (uint32 arithmetic wraps), then one Bernoulli draw per example.
    coef = jax.random.bits(jax.random.key(0x6B4E), (bits.shape[1],), jnp.uint32) | jnp.uint32(1)
    codes = jnp.sum(bits * coef, axis=1, dtype=jnp.uint32)
    key = jax.random.fold_in(jax.random.fold_in(rng, 0x5AB5), stage)
    draw = jax.vmap(lambda c: jax.random.bernoulli(jax.random.fold_in(key, c), self.subsample))(codes)
    return draw.astype(jnp.float32)

  def _apply(self, params, model_state, x, method, **kwargs):
    return self.model.apply({"params": params, **model_state}, x, method=method, **kwargs)

  def _stage(self, params, model_state, h, stage):
    """``g_t(x) = h_t W_t + c_t``: the stage's own network (its raw output rows and intercept)."""
    out = self._apply(params, model_state, h, "readout", units=self._stage_units(stage))
    return out - params["readout"]["bias"]

  # ------------------------------------------------------------------------------------------------ protocol

  def init(self, rng, batch) -> BoostingState:
    params_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng},
                                     self.task.inputs(batch), method="init_all"))
    params = variables.pop("params")
    variables["boosting"] = {"mask": jnp.zeros((self.model.num_units,), jnp.float32)}  # nothing trained yet
    opt_state = {"trunk": self.optimizer.init(params), "stage": self.stage_optimizer.init(params)}
    return BoostingState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                         model_state=variables, rng=state_rng, stats=self._zero_stats(),
                         rho=jnp.zeros((self.model.num_stages,), jnp.float32))

  def _zero_stats(self):
    zero = jnp.zeros((), jnp.float32)
    return {"num": zero, "den": zero, "count": zero, "target_sum": jnp.zeros((self.model.outputs,), jnp.float32)}

  def step(self, state: BoostingState, batch):
    kind, start, end, stage = self.phase_at(state.step)
    first, last = state.step == start, state.step == end - 1
    rng = jax.random.fold_in(state.rng, state.step)
    txs = {"trunk": optax.with_extra_args_support(self.optimizer),
           "stage": optax.with_extra_args_support(self.stage_optimizer)}
    opt_state = _where(first, {k: tx.init(state.params) for k, tx in txs.items()}, state.opt_state)
    stats = _where(first, self._zero_stats(), state.stats)
    x = self.task.inputs(batch)
    y = self._targets(batch, self.model.outputs)
    model_state = state.model_state
    zero = jnp.zeros((), jnp.float32)

    def ensemble_loss(params):
      return jnp.mean(self.task.loss(self._apply(params, model_state, x, "__call__"), batch))

    def trained(loss_fn, which):
      """One step of ``txs[which]`` on ``loss_fn`` of the masked parameters: ``(params, opt_state, loss, gnorm)``."""
      params = state.params
      mask = self._update_mask(params, kind, stage)
      frozen = lambda p: jax.tree.map(lambda a, m: jnp.where(m > 0, a, jax.lax.stop_gradient(a)), p, mask)
      value_fn = lambda p: loss_fn(frozen(p))
      loss, grads = jax.value_and_grad(value_fn)(params)
      updates, new = txs[which].update(grads, opt_state[which], params, value=loss, grad=grads, value_fn=value_fn)
      new_opt = {**opt_state, which: new}
      updates = jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mask)
      return optax.apply_updates(params, updates), new_opt, loss, optax.tree.norm(grads)

    def pretrain(_):
      def loss_fn(params):
        logits = self.model.apply({"params": params, **model_state}, x, train=True, method="probe",
                                  rngs={"dropout": rng})
        return jnp.mean(self.task.loss(logits, batch))
      params, new_opt, loss, gnorm = trained(loss_fn, "trunk")
      return params, new_opt, model_state, stats, state.rho, {"loss": loss, "stage_loss": zero, "grad_norm": gnorm}

    def prior(_):
      new_stats = {**stats, "count": stats["count"] + y.shape[0], "target_sum": stats["target_sum"] + y.sum(0)}
      mean = new_stats["target_sum"] / jnp.maximum(new_stats["count"], 1.0)
      if self.classification:  # log class frequencies minimise the average cross-entropy among constants
        f0 = jnp.log(jnp.clip(mean, 1e-6, None))
        f0 = f0 - jnp.mean(f0)
      else:
        f0 = mean
      params = dict(state.params)
      readout = dict(params["readout"])
      readout["bias"] = jnp.where(last, f0.astype(readout["bias"].dtype), readout["bias"])
      params["readout"] = readout
      return params, opt_state, model_state, new_stats, state.rho, {"loss": ensemble_loss(params),
                                                                    "stage_loss": zero, "grad_norm": zero}

    def fit(_):
      keep = self._subsample(state.rng, stage, x)
      # The units whose output the stage fits the residuals of: the finished stages (None: the mask in
      # model_state), or none of them (the ablation: the residuals of F_0).
      previous = None if self.fit_residuals else jnp.zeros((self.model.num_units,), jnp.float32)

      def loss_fn(params):
        h = self._apply(params, model_state, x, "hidden")
        # The output F_{t-1} of the finished stages: a constant target for this stage.
        r, _ = self._residuals(jax.lax.stop_gradient(self._apply(params, model_state, h, "readout",
                                                                 units=previous)), y)
        g = self._stage(params, model_state, h, stage)
        # sklearn's MLPRegressor loss: half the mean squared error over examples and outputs.
        err = jnp.sum((r - g) ** 2, axis=-1) / y.shape[-1]
        return 0.5 * jnp.sum(err * keep) / jnp.maximum(jnp.sum(keep), 1.0)

      params, new_opt, stage_loss, gnorm = trained(loss_fn, "stage")
      return params, new_opt, model_state, stats, state.rho, {"loss": ensemble_loss(state.params),
                                                              "stage_loss": stage_loss, "grad_norm": gnorm}

    def line_search(_):
      params = state.params
      h = self._apply(params, model_state, x, "hidden")
      F = self._apply(params, model_state, h, "readout")
      r, p = self._residuals(F, y)
      g = self._stage(params, model_state, h, stage).astype(jnp.float32)
      curvature = 1.0 if p is None else p * (1.0 - p)
      new_stats = {**stats, "num": stats["num"] + jnp.sum(r * g), "den": stats["den"] + jnp.sum(g * g * curvature)}
      rho = jnp.where(new_stats["den"] > 0, new_stats["num"] / jnp.maximum(new_stats["den"], 1e-30), 0.0)
      step_len = jnp.where(last, self.shrinkage * rho, 1.0)
      units = self._stage_units(stage)
      rows = jnp.arange(self.model.num_stages) == stage
      params = dict(params)
      readout = dict(params["readout"])
      readout["kernel"] = readout["kernel"] * jnp.where(units > 0, step_len, 1.0)[:, None].astype(
          readout["kernel"].dtype)
      params["readout"] = readout
      params["stage_bias"] = params["stage_bias"] * jnp.where(rows, step_len, 1.0)[:, None].astype(
          params["stage_bias"].dtype)
      new_state = dict(model_state)
      mask = model_state["boosting"]["mask"]
      new_state["boosting"] = {**model_state["boosting"], "mask": jnp.where(last, jnp.maximum(mask, units), mask)}
      new_rho = jnp.where(last, state.rho.at[stage].set(rho), state.rho)
      return params, opt_state, new_state, new_stats, new_rho, {"loss": jnp.mean(self.task.loss(F, batch)),
                                                               "stage_loss": zero, "grad_norm": zero}

    def done(_):
      return state.params, opt_state, model_state, stats, state.rho, {
          "loss": ensemble_loss(state.params), "stage_loss": zero, "grad_norm": zero}

    params, opt_state, model_state, stats, rho, metrics = jax.lax.switch(
        kind, [pretrain, prior, fit, line_search, done], None)
    active = jnp.sum(model_state["boosting"]["mask"])
    finished = (active // self.model.stage_units).astype(jnp.int32)
    metrics = {**metrics, "stage": stage.astype(jnp.float32), "phase": kind.astype(jnp.float32),
               "rho": rho[jnp.maximum(finished - 1, 0)], "active_units": active}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state,
                         stats=stats, rho=rho), metrics

  def variables(self, state: BoostingState):
    """The assembled network: ``{'params', 'boosting': {'mask'}, ...}`` (finished units switched on)."""
    return {"params": state.params, **state.model_state}

  def evaluate(self, state: BoostingState, batch):
    outputs = self.model.apply(self.variables(state), self.task.inputs(batch))
    return self.task.metrics(outputs, batch)


def stage_output(proc: GradientBoosting, state: BoostingState, x) -> jax.Array:
  """``g_t(x)``, the network of the stage being fitted at ``state.step`` (raw output weights, intercept ``c_t``)."""
  _, _, _, stage = proc.phase_at(state.step)
  h = proc._apply(state.params, state.model_state, x, "hidden")  # pylint: disable=protected-access
  return proc._stage(state.params, state.model_state, h, stage)  # pylint: disable=protected-access
