"""zoo.grokking: shapes, jit, vmap, sharded forward, data, Fourier concentration on planted weights, the Li_2 energy
(hand-computed values, its gradient is the stage-II backpropagated gradient), the stage metrics (from Python and in
metrics.jsonl from the CLI config), the train-fraction sweep's bookkeeping, bad inputs."""

import importlib.util
import json
import math
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import grokking
from zoo.recipes import sharding, train

STAGE_KEYS = {"gf_norm", "gf_label_alignment", "grad_energy_cosine", "energy", "fourier_share", "fourier_nodes",
              "active_nodes", "accuracy"}


def test_shapes_jit_vmap_and_data():
  data = grokking.modular_addition_data(7, 0.5, seed=1)
  assert data["x_train"].shape[1] == 14 and len(data["c_train"]) + len(data["c_test"]) == 49
  np.testing.assert_array_equal(data["y_train"].argmax(1), data["c_train"])
  model = grokking.GroupArithmeticNet(modulus=7, hidden=16)
  x = jnp.asarray(data["x_train"][:8])
  v = nn.unbox(model.init(jax.random.key(0), x))
  out = model.apply(v, x)
  assert out.shape == (8, 7)
  np.testing.assert_allclose(jax.jit(model.apply)(v, x), out, rtol=1e-5)
  np.testing.assert_allclose(jax.vmap(lambda a: model.apply(v, a))(x.reshape(2, 4, 14)).reshape(8, 7), out,
                             rtol=1e-5)


