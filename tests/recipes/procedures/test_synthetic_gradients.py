"""Fast & slow learning with synthetic gradients (zoo.recipes.procedures.synthetic_gradients) on zoo.memory's network.

The mechanism at the level of the code: the module's regression target is the true ``dL/ds_t`` (the gradient of
``psi``'s loss equals the one computed from independently obtained true gradients); the fast update with the true
gradient is exactly backprop's ``dL/dtheta``; a fast step along it lowers the episode loss; an untrained (zero
initialised) module changes nothing; with ``fast_steps = 0`` the procedure is plain backprop. The procedure runs
through the trainer on the 8-device mesh (train steps and evaluation) in ``tests/recipes/test_configs.py``, with the
``synthetic_gradients_sinusoid`` config.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import memory
from zoo.recipes.procedures import backprop
from zoo.recipes.procedures import synthetic_gradients as sgr

SHOTS, QUERIES = 4, 3


def _episodes(n=6, seed=0):
  rng = np.random.default_rng(seed)
  amp, phase = rng.uniform(0.5, 3, (n, 1)), rng.uniform(0, np.pi, (n, 1))
  x = rng.uniform(-5, 5, (n, SHOTS + QUERIES))
  y = amp * np.sin(x + phase)
  support = (np.arange(SHOTS + QUERIES) < SHOTS).astype(np.float32)[None].repeat(n, 0)
  inputs = np.stack([x / 5, support * y / 5, support], -1).astype(np.float32)
  return {"x": inputs, "y": y[..., None].astype(np.float32), "query": 1 - support}


def _proc(**kw):
  model = memory.NeuralMemoryNetwork(1, features=8, num_slots=4, slot_size=4)
  kw = {"fast_steps": 2, "fast_lr": 0.1, "sg_hidden": (8,), **kw}
  return sgr.SyntheticGradients(model=model, task=sgr.EpisodeRegression(), optimizer=optax.adam(1e-2), **kw)


@pytest.fixture(scope="module")
def trained():
  """A procedure, a batch and the state after a few slow steps (so the module predicts non-zero gradients)."""
  proc = _proc()
  batch = {k: jnp.asarray(v) for k, v in _episodes().items()}
  state = jax.jit(lambda r, b: nn.unbox(proc.init(r, b)))(jax.random.key(0), batch)
  step = jax.jit(proc.step)
  metrics = []
  for _ in range(4):
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
  return proc, batch, state, metrics


def _one(batch, i=0):
  return jax.tree.map(lambda v: v[i:i + 1], batch)


def test_episode_regression_counts_only_query_steps():
  task = sgr.EpisodeRegression()
  batch = {k: jnp.asarray(v) for k, v in _episodes(2).items()}
  out = batch["y"].at[:, :SHOTS].add(100.0)  # wrong on every support step, right on the queries
  np.testing.assert_allclose(task.loss(out, batch), 0.0)
  out = batch["y"].at[:, SHOTS:].add(2.0)
  np.testing.assert_allclose(task.loss(out, batch), 4.0, rtol=1e-6)
  with pytest.raises(ValueError, match="outputs"):
    task.loss(out[..., 0], batch)
  with pytest.raises(KeyError, match="query"):
    task.loss(out, {"x": batch["x"], "y": batch["y"]})


def test_fast_update_with_the_true_gradient_is_backprop(trained):
  proc, batch, state, _ = trained
  params, ep = state.params["model"], _one(batch)

  @jax.jit
  def compute(params, sg_params, ep):
    loss, s, g = sgr.true_state_gradient(proc, params, ep)
    delta, _, _ = sgr.synthetic_update(proc, params, sg_params, ep, g=g)
    full = jax.grad(lambda th: proc.episode_loss(sgr._with_controller(params, th), ep))(sgr._controller(params))
    # A small step along it:
    theta = jax.tree.map(lambda t, d: t - 1e-2 * d, sgr._controller(params), delta)
    return loss, s, g, delta, full, proc.episode_loss(sgr._with_controller(params, theta), ep)

  loss, s, g, delta, full, stepped = compute(params, state.params["sg"], ep)
  assert s.shape == g.shape == (SHOTS + QUERIES, 16)
  for a, b in zip(jax.tree.leaves(delta), jax.tree.leaves(full)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  # ... and a small step along it lowers the episode's loss.
  assert float(stepped) < float(loss)


def test_module_regression_target_is_the_true_gradient(trained):
  proc, batch, state, _ = trained
  proc = dataclasses.replace(proc, fast_steps=1, sg_weight=1.0)
  params, psi = state.params["model"], state.params["sg"]

  def independent(psi):
    def one(ep):
      _, s, g = sgr.true_state_gradient(proc, params, ep)  # the target, computed on its own
      g_hat = proc.predict_gradient(psi, s[None], ep)[0]
      return jnp.mean((g_hat - g) ** 2)
    return jnp.mean(jax.vmap(one)(jax.tree.map(lambda v: v[:, None], batch)))

  grads = jax.jit(jax.grad(lambda p: proc.loss(p, batch)[0]))({"model": params, "sg": psi})["sg"]
  expected = jax.jit(jax.grad(independent))(psi)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
  assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(grads))


def test_untrained_module_predicts_nothing_and_changes_nothing():
  proc = _proc()
  batch = {k: jnp.asarray(v) for k, v in _episodes(2).items()}
  state = jax.jit(lambda r, b: nn.unbox(proc.init(r, b)))(jax.random.key(0), batch)
  ep = _one(batch)
  adapted = jax.jit(lambda p, sg, e: sgr.adapt(proc, p, sg, e, 3))(state.params["model"], state.params["sg"], ep)
  for a, b in zip(jax.tree.leaves(adapted), jax.tree.leaves(state.params["model"])):
    np.testing.assert_array_equal(a, b)


def test_training_moves_the_module_and_evaluate_reports_adaptation(trained):
  proc, batch, state, metrics = trained
  assert metrics[-1]["sg_loss"] > 0 and np.isfinite(metrics[-1]["loss"])
  g_hat = jax.jit(lambda p, sg, ep: proc.predict_gradient(sg, sgr.true_state_gradient(proc, p, ep)[1][None], ep))(
      state.params["model"], state.params["sg"], _one(batch))
  assert float(jnp.abs(g_hat).max()) > 0
  ev = jax.jit(proc.evaluate)(state, batch)
  assert set(ev) == {"loss", "loss_before", "sg_cosine", "update_cosine"}
  assert all(v.shape == (6,) for v in ev.values())
  assert not np.allclose(ev["loss"], ev["loss_before"])  # the fast steps changed the controller


def test_without_fast_steps_it_is_backprop():
  proc = _proc(fast_steps=0)
  batch = {k: jnp.asarray(v) for k, v in _episodes(4).items()}
  state = nn.unbox(proc.init(jax.random.key(0), batch))
  grads = jax.jit(jax.grad(lambda p: proc.loss(p, batch)[0]))(state.params)
  bp = backprop.Backprop(model=proc.model, task=proc.task, optimizer=optax.adam(1e-2))
  expected = jax.jit(jax.grad(lambda p: bp.loss(p, {}, batch, jax.random.key(0))[0]))(state.params["model"])
  for a, b in zip(jax.tree.leaves(grads["model"]), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  for leaf in jax.tree.leaves(grads["sg"]):
    np.testing.assert_array_equal(leaf, 0.0)


def test_errors():
  with pytest.raises(TypeError, match="NeuralMemoryNetwork"):
    sgr.SyntheticGradients(model=core.MLP((3,)), task=sgr.EpisodeRegression(), optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="fast_steps"):
    _proc(fast_steps=-1)
  with pytest.raises(ValueError, match="adapted_weight"):
    _proc(adapted_weight=1.5)
