"""Unit tests of zoo.core, zoo.recipes.procedures.fault_detection and the sensors / copy_first datasets.

Per module: output shapes and dtypes, jit == no-jit, vmap over a leading axis, a forward pass with parameters and
batch sharded over the 8-device mesh by their logical axis names, and clear errors on bad input.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from zoo import core
from zoo.recipes import data
from zoo.recipes.procedures import fault_detection as fd
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.datasets import sensors as sensors_lib
from zoo.recipes.datasets import sequences

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(size=(8, 8, 8, 1)).astype(np.float32)
SEQS = RNG.normal(size=(8, 6, 4)).astype(np.float32)
TOKENS = RNG.integers(0, 12, size=(8, 6)).astype(np.int32)
VECTORS = RNG.normal(size=(8, 6)).astype(np.float32)

# (id, model, input, expected output shape)
CASES = [
    ("mlp", core.MLP(features=(16, 10)), IMAGES, (8, 10)),
    ("convnet", core.ConvNet(num_classes=10), IMAGES, (8, 10)),
    ("elman_cls", core.ElmanRNN(features=8, num_classes=4), SEQS, (8, 4)),
    ("lstm_seq", core.LSTM(features=8), SEQS, (8, 6, 8)),
    ("lstm_tokens", core.LSTM(features=8, num_classes=4, vocab_size=12, num_layers=2), TOKENS, (8, 4)),
    ("gru_seq", core.GRU(features=8), SEQS, (8, 6, 8)),
    ("autoencoder", core.Autoencoder(latent=3, hidden=(16,)), IMAGES, (8, 8, 8, 1)),
    ("denoising", core.DenoisingAutoencoder(latent=3, hidden=(16,)), IMAGES, (8, 8, 8, 1)),
    ("sparse", core.SparseAutoencoder(latent=32), VECTORS, (8, 6)),
]
IDS = [c[0] for c in CASES]
BY_NAME = {c[0]: c for c in CASES}


def _init(model, x):
  init = jax.jit(model.init)  # eager init of a scanned RNN is slow; jit it
  return nn.unbox(init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x))


def _apply(model, variables, *args, **kwargs):
  """Jitted ``model.apply``: eager dispatch of every op is slow on a loaded 2-core machine."""
  return jax.jit(lambda v, *a: model.apply(v, *a, **kwargs))(variables, *args)


@functools.lru_cache(maxsize=None)
def _case(name):
  """``(variables, jitted apply, its output on x)`` of a CASES entry, computed once per session."""
  _, model, x, _ = BY_NAME[name]
  variables = _init(model, x)
  apply = jax.jit(model.apply)
  return variables, apply, apply(variables, x)


@pytest.mark.parametrize("name, model, x, shape", CASES, ids=IDS)
def test_forward_shapes_dtypes_jit_and_vmap(name, model, x, shape):
  variables, apply, jitted = _case(name)
  assert "losses" not in variables or name == "sparse"
  eager = model.apply(variables, x)
  assert eager.shape == shape and eager.dtype == jnp.float32
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)
  # vmap over a leading axis of batches: [2, batch, ...] -> [2, *shape]
  stacked = np.stack([x, x[::-1]])
  out = jax.jit(jax.vmap(lambda xb: model.apply(variables, xb)))(stacked)
  assert out.shape == (2, *shape)
  np.testing.assert_allclose(out[0], eager, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out[1], apply(variables, x[::-1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, model, x, shape", CASES, ids=IDS)
def test_sharded_forward_matches_single_device(name, model, x, shape):
  # data=2, fsdp=2, tensor=2: parameters are really split by their logical names, the batch over data*fsdp.
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  boxed = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x))
  variables, _, expected = _case(name)
  placed = jax.device_put(variables, sharding.state_shardings(boxed, mesh))
  assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed)), "no parameter is sharded"
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, xs)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)


def test_trainer_fit_on_8_device_mesh_with_sown_sparsity():
  mesh = sharding.make_mesh()
  model = core.SparseAutoencoder(latent=16, sparsity_weight=0.5)
  result = train.fit(model, {"x": np.tile(VECTORS, (4, 1))}, task=tasks.Reconstruction(input_key="x"), steps=3,
                     batch_size=16, mesh=mesh, log_every=1)
  assert len(result.history) == 3
  assert all(h["train/aux_loss"] > 0 for h in result.history)  # the sown KL penalty reaches the loss
  assert np.isfinite(result.history[-1]["train/total_loss"])


# ----------------------------------------------------------------------------------------------- mechanisms


def test_lstm_forget_gate_bias_starts_at_one_and_others_at_zero():
  params = _case("lstm_tokens")[0]["params"]  # two layers, default forget_bias
  for layer in ("cell_0", "cell_1"):
    np.testing.assert_array_equal(params[layer]["hf"]["bias"], np.ones(8))
    for gate in ("hi", "hg", "ho"):
      np.testing.assert_array_equal(params[layer][gate]["bias"], np.zeros(8))
  other = _init(core.LSTM(features=5, forget_bias=2.5), SEQS)["params"]["cell_0"]["hf"]["bias"]
  np.testing.assert_array_equal(other, np.full(5, 2.5))


def test_lstm_and_gru_compute_what_flax_cells_compute():
  # The encoders are flax's own cells under nn.RNN: same parameters, same outputs as the plain cells.
  for name, cell in (("lstm_seq", nn.OptimizedLSTMCell(8)), ("gru_seq", nn.GRUCell(8))):
    variables, _, out = _case(name)
    reference = _apply(nn.RNN(cell), {"params": {"cell": variables["params"]["cell_0"]}}, SEQS)
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-6)


def test_lstm_ablations_switch_off_exactly_one_mechanism():
  # The ablation cell with both switches on computes flax's LSTMCell, with its parameters.
  cell = core._AblatedLSTMCell(8)  # pylint: disable=protected-access
  full = _init(nn.RNN(cell), SEQS)
  reference = _apply(nn.RNN(nn.LSTMCell(8)), full, SEQS)
  np.testing.assert_allclose(_apply(nn.RNN(cell), full, SEQS), reference, rtol=1e-6, atol=1e-6)
  p = full["params"]["cell"]
  # Gates fixed open: c_t = c_{t-1} + tanh(W x + U h + b), h_t = tanh(c_t); only the candidate's weights exist.
  ungated = core.LSTM(features=8, gated=False)
  v = _init(ungated, SEQS)
  assert set(v["params"]["cell_0"]) == {"ig", "hg"}
  v = {"params": {"cell_0": {"ig": p["ig"], "hg": p["hg"]}}}
  c = h = np.zeros((SEQS.shape[0], 8), np.float32)
  for t in range(SEQS.shape[1]):
    c = c + np.tanh(SEQS[:, t] @ p["ig"]["kernel"] + h @ p["hg"]["kernel"] + p["hg"]["bias"])
    h = np.tanh(c)
  out = _apply(ungated, v, SEQS)
  np.testing.assert_allclose(out[:, -1], h, rtol=1e-5, atol=1e-5)
  # No self-connection of the cell: c_t = i * g (no forget gate), h_t = o * tanh(c_t).
  nomem = core.LSTM(features=8, memory_cell=False)
  assert set(_init(nomem, SEQS)["params"]["cell_0"]) == {"ii", "hi", "ig", "hg", "io", "ho"}
  v = {"params": {"cell_0": {k: p[k] for k in ("ii", "hi", "ig", "hg", "io", "ho")}}}
  sig = lambda z: 1 / (1 + np.exp(-z))
  pre = lambda k, x, h: x @ p["i" + k]["kernel"] + h @ p["h" + k]["kernel"] + p["h" + k]["bias"]
  h = np.zeros((SEQS.shape[0], 8), np.float32)
  for t in range(SEQS.shape[1]):
    x = SEQS[:, t]
    h = sig(pre("o", x, h)) * np.tanh(sig(pre("i", x, h)) * np.tanh(pre("g", x, h)))
  np.testing.assert_allclose(_apply(nomem, v, SEQS)[:, -1], h, rtol=1e-5, atol=1e-5)


def test_elman_is_tanh_of_affine_recurrence_with_head_on_last_step():
  variables, _, logits = _case("elman_cls")
  p = variables["params"]
  h = np.zeros((SEQS.shape[0], 8), np.float32)
  for t in range(SEQS.shape[1]):
    h = np.tanh(SEQS[:, t] @ p["cell_0"]["i"]["kernel"] + p["cell_0"]["i"]["bias"] + h @ p["cell_0"]["h"]["kernel"])
  np.testing.assert_allclose(logits, h @ p["head"]["kernel"] + p["head"]["bias"], rtol=1e-5, atol=1e-5)


def test_mlp_flatten_false_maps_the_last_axis():
  model = core.MLP(features=(4, 2), flatten=False)
  x = SEQS  # [batch, time, 4]
  variables = _init(model, x)
  out = _apply(model, variables, x)
  assert out.shape == (8, 6, 2)
  np.testing.assert_allclose(out[:, 2], _apply(model, variables, x[:, 2]), rtol=1e-6)


def test_dropout_only_in_training():
  model = core.MLP(features=(64, 3), dropout_rate=0.5)
  variables = _init(model, VECTORS)
  a = _apply(model, variables, VECTORS, train=True, rngs={"dropout": jax.random.key(0)})
  b = _apply(model, variables, VECTORS, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(_apply(model, variables, VECTORS), _apply(model, variables, VECTORS, train=False))


def test_denoising_autoencoder_corrupts_only_in_training():
  model = core.DenoisingAutoencoder(latent=3, hidden=(16,), noise_level=0.5)
  variables = _init(model, IMAGES)
  clean = _apply(model, variables, IMAGES)
  np.testing.assert_allclose(_apply(model, variables, IMAGES, train=False), clean)
  noisy = _apply(model, variables, IMAGES, train=True, rngs={"noise": jax.random.key(3)})
  assert not np.allclose(noisy, clean)
  x = np.ones((64, 100), np.float32)
  masked = core.DenoisingAutoencoder(latent=2, noise_level=0.3).corrupt(jnp.asarray(x), jax.random.key(0))
  assert abs(float(np.mean(masked == 0)) - 0.3) < 0.02
  gauss = core.DenoisingAutoencoder(latent=2, corruption="gaussian", noise_level=0.2)
  assert abs(float(np.std(gauss.corrupt(jnp.asarray(x), jax.random.key(0)) - x)) - 0.2) < 0.01
  with pytest.raises(Exception, match="noise"):  # training without the 'noise' rng is an error, not silent
    _apply(model, variables, IMAGES, train=True)


def test_sparse_autoencoder_sows_kl_penalty():
  model = core.SparseAutoencoder(latent=7, sparsity_target=0.1, sparsity_weight=0.3)
  variables = {"params": _init(model, VECTORS)["params"]}
  _, state = _apply(model, variables, VECTORS, mutable=["losses"])
  (penalty,) = state["losses"]["sparsity"]
  h = np.asarray(_apply(model, variables, VECTORS, method="encode"))
  assert h.shape == (8, 7) and h.min() > 0 and h.max() < 1  # sigmoid codes
  rho_hat = h.mean(0)
  expected = 0.3 * np.sum(scipy.special.rel_entr(0.1, rho_hat) + scipy.special.rel_entr(0.9, 1 - rho_hat))
  np.testing.assert_allclose(penalty, expected, rtol=1e-4)


def test_autoencoder_encode_decode_and_reconstruction_error():
  model = core.Autoencoder(latent=3, hidden=(16,))
  variables = _init(model, IMAGES)
  z = _apply(model, variables, IMAGES, method="encode")
  assert z.shape == (8, 3)
  x_hat = jax.jit(lambda v, z: model.apply(v, z, (8, 8, 1), method="decode"))(variables, z)
  np.testing.assert_allclose(x_hat, _apply(model, variables, IMAGES), rtol=1e-6)
  err = core.reconstruction_error(model, variables, IMAGES)
  expected = ((np.asarray(x_hat) - IMAGES) ** 2).reshape(8, -1).sum(1)
  np.testing.assert_allclose(err, expected, rtol=1e-5)
  np.testing.assert_allclose(fd.fault_scores(model, variables, IMAGES, batch_size=3), expected, rtol=1e-5)


def test_activations_by_name_and_list_fields_from_json_configs():
  by_name = core.Autoencoder(latent=2, hidden=[16, 8], activation="tanh", output_activation="sigmoid")
  by_fn = core.Autoencoder(latent=2, hidden=(16, 8), activation=nn.tanh, output_activation=nn.sigmoid)
  variables = _init(by_fn, VECTORS)
  x_hat = _apply(by_name, variables, VECTORS)
  np.testing.assert_allclose(x_hat, _apply(by_fn, variables, VECTORS), rtol=1e-6)
  # A module with list fields is not hashable; the error helper still works.
  np.testing.assert_allclose(core.reconstruction_error(by_name, variables, VECTORS),
                             ((np.asarray(x_hat) - VECTORS) ** 2).sum(1), rtol=1e-5)


def test_bfloat16_compute():
  model = core.MLP(features=(16, 4), dtype=jnp.bfloat16)
  variables = _init(model, VECTORS)
  assert jax.tree.leaves(variables)[0].dtype == jnp.float32  # parameters stay float32
  assert _apply(model, variables, VECTORS).dtype == jnp.bfloat16
  lstm = core.LSTM(features=4, num_classes=2, dtype=jnp.bfloat16)
  assert _apply(lstm, _init(lstm, SEQS), SEQS).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("model, x, error, pattern", [
    (core.MLP(features=(4,)), np.ones((5,), np.float32), ValueError, r"MLP: `x` must have shape \[batch, \.\.\.\]"),
    (core.MLP(features=(4,)), np.ones((5, 3), np.int32), TypeError, r"MLP: `x` must have a floating dtype"),
    (core.MLP(features=()), VECTORS, ValueError, r"`features`"),
    (core.ConvNet(), np.ones((2, 8, 8), np.float32), ValueError,
     r"ConvNet: `x` must have shape \[batch, height, width, channels\].*got shape \(2, 8, 8\)"),
    (core.ConvNet(pool="sum"), IMAGES, ValueError, r"`pool`"),
    (core.ConvNet(activation="relux"), IMAGES, ValueError, r"ConvNet: `activation` must be a function or the name"),
    (core.Autoencoder(latent=2, output_activation="nope"), VECTORS, ValueError, r"`output_activation`"),
    (core.LSTM(features=4), np.ones((2, 5), np.float32), ValueError,
     r"LSTM: `x` must have shape \[batch, time, in_features\]"),
    (core.GRU(features=4, vocab_size=10), SEQS, ValueError, r"GRU: `x` must have shape \[batch, time\]"),
    (core.ElmanRNN(features=4, vocab_size=10), np.ones((2, 5), np.float32), TypeError,
     r"ElmanRNN: `x` must have a integer dtype"),
    (core.Autoencoder(latent=2), np.ones((4,), np.float32), ValueError, r"Autoencoder: `x` must have shape"),
    (core.Autoencoder(latent=0), VECTORS, ValueError, r"`latent` must be >= 1"),
    (core.DenoisingAutoencoder(latent=2, corruption="salt"), VECTORS, ValueError, r"`corruption`"),
    (core.SparseAutoencoder(latent=4, sparsity_target=1.5), VECTORS, ValueError, r"`sparsity_target`"),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None)
def test_bad_input_raises_clear_error(model, x, error, pattern):
  with pytest.raises(error, match=pattern):
    model.init({"params": jax.random.key(0), "noise": jax.random.key(0)}, x, train=True)


def test_decode_checks_latent_size():
  model = core.Autoencoder(latent=3, hidden=(8,))
  variables = _init(model, VECTORS)
  with pytest.raises(ValueError, match=r"`z` must have shape \[batch, latent=3\]"):
    model.apply(variables, np.ones((2, 4), np.float32), (5,), method="decode")


# ------------------------------------------------------------------------------------------- fault detection


def test_fit_threshold():
  scores = np.arange(1000, dtype=np.float64)
  assert fd.fit_threshold(scores, "quantile", q=0.99) == pytest.approx(np.quantile(scores, 0.99))
  assert fd.fit_threshold(scores, "mean_std", k=3) == pytest.approx(scores.mean() + 3 * scores.std())
  with pytest.raises(ValueError, match="`method`"):
    fd.fit_threshold(scores, "median")
  with pytest.raises(ValueError, match="`q`"):
    fd.fit_threshold(scores, q=1.5)
  with pytest.raises(ValueError, match="`scores`"):
    fd.fit_threshold(np.ones((3, 2)))


def test_train_ae_detector_flags_far_points(single_device_mesh):
  normal = RNG.normal(size=(256, 4)).astype(np.float32) * np.array([1, 1, 0.01, 0.01], np.float32)
  detector = fd.train_ae_detector(core.Autoencoder(latent=2, hidden=(16,)), {"x": normal}, steps=300,
                                  batch_size=32, mesh=single_device_mesh)
  assert detector.threshold == pytest.approx(np.quantile(detector.train_scores, 0.99))
  far = np.array([[0, 0, 3, -3], [0.5, 0.5, -4, 4]], np.float32)  # off the 2-d plane the data lives on
  assert detector.predict(far).all()
  assert detector.predict(normal).mean() <= 0.02
  with pytest.raises(ValueError, match="`normal_data`"):
    fd.train_ae_detector(core.Autoencoder(latent=2), np.ones((10, 3), np.int32), steps=1)
  with pytest.raises(KeyError, match="'image'"):
    fd.train_ae_detector(core.Autoencoder(latent=2), {"x": normal}, input_key="image", steps=1)
  with pytest.raises(ValueError, match="`x`"):
    fd.fault_scores(detector.model, detector.variables, np.ones((3,), np.float32))


# ---------------------------------------------------------------------------------------------------- datasets


def test_sensors_dataset():
  gen = sensors_lib.sensors(n_train=500, n_test=2000, seed=3)
  train_split, test_split = gen.splits["train"], gen.splits["test"]
  assert train_split["x"].shape == (500, 8) and train_split["x"].dtype == np.float32
  assert test_split["theta"].shape == (2000, 2)
  assert not train_split["fault"].any()  # faults only at test time
  assert set(np.unique(test_split["fault_type"])) == {0, 1, 2, 3}
  np.testing.assert_array_equal(test_split["fault"], test_split["fault_type"] > 0)
  assert 0.15 < test_split["fault"].mean() < 0.45
  # A stuck channel holds one value over its segment.
  stuck = np.flatnonzero(test_split["fault_type"] == 1)
  start = stuck[0]
  end = start + np.argmax(test_split["fault_type"][start:] != 1)
  seg = test_split["x"][start:end]
  assert (np.ptp(seg, axis=0) == 0).sum() == 1
  again = sensors_lib.sensors(n_train=500, n_test=2000, seed=3)
  np.testing.assert_array_equal(again.splits["test"]["x"], test_split["x"])
  with pytest.raises(ValueError, match="fault_fraction"):
    sensors_lib.sensors(fault_fraction=1.0)


def test_copy_first_dataset_and_registration():
  gen = sequences.copy_first(length=5, num_symbols=3, num_distractors=4, n_train=100, n_test=10)
  tokens, label = gen.splits["train"]["tokens"], gen.splits["train"]["label"]
  assert tokens.shape == (100, 6) and tokens.dtype == np.int32
  np.testing.assert_array_equal(tokens[:, 0], label)
  assert tokens[:, 1:].min() >= 3 and tokens.max() < 7 and label.max() < 3
  assert gen.metadata["vocab_size"] == 7
  sources, info = data.load("copy_first", length=5, num_symbols=3, num_distractors=4, n_train=100, n_test=10)
  stored = sources["train"].__getitems__(range(100))["tokens"]
  assert sorted(map(tuple, stored.tolist())) == sorted(map(tuple, tokens.tolist()))  # TFDS may reorder examples
  assert info.num_classes == 3
  sources, _ = data.load("sensors", n_train=64, n_test=64)
  assert sources["test"].__getitems__([0])["x"].shape == (1, 8)
  with pytest.raises(ValueError, match="length"):
    sequences.copy_first(length=0)
