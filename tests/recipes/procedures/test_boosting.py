"""GBNN: the boosted network (zoo.boosted) and the gradient-boosting procedure (zoo.recipes.procedures.boosting).

The procedure tests check the algorithm at the level of the code: the units of finished stages (and the trunk, and
the units of later stages) stay bit-identical while a stage is fitted; at a stage boundary the assembled network
equals ``F_{t-1} + eta rho_t g_t`` with ``g_t`` the stage's own network read just before the fold; ``rho`` is the
line-search minimiser for the squared loss and the reference's diagonal Newton step for softmax cross-entropy; the
pseudo-residuals of a fitted stage are what the stage learned to predict.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import boosted
from zoo import core
from zoo.recipes.procedures import boosting
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train

T, J = 3, 2
STAGE_STEPS = 6


def _data(n=32, d=5, k=3, seed=0, regression=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  if regression:
    return {"x": x, "y": (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(np.float32)}
  return {"x": x, "label": (np.argmax(x[:, :k], axis=1)).astype(np.int32)}


def _proc(regression=False, optimizer=None, **kw):
  k = 1 if regression else 3
  task = tasks.Regression() if regression else tasks.Classification(input_key="x")
  model = boosted.BoostedNet(k, num_stages=T, stage_units=J)
  # Adam fits the stages here (cheap to compile); the L-BFGS default is tested in test_lbfgs_fits_a_stage.
  kw = {"stage_steps": STAGE_STEPS, "subsample": 1.0, "shrinkage": 0.5, "solver": "optimizer", **kw}
  return boosting.GradientBoosting(model=model, task=task, optimizer=optimizer or optax.adam(0.05), **kw)


def _jnp(batch):
  return {k: jnp.asarray(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def cls_run():
  """Every state of a small classification run (full batch), kept step by step."""
  return _run(_proc(), _jnp(_data()))


@pytest.fixture(scope="module")
def reg_run():
  return _run(_proc(regression=True), _jnp(_data(regression=True)))


def _run(proc, batch):
  init = jax.jit(lambda rng, b: nn.unbox(proc.init(rng, b)))
  step = jax.jit(proc.step)
  states, metrics = [init(jax.random.key(0), batch)], []
  for _ in range(proc.total_steps + 1):
    s, m = step(states[-1], batch)
    states.append(s)
    metrics.append(m)
  return proc, batch, states, metrics


# -------------------------------------------------------------------------------------------------------- model


def test_boosted_net_shapes_jit_vmap_and_unit_masks():
  model = boosted.BoostedNet(3, num_stages=4, stage_units=2)
  x = jnp.asarray(_data(8)["x"])
  v = jax.jit(model.init)(jax.random.key(0), x)
  assert set(v["params"]) == {"hidden", "readout", "stage_bias"}  # the probe is created only by init_all
  assert nn.get_partition_spec(v)["params"]["hidden"]["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")
  v = nn.unbox(v)
  np.testing.assert_array_equal(v["boosting"]["mask"], np.ones(8))  # a fresh model is a plain dense network
  out = model.apply(v, x)
  assert out.shape == (8, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(jax.jit(model.apply)(v, x), out, rtol=1e-5, atol=1e-6)
  batched = jax.vmap(lambda xb: model.apply(v, xb))(x.reshape(2, 4, 5))
  np.testing.assert_allclose(batched.reshape(8, 3), out, rtol=1e-5, atol=1e-6)
  # units=n is the first n units; it equals the mask variable set to the same mask.
  h = model.apply(v, x, method="hidden")
  assert h.shape == (8, 8) and float(h.min()) > 0 and float(h.max()) < 1  # logistic units
  first3 = model.apply(v, x, units=3)
  masked = {**v, "boosting": {"mask": jnp.asarray([1, 1, 1, 0, 0, 0, 0, 0], jnp.float32)}}
  np.testing.assert_allclose(model.apply(masked, x), first3, rtol=1e-6)
  manual = h[:, :3] @ v["params"]["readout"]["kernel"][:3] + v["params"]["readout"]["bias"]
  np.testing.assert_allclose(first3, manual, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model.apply(v, x, units=0), np.broadcast_to(v["params"]["readout"]["bias"], (8, 3)))
  np.testing.assert_array_equal(boosted.unit_mask(3, 5), [1, 1, 1, 0, 0])
  assert boosted.stage_slice(2, 3) == slice(6, 9)


def test_boosted_net_initialises_each_stage_like_a_fresh_reference_network():
  model = boosted.BoostedNet(4, num_stages=50, stage_units=2)
  v = nn.unbox(model.init(jax.random.key(0), jnp.ones((2, 30))))
  hidden, readout = v["params"]["hidden"]["kernel"], v["params"]["readout"]["kernel"]
  # sklearn's logistic init: U(+-sqrt(2 / (fan_in + fan_out))), the stage's own fan-out J = 2.
  assert float(jnp.abs(hidden).max()) <= np.sqrt(2 / 32) and float(jnp.abs(hidden).max()) > 0.9 * np.sqrt(2 / 32)
  assert float(jnp.abs(readout).max()) <= np.sqrt(2 / 6) and float(jnp.abs(readout).max()) > 0.9 * np.sqrt(2 / 6)
  np.testing.assert_array_equal(v["params"]["readout"]["bias"], np.zeros(4))


@pytest.mark.parametrize("trunk", [core.MLP((16, 8)), {"name": "core.ConvNet", "num_classes": 8, "features": (4,),
                                                       "hidden": ()}], ids=["mlp", "convnet"])
def test_boosted_net_composes_with_zoo_trunks(trunk):
  model = boosted.BoostedNet(10, num_stages=3, stage_units=2, trunk=trunk)
  x = jnp.ones((4, 8, 8, 1))
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, method="init_all"))
  assert set(v["params"]) == {"trunk", "hidden", "probe", "readout", "stage_bias"}
  assert v["params"]["hidden"]["kernel"].value.shape == (8, 6)
  v = nn.unbox(v)
  assert jax.eval_shape(lambda v: model.apply(v, x), v).shape == (4, 10)
  assert jax.eval_shape(lambda v: model.apply(v, x, method="probe"), v).shape == (4, 10)


def test_boosted_net_sharded_forward_matches_single_device():
  model = boosted.BoostedNet(3, num_stages=4, stage_units=2, trunk=core.MLP((16, 8)))
  x = jnp.asarray(_data(16, d=6)["x"])
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  v = nn.unbox(model.init(jax.random.key(0), x))
  expected = model.apply(v, x)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(v, sharding.state_shardings(boxed, mesh))
  assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(x, sharding.batch_sharding(mesh)))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_boosted_net_errors():
  x = jnp.ones((4, 5))
  model = boosted.BoostedNet(3, num_stages=2)
  v = nn.unbox(model.init(jax.random.key(0), x))
  with pytest.raises(ValueError, match="`x`"):
    model.apply(v, jnp.ones((5,)))
  with pytest.raises(TypeError, match="`x`"):
    model.apply(v, jnp.ones((4, 5), jnp.int32))
  with pytest.raises(ValueError, match="`units`"):
    model.apply(v, x, units=jnp.ones(3))
  with pytest.raises(ValueError, match="num_stages"):
    boosted.BoostedNet(3, num_stages=0).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="activation"):
    boosted.BoostedNet(3, activation="nope").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="name="):
    boosted.BoostedNet(3, trunk={"features": (4,)}).init(jax.random.key(0), x)
  with pytest.raises(TypeError, match="trunk"):
    boosted.BoostedNet(3, trunk=3).init(jax.random.key(0), x)


# ---------------------------------------------------------------------------------------------------- procedure


def test_schedule_and_errors():
  phases = boosting.boosting_schedule(2, 5, 1, trunk_steps=3)
  kinds = [p.kind for p in phases]
  assert kinds == [boosting.PRETRAIN, boosting.PRIOR, boosting.FIT, boosting.LINE_SEARCH, boosting.FIT,
                   boosting.LINE_SEARCH, boosting.DONE]
  assert [p.start for p in phases] == [0, 3, 4, 9, 10, 15, 16] and phases[-1].end == -1
  assert _proc().total_steps == 1 + T * (STAGE_STEPS + 1)
  with pytest.raises(ValueError, match="stage_steps"):
    boosting.boosting_schedule(2, 0, 1)
  with pytest.raises(TypeError, match="BoostedNet"):
    boosting.GradientBoosting(model=core.MLP((3,)), task=tasks.Classification(), optimizer=optax.adam(1e-3))
  with pytest.raises(TypeError, match="task"):
    boosting.GradientBoosting(model=boosted.BoostedNet(3), task=tasks.Reconstruction(), optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="subsample"):
    _proc(subsample=0.0)
  with pytest.raises(ValueError, match="trunk"):
    _proc(trunk_steps=5)


def _units(stage):
  return slice(stage * J, (stage + 1) * J)


def test_earlier_and_later_units_stay_frozen_while_a_stage_is_fitted(cls_run):
  proc, _, states, metrics = cls_run
  start, end = 1 + (STAGE_STEPS + 1), 1 + 2 * (STAGE_STEPS + 1) - 1  # stage 1's fit steps: states[start .. end]
  before, after = states[start], states[end]
  p0, p1 = before.params, after.params
  for name in ("hidden",):
    k0, k1 = p0[name]["kernel"], p1[name]["kernel"]
    np.testing.assert_array_equal(k0[:, _units(0)], k1[:, _units(0)])  # stage 0: finished, frozen
    np.testing.assert_array_equal(k0[:, _units(2)], k1[:, _units(2)])  # stage 2: not started
    assert not np.allclose(k0[:, _units(1)], k1[:, _units(1)])        # stage 1: being fitted
  r0, r1 = p0["readout"]["kernel"], p1["readout"]["kernel"]
  np.testing.assert_array_equal(r0[_units(0)], r1[_units(0)])
  np.testing.assert_array_equal(r0[_units(2)], r1[_units(2)])
  assert not np.allclose(r0[_units(1)], r1[_units(1)])
  np.testing.assert_array_equal(p0["readout"]["bias"], p1["readout"]["bias"])
  np.testing.assert_array_equal(np.asarray(p0["stage_bias"])[[0, 2]], np.asarray(p1["stage_bias"])[[0, 2]])
  assert not np.allclose(p0["stage_bias"][1], p1["stage_bias"][1])
  np.testing.assert_array_equal(after.model_state["boosting"]["mask"], [1, 1, 0, 0, 0, 0])
  assert all(float(m["phase"]) == boosting.FIT for m in metrics[start:end])
  # Every later step leaves stage 0's units bit-identical (the folds only touch their own stage's rows).
  for s in states[start:]:
    np.testing.assert_array_equal(s.params["hidden"]["kernel"][:, _units(0)], k0[:, _units(0)])
    np.testing.assert_array_equal(s.params["readout"]["kernel"][_units(0)], r0[_units(0)])
    np.testing.assert_array_equal(s.params["stage_bias"][0], p0["stage_bias"][0])


@pytest.mark.parametrize("which", ["cls_run", "reg_run"])
def test_assembled_network_equals_the_boosted_sum_at_every_stage(which, request):
  proc, batch, states, _ = request.getfixturevalue(which)
  x = batch["x"]
  for stage in range(T):
    fold = 1 + (stage + 1) * (STAGE_STEPS + 1) - 1  # the line-search step of this stage
    before, after = states[fold], states[fold + 1]
    g = boosting.stage_output(proc, before, x)
    rho = float(after.rho[stage])
    assert rho != 0.0 and float(before.rho[stage]) == 0.0
    f_before = proc.model.apply(proc.variables(before), x)
    f_after = proc.model.apply(proc.variables(after), x)
    np.testing.assert_allclose(f_after, f_before + proc.shrinkage * rho * g, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after.model_state["boosting"]["mask"], np.arange(T * J) < (stage + 1) * J)
    # Switching off the later stages gives back the truncated sums: F_{t-1} from the final network.
    np.testing.assert_allclose(proc.model.apply(proc.variables(states[-1]), x, units=stage * J), f_before,
                               rtol=1e-5, atol=1e-5)
  # After the last stage the network holds T * J units and the step changes nothing.
  final, extra = states[-2], states[-1]
  assert float(jnp.sum(final.model_state["boosting"]["mask"])) == T * J
  for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(extra.params)):
    np.testing.assert_array_equal(a, b)


def test_assembled_network_exports_to_a_plain_mlp(cls_run):
  proc, batch, states, _ = cls_run
  for state in (states[-1], states[1 + 2 * (STAGE_STEPS + 1)]):  # all stages, and two of three
    mlp, variables = boosted.to_single_network(proc.model, proc.variables(state))
    np.testing.assert_allclose(mlp.apply(variables, batch["x"]), proc.model.apply(proc.variables(state), batch["x"]),
                               rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="trunk"):
    boosted.to_single_network(boosted.BoostedNet(3, trunk=core.MLP((4,))), {})


def test_prior_is_the_constant_minimiser(cls_run, reg_run):
  _, batch, states, _ = reg_run
  np.testing.assert_allclose(states[1].params["readout"]["bias"], [batch["y"].mean()], rtol=1e-5)
  _, batch, states, _ = cls_run
  bias = np.asarray(states[1].params["readout"]["bias"])
  freq = np.bincount(np.asarray(batch["label"]), minlength=3) / len(batch["label"])
  np.testing.assert_allclose(jax.nn.softmax(bias), freq, rtol=1e-4)


def test_rho_is_the_line_search_step(cls_run, reg_run):
  # Squared loss: rho minimises L(F + rho g) exactly (checked against neighbouring step lengths).
  proc, batch, states, _ = reg_run
  fold = 1 + STAGE_STEPS
  before, after = states[fold], states[fold + 1]
  g = np.asarray(boosting.stage_output(proc, before, batch["x"]))
  f = np.asarray(proc.model.apply(proc.variables(before), batch["x"]))
  y, rho = np.asarray(batch["y"]), float(after.rho[0])
  loss = lambda r: np.mean((y - f - r * g) ** 2)
  assert loss(rho) <= min(loss(rho * 0.9), loss(rho * 1.1))
  np.testing.assert_allclose(rho, np.sum((y - f) * g) / np.sum(g * g), rtol=1e-4)
  # Softmax CE: the reference's Newton step with the diagonal Hessian, sum r g / sum g^2 p (1 - p).
  proc, batch, states, _ = cls_run
  before, after = states[fold], states[fold + 1]
  g = np.asarray(boosting.stage_output(proc, before, batch["x"]), np.float64)
  p = np.asarray(jax.nn.softmax(proc.model.apply(proc.variables(before), batch["x"])), np.float64)
  r = np.eye(3)[np.asarray(batch["label"])] - p
  np.testing.assert_allclose(float(after.rho[0]), np.sum(r * g) / np.sum(g * g * p * (1 - p)), rtol=1e-4)


def test_stage_fits_the_pseudo_residuals_and_training_loss_falls(reg_run):
  proc, batch, states, metrics = reg_run
  fit = [m for m in metrics if float(m["phase"]) == boosting.FIT and float(m["stage"]) == 0]
  assert float(fit[-1]["stage_loss"]) < float(fit[0]["stage_loss"])
  # Staged training loss of the assembled network, switching units off in the order they were trained.
  final = proc.variables(states[-1])
  y = np.asarray(batch["y"])
  staged = [np.mean((np.asarray(proc.model.apply(final, batch["x"], units=t * J)) - y) ** 2) for t in range(T + 1)]
  assert all(b < a for a, b in zip(staged, staged[1:])), staged


def test_pretrain_phase_trains_the_trunk_then_freezes_it():
  model = boosted.BoostedNet(3, num_stages=2, stage_units=1, trunk=core.MLP((8, 4)))
  proc = boosting.GradientBoosting(model=model, task=tasks.Classification(input_key="x"), optimizer=optax.adam(0.05),
                                   stage_steps=3, trunk_steps=3, subsample=0.5, solver="optimizer")
  proc, _, states, _ = _run(proc, _jnp(_data()))
  trunk = lambda s: jax.tree.leaves(s.params["trunk"])
  changed = [not np.allclose(a, b) for a, b in zip(trunk(states[0]), trunk(states[3]))]
  assert all(changed)
  for s in states[3:]:
    for a, b in zip(trunk(states[3]), trunk(s)):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(states[3].params["hidden"]["kernel"], states[0].params["hidden"]["kernel"])


@pytest.mark.slow  # compiling the zoom line search inside the step takes a while on a loaded CPU
def test_lbfgs_fits_a_stage():
  proc = _proc(regression=True, solver="lbfgs", stage_steps=4)
  assert boosting.GradientBoosting.solver == "lbfgs"  # the default
  batch = _jnp(_data(regression=True))
  init = jax.jit(lambda rng, b: nn.unbox(proc.init(rng, b)))
  step = jax.jit(proc.step)
  state = init(jax.random.key(0), batch)
  losses = []
  for _ in range(5):
    state, m = step(state, batch)
    losses.append(float(m["stage_loss"]))
  fit = losses[1:]  # losses[0] is the prior step
  assert all(b < a for a, b in zip(fit, fit[1:])) and fit[-1] < 0.85 * fit[0], losses


def test_one_subsample_per_stage():
  """The stage's subsample is a function of (example, stage): the same at every step whatever the batch order,
  a fresh draw for the next stage, about ``subsample`` of the examples."""
  proc = _proc(subsample=0.5)
  x = jnp.asarray(_data(400)["x"])
  rng = jax.random.key(3)
  keep = proc._subsample(rng, 1, x)  # pylint: disable=protected-access
  perm = np.random.default_rng(0).permutation(400)
  np.testing.assert_array_equal(proc._subsample(rng, 1, x[perm]), keep[perm])  # pylint: disable=protected-access
  other = proc._subsample(rng, 2, x)  # pylint: disable=protected-access
  assert 0.4 < float(keep.mean()) < 0.6 and 0.4 < float(other.mean()) < 0.6
  assert 0.3 < float(jnp.mean(keep != other)) < 0.7  # independent draws disagree on about half the examples
  np.testing.assert_array_equal(_proc(subsample=1.0)._subsample(rng, 1, x), 1.0)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="solver"):
    _proc(solver="sgd")


def test_fit_on_the_8_device_mesh_and_evaluate():
  data = _data(64)
  proc_kw = {"stage_steps": 3, "subsample": 0.5, "shrinkage": 0.5, "solver": "optimizer"}
  model = boosted.BoostedNet(3, num_stages=2, stage_units=2)
  result = train.fit(model, data, task=tasks.Classification(input_key="x"), optimizer=optax.adam(0.05),
                     steps=1 + 2 * 4, batch_size=64, eval_data=data, procedure="boosting.GradientBoosting",
                     procedure_kwargs=proc_kw, mesh=sharding.make_mesh(), log_every=1)
  assert len(result.history) == 9 and result.history[-1]["train/active_units"] == 4
  assert 0.0 <= result.metrics["accuracy"] <= 1.0 and np.isfinite(result.metrics["loss"])
  np.testing.assert_array_equal(result.variables["boosting"]["mask"], np.ones(4))