def test_sharded_forward_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = grokking.GroupArithmeticNet(modulus=5, hidden=16)
  x = jnp.asarray(grokking.modular_addition_data(5, 0.5)["x_train"][:8])
  v = nn.unbox(model.init(jax.random.key(0), x))
  expected = model.apply(v, x)
  params = jax.device_put(v, sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), x), mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, jax.device_put(x, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_fourier_concentration_planted():
  m = 11
  t = np.arange(m)
  pure = np.stack([np.cos(2 * np.pi * 3 * t / m + 0.4), np.sin(2 * np.pi * 5 * t / m)])
  mixed = np.cos(2 * np.pi * t / m) + np.cos(2 * np.pi * 2 * t / m)
  share, active = grokking.fourier_concentration(np.concatenate([pure, mixed[None], 1e-3 * pure[:1]]))
  np.testing.assert_allclose(share[:2], 1.0, atol=1e-12)
  assert share[2] == pytest.approx(0.5)
  assert active.tolist() == [True, True, True, False]
  assert 0 < grokking.critical_train_fraction(23) < 1


def test_train_small():
  data = grokking.modular_addition_data(5, 0.6)
  _, metrics = grokking.train_group_net(data, hidden=32, steps=200, learning_rate=1e-2)
  assert metrics["train_accuracy"] == 1.0


def _all_pairs(m):
  d = grokking.modular_addition_data(m, 0.5, seed=0)
  return np.concatenate([d["x_train"], d["x_test"]]), np.concatenate([d["y_train"], d["y_test"]])


def test_energy_hand_computed():
  # M = 2, all 4 pairs (a, b) -> a + b mod 2. w = [u_0, u_1, v_0, v_1]; square: f_i = (u_a + v_b)^2.
  x, y = _all_pairs(2)
  # w = [1, 0, 1, 0]: f = 4, 1, 1, 0 on (0,0), (0,1), (1,0), (1,1); centred 2.5, -.5, -.5, -1.5; Y~ column 0 =
  # (.5, -.5, -.5, .5) -> 1.25 + .25 + .25 - .75 = 1, column 1 -> -1; E = (1 + 1) / 2 = 1.
  # w = [1, -1, 1, -1] (the Fourier feature of Z_2): f = 4, 0, 0, 4 -> centred (2, -2, -2, 2) -> 4 and -4; E = 16.
  # w = [1, 0, 0, 0] (a only): f = 1, 1, 0, 0 is uncorrelated with the sum: E = 0.
  w = np.array([[1, 0, 1, 0], [1, -1, 1, -1], [1, 0, 0, 0]], np.float32)
  order = np.lexsort((x[:, 3], x[:, 1]))  # any order of the samples gives the same E
  np.testing.assert_allclose(grokking.energy_E(w, x[order], y[order]), [1.0, 16.0, 0.0], atol=1e-5)
  assert float(grokking.energy_E(w[1], x, y)) == pytest.approx(16.0)
  # ReLU, w = [1, -1, 1, -1]: f = 2, 0, 0, 0 -> centred (1.5, -.5, -.5, -.5) -> .75 + .25 + .25 - .25 = 1; E = 1.
  assert float(grokking.energy_E(w[1], x, y, "relu")) == pytest.approx(1.0)
  # Unit norm, square: E scales as |w|^4, so the Fourier node (16 / 16 = 1) beats [1, 0, 1, 0] (1 / 4).
  unit = w[:2] / np.linalg.norm(w[:2], axis=1, keepdims=True)
  np.testing.assert_allclose(grokking.energy_E(unit, x, y), [0.25, 1.0], rtol=1e-5)


def test_energy_of_a_fourier_node_is_m_over_4():
  # Full data, unit w = [cos(2 pi k a / M + p); cos(2 pi k b / M + q)] / sqrt(M): only the cross term
  # 2 u_a v_b ⊃ cos(2 pi k (a + b) / M + p + q) / M correlates with the centred labels; each class has M pairs, so
  # (Y~^T f~)_c = cos(2 pi k c / M + p + q) and E = 1/2 sum_c cos^2 = M / 4 for every k, p, q (odd M).
  m = 11
  x, y = _all_pairs(m)
  t = np.arange(m)
  nodes = [np.concatenate([np.cos(2 * np.pi * k * t / m + p), np.cos(2 * np.pi * k * t / m + q)]) / math.sqrt(m)
           for k, p, q in [(1, 0.0, 0.0), (3, 0.7, -1.1), (5, 2.0, 0.3)]]
  np.testing.assert_allclose(grokking.energy_E(np.stack(nodes), x, y), m / 4, rtol=1e-5)
  rand = np.random.default_rng(0).normal(size=(64, 2 * m))
  rand /= np.linalg.norm(rand, axis=1, keepdims=True)
  assert float(np.max(grokking.energy_E(rand, x, y))) < m / 4 * 0.7


def test_energy_gradient_is_the_stage_two_backpropagated_gradient():
  # With the ridge top layer V = (F~^T F~ + eta I)^-1 F~^T Y~ at large eta, -dL/dw_j of L = 1/2 |Y~ - F~ V|^2 (V
  # held at its optimum: the envelope theorem) is grad E(w_j) / eta.
  x, y = _all_pairs(7)
  w = jax.random.normal(jax.random.key(0), (8, 14)) / math.sqrt(14)
  eta = 1e5
  yc = y - y.mean(0)

  def feats(w_):
    f = jnp.square(x @ w_.T)
    return f - f.mean(0)

  fc = feats(w)
  v = jnp.linalg.solve(fc.T @ fc + eta * jnp.eye(8), fc.T @ yc)
  g = -jax.grad(lambda w_: 0.5 * jnp.sum((yc - feats(w_) @ v) ** 2))(w)
  np.testing.assert_allclose(g * eta, grokking.energy_grad(w, x, y), rtol=2e-3, atol=1e-4)


def test_fourier_share_matches_numpy():
  w = np.random.default_rng(1).normal(size=(6, 10))
  np.testing.assert_allclose(grokking.fourier_share(jnp.asarray(w)), grokking.fourier_concentration(w)[0],
                             rtol=1e-5)


def test_train_history_has_stage_metrics():
  data = grokking.modular_addition_data(7, 0.6)
  params, metrics = grokking.train_group_net(data, hidden=16, steps=40, record_every=20, learning_rate=1e-2)
  history = metrics["history"]
  assert STAGE_KEYS | {"train_loss", "test_loss", "test_accuracy"} <= set(history)
  assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in history.values())
  assert metrics["history_steps"].tolist() == [20, 40]
  assert history["accuracy"][-1] == pytest.approx(metrics["train_accuracy"], abs=1e-6)
  # stage_metrics' energy agrees with energy_E of the unit-norm nodes
  stages = grokking.stage_metrics(params, jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"]))
  unit = params["W"] / jnp.linalg.norm(params["W"], axis=1, keepdims=True)
  assert float(stages["energy"]) == pytest.approx(float(jnp.mean(grokking.energy_E(unit, data["x_train"],
                                                                                    data["y_train"]))), rel=1e-5)


def test_cli_config_logs_stage_metrics(tmp_path):
  path = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "configs" / "grokking_li2_stages.py"
  spec = importlib.util.spec_from_file_location("_grokking_li2_stages", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.steps, config.log_every, config.eval_every, config.checkpoint_every = 20, 10, 10, 0
  config.model.hidden = 32
  config.progress_bar = False
  results = train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
  logged = {k for r in records for k in r}
  assert {f"train/{k}" for k in STAGE_KEYS | {"loss"}} <= logged
  assert {"eval/loss", "eval/accuracy"} <= logged and 0 <= results["accuracy"] <= 1
  assert sorted({r["step"] for r in records if "train/energy" in r}) == [10, 20]


def test_minimal_fractions():
  rec = lambda n, acc: {"modulus": 5, "n": n, "test_accuracy": acc}
  # mean accuracy at n = 10, 15, 20, 24: 0.95 (a fluke below a failure), 0.5, 0.925, 1.0 -> the smallest n from
  # which every larger n passes is 20.
  records = [rec(10, 0.95), rec(15, 0.4), rec(15, 0.6), rec(20, 0.9), rec(20, 0.95), rec(24, 1.0)]
  out = grokking.minimal_fractions(records, threshold=0.9)
  assert out[5]["n"] == 20 and out[5]["train_fraction"] == pytest.approx(20 / 25)
  assert out[5]["c"] == pytest.approx(20 / (5 * math.log(5)))
  assert grokking.minimal_fractions([rec(24, 0.3)])[5] is None


@pytest.mark.parametrize("call, message", [
    (lambda: grokking.modular_addition_data(1, 0.5), "modulus"),
    (lambda: grokking.modular_addition_data(5, 1.0), "train_fraction"),
    (lambda: grokking.GroupArithmeticNet(modulus=5).init(jax.random.key(0), jnp.ones((2, 9))), "inputs=10"),
    (lambda: grokking.GroupArithmeticNet(modulus=5, activation="tanh").init(jax.random.key(0), jnp.ones((2, 10))),
     "activation"),
    (lambda: grokking.fourier_concentration(np.ones((2, 2))), "M >= 3"),
    (lambda: grokking.train_group_net(grokking.modular_addition_data(5, 0.5), steps=0), "steps"),
    (lambda: grokking.train_group_net(grokking.modular_addition_data(5, 0.5), steps=10, record_every=3),
     "record_every"),
    (lambda: grokking.energy_E(np.ones(4), np.ones((3, 4)), np.ones((3, 2)), "tanh"), "activation"),
    (lambda: grokking.energy_E(np.ones(5), np.ones((3, 4)), np.ones((3, 2))), "w \\[K, d\\]"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call()
