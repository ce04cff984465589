"""Unit tests of zoo.recipes.procedures.perforated: the schedule, what each phase may change, the correlation objective, a
ConvNet through the trainer, and the validation-checked cycles."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core, dendrites
from zoo.recipes.procedures import perforated as pf
from zoo.recipes import tasks, train


def test_switch_schedule():
  phases = pf.switch_schedule(10, 4, 2, cycle_neuron_steps=6)
  assert phases == [pf.Phase(0, 0, 10, 0), pf.Phase(1, 10, 14, 0), pf.Phase(0, 14, 20, 1), pf.Phase(1, 20, 24, 1),
                    pf.Phase(0, 24, -1, 2)]
  assert pf.switch_schedule(5, 5, 0) == [pf.Phase(0, 0, -1, 0)]
  with pytest.raises(ValueError, match="dendrite_steps >= 1"):
    pf.switch_schedule(5, 0, 1)


def test_correlation_score():
  d = jnp.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
  e = jnp.array([[1.0, 5.0], [2.0, -5.0], [3.0, 0.0]])
  # Neuron 0: cov = 2/3; neuron 1: its dendrite is constant, cov = 0.
  np.testing.assert_allclose(pf.correlation_score(d, e), 2 / 3, rtol=1e-6)
  np.testing.assert_allclose(pf.correlation_score(d, -e), 2 / 3, rtol=1e-6)  # |cov|: the sign is free


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 6)).astype(np.float32)
  y = (x[:, :1] * x[:, 1:2] + np.sin(2 * x[:, 2:3])).astype(np.float32)
  model = dendrites.Perforated(core.MLP(features=(3, 1)), num_dendrites=2)
  proc = pf.PerforatedBackprop(model=model, task=tasks.Regression(), optimizer=optax.adam(3e-2), neuron_steps=3,
                               dendrite_steps=4, cycle_neuron_steps=2, num_cycles=2)
  batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  return proc, batch


def _changed(a, b):
  return jax.tree.map(lambda u, v: bool(jnp.any(u != v)), a, b)


def _dendrite_weights_of(params, slot):
  return {bank: params[bank][f"slot_{slot}"] for bank in dendrites.dendrite_paths(params)}


def test_phases_change_only_what_they_own(problem):
  proc, batch = problem
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), batch))
  step = jax.jit(proc.step)
  states, metrics = [state], []
  for _ in range(12):
    state, m = step(state, batch)
    states.append(state)
    metrics.append(jax.device_get(m))
  phases = [m["phase"] for m in metrics]
  assert phases == [0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1]
  assert [m["active_dendrites"] for m in metrics] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
  # Neuron phase 0: the base model changes; no dendrite weight and no unused to_neuron row does.
  p0, p3 = states[0].params, states[3].params
  assert all(jax.tree.leaves(_changed(p0["base"], p3["base"])))
  assert not any(jax.tree.leaves(_changed(_dendrite_weights_of(p0, 0), _dendrite_weights_of(p3, 0))))
  # Dendrite phase 0 (steps 3..6): only dendrite 0's slot (and cascade row 0, unused for the first dendrite)
  # changes; the neurons, to_neuron and dendrite 1 are bit-for-bit frozen.
  p7 = states[7].params
  assert not any(jax.tree.leaves(_changed(p3["base"], p7["base"])))
  assert all(jax.tree.leaves(_changed(_dendrite_weights_of(p3, 0), _dendrite_weights_of(p7, 0))))
  assert not any(jax.tree.leaves(_changed(_dendrite_weights_of(p3, 1), _dendrite_weights_of(p7, 1))))
  for bank in dendrites.dendrite_paths(p3):
    np.testing.assert_array_equal(p3[bank]["to_neuron"], p7[bank]["to_neuron"])
  # The correlation rises while the dendrite trains.
  corr = [m["correlation"] for m in metrics[3:7]]
  assert corr[-1] > corr[0] > 0
  # Neuron phase 1: dendrite 0 is frozen and switched in; its to_neuron row learns, row 1 stays 0.
  p9 = states[9].params
  assert not any(jax.tree.leaves(_changed(_dendrite_weights_of(p7, 0), _dendrite_weights_of(p9, 0))))
  for bank in dendrites.dendrite_paths(p9):
    assert float(jnp.abs(p9[bank]["to_neuron"][0]).max()) > 0
    np.testing.assert_array_equal(p9[bank]["to_neuron"][1], 0.0)
  # Dendrite phase 1: dendrite 1 learns (slot and its cascade row from dendrite 0), dendrite 0 does not.
  p12 = states[12].params
  assert all(jax.tree.leaves(_changed(_dendrite_weights_of(p9, 1), _dendrite_weights_of(p12, 1))))
  assert not any(jax.tree.leaves(_changed(_dendrite_weights_of(p9, 0), _dendrite_weights_of(p12, 0))))
  for bank in dendrites.dendrite_paths(p12):
    assert bool(jnp.any(p12[bank]["cascade"][1, 0] != p9[bank]["cascade"][1, 0]))
    np.testing.assert_array_equal(p12[bank]["cascade"][0], p9[bank]["cascade"][0])
  assert int(states[12].model_state["perforation"]["active"]) == 1


def test_dendrite_objective_reaches_only_the_candidate(problem):
  proc, batch = problem
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), batch))
  rng = jax.random.key(1)
  errors, _ = jax.jit(proc.errors, static_argnums=())(state.params, state.model_state, batch, rng, 0)
  assert set(errors) == {"dendrites_dense_0", "dendrites_dense_1"}
  assert errors["dendrites_dense_1"].shape == (64, 1)
  # dL/dy of the output layer for a per-example MSE is 2 (y_hat - y): compare with the model's own output.
  out = proc.model.apply({"params": state.params, **state.model_state}, batch["x"])
  np.testing.assert_allclose(errors["dendrites_dense_1"], 2 * (out - batch["y"]), rtol=1e-5, atol=1e-6)
  grads = jax.jit(jax.grad(lambda p: proc.dendrite_objective(p, state.model_state, batch, rng, 1, errors)[0]))(
      state.params)
  assert float(optax.tree.norm(grads["base"])) == 0.0  # neurons get exactly no gradient in a dendrite phase
  assert float(optax.tree.norm(_dendrite_weights_of(grads, 1))) > 0
  assert float(optax.tree.norm(_dendrite_weights_of(grads, 0))) == 0.0


def test_convnet_through_the_trainer(digits, single_device_mesh):
  x_train, _ = digits
  arrays = {"image": x_train["image"][:128], "label": x_train["label"][:128]}
  model = dendrites.Perforated(core.ConvNet(num_classes=10, features=(4,), hidden=(8,)), num_dendrites=1)
  result = train.fit(model, arrays, task="classification", procedure=pf.PerforatedBackprop,
                     procedure_kwargs=dict(neuron_steps=4, dendrite_steps=4, cycle_neuron_steps=4),
                     steps=12, batch_size=32, log_every=4, mesh=single_device_mesh, eval_data=arrays)
  assert [h["train/phase"] for h in result.history] == [0.0, 1.0, 0.0]
  assert result.history[1]["train/correlation"] > 0
  assert int(result.variables["perforation"]["active"]) == 1
  assert {"dendrites_conv_0", "dendrites_dense_0", "dendrites_head"} <= set(result.variables["params"])
  assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_train_cycles_keeps_or_reverts(problem, single_device_mesh):
  proc, batch = problem
  arrays = {k: np.asarray(v) for k, v in batch.items()}
  common = dict(val_data=arrays, task=tasks.Regression(), optimizer=optax.adam(3e-2), neuron_steps=20,
                dendrite_steps=10, cycle_neuron_steps=20, num_cycles=1, batch_size=32, metric="loss",
                mesh=single_device_mesh)
  kept = pf.train_cycles(proc.model, arrays, higher_is_better=False, **common)
  assert len(kept.validation) == 2 and kept.kept_cycles == 1 and kept.validation[1] < kept.validation[0]
  assert int(kept.state.step) == 50 and int(kept.variables["perforation"]["active"]) == 1
  # Asking for a *higher* loss makes the (improving) cycle a failure: it is undone.
  reverted = pf.train_cycles(proc.model, arrays, higher_is_better=True, **common)
  assert reverted.kept_cycles == 0 and int(reverted.state.step) == 20
  assert int(reverted.variables["perforation"]["active"]) == 0


def test_clear_errors():
  with pytest.raises(TypeError, match="must be a zoo.dendrites.Perforated"):
    pf.PerforatedBackprop(model=core.MLP(features=(3,)), task=tasks.Regression(), optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="num_cycles=3 needs a model with at least"):
    pf.PerforatedBackprop(model=dendrites.Perforated(core.MLP(features=(3,)), num_dendrites=2),
                          task=tasks.Regression(), optimizer=optax.adam(1e-3), num_cycles=3)
