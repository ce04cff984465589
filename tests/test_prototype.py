"""Unit tests of zoo.prototype (ProtoAE, its loss terms, decoding and explanations)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import prototype as PT
from zoo.recipes import sharding

MODEL = PT.ProtoAE(num_prototypes=5, features=(4, 3), image_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def setup():
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  return x, jax.jit(MODEL.init)(jax.random.key(1), x)


def test_shapes_losses_and_their_definitions(setup):
  x, variables = setup
  logits, state = jax.jit(lambda v, x: MODEL.apply(v, x, mutable=["losses"]))(variables, x)
  assert logits.shape == (6, 10)
  params = nn.unbox(variables["params"])
  code = MODEL.apply(variables, x, method="encode")
  assert code.shape == (6, 2 * 2 * 3)
  d = np.sum((np.asarray(code)[:, None] - np.asarray(params["prototypes"])[None]) ** 2, -1)
  np.testing.assert_allclose(logits, d @ np.asarray(params["head"]), rtol=1e-4, atol=1e-4)
  terms = PT.proto_losses(MODEL, variables, x)
  np.testing.assert_allclose(terms["R1"], d.min(0).mean(), rtol=1e-4)
  np.testing.assert_allclose(terms["R2"], d.min(1).mean(), rtol=1e-4)
  recon = MODEL.apply(variables, code, method="decode")
  assert recon.shape == x.shape and float(recon.min()) > 0 and float(recon.max()) < 1
  np.testing.assert_allclose(terms["R"], np.mean(np.sum((np.asarray(recon) - np.asarray(x)) ** 2, (1, 2, 3))),
                             rtol=1e-4)
  # Sown with weight lambda / lambda_class = 1 / 20.
  sown = {k: v[0] for k, v in state["losses"].items()}
  for k in ("R", "R1", "R2"):
    np.testing.assert_allclose(sown[k], terms[k] / 20.0, rtol=1e-4)
  ablated = PT.ProtoAE(num_prototypes=5, features=(4, 3), image_shape=(8, 8, 1), lambda_1=0.0)
  _, st = ablated.apply(variables, x, mutable=["losses"])
  assert float(st["losses"]["R1"][0]) == 0.0


def test_decode_explain_classes_vmap(setup):
  x, variables = setup
  assert PT.decode_prototypes(MODEL, variables).shape == (5, 8, 8, 1)
  idx, dist = PT.explain(MODEL, variables, x, k=2)
  assert idx.shape == (6, 2) and bool(jnp.all(dist[:, 0] <= dist[:, 1]))
  assert PT.prototype_classes(variables).shape == (5,)
  batched = jax.vmap(MODEL.apply, in_axes=(None, 0))(variables, x.reshape(2, 3, 8, 8, 1))
  np.testing.assert_allclose(batched.reshape(6, 10), MODEL.apply(variables, x), rtol=1e-4, atol=1e-4)


def test_sharded_forward_on_8_devices(setup):
  _, variables = setup
  x = jax.random.uniform(jax.random.key(2), (16, 8, 8, 1))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(MODEL.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, MODEL.apply(nn.unbox(variables), x), rtol=1e-4, atol=1e-4)


def test_bad_inputs(setup):
  _, variables = setup
  with pytest.raises(ValueError, match="`image`"):
    MODEL.apply(variables, jnp.ones((2, 7, 8, 1)))
  with pytest.raises(TypeError, match="`image`"):
    MODEL.apply(variables, jnp.ones((2, 8, 8, 1), jnp.int32))
  with pytest.raises(ValueError, match="empty batch"):
    MODEL.apply(variables, jnp.ones((0, 8, 8, 1)))
  with pytest.raises(ValueError, match="`k`"):
    PT.explain(MODEL, variables, jnp.ones((2, 8, 8, 1)), k=6)
