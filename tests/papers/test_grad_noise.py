"""Adding Gradient Noise Improves Learning for Very Deep Networks (Neelakantan et al., 2015, arXiv 1511.06807).

The rule ``g_t <- g_t + N(0, eta / (1 + t)^0.55)`` is the optimizer builder's ``grad_noise`` field
(``zoo.recipes.builders.make_optimizer``, on ``optax.add_noise``); the paper's poor-initialisation setting is
``zoo.recipes.procedures.grad_noise.BadInitBackprop``. The paper's claim tested here: a deep fully-connected ReLU
net that plain Adam cannot train from a poor initialisation is trained when annealed Gaussian noise is added to its
gradients (the paper: 20 x 50 on MNIST; here the issue's 10 x 50 MLP on sklearn digits, all-zero initialisation,
the extreme "bad init").

(a) The schedule: ``optax.add_noise`` as built by ``make_optimizer`` adds noise of variance ``eta / (1 + t)^0.55``
    at update ``t = 0, 1, ...`` (measured empirically over many draws, against the paper's formula), after
    clipping when ``clip_norm`` is set.
(b) Effect (10 x 50 ReLU MLP + linear head, every parameter 0, Adam lr 1e-2, batch 64, 1000 steps, 3 seeds
    ``ZOO_TEST_SEED + k`` trained together under one ``vmap``):

    * the full method: ``grad_noise = 0.01`` (the paper's smallest eta);
    * the ablation and the paper's baseline at once: the same procedure and optimizer with ``grad_noise = 0``
      (plain Adam).

Measured (test accuracy per seed, ``ZOO_TEST_SEED`` = 0 / 1 / 2, seeds k = 0, 1, 2 of each):

=============================  =====================  =====================  =====================
run                            offset 0               offset 1               offset 2
=============================  =====================  =====================  =====================
Adam + noise (eta 0.01)        0.958 / 0.956 / 0.922  0.956 / 0.922 / 0.953  0.922 / 0.953 / 0.976
Adam, no noise (ablation)      0.102 / 0.100 / 0.102  0.100 / 0.102 / 0.102  0.102 / 0.102 / 0.102
=============================  =====================  =====================  =====================

Without noise the zero-initialised net is exactly stuck: every hidden activation is 0, the gradients of every hidden
weight are exactly 0 after 1000 steps, and only the output bias learns (chance accuracy, the majority class). With
noise the hidden weights leave the saddle (the last hidden layer's activations on the test set have numerical rank
well above 1) and the net learns.

Asserted: without noise, every hidden kernel and its gradient are exactly 0 and accuracy <= 0.2 on every seed; with
noise, mean accuracy >= 0.75, every seed >= 0.5, every seed at least 0.4 above its no-noise twin, last-hidden-layer
rank >= 5 (measured 44-46 of 50). Mutation check: ``optax.add_noise(0.0 * grad_noise, ...)`` in ``make_optimizer``
makes the noisy runs identical to the plain ones (0.102 / 0.100 / 0.102) and ``mean >= 0.75`` fails.
Cost: ~26 s of CPU time for the file (the add_noise compile is most of it; the 3 seeds share one vmapped compile).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo.recipes import builders
from zoo.recipes import data
from zoo.recipes import tasks
from zoo.recipes.procedures import grad_noise

DEPTH, WIDTH, STEPS, BATCH, LR, ETA = 10, 50, 1000, 64, 1e-2, 0.01


def _set_noise_keys(opt_state, keys):
  """Gives each vmapped run its own noise stream (``optax.add_noise`` seeds from a constant at build time)."""
  return jax.tree.map(lambda s: s._replace(rng_key=keys) if isinstance(s, optax.AddNoiseState) else s, opt_state,
                      is_leaf=lambda s: isinstance(s, optax.AddNoiseState))


def _train(train, eta, seeds):
  """Trains one BadInitBackprop(zeros) run per seed, vmapped; returns the stacked final states."""
  model = core.MLP(features=(WIDTH,) * DEPTH + (10,))
  tx = builders.make_optimizer({"name": "adam", "learning_rate": LR, "grad_noise": eta}, total_steps=STEPS)
  proc = grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx, init_scheme="zeros")
  source = data.ArraySource(train)
  idx = np.stack([np.stack([data.Batches(source, BATCH, seed=s).indices(t) for t in range(STEPS)]) for s in seeds])
  images, labels = jnp.asarray(train["image"][idx]), jnp.asarray(train["label"][idx])  # [seeds, steps, batch, ...]

  def one(seed, noise_key, images, labels):
    state = proc.init(jax.random.key(seed), {"image": images[0], "label": labels[0]})
    state = nn.unbox(state)
    state = state.replace(opt_state=_set_noise_keys(state.opt_state, noise_key))

    def body(s, batch):
      s, metrics = proc.step(s, {"image": batch[0], "label": batch[1]})
      return s, metrics["loss"]
    return jax.lax.scan(body, state, (images, labels))[0]

  keys = jax.vmap(lambda s: jax.random.key(1000 + s))(jnp.asarray(seeds))
  return proc, jax.jit(jax.vmap(one))(jnp.asarray(seeds), keys, images, labels)


def test_noise_schedule_is_the_papers():
  """Empirical variance of the added noise at steps t = 0, 9, 99 against eta / (1 + t)^0.55 (and after clipping)."""
  eta, n = 0.3, 20000
  tx = builders.make_optimizer({"name": "sgd", "learning_rate": 1.0, "grad_noise": eta, "noise_seed": 3,
                                "clip_norm": 1.0}, total_steps=100)
  grads = {"w": jnp.full((n,), 10.0 / np.sqrt(n))}  # norm 10: clipped to norm 1, i.e. every entry 1 / sqrt(n)
  state = tx.init(grads)
  update = jax.jit(tx.update)
  for t in range(100):
    updates, state = update(grads, state)
    if t in (0, 9, 99):
      noise = -np.asarray(updates["w"]) - 1.0 / np.sqrt(n)  # sgd's update is -lr * (clipped g + noise)
      expected = eta / (1.0 + t) ** 0.55
      assert abs(noise.mean()) < 4 * np.sqrt(expected / n)
      np.testing.assert_allclose(noise.var(), expected, rtol=0.05)


def test_noise_seed_follows_the_run_seed():
  """``noise_seed`` unset: the noise follows the run's seed (different seeds, different draws); set: it wins."""
  def first_noise(block, seed):
    tx = builders.make_optimizer({"name": "sgd", "learning_rate": 1.0, "grad_noise": 1.0, **block}, total_steps=1,
                                 seed=seed)
    zeros = {"w": jnp.zeros((64,))}
    return np.asarray(tx.update(zeros, tx.init(zeros))[0]["w"])
  a, b = first_noise({}, seed=1), first_noise({}, seed=2)
  assert np.abs(a - b).max() > 0.1
  np.testing.assert_array_equal(first_noise({}, seed=1), a)
  np.testing.assert_array_equal(first_noise({"noise_seed": 2}, seed=1), b)


