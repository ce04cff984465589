"""Unit tests of zoo.prototype (ProtoAE, its loss terms, decoding and explanations)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import prototype as PT
from zoo.recipes import sharding

# The init draws from an unsafe_rbg key: XLA compiles it far faster than threefry (no test depends on the values).
KEY = lambda seed: jax.random.key(seed, impl="unsafe_rbg")
MODEL = PT.ProtoAE(num_prototypes=5, features=(4, 3), image_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def setup():
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  return x, jax.jit(MODEL.init)(KEY(1), x)


def test_shapes_losses_and_their_definitions(setup):
  x, variables = setup
  ablated = PT.ProtoAE(num_prototypes=5, features=(4, 3), image_shape=(8, 8, 1), lambda_1=0.0)

  @jax.jit
  def run(v, x):  # one compile: the forward with its sown losses, encode, the loss terms, decode, the ablation
    code = MODEL.apply(v, x, method="encode")
    return (MODEL.apply(v, x, mutable=["losses"]), code, PT.proto_losses(MODEL, v, x),
            MODEL.apply(v, code, method="decode"), ablated.apply(v, x, mutable=["losses"])[1])

  (logits, state), code, terms, recon, st = run(variables, x)
  assert logits.shape == (6, 10)
  params = nn.unbox(variables["params"])
  assert code.shape == (6, 2 * 2 * 3)
  d = np.sum((np.asarray(code)[:, None] - np.asarray(params["prototypes"])[None]) ** 2, -1)
  np.testing.assert_allclose(logits, d @ np.asarray(params["head"]), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(terms["R1"], d.min(0).mean(), rtol=1e-4)
  np.testing.assert_allclose(terms["R2"], d.min(1).mean(), rtol=1e-4)
  assert recon.shape == x.shape and float(recon.min()) > 0 and float(recon.max()) < 1
  np.testing.assert_allclose(terms["R"], np.mean(np.sum((np.asarray(recon) - np.asarray(x)) ** 2, (1, 2, 3))),
                             rtol=1e-4)
  # Sown with weight lambda / lambda_class = 1 / 20.
  sown = {k: v[0] for k, v in state["losses"].items()}
  for k in ("R", "R1", "R2"):
    np.testing.assert_allclose(sown[k], terms[k] / 20.0, rtol=1e-4)
  assert float(sown["R1"]) > 0.0 and float(st["losses"]["R1"][0]) == 0.0


def test_decode_explain_classes_vmap(setup):
  x, variables = setup

  @jax.jit
  def run(v, x):  # one compile
    return (PT.decode_prototypes(MODEL, v), PT.explain(MODEL, v, x, k=2), PT.prototype_classes(v),
            jax.vmap(MODEL.apply, in_axes=(None, 0))(v, x.reshape(2, 3, 8, 8, 1)))

  decoded, (idx, dist), classes, batched = run(variables, x)
  assert decoded.shape == (5, 8, 8, 1)
  assert idx.shape == (6, 2) and bool(jnp.all(dist[:, 0] <= dist[:, 1]))
  assert classes.shape == (5,)
  np.testing.assert_allclose(batched.reshape(6, 10), MODEL.apply(variables, x), rtol=1e-4, atol=1e-4)  # eager


def test_sharded_forward_on_8_devices(setup):
  _, variables = setup
  x = jax.random.uniform(jax.random.key(2), (16, 8, 8, 1))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(MODEL.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(MODEL.apply)(nn.unbox(variables), x), rtol=1e-4, atol=1e-4)


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
