"""Unit tests of zoo.recipes.procedures.merging: task vectors, task arithmetic, TIES against hand-computed values,
layer-wise merges on a zoo model's parameters, AdaMerging's clipping and entropy descent, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import core
from zoo.recipes.procedures import merging


def _tree(a, b):
  return {"w": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def test_task_vectors_and_task_arithmetic():
  theta0 = _tree([1.0, 2.0], [0.5])
  taus = merging.task_vectors(theta0, [_tree([2.0, 2.0], [0.5]), _tree([1.0, 0.0], [1.5])])
  np.testing.assert_allclose(taus[0]["w"], [1.0, 0.0])
  np.testing.assert_allclose(taus[1]["b"], [1.0])
  merged = merging.task_arithmetic(theta0, taus, 0.5)
  np.testing.assert_allclose(merged["w"], [1.5, 1.0])
  np.testing.assert_allclose(merged["b"], [1.0])


def test_ties_trims_elects_sign_and_takes_the_disjoint_mean():
  theta0 = {"w": jnp.zeros(4)}
  taus = [{"w": jnp.array([3.0, -0.1, 2.0, 0.0])}, {"w": jnp.array([1.5, -4.0, -1.0, 0.2])},
          {"w": jnp.array([-0.5, -2.0, 5.0, 0.1])}]
  # density 0.5 keeps the 2 largest magnitudes of each vector: [3, ., 2, .], [1.5, -4, ., .], [., -2, 5, .]
  agreed = merging.ties_vectors(taus, density=0.5)
  # elected signs: sum = [4.5, -6, 7, 0] -> [+, -, +, 0]; every kept entry agrees here
  np.testing.assert_allclose(agreed[0]["w"], [3.0, 0.0, 2.0, 0.0])
  np.testing.assert_allclose(agreed[1]["w"], [1.5, -4.0, 0.0, 0.0])
  np.testing.assert_allclose(agreed[2]["w"], [0.0, -2.0, 5.0, 0.0])
  merged = merging.ties_merge(theta0, taus, density=0.5, scale=1.0)
  np.testing.assert_allclose(merged["w"], [2.25, -3.0, 3.5, 0.0])
  # A kept entry against the elected sign is dropped: flip task 2's -2 to +2 -> sum [4.5, -2, 7, 0] keeps the sign
  # of entry 1 negative, so task 2's +2 is excluded from the mean.
  taus[2] = {"w": jnp.array([-0.5, 2.0, 5.0, 0.1])}
  np.testing.assert_allclose(merging.ties_vectors(taus, density=0.5)[2]["w"], [0.0, 0.0, 5.0, 0.0])


def test_layerwise_merge_on_a_zoo_models_parameters():
  model = core.MLP((4, 2))
  x = jnp.ones((1, 3))
  init = jax.jit(model.init)  # one compile for the 3 inits (eager flax init dispatches op by op)
  theta0 = init(jax.random.key(0), x)["params"]
  thetas = [init(jax.random.key(k), x)["params"] for k in (1, 2)]
  taus = merging.task_vectors(theta0, thetas)
  L = len(jax.tree.leaves(theta0))
  lam = jnp.zeros((2, L)).at[0, :].set(1.0)
  merged = merging.merge(theta0, taus, lam)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), merged, thetas[0])
  task_wise = merging.merge(theta0, taus, jnp.array([0.3, 0.3]))
  layer_wise = merging.merge(theta0, taus, jnp.full((2, L), 0.3))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), task_wise, layer_wise)
  with pytest.raises(ValueError, match=r"\[2\] \(task-wise\) or \[2, 4\]"):
    merging.merge(theta0, taus, jnp.ones(3))


def test_adamerging_lowers_entropy_and_keeps_coefficients_in_unit_interval():
  """A linear classifier whose second task vector sharpens predictions: AdaMerging raises its coefficient."""
  theta0 = {"w": jnp.zeros((2, 3))}
  taus = [{"w": jnp.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])}, {"w": jnp.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])}]
  x = jax.random.normal(jax.random.key(0), (64, 2))

  def apply_fn(params, k, xs):
    del k
    return xs @ params["w"]
  granularities = (("task", (2,)), ("layer", (2, 1)))

  def every():  # both granularities and AdaMerging++ in one compiled program
    runs = [merging.adamerging(apply_fn, theta0, taus, [x, x], granularity=g, steps=300, learning_rate=0.05)
            for g, _ in granularities]
    return runs, merging.adamerging(apply_fn, theta0, taus, [x, x], ties=True, density=0.5, steps=5)[0]
  runs, lam_pp = jax.jit(every)()
  for (lam, history), (_, shape) in zip(runs, granularities):
    assert lam.shape == shape and history.shape == (300,)
    assert float(lam.min()) >= 0.0 and float(lam.max()) <= 1.0
    assert float(lam[1].max()) == 1.0  # pushed to the clip
    assert float(history[-20:].mean()) < 0.8 * float(history[:20].mean())
  assert lam_pp.shape == (2, 1)


def test_entropy_and_bad_input():
  np.testing.assert_allclose(merging.entropy(jnp.zeros((2, 4))), np.log(4.0), rtol=1e-6)
  np.testing.assert_allclose(merging.entropy(jnp.array([[100.0, 0.0]])), 0.0, atol=1e-6)
  theta0 = _tree([1.0, 2.0], [0.5])
  with pytest.raises(ValueError, match="non-empty list"):
    merging.task_arithmetic(theta0, [])
  with pytest.raises(ValueError, match="shape"):
    merging.task_vectors(theta0, [_tree([1.0], [0.5])])
  with pytest.raises(ValueError, match="structure"):
    merging.task_vectors(theta0, [{"w": jnp.zeros(2)}])
  with pytest.raises(ValueError, match="density"):
    merging.ties_vectors([theta0], density=0.0)
  with pytest.raises(ValueError, match="granularity"):
    merging.adamerging(lambda p, k, x: x, theta0, [theta0], [jnp.ones((2, 2))], granularity="block")
  with pytest.raises(ValueError, match="one unlabelled input array per task"):
    merging.adamerging(lambda p, k, x: x, theta0, [theta0], [])
  with pytest.raises(ValueError, match="non-empty"):
    merging.adamerging(lambda p, k, x: x, theta0, [theta0], [jnp.ones((0, 2))])