def test_noise_trains_zero_initialised_deep_mlp(digits, seed):
  train, test = digits
  seeds = [seed + k for k in range(3)]
  acc, states, procs = {}, {}, {}
  for name, eta in (("noise", ETA), ("plain", 0.0)):
    procs[name], states[name] = _train(train, eta, seeds)
    evaluate = jax.jit(jax.vmap(procs[name].evaluate, in_axes=(0, None)))
    acc[name] = np.asarray(evaluate(states[name], test)["accuracy"].mean(-1))
  print({k: np.round(v, 3).tolist() for k, v in acc.items()})

  # Without noise the saddle holds exactly: hidden kernels and their gradients stay 0.
  plain = jax.tree.map(lambda x: x[0], states["plain"])
  grads = jax.grad(lambda p: procs["plain"].loss(p, {}, {k: v[:256] for k, v in train.items()},
                                                jax.random.key(0))[0])(plain.params)
  for i in range(DEPTH):
    assert not np.any(np.asarray(plain.params[f"dense_{i}"]["kernel"])), i
    assert not np.any(np.asarray(grads[f"dense_{i}"]["kernel"])), i
  assert np.all(acc["plain"] <= 0.2), acc

  assert acc["noise"].mean() >= 0.75, acc
  assert np.all(acc["noise"] >= 0.5), acc
  assert np.all(acc["noise"] - acc["plain"] >= 0.4), acc

  # The noisy net's last hidden layer is far from rank 1 (rank 0 without noise: every activation is 0).
  noisy = jax.tree.map(lambda x: x[0], states["noise"])
  _, inter = procs["noise"].model.apply({"params": noisy.params}, test["image"],
                                        capture_intermediates=lambda m, _: m.name == f"dense_{DEPTH - 1}",
                                        mutable=["intermediates"])
  hidden = np.maximum(np.asarray(inter["intermediates"][f"dense_{DEPTH - 1}"]["__call__"][0]), 0.0)
  s = np.linalg.svd(hidden, compute_uv=False)
  rank = int(np.sum(s > 1e-3 * s[0]))
  print("last hidden rank", rank)
  assert rank >= 5, s[:10]


def test_bad_init_procedure():
  """BadInitBackprop's schemes, on the boxed parameters the trainer sees; bad options are errors."""
  model = core.MLP(features=(8, 8, 3))
  batch = {"image": jnp.ones((4, 5)), "label": jnp.zeros((4,), jnp.int32)}
  tx = optax.adam(1e-3)
  zeros = grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx).init(jax.random.key(0),
                                                                                                   batch)
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(nn.unbox(zeros.params)))
  normal = grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx, init_scheme="normal",
                                      init_std=0.1).init(jax.random.key(0), nn.unbox(batch))
  params = nn.unbox(normal.params)
  assert not np.any(np.asarray(params["dense_0"]["bias"]))
  assert 0.05 < float(np.std(np.asarray(params["dense_1"]["kernel"]))) < 0.2
  model_init = grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx,
                                          init_scheme="model").init(jax.random.key(0), batch)
  assert float(np.std(np.asarray(nn.unbox(model_init.params)["dense_1"]["kernel"]))) > 0.2  # lecun normal, fan-in 8
  with pytest.raises(ValueError, match="init_scheme"):
    grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx, init_scheme="ones")
  with pytest.raises(ValueError, match="init_std"):
    grad_noise.BadInitBackprop(model=model, task=tasks.Classification(), optimizer=tx, init_std=-1.0)
