"""zoo models also run under ``jax.pmap`` (older pod scripts use it): forward, and a data-parallel train step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo.recipes.procedures import backprop
from zoo.recipes import tasks

N = jax.local_device_count()


def _cases():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(N * 2, 8, 8, 1)).astype(np.float32)
  sequences = rng.normal(size=(N * 2, 5, 3)).astype(np.float32)
  cases = [
      ("mlp", core.MLP(features=(16, 10)), images),
      ("convnet", core.ConvNet(num_classes=10), images),
      ("lstm", core.LSTM(features=8, num_classes=4), sequences),
  ]
  try:
    from zoo import hopfield  # pylint: disable=g-import-not-at-top
    cases.append(("hopfield", hopfield.HopfieldClassifier(num_classes=10), images))
  except (ImportError, AttributeError):
    pass
  return cases


@pytest.mark.parametrize("name, model, x", _cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_pmap_forward_matches_jit(name, model, x):
  variables = model.init(jax.random.key(0), x[:2])
  expected = jax.jit(model.apply)(variables, x)
  out = jax.pmap(model.apply, in_axes=(None, 0))(variables, x.reshape(N, -1, *x.shape[1:]))
  chex.assert_trees_all_close(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


class VariantsTest(chex.TestCase):
  """The same forward and gradient without jit, with jit and under pmap (chex's variants)."""

  @chex.variants(without_jit=True, with_jit=True, with_pmap=True)
  def test_mlp_forward_and_grad_agree_across_variants(self):
    model = core.MLP(features=(16, 10))
    x = np.random.default_rng(2).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)

    def loss_and_grad(variables, x):
      loss = lambda v: jnp.mean(model.apply(v, x) ** 2)
      return jax.value_and_grad(loss)(variables)

    expected = loss_and_grad(variables, x)
    got = self.variant(loss_and_grad)(variables, x)  # pmap: broadcast to the devices, first device's output
    chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal_shapes(got[1], variables)


def test_pmap_data_parallel_step_matches_global_step():
  model = core.MLP(features=(16, 10))
  rng = np.random.default_rng(1)
  batch = {"image": rng.uniform(size=(N * 4, 8, 8, 1)).astype(np.float32),
           "label": rng.integers(0, 10, size=(N * 4,)).astype(np.int32)}
  procedure = backprop.Backprop(model=model, task=tasks.Classification(), optimizer=optax.sgd(0.1))
  state = jax.device_get(procedure.init(jax.random.key(0), batch))
  global_state, _ = jax.jit(procedure.step)(state, batch)

  def pmap_step(state, shard):
    # The classic pmap recipe: per-device gradients, averaged with pmean, then the same optimizer update.
    loss_grad = jax.grad(lambda p: procedure.loss(p, state.model_state, shard, state.rng)[0])
    grads = jax.lax.pmean(loss_grad(state.params), "devices")
    updates, opt_state = procedure.optimizer.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)

  sharded = jax.tree.map(lambda v: v.reshape(N, -1, *v.shape[1:]), batch)
  new = jax.pmap(pmap_step, axis_name="devices", in_axes=(None, 0))(state, sharded)
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], new.params), global_state.params, rtol=1e-5, atol=1e-6)
