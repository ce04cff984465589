"""NoProp: schedules, class embeddings, blocks, networks and the DT/CT/FM procedures (zoo.noprop, zoo.recipes.procedures.noprop).

The locality tests check the paper's central claim at the level of the code: block t's loss has an exactly zero
gradient with respect to every other block's parameters, and block t's update does not change when the other
blocks' parameters are perturbed.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import noprop
from zoo.recipes import data
from zoo.recipes.procedures import noprop as noprop_recipes
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes.train import Trainer

T = 3
SMALL = dict(hidden=8, head=8, encoder="core.MLP", encoder_kwargs={"features": (8,)})


def batch_of(n=16, seed=0, shape=(8, 8, 1)):
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, *shape), dtype=np.float32), "label": np.arange(n) % 10}


def dt_procedure(**model_kw):
  model = noprop.NoPropDTNet(10, num_blocks=T, **{**SMALL, **model_kw})
  return noprop_recipes.NoPropDT(model=model, task=tasks.Classification(), optimizer=optax.adamw(1e-3))


# ------------------------------------------------------------------------------------------------------ schedules


def test_cosine_schedule_increases_and_posterior_preserves_the_marginals():
  ab = noprop.cosine_alpha_bar(10)
  assert ab.shape == (11,)
  assert np.all(np.diff(ab) > 0) and 0 < ab[0] < 1e-3 and 0.95 < ab[-1] < 1
  a, b, c = noprop.dt_coefficients(ab)
  assert a.shape == b.shape == c.shape == (10,) and np.all(c > 0)
  # z_{t-1} ~ N(sqrt(ab_{t-1}) u, 1 - ab_{t-1})  =>  a u + b z_{t-1} + sqrt(c) eps ~ N(sqrt(ab_t) u, 1 - ab_t).
  np.testing.assert_allclose(a + b * np.sqrt(ab[:-1]), np.sqrt(ab[1:]), atol=1e-12)
  np.testing.assert_allclose(b ** 2 * (1 - ab[:-1]) + c, 1 - ab[1:], atol=1e-12)
  snr = noprop.snr(ab)
  assert np.all(np.diff(snr) > 0)
  with pytest.raises(ValueError, match="num_blocks"):
    noprop.cosine_alpha_bar(0)


def test_time_embedding_shape_and_errors():
  e = noprop.time_embedding(jnp.array([0.0, 0.5, 1.0]), 8)
  assert e.shape == (3, 8) and e.dtype == jnp.float32
  with pytest.raises(ValueError, match="even"):
    noprop.time_embedding(jnp.zeros(3), 7)
  with pytest.raises(ValueError, match="`t`"):
    noprop.time_embedding(jnp.zeros((3, 1)), 8)


def test_learned_snr_is_monotone_and_its_derivative_is_exact():
  sched = noprop.LearnedSNR(hidden=32)
  t = jnp.linspace(0, 1, 21)
  v = sched.init(jax.random.key(0), t)
  # Scramble the network's weights: monotonicity must not depend on the initialisation.
  v = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(1), p.shape), nn.unbox(v))
  gamma, dgamma = sched.apply(v, t)
  assert np.all(np.diff(np.asarray(gamma)) < 0) and np.all(np.asarray(dgamma) < 0)
  # gamma(t_i) depends on t_i only, so a JVP with a vector of ones gives every derivative at once.
  _, grad = jax.jvp(lambda s: sched.apply(v, s)[0], (t,), (jnp.ones_like(t),))
  np.testing.assert_allclose(dgamma, grad, rtol=1e-4, atol=1e-5)
  ends = sched.apply(nn.unbox(sched.init(jax.random.key(0), t)), jnp.array([0.0, 1.0]))[0]
  np.testing.assert_allclose(ends, [7.0, -4.0], atol=1e-5)


# ------------------------------------------------------------------------------------------------------ embedding


def test_class_embedding_kinds():
  onehot = noprop.ClassEmbedding(10)
  w = onehot.apply({}, None)
  np.testing.assert_array_equal(w, np.eye(10))
  learned = noprop.ClassEmbedding(10, kind="learned", features=16)
  v = learned.init(jax.random.key(0))
  w = learned.apply(v)
  assert w.shape == (10, 16)
  np.testing.assert_allclose(w @ w.T, np.eye(10), atol=1e-5)  # orthogonal rows
  protos = jnp.arange(30.0).reshape(10, 3)
  proto = noprop.ClassEmbedding(10, kind="prototype")
  v = proto.init(jax.random.key(0), protos)
  np.testing.assert_array_equal(proto.apply(v), protos)
  assert nn.get_partition_spec(v)["params"]["embedding"] == jax.sharding.PartitionSpec("classes", "embed")


def test_class_embedding_errors():
  with pytest.raises(ValueError, match="features = num_classes"):
    noprop.ClassEmbedding(10, features=4).apply({}, None)
  with pytest.raises(ValueError, match="prototypes"):
    noprop.ClassEmbedding(10, kind="prototype").init(jax.random.key(0))
  with pytest.raises(ValueError, match="kind"):
    noprop.ClassEmbedding(10, kind="random").apply({}, None)
  with pytest.raises(ValueError, match="prototypes"):
    noprop.ClassEmbedding(10, kind="prototype").init(jax.random.key(0), jnp.zeros((9, 3)))


def test_class_prototypes_are_central_members_of_their_class():
  x = jnp.array([[0.0], [1.0], [10.0], [5.0], [6.0], [20.0], [7.0]])
  labels = jnp.array([0, 0, 0, 1, 1, 1, 1])
  p = noprop.class_prototypes(x, labels, 3)
  # Class 0: {0, 1, 10} -> 1 has the smallest median distance; class 1: {5, 6, 20, 7} -> 6; class 2 absent -> mean.
  np.testing.assert_allclose(p[:, 0], [1.0, 6.0, float(x.mean())])


# ---------------------------------------------------------------------------------------------------------- block


def _block(**kw):
  return noprop.NoPropBlock(10, core.MLP((8,)), hidden=8, head=8, **kw)


def test_block_shapes_jit_vmap_and_errors():
  x, z, w = jnp.ones((4, 8, 8, 1)), jax.random.normal(jax.random.key(0), (4, 10)), jnp.eye(10)
  block = _block()
  v = jax.jit(block.init)(jax.random.key(0), x, z, w)
  u_hat, logits = block.apply(v, x, z, w)
  assert u_hat.shape == (4, 10) and logits.shape == (4, 10) and u_hat.dtype == jnp.float32
  np.testing.assert_allclose(u_hat, jax.nn.softmax(logits) @ w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jax.jit(block.apply)(v, x, z, w)[0], u_hat, rtol=1e-5, atol=1e-6)
  # vmap over a leading axis (inference mode: BatchNorm uses its running statistics, so examples are independent).
  batched = jax.vmap(lambda x, z: block.apply(v, x, z, w)[0])(x[:, None], z[:, None])
  np.testing.assert_allclose(batched[:, 0], u_hat, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="`z`"):
    jax.eval_shape(lambda: block.apply(v, x, jnp.ones((4, 9)), w))
  with pytest.raises(ValueError, match="`w_embed`"):
    jax.eval_shape(lambda: block.apply(v, x, z, jnp.eye(9)))
  with pytest.raises(ValueError, match="without time conditioning"):
    jax.eval_shape(lambda: block.apply(v, x, z, w, jnp.zeros(4)))
  timed = _block(time_features=8, output="vector")
  vt = jax.eval_shape(timed.init, jax.random.key(0), x, z, w, jnp.zeros(4))
  vel, none = jax.eval_shape(lambda v: timed.apply(v, x, z, w, jnp.full((4,), 0.3)), nn.unbox(vt))
  assert vel.shape == (4, 10) and none is None
  with pytest.raises(ValueError, match="needs `t`"):
    jax.eval_shape(lambda v: timed.apply(v, x, z, w), nn.unbox(vt))


# ------------------------------------------------------------------------------------------------------- networks


def test_dt_net_stacks_blocks_and_runs_the_chain():
  net = noprop.NoPropDTNet(10, num_blocks=T, **SMALL)
  x = jnp.ones((4, 8, 8, 1))
  v = jax.jit(net.init)(jax.random.key(0), x)
  for leaf in jax.tree.leaves(nn.unbox(v["params"]["blocks"])):
    assert leaf.shape[0] == T
  specs = flax.traverse_util.flatten_dict(nn.get_partition_spec(v)["params"]["blocks"])
  assert all(spec[0] == "blocks" for spec in specs.values() if spec)
  v = nn.unbox(v)

  @jax.jit
  def run(v, x, rng):
    zs = net.apply(v, x, method="sample", rngs={"noise": rng})
    # Every block on the chain's own start z_0: the parallel path uses the chain's parameters.
    u1, logits = net.apply(v, x, jnp.broadcast_to(zs[0], (T, *zs[0].shape)), method="denoise_each")
    return zs, u1, logits, net.apply(v, x)

  zs, u1, logits, out = run(v, x, jax.random.key(1))
  assert zs.shape == (T + 1, 4, 10) and u1.shape == logits.shape == (T, 4, 10) and out.shape == (4, 10)
  a, b, c = noprop.dt_coefficients(net.alpha_bar())
  rest = zs[1] - a[0] * u1[0] - b[0] * zs[0]  # = sqrt(c_1) eps_1 if block 1 of the chain is block 1 of denoise_each
  assert float(jnp.max(jnp.abs(rest))) < 6 * np.sqrt(c[0])
  zs2 = run(v, x, jax.random.key(2))[0]
  assert not np.allclose(zs[-1], zs2[-1])  # the 'noise' rng drives the chain
  with pytest.raises(ValueError, match="`z`"):
    jax.eval_shape(lambda v: net.apply(v, x, jnp.ones((T + 1, 4, 10)), method="denoise_each"), v)
  with pytest.raises(ValueError, match="`x`"):
    jax.eval_shape(lambda v: net.apply(v, jnp.ones((4,))), v)


def test_dt_net_composes_with_a_convnet_encoder():
  net = noprop.NoPropDTNet(10, num_blocks=T, hidden=8, head=8, encoder=core.ConvNet(8, features=(4,), hidden=()))
  x = jnp.ones((4, 8, 8, 1))
  v = jax.eval_shape(net.init, jax.random.key(0), x)
  assert jax.tree.leaves(nn.unbox(v["params"]["blocks"]["encoder"]["conv_0"]))[0].shape[0] == T
  out = jax.eval_shape(lambda v: net.apply(v, x, jnp.ones((T, 4, 10)), method="denoise_each"), nn.unbox(v))
  assert out[0].shape == (T, 4, 10)


def test_ct_and_fm_net_parameters_and_errors():
  x = jnp.ones((4, 8, 8, 1))
  ct = noprop.NoPropCTNet(10, inference_steps=4, **SMALL)
  v = jax.eval_shape(ct.init, jax.random.key(0), x)
  assert set(v["params"]) == {"block", "classifier", "schedule"}
  assert jax.eval_shape(lambda v: ct.apply(v, x, method="sample"), nn.unbox(v)).shape == (5, 4, 10)
  fm = noprop.NoPropFMNet(10, inference_steps=4, embedding="learned", embed_dim=12, **SMALL)
  v = jax.eval_shape(fm.init, jax.random.key(0), x)
  assert set(v["params"]) == {"block", "embedding"}
  assert jax.eval_shape(lambda v: fm.apply(v, x, method="sample"), nn.unbox(v)).shape == (5, 4, 12)
  with pytest.raises(ValueError, match="sampler"):
    jax.eval_shape(noprop.NoPropCTNet(10, sampler="euler", **SMALL).init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="embedding"):
    jax.eval_shape(noprop.NoPropFMNet(10, embedding="random", **SMALL).init, jax.random.key(0), x)


# ----------------------------------------------------------------------------------------------------- procedures


@pytest.fixture(scope="module")
def dt_trainer():
  """NoProp-DT (prototype embedding: shared, learned) built by the trainer on the 8-device mesh, and its state."""
  proc = dt_procedure(embedding="prototype")
  batch = batch_of(16)
  trainer = Trainer(proc, sharding.make_mesh(), batch)
  state = trainer.init(0, trainer.put(batch, 16))
  return proc, trainer, batch, state


def _copy(state):
  return jax.tree.map(jnp.copy, state)  # the trainer's step donates its input state


def test_dt_state_has_one_optimizer_state_per_block(dt_trainer):
  _, _, _, state = dt_trainer
  for leaf in jax.tree.leaves(state.opt_state["blocks"][0].mu):
    assert leaf.shape[0] == T
  assert state.opt_state["blocks"][0].count.shape == (T,)
  assert set(state.opt_state["shared"][0].mu) == {"classifier", "embedding"}
  assert set(state.model_state) == {"batch_stats"}
  assert all(isinstance(leaf.sharding, jax.sharding.NamedSharding) for leaf in jax.tree.leaves(state.params))


def test_dt_block_gradients_are_local(dt_trainer):
  """d(loss of block t) / d(parameters of block s) is exactly zero for s != t, and nonzero for s == t."""
  proc, trainer, batch, state = dt_trainer
  batch = trainer.put(batch, 16)

  def denoise(block_params):
    params = {**state.params, "blocks": block_params}
    return proc.terms(params, state.model_state, batch, jax.random.key(3))[0]["denoise"]

  jac = jax.jit(jax.jacrev(denoise))(state.params["blocks"])  # leaves: [T (loss), T (block), ...]
  for leaf in jax.tree.leaves(jac):
    for t in range(T):
      for s in range(T):
        if s != t:
          assert np.all(np.asarray(leaf[t, s]) == 0.0), (t, s)
  for t in range(T):
    assert sum(float(np.abs(leaf[t, t]).sum()) for leaf in jax.tree.leaves(jac)) > 0


@pytest.mark.parametrize("per_block_noise", [True, False])
def test_dt_per_block_noise_flag_sets_the_training_noise_levels(per_block_noise):
  """Block t is trained on z_{t-1} ~ q(z_{t-1} | y) at its own level (the paper), or, with ``per_block_noise=False``
  (the ablation), every block on z ~ q(z_0 | y): the correlation of z with u_y follows sqrt(abar_{t-1}) or stays 0."""
  seen = []

  class Spy(noprop.NoPropDTNet):
    def denoise_each(self, x, z, **kw):
      seen.append(z)
      return super().denoise_each(x, z, **kw)

  model = Spy(10, num_blocks=T, **SMALL)
  proc = noprop_recipes.NoPropDT(model=model, task=tasks.Classification(), optimizer=optax.adamw(1e-3),
                                 per_block_noise=per_block_noise)
  batch = jax.tree.map(jnp.asarray, batch_of(512))
  state = proc.init(jax.random.key(0), batch)
  seen.clear()
  proc.terms(state.params, state.model_state, batch, jax.random.key(1))
  u = jax.nn.one_hot(batch["label"], 10)                             # the one-hot embedding
  z = np.asarray(seen[0])                                            # [T, batch, d]
  corr = np.mean(np.sum(z * np.asarray(u), axis=-1), axis=-1)        # E <z, u_y> = sqrt(abar), ||u_y|| = 1
  ab = model.alpha_bar()[:-1]
  expected = np.sqrt(ab) if per_block_noise else np.full(T, np.sqrt(ab[0]))
  np.testing.assert_allclose(corr, expected, atol=0.1)
  assert (corr[-1] > 0.5) == per_block_noise


def test_dt_steps_sharded_and_a_block_update_ignores_the_other_blocks(dt_trainer):
  """The trainer's jitted, sharded step; block 1's update is bit-identical when every other block's parameters
  are perturbed (the shared embedding and classifier, the batch statistics and the optimizer states unchanged)."""
  _, trainer, batch, state0 = dt_trainer
  keep = jnp.arange(T) == 1
  noise = lambda p: jnp.where(keep.reshape((T,) + (1,) * (p.ndim - 1)), p, p + 1.0 + p ** 2)
  perturbed = state0.replace(params={**state0.params, "blocks": jax.tree.map(noise, state0.params["blocks"])})
  perturbed = jax.device_put(perturbed, trainer.state_shardings)
  new, metrics = trainer.step(_copy(state0), trainer.put(batch, 16))
  new_p, _ = trainer.step(perturbed, trainer.put(batch, 16))
  assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
  for a, b, before in zip(jax.tree.leaves(new.params["blocks"]), jax.tree.leaves(new_p.params["blocks"]),
                          jax.tree.leaves(state0.params["blocks"])):
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], b[0])
  assert any(not np.array_equal(a[1], b[1]) for a, b in          # block 1 was really updated
             zip(jax.tree.leaves(new.params["blocks"]), jax.tree.leaves(state0.params["blocks"])))
  new, _ = trainer.step(new, trainer.put(batch, 16))
  results = trainer.evaluate(new, data.ArraySource(batch), 16)  # the denoising chain, sharded over the batch
  assert {"accuracy", "accuracy_half", "accuracy_nearest", "loss"} <= set(results)
  assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name,net_cls,kw", [
    # By default CT and FM train for two steps and evaluate in tests/recipes/test_configs.py (their configs).
    ("NoPropCT", noprop.NoPropCTNet, {"inference_steps": 3, "sampler": "ancestral"}),
    ("NoPropFM", noprop.NoPropFMNet, {"inference_steps": 3, "embedding": "learned"}),
])
def test_continuous_procedures_step_jitted_and_sharded(name, net_cls, kw):
  """init / step / evaluate (the ODE: a sharded forward) through the trainer's jit over the 8-device mesh."""
  mesh = sharding.make_mesh()
  model = net_cls(10, **{**SMALL, **kw})
  proc = getattr(noprop_recipes, name)(model=model, task=tasks.Classification(), optimizer=optax.adam(1e-3))
  batch = batch_of(16)
  trainer = Trainer(proc, mesh, batch)
  state = trainer.init(0, trainer.put(batch, 16))
  for _ in range(2):
    state, metrics = trainer.step(state, trainer.put(batch, 16))
  assert int(state.step) == 2
  assert np.isfinite(float(metrics["loss"]))
  assert all(isinstance(leaf.sharding, jax.sharding.NamedSharding) for leaf in jax.tree.leaves(state.params))
  results = trainer.evaluate(state, data.ArraySource(batch), 16)
  assert 0.0 <= results["accuracy"] <= 1.0 and 0.0 <= results["accuracy_half"] <= 1.0
  assert np.isfinite(results["loss"])


def test_procedure_rejects_a_model_of_another_family():
  with pytest.raises(TypeError, match="NoPropDTNet"):
    noprop_recipes.NoPropDT(model=core.MLP((10,)), task=tasks.Classification(), optimizer=optax.adam(1e-3))
  with pytest.raises(TypeError, match="NoPropFMNet"):
    noprop_recipes.NoPropFM(model=noprop.NoPropCTNet(10), task=tasks.Classification(), optimizer=optax.adam(1e-3))
