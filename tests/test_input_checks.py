"""Bad values and shapes at the models' boundaries are clear errors, never silent numbers (issue 11, items 4 and 6).

Each case here once returned a plausible-looking wrong result or ended in a flax/XLA internal error; the expected
messages name the argument (or the layer) and the expected shape, dtype or range.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import activator, core, gnn, hopfield, kan, random_features, transformer
from zoo.kernels import attention as attention_lib
from zoo.kernels import kan_basis
from zoo.kernels import multigrid

KEY = jax.random.key(0)


def _qkv(b=2, t=4, h=2, d=8, dtype=jnp.float32):
  x = jax.random.normal(KEY, (b, t, h, d)).astype(dtype)
  return x, x, x


# ---------------------------------------------------------------------------------------------------- attention


@pytest.mark.parametrize("impl", ["xla", "auto"])
def test_attention_rejects_integer_inputs(impl):
  q = jnp.ones((1, 4, 2, 8), jnp.int32)
  with pytest.raises(TypeError, match=r"`query` must have a floating dtype; got int32"):
    attention_lib.attention(q, q, q, impl=impl)


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.5])
def test_attention_dropout_rate_range(rate):
  q, k, v = _qkv()
  with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\)"):
    attention_lib.attention(q, k, v, impl="xla", dropout_rate=rate, dropout_rng=KEY)


@pytest.mark.parametrize("name,shape", [("mask", (2, 2, 4, 5)), ("bias", (2, 3, 4, 4)), ("mask", (4, 4, 4))])
def test_attention_mask_and_bias_shapes(name, shape):
  q, k, v = _qkv()
  arg = jnp.ones(shape, bool) if name == "mask" else jnp.zeros(shape)
  with pytest.raises(ValueError, match=rf"`{name}` must be broadcastable to \[batch, heads, q_length, kv_length\] = "
                     r"\[2, 2, 4, 4\]"):
    attention_lib.attention(q, k, v, impl="xla", **{name: arg})


def test_multi_head_attention_mask_kv_length():
  mha = transformer.MultiHeadAttention(num_heads=2, head_dim=4)
  x = jnp.ones((2, 5, 8))
  variables = mha.init(KEY, x)
  with pytest.raises(ValueError, match=r"`mask` must be broadcastable"):
    mha.apply(variables, x, mask=jnp.ones((2, 1, 5, 6), bool))
  with pytest.raises(ValueError, match=r"`bias` must be broadcastable"):
    mha.apply(variables, x, bias=jnp.zeros((2, 3, 5, 5)))


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.5])
def test_module_dropout_rate_range(rate):
  mlp = core.MLP(features=(8, 3), dropout_rate=rate)
  with pytest.raises(ValueError, match=r"MLP: `dropout_rate` must be a number in \[0, 1\)"):
    mlp.init(KEY, jnp.ones((2, 4)))
  block = transformer.MLPBlock(hidden_features=8, dropout_rate=rate)
  with pytest.raises(ValueError, match=r"MLPBlock: `dropout_rate` must be a number in \[0, 1\)"):
    block.init(KEY, jnp.ones((2, 3, 4)))
  mha = transformer.MultiHeadAttention(num_heads=2, dropout_rate=rate)
  with pytest.raises(ValueError, match=r"MultiHeadAttention: `dropout_rate` must be a number in \[0, 1\)"):
    mha.init(KEY, jnp.ones((2, 3, 4)))  # checked at inference too, not only when dropout runs


# ---------------------------------------------------------------------------------------------------- KAN


@pytest.mark.parametrize("grid_range", [(1.0, -1.0), (0.0, 0.0), (0.0, float("inf"))])
def test_kan_grid_range(grid_range):
  with pytest.raises(ValueError, match=r"KANLinear: `grid_range` must be \(lo, hi\) with finite lo < hi"):
    kan.KANLinear(4, grid_range=grid_range).init(KEY, jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"`grid_range` must be \(lo, hi\)"):
    kan_basis.make_grid(kan_basis.Basis.bspline(5, 3), 3, *grid_range)


def test_bspline_basis_needs_one_interval():
  with pytest.raises(ValueError, match=r"needs grid_size >= 1.*grid_size 0"):
    kan_basis.Basis.bspline(0, 3)
  assert kan_basis.Basis.bspline(1, 3).size == 4


# ---------------------------------------------------------------------------------------------------- indices


def test_gnn_edge_indices_out_of_range():
  conv = gnn.GCNConv(4)
  x, edges = jnp.ones((5, 3)), jnp.array([[0, 1], [1, 2], [2, 3]])
  variables = conv.init(KEY, x, edges)
  for bad, value in ((jnp.array([[0, 1], [7, 2]]), 7), (jnp.array([[0, -1], [1, 2]]), -1)):
    with pytest.raises(ValueError, match=rf"GCNConv: `edges` must hold indices in \[0, 5\).*first: {value}"):
      conv.apply(variables, x, bad)
    # Traced values cannot raise: the graph's outputs are NaN, never finite numbers from a clipped gather.
    assert bool(jnp.isnan(jax.jit(conv.apply)(variables, x, bad)).all())
  # A masked-out (padding) edge may hold any index.
  out = jax.jit(conv.apply)(variables, x, jnp.array([[0, 1], [7, 2]]), jnp.array([True, False]))
  assert bool(jnp.isfinite(out).all())
  conv.apply(variables, x, jnp.array([[0, 1], [7, 2]]), jnp.array([True, False]))


def test_lstm_tokens_out_of_vocabulary():
  lstm = core.LSTM(features=8, vocab_size=5)
  tokens = jnp.array([[1, 2, 3]])
  variables = lstm.init(KEY, tokens)
  with pytest.raises(ValueError, match=r"LSTM/embed: `tokens` must hold indices in \[0, 5\).*first: 7"):
    lstm.apply(variables, jnp.array([[1, 7, 3]]))
  with pytest.raises(ValueError, match=r"first: -1"):
    lstm.apply(variables, jnp.array([[1, -1, 3]]))
  apply = jax.jit(lstm.apply)
  assert bool(jnp.isnan(apply(variables, jnp.array([[1, -1, 3]]))).any())  # jnp.take would wrap -1 silently
  assert bool(jnp.isfinite(apply(variables, tokens)).all())


def test_v_cycle_levels():
  f = jnp.ones((1, 9, 9, 1))
  for levels in (0, -1, 1.5):
    with pytest.raises(ValueError, match=r"`levels` must be an int >= 1"):
      multigrid.v_cycle(f, stencil=multigrid.LAPLACIAN_2D, levels=levels, impl="xla")
  with pytest.raises(ValueError, match=r"`pre_smooth` must be an int >= 0"):
    multigrid.v_cycle(f, stencil=multigrid.LAPLACIAN_2D, pre_smooth=-1, impl="xla")
  one = multigrid.v_cycle(f, stencil=multigrid.LAPLACIAN_2D, levels=1, impl="xla")
  two = multigrid.v_cycle(f, stencil=multigrid.LAPLACIAN_2D, levels=2, impl="xla")
  assert not np.allclose(one, two)


# ---------------------------------------------------------------------------------------------------- shapes at apply


IMAGE_MODELS = {
    "HopfieldClassifier": lambda: hopfield.HopfieldClassifier(num_classes=10, width=16, num_heads=2),
    "ViT": lambda: transformer.ViT(num_classes=10, patch_size=4, hidden=16, num_layers=1, num_heads=2, mlp_dim=32),
    "ActivatorClassifier": lambda: activator.ActivatorClassifier(num_classes=10, patch_size=4, hidden=16, num_layers=1,
                                                                 mlp_dim=32),
    "ConvNet": lambda: core.ConvNet(num_classes=10),
}


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_image_models_wrong_channels_and_empty_batch(name):
  model = IMAGE_MODELS[name]()
  image = jnp.zeros((2, 8, 8, 1))
  variables = jax.jit(model.init)(KEY, image)  # the errors below are raised while tracing: nothing compiles
  with pytest.raises(ValueError, match=rf"{name}/.*initialised for inputs with last dimension"):
    jax.jit(model.apply)(variables, jnp.zeros((2, 8, 8, 2)))
  with pytest.raises(ValueError, match=rf"{name}: `(image|x)` has an empty batch"):
    jax.jit(model.apply)(variables, image[:0])


def test_mlp_wrong_features_under_jit():
  mlp = core.MLP(features=(8, 3))
  variables = mlp.init(KEY, jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match=r"MLP/dense_0: this dense layer was initialised for inputs with last "
                     r"dimension 5 \(kernel \(5, 8\)\); got inputs of shape \(2, 6\)"):
    jax.jit(mlp.apply)(variables, jnp.zeros((2, 6)))


@pytest.mark.parametrize("cls", [random_features.RandomFeatureMLP, random_features.RandomFeatureAttention])
def test_random_feature_models_wrong_size_and_empty(cls):
  model = cls(num_features=16) if cls is random_features.RandomFeatureMLP else cls()
  x = jnp.zeros((2, 5, 3))
  variables = model.init(KEY, x)
  with pytest.raises(ValueError, match=rf"{cls.__name__}: the random features were drawn for"):
    model.apply(variables, jnp.zeros((2, 5, 4)))
  with pytest.raises(ValueError, match=r"`x` has an empty batch"):
    model.apply(variables, x[:0])


# ---------------------------------------------------------------------------------------------------- masked NaN


def test_hopfield_masked_out_patterns_do_not_contaminate():
  layer = hopfield.Hopfield(num_heads=2)
  state = jax.random.normal(KEY, (2, 3, 8))
  stored = jax.random.normal(jax.random.key(1), (2, 5, 8))
  mask = jnp.array([[True, True, True, False, False], [True] * 5])
  variables = layer.init(KEY, state, stored, stored_mask=mask)
  clean = layer.apply(variables, state, stored, stored_mask=mask)
  poisoned = stored.at[0, 3:].set(jnp.nan).at[0, 4, 0].set(jnp.inf)
  out = jax.jit(lambda v, s, y, m: layer.apply(v, s, y, stored_mask=m))(variables, state, poisoned, mask)
  assert bool(jnp.isfinite(out).all())
  np.testing.assert_allclose(out, clean, rtol=1e-5, atol=1e-6)
  # The masked patterns really were ignored: changing them to other finite values changes nothing either.
  other = layer.apply(variables, state, stored.at[0, 3:].set(7.0), stored_mask=mask)
  np.testing.assert_allclose(other, clean, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- float64


def test_float64_is_honoured_in_attention_and_kan_basis():
  """Under x64, float64 inputs get float64 arithmetic (not float32 accumulation), checked against numpy/scipy."""
  from scipy.interpolate import BSpline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    q, k, v = (jnp.asarray(rng.normal(size=(1, 5, 2, 8))) for _ in range(3))
    out = attention_lib.attention(q, k, v, impl="xla")
    assert out.dtype == jnp.float64
    logits = np.einsum("bqhd,bkhd->bhqk", np.asarray(q), np.asarray(k)) / np.sqrt(8.0)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", w, np.asarray(v)), rtol=1e-12, atol=1e-13)

    basis = kan_basis.Basis.bspline(5, 3)
    x = jnp.asarray(rng.uniform(-0.99, 0.99, size=(16, 1)))
    grid = kan_basis.make_grid(basis, 1, dtype=jnp.float64)
    values = kan_basis.basis_values(x, grid, basis)
    assert values.dtype == jnp.float64
    want = BSpline.design_matrix(np.asarray(x[:, 0]), np.asarray(grid[0], np.float64), 3).toarray()
    np.testing.assert_allclose(values[:, 0], want, rtol=1e-11, atol=1e-12)
    coef = jnp.asarray(rng.normal(size=(basis.size, 1, 3)))
    y = kan_basis.kan(x, coef, basis=basis, grid=grid, impl="xla")
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, want @ np.asarray(coef[:, 0]), rtol=1e-11, atol=1e-12)


WRONG_WIDTH = {  # model -> (its input, the same input one feature wider), built through the registry
    "kan.KAN": (dict(features=(4, 3)), (2, 6)),
    "kan.ReLUKAN": (dict(features=(4, 3)), (2, 6)),
    "kan.AFKAN": (dict(features=(4, 3)), (2, 6)),
    "kan.SKAN": (dict(features=(4, 3)), (2, 6)),
    "core.LSTM": (dict(features=4), (2, 5, 3)),
    "core.GRU": (dict(features=4), (2, 5, 3)),
    "boosted.BoostedNet": (dict(outputs=1), (2, 6)),
    "memory.NeuralMemoryNetwork": (dict(outputs=1), (2, 5, 3)),
    "operators.FNO": (dict(features=4, modes=2, num_layers=1, out_features=1), (2, 8, 8, 1)),
    "hopfield.HopfieldMIL": (dict(), (2, 5, 3)),
}


@pytest.mark.parametrize("name", sorted(WRONG_WIDTH))
def test_wrong_input_width_at_apply_time_is_named(name):
  from zoo import registry  # pylint: disable=g-import-not-at-top
  kwargs, shape = WRONG_WIDTH[name]
  model = registry.build_model(name, **kwargs)
  variables = jax.jit(model.init)(KEY, jnp.zeros(shape))
  wider = jnp.zeros((*shape[:-1], shape[-1] + 1))
  with pytest.raises(ValueError, match=r"(must have shape .*expected \d+\)|initialised for inputs with last dim)"):
    jax.jit(model.apply)(variables, wider)
