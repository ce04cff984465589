"""Counter-current learning and the back-prop-free baselines: feedback alignment and forward-forward.

Models in ``zoo.local_learning``, procedures in ``zoo.recipes.procedures.counter_current``, ``feedback_alignment`` and
``forward_forward``. The locality tests show that every local loss reaches exactly the parameters the method says
it trains, and no others.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import local_learning as ll
from zoo.recipes.procedures import counter_current
from zoo.recipes import data
from zoo.recipes.procedures import feedback_alignment
from zoo.recipes.procedures import forward_forward
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes.procedures.backprop import Backprop
from zoo.recipes.train import Trainer


def batch_of(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, 8, 8, 1), dtype=np.float32), "label": np.arange(n) % 10}


def nonzero_leaves(tree) -> set[str]:
  flat = flax.traverse_util.flatten_dict(tree)
  return {"/".join(k) for k, v in flat.items() if np.any(np.asarray(v) != 0)}


# ------------------------------------------------------------------------------------------------- CCL models


def test_ccl_mlp_streams_have_matching_shapes():
  model = ll.CounterCurrentMLP((32, 16, 10))
  x, targets = jnp.ones((4, 8, 8, 1)), jnp.eye(10)
  v = model.init(jax.random.key(0), x, targets)
  assert set(v["params"]) == {f"{d}_{i}" for d in ("forward", "feedback") for i in range(3)}
  assert nn.get_partition_spec(v)["params"]["feedback_1"]["kernel"] == jax.sharding.PartitionSpec("mlp", "embed")
  v = nn.unbox(v)
  acts, sigs = jax.jit(model.apply)(v, x, targets)
  assert [a.shape for a in acts] == [(4, 64), (4, 32), (4, 16), (4, 10)]
  assert [c.shape for c in sigs] == [(10, 64), (10, 32), (10, 16), (10, 10)]
  np.testing.assert_allclose(model.apply(v, x), acts[-1], rtol=1e-6)  # jit == no jit
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  per_example = jax.vmap(lambda xi: model.apply(v, xi[None])[0])(x)
  np.testing.assert_allclose(per_example, model.apply(v, x), rtol=1e-5, atol=1e-6)
  assert "bias" not in v["params"]["forward_0"]  # the reference's MLP has no biases
  with pytest.raises(ValueError, match="`targets`"):
    model.apply(v, x, jnp.eye(9))
  with pytest.raises(ValueError, match="activation"):
    ll.CounterCurrentMLP((10,), activation="swish").init(jax.random.key(0), x)


def test_ccl_convnet_streams_have_matching_shapes():
  model = ll.CounterCurrentConvNet(10, features=(4, 8))
  x = jnp.ones((3, 8, 8, 1))
  v = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), x, jnp.eye(10)))  # values: test_ccl_losses_are_local
  acts, sigs = jax.eval_shape(model.apply, v, x, jnp.eye(10))
  assert [a.shape for a in acts] == [(3, 8, 8, 1), (3, 4, 4, 4), (3, 2, 2, 8), (3, 10)]
  assert [c.shape for c in sigs] == [(10, 8, 8, 1), (10, 4, 4, 4), (10, 2, 2, 8), (10, 10)]
  assert jax.eval_shape(model.apply, v, x).shape == (3, 10)
  with pytest.raises(ValueError, match="`x`"):
    jax.eval_shape(model.apply, v, jnp.ones((3, 64)))


def test_pair_loss_matches_its_formula():
  rng = np.random.default_rng(0)
  a, c, y = rng.normal(size=(5, 6)), rng.normal(size=(3, 6)), np.array([0, 2, 1, 1, 0])
  target = np.eye(3)[y]
  dot = counter_current.pair_loss(jnp.asarray(a), jnp.asarray(c), jnp.asarray(y), kind="dot", scale=0.5)
  np.testing.assert_allclose(dot, 0.5 * 256 / 6 * np.mean((a @ c.T - target) ** 2), rtol=1e-5)
  an = a / np.linalg.norm(a, axis=1, keepdims=True)
  cn = c / np.linalg.norm(c, axis=1, keepdims=True)
  expected = (np.mean((an @ cn.T - target) ** 2) + 0.5 * np.mean((an @ an.T - np.eye(5)) ** 2)
              + 0.5 * np.mean((cn @ cn.T - np.eye(3)) ** 2))
  cos = counter_current.pair_loss(jnp.asarray(a), jnp.asarray(c), jnp.asarray(y), kind="cosine", scale=1.0)
  np.testing.assert_allclose(cos, expected, rtol=1e-5)
  with pytest.raises(ValueError, match="kind"):
    counter_current.pair_loss(jnp.asarray(a), jnp.asarray(c), jnp.asarray(y), kind="l2")


@pytest.mark.parametrize("model,loss", [(ll.CounterCurrentMLP((16, 16, 10)), "dot"),
                                        (ll.CounterCurrentConvNet(10, features=(4, 8)), "cosine")])
def test_ccl_losses_are_local(model, loss):
  """Pair l teaches exactly the forward layer that makes a_l and the feedback layer that makes c_l; the
  cross-entropy teaches only the top forward layer."""
  proc = counter_current.CounterCurrent(model=model, task=tasks.Classification(), optimizer=optax.sgd(1.0), loss=loss)
  batch = jax.tree.map(jnp.asarray, batch_of())
  params = nn.unbox(proc.init(jax.random.key(0), batch).params)
  # One compiled gradient of a weighted sum of the losses, evaluated for each one-hot weighting.
  grad = jax.jit(jax.grad(lambda p, w: jnp.sum(w[:-1] * proc.layer_losses(p, batch)[0])
                          + w[-1] * proc.layer_losses(p, batch)[1]))
  names = sorted(params)
  depth = len(names) // 2
  fwd = [n for n in names if n.startswith("forward")]
  fb = [n for n in names if n.startswith("feedback")]
  # Layers in stream order: forward layer l makes a_{l+1}; feedback layer l makes c_l.
  order = lambda ns: sorted(ns, key=lambda n: (n.endswith("out"), n))
  fwd, fb = order(fwd), order(fb)
  touched = lambda l: {k.split("/")[0] for k in nonzero_leaves(grad(params, jnp.eye(depth + 1)[l]))}
  for l in range(depth):
    expected = {fb[l]} | ({fwd[l - 1]} if l > 0 else set())
    assert touched(l) == expected, (l, touched(l), expected)
  assert touched(depth) == {fwd[-1]}


def test_ccl_frozen_feedback_ablation():
  """``learn_feedback=False`` (the ablation) leaves the feedback network at its initialisation and trains the forward
  network exactly as the full method does (same losses, same forward gradients)."""
  model = ll.CounterCurrentMLP((16, 16, 10))
  batch = jax.tree.map(jnp.asarray, batch_of())
  procs = [counter_current.CounterCurrent(model=model, task=tasks.Classification(), optimizer=optax.sgd(1.0),
                                          learn_feedback=flag) for flag in (True, False)]
  params = nn.unbox(procs[0].init(jax.random.key(0), batch).params)
  grads = [jax.grad(lambda p, proc=proc: proc.objective(p, batch)[0])(params) for proc in procs]
  (f_full, b_full), (f_frozen, b_frozen) = map(counter_current.split_networks, grads)
  assert nonzero_leaves(b_full) and not nonzero_leaves(b_frozen)
  jax.tree.map(np.testing.assert_array_equal, f_full, f_frozen)
  assert float(procs[0].objective(params, batch)[0]) == float(procs[1].objective(params, batch)[0])


def test_ccl_step_jitted_and_sharded_and_separate_optimizers():
  mesh = sharding.make_mesh()
  model = ll.CounterCurrentMLP((16, 16, 10))
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  proc = counter_current.CounterCurrent(model=model, task=tasks.Classification(), optimizer=opt)
  batch = batch_of()
  trainer = Trainer(proc, mesh, batch)
  state = trainer.init(0, trainer.put(batch, 16))
  assert set(state.opt_state) == {"forward", "feedback"}
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = trainer.step(state, trainer.put(batch, 16))
  assert np.isfinite(float(metrics["pair_loss"])) and float(metrics["grad_norm_feedback"]) > 0
  # Each network is clipped on its own: both moved by at most the learning rate times the clip.
  for group in ("forward", "feedback"):
    delta = [np.asarray(state.params[k]["kernel"]) - before[k]["kernel"] for k in before if k.startswith(group)]
    assert 0 < np.sqrt(sum(np.sum(d ** 2) for d in delta)) <= 1.0 + 1e-5
  results = trainer.evaluate(state, data.ArraySource(batch), 16)
  assert 0.0 <= results["accuracy"] <= 1.0


def test_ccl_rejects_a_model_without_the_two_networks():
  proc = counter_current.CounterCurrent(model=core.MLP((10,)), task=tasks.Classification(), optimizer=optax.sgd(1.0))
  with pytest.raises((ValueError, TypeError)):
    proc.init(jax.random.key(0), jax.tree.map(jnp.asarray, batch_of()))
  with pytest.raises(ValueError, match="loss"):
    counter_current.CounterCurrent(model=ll.CounterCurrentMLP(), task=tasks.Classification(),
                                   optimizer=optax.sgd(1.0), loss="l1")


# ------------------------------------------------------------------------------------------ feedback alignment


@pytest.mark.parametrize("model", [core.MLP((16, 16, 10)),
                                   core.ConvNet(10, features=(4,), kernel_size=(3, 3), hidden=(16,))])
def test_feedback_alignment_values_and_gradients(model):
  """Forward values unchanged; with B = W the FA gradient is backprop's; with random B only the top layer's
  weight gradient (which needs no transport) agrees."""
  task = tasks.Classification()
  batch = jax.tree.map(jnp.asarray, batch_of())
  bp = Backprop(model=model, task=task, optimizer=optax.sgd(0.1))
  state = nn.unbox(bp.init(jax.random.key(0), batch))

  def grads(feedback):
    def loss(p):
      with feedback_alignment.feedback_alignment(feedback):
        out = model.apply({"params": p}, batch["image"])
        return jnp.mean(task.loss(out, batch)), out
    return jax.grad(loss, has_aux=True)(state.params)

  bp_grads = jax.grad(lambda p: bp.loss(p, {}, batch, jax.random.key(0))[0])(state.params)
  kernels = {"/".join(k[:-1]): v for k, v in flax.traverse_util.flatten_dict(state.params).items()
             if k[-1] == "kernel"}
  same, out = grads(kernels)
  np.testing.assert_allclose(out, model.apply({"params": state.params}, batch["image"]), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), same, bp_grads)
  random_fb = feedback_alignment.random_feedback(state.params, jax.random.key(1))
  assert set(random_fb) == set(kernels)
  fa, _ = grads(random_fb)
  top = sorted(kernels)[-1] if isinstance(model, core.MLP) else "head"
  np.testing.assert_allclose(fa[top]["kernel"], bp_grads[top]["kernel"], rtol=1e-4, atol=1e-6)
  first = "dense_0" if isinstance(model, core.MLP) else "conv_0"
  assert not np.allclose(fa[first]["kernel"], bp_grads[first]["kernel"], atol=1e-6)


def test_feedback_alignment_step_jitted_and_sharded():
  mesh = sharding.make_mesh()
  proc = feedback_alignment.FeedbackAlignment(model=core.MLP((16, 10)), task=tasks.Classification(),
                                              optimizer=optax.adam(1e-2))
  batch = batch_of()
  trainer = Trainer(proc, mesh, batch)
  state = trainer.init(0, trainer.put(batch, 16))
  fb = jax.tree.map(np.asarray, state.feedback)
  for _ in range(2):
    state, metrics = trainer.step(state, trainer.put(batch, 16))
  jax.tree.map(np.testing.assert_array_equal, fb, jax.tree.map(np.asarray, state.feedback))  # B stays fixed
  assert np.isfinite(float(metrics["loss"]))
  assert 0.0 <= trainer.evaluate(state, data.ArraySource(batch), 16)["accuracy"] <= 1.0


# --------------------------------------------------------------------------------------------- forward-forward


def test_forward_forward_layers_learn_locally():
  model = ll.ForwardForwardMLP((16, 16, 16), num_classes=10)
  proc = forward_forward.ForwardForward(model=model, task=tasks.Classification(), optimizer=optax.adam(0.03))
  batch = jax.tree.map(jnp.asarray, batch_of())
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), batch))
  v = {"params": state.params}
  assert jax.eval_shape(lambda v: model.apply(v, batch["image"], batch["label"], method="goodness"), v).shape == (3, 16)
  assert jax.eval_shape(lambda v: model.apply(v, batch["image"]), v).shape == (16, 10)
  grad = jax.jit(jax.grad(lambda p, w: jnp.sum(w * proc.layer_losses(p, batch, jax.random.key(1)))))
  for l in range(3):
    assert {k.split("/")[0] for k in nonzero_leaves(grad(state.params, jnp.eye(3)[l]))} == {f"layer_{l}"}
  step = jax.jit(proc.step)
  new, metrics = step(state, batch)
  assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
  mesh = sharding.make_mesh()
  with jax.set_mesh(mesh):  # a sharded forward: the batch split over the 8 devices
    acc = jax.jit(proc.evaluate)(new, jax.device_put(batch, sharding.batch_sharding(mesh)))["accuracy"]
  assert acc.shape == (16,) and len(acc.sharding.device_set) == 8
  with pytest.raises(ValueError, match="`labels`"):
    jax.eval_shape(lambda v: model.apply(v, batch["image"], batch["label"][:3], method="goodness"), v)
