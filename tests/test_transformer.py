"""Unit tests of zoo.transformer: shapes, dtypes, jit, vmap, sharding, logical axis names, masks, hooks, errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import transformer as T
from zoo.kernels import attention as attention_lib
from zoo.recipes import sharding


def _x(shape=(8, 6, 16), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def _tokens(shape=(8, 7), seed=0):
  return jax.random.randint(jax.random.key(seed), shape, 1, 50)


# (name, model, example inputs); every input's leading axis is the batch (8, so that 8 devices can split it).
CASES = {
    "mha": (lambda: T.MultiHeadAttention(4), lambda: (_x(),)),
    "mha_gqa_rope": (lambda: T.MultiHeadAttention(4, num_kv_heads=2, use_rope=True), lambda: (_x(),)),
    "mha_cross": (lambda: T.MultiHeadAttention(4, head_dim=8, out_features=12), lambda: (_x(), _x((8, 3, 10), 1))),
    "mlp": (lambda: T.MLPBlock(32), lambda: (_x(),)),
    "glu": (lambda: T.MLPBlock(32, gated=True, activation="silu", out_features=8), lambda: (_x(),)),
    "encoder_block": (lambda: T.EncoderBlock(4, 32), lambda: (_x(),)),
    "encoder_block_post_causal": (lambda: T.EncoderBlock(4, 32, pre_norm=False, causal=True), lambda: (_x(),)),
    "decoder_block": (lambda: T.DecoderBlock(4, 32), lambda: (_x(), _x((8, 5, 12), 1))),
    "encoder_learned": (lambda: T.Encoder(2, 4, 32), lambda: (_x(),)),
    "encoder_rope_gated": (lambda: T.Encoder(2, 4, 32, position="rope", gated=True, num_kv_heads=2), lambda: (_x(),)),
    "encoder_sinusoidal": (lambda: T.Encoder(1, 4, 32, position="sinusoidal"), lambda: (_x(),)),
    "lm": (lambda: T.TransformerLM(50, embed_dim=16, num_layers=2, num_heads=2, mlp_dim=32, max_length=16),
           lambda: (_tokens(),)),
    "vit": (lambda: T.ViT(num_classes=10, patch_size=2, hidden=16, num_layers=1, num_heads=2, mlp_dim=32),
            lambda: (_x((8, 8, 8, 1)),)),
    "vit_mean": (lambda: T.ViT(num_classes=3, patch_size=4, hidden=16, num_layers=1, num_heads=2, mlp_dim=32,
                               pool="mean"), lambda: (_x((8, 8, 8, 3)),)),
    "single_layer": (lambda: T.SingleLayerTransformer(heads=4, ffn_width=32), lambda: (_x((8, 4, 2)),)),
    "single_layer_no_lift": (lambda: T.SingleLayerTransformer(heads=2, ffn_width=16, embed_dim=None, head_dim=4,
                                                              pos_enc="sinusoidal"), lambda: (_x((8, 4, 2)),)),
}

EXPECTED_SHAPES = {
    "mha": (8, 6, 16), "mha_gqa_rope": (8, 6, 16), "mha_cross": (8, 6, 12), "mlp": (8, 6, 16), "glu": (8, 6, 8),
    "encoder_block": (8, 6, 16), "encoder_block_post_causal": (8, 6, 16), "decoder_block": (8, 6, 16),
    "encoder_learned": (8, 6, 16), "encoder_rope_gated": (8, 6, 16), "encoder_sinusoidal": (8, 6, 16),
    "lm": (8, 7, 50), "vit": (8, 10), "vit_mean": (8, 3), "single_layer": (8, 4, 2), "single_layer_no_lift": (8, 4, 2),
}


def _init(name):
  make_model, make_inputs = CASES[name]
  model, inputs = make_model(), make_inputs()
  return model, inputs, jax.jit(model.init)(jax.random.key(0), *inputs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes_dtypes_and_logical_axes(name):
  # Traced only (jax.eval_shape): the numerics are checked by the tests below on fewer cases.
  make_model, make_inputs = CASES[name]
  model, inputs = make_model(), make_inputs()
  variables = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  out = jax.eval_shape(model.apply, variables, *inputs)
  assert out.shape == EXPECTED_SHAPES[name]
  assert out.dtype == jnp.float32
  # Every parameter carries one logical axis name (or None) per dimension.
  leaves = jax.tree.leaves(variables["params"], is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned))
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), type(leaf)
    assert len(leaf.names) == leaf.value.ndim


@pytest.mark.parametrize("name", ["mha_gqa_rope", "single_layer"])
def test_jit_matches_eager(name):
  model, inputs, variables = _init(name)
  out = jax.jit(model.apply)(variables, *inputs)
  assert bool(jnp.all(jnp.isfinite(out)))
  np.testing.assert_allclose(out, model.apply(variables, *inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mha_cross", "lm"])
def test_vmap_over_a_leading_axis(name):
  model, inputs, variables = _init(name)
  stacked = [jnp.stack([a[:4], a[4:]]) for a in inputs]  # [2, 4, ...]
  out = jax.jit(jax.vmap(lambda *a: model.apply(variables, *a)))(*stacked)
  np.testing.assert_allclose(out.reshape(8, *out.shape[2:]), jax.jit(model.apply)(variables, *inputs), rtol=1e-5,
                             atol=1e-5)


def _sharded_apply(model, variables, inputs):
  """``model.apply`` jitted over a (data 2, fsdp 2, tensor 2) mesh: batch split 4 ways, parameters placed by their
  logical axis names (``zoo.recipes.sharding.LOGICAL_RULES``)."""
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  batch = NamedSharding(mesh, P(("data", "fsdp")))
  inputs = [jax.device_put(a, batch) for a in inputs]
  assert any(len(a.sharding.device_set) > 1 and not a.sharding.is_fully_replicated for a in jax.tree.leaves(placed))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    return jax.jit(model.apply)(placed, *inputs)


@pytest.mark.parametrize("name", ["lm", "vit"])
def test_sharded_forward_on_8_devices(name):
  assert jax.device_count() == 8
  model, inputs, variables = _init(name)
  np.testing.assert_allclose(_sharded_apply(model, variables, inputs), jax.jit(model.apply)(variables, *inputs),
                             rtol=1e-4, atol=1e-5)


def test_bfloat16_compute():
  x = _x().astype(jnp.bfloat16)
  block = T.EncoderBlock(4, 32, dtype=jnp.bfloat16)
  variables = jax.jit(block.init)(jax.random.key(0), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(nn.unbox(variables)))  # parameters stay float32
  out = jax.jit(block.apply)(variables, x)
  assert out.dtype == jnp.bfloat16
  ref = jax.jit(T.EncoderBlock(4, 32).apply)(variables, x.astype(jnp.float32))
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.1, rtol=0.1)
  vit = T.ViT(hidden=16, num_layers=1, num_heads=2, mlp_dim=32, dtype=jnp.bfloat16)
  image = _x((2, 8, 8, 1))
  assert jax.eval_shape(vit.apply, jax.eval_shape(vit.init, jax.random.key(0), image), image).dtype == jnp.float32


def test_causal_masking_is_causal():
  tokens = _tokens((2, 10))
  changed = tokens.at[:, 6].set((tokens[:, 6] + 1) % 50)
  lm = T.TransformerLM(50, embed_dim=16, num_layers=2, num_heads=2, mlp_dim=32, max_length=16,
                       position="rope")
  variables = jax.jit(lm.init)(jax.random.key(0), tokens)
  both = jnp.concatenate([tokens, changed])
  logits = jax.jit(lm.apply)(variables, both)
  a, b = logits[:2], logits[2:]
  np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)  # the past does not see the future
  assert float(jnp.max(jnp.abs(a[:, 6:] - b[:, 6:]))) > 1e-3
  # Bidirectional encoding of the same model: earlier positions do see the change.
  encoded = jax.jit(functools.partial(lm.apply, causal=False, method="encode"))(variables, both)
  assert float(jnp.max(jnp.abs(encoded[:2, :6] - encoded[2:, :6]))) > 1e-3
  # The decoder block's self-attention is causal too (cross-attention sees the whole source).
  x, enc = _x((2, 10, 16)), _x((2, 3, 16), 1)
  block = T.DecoderBlock(4, 32)
  v = jax.jit(block.init)(jax.random.key(0), x, enc)
  y = jax.jit(block.apply)(v, jnp.concatenate([x, x.at[:, 6].add(1.0)]), jnp.concatenate([enc, enc]))
  np.testing.assert_allclose(y[:2, :6], y[2:, :6], atol=1e-6)
  assert float(jnp.max(jnp.abs(y[:2, 6:] - y[2:, 6:]))) > 1e-3


def test_padding_is_never_attended():
  x = _x((2, 8, 16))
  valid = jnp.arange(8)[None, :] < jnp.array([[5], [8]])
  encoder = T.Encoder(2, 4, 32)
  variables = jax.jit(encoder.init)(jax.random.key(0), x, mask=valid)
  noisy = jnp.where(valid[..., None], x, 100.0 * _x((2, 8, 16), 3))
  apply = jax.jit(encoder.apply)
  a, b = apply(variables, x, mask=valid), apply(variables, noisy, mask=valid)
  np.testing.assert_allclose(a[0, :5], b[0, :5], atol=1e-5)
  np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_grouped_query_attention_equals_repeated_heads():
  x = _x()
  gqa = T.MultiHeadAttention(4, num_kv_heads=2)
  variables = nn.unbox(gqa.init(jax.random.key(0), x))
  p = variables["params"]
  assert p["key"]["kernel"].shape == (16, 2, 4) and p["query"]["kernel"].shape == (16, 4, 4)
  full = jax.tree.map(lambda a: a, p)
  for name in ("key", "value"):
    full[name] = {"kernel": jnp.repeat(p[name]["kernel"], 2, axis=1), "bias": jnp.repeat(p[name]["bias"], 2, axis=0)}
  mha = T.MultiHeadAttention(4)
  np.testing.assert_allclose(gqa.apply(variables, x), mha.apply({"params": full}, x), rtol=1e-5, atol=1e-5)


def test_rope_is_relative():
  q, k = _x((1, 6, 2, 8), 0), _x((1, 6, 2, 8), 1)
  pos = jnp.arange(6)

  def scores(shift):
    return jnp.einsum("bqhd,bkhd->bhqk", T.apply_rope(q, pos + shift), T.apply_rope(k, pos + shift))
  np.testing.assert_allclose(scores(0), scores(17), rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(scores(0) - jnp.einsum("bqhd,bkhd->bhqk", q, k)))) > 1e-3
  table = T.sinusoidal_positions(5, 8)
  assert table.shape == (5, 8) and float(table[0, 1]) == 1.0


def test_attention_weights_and_sow():
  x = _x((2, 5, 16))
  mha = T.MultiHeadAttention(4)
  variables = jax.jit(mha.init)(jax.random.key(0), x)
  _, state = jax.jit(functools.partial(mha.apply, is_causal=True, sow_weights=True, mutable=["intermediates"]))(
      variables, x)
  w = state["intermediates"]["attention_weights"][0]
  assert w.shape == (2, 4, 5, 5)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
  assert float(jnp.max(jnp.triu(w, k=1))) < 1e-6  # causal
  q, k = _x((2, 5, 4, 8), 1), _x((2, 5, 4, 8), 2)
  ref = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8), axis=-1)
  np.testing.assert_allclose(T.attention_weights(q, k), ref, rtol=1e-5, atol=1e-6)


def test_attention_fn_hooks():
  x = _x((2, 5, 16))
  calls = []

  def linear_attention(query, key, value, **kwargs):
    calls.append(kwargs["is_causal"])
    return jnp.einsum("bqhd,bkhd,bkhe->bqhe", query, key, value) / key.shape[1]

  encoder = T.Encoder(2, 4, 32, attention_fn=linear_attention, causal=True)
  out = jax.eval_shape(encoder.apply, jax.eval_shape(encoder.init, jax.random.key(0), x), x)
  assert out.shape == x.shape and calls and all(calls)

  class ScaledAttention(nn.Module):  # a learnable score function: one temperature per block
    @nn.compact
    def __call__(self, query, key, value, *, scale=None, **kwargs):
      t = self.param("temperature", nn.initializers.ones, ())
      return attention_lib.attention(query, key, value, scale=t / np.sqrt(query.shape[-1]), **kwargs)

  encoder = T.Encoder(2, 4, 32, attention_fn=ScaledAttention())
  variables = jax.jit(encoder.init)(jax.random.key(0), x)
  p = variables["params"]
  assert "temperature" in p["block_0"]["attention"]["attention_fn"]  # each block owns its copy
  assert "temperature" in p["block_1"]["attention"]["attention_fn"]
  default = T.Encoder(2, 4, 32)
  plain = {"params": {k: v for k, v in p.items()}}
  plain["params"] = jax.tree.map(lambda a: a, p)
  for i in range(2):
    plain["params"][f"block_{i}"]["attention"] = {k: v for k, v in p[f"block_{i}"]["attention"].items()
                                                  if k != "attention_fn"}
  np.testing.assert_allclose(jax.jit(encoder.apply)(variables, x), jax.jit(default.apply)(plain, x), rtol=1e-5,
                             atol=1e-5)


def test_dropout_only_in_training():
  x = _x((2, 5, 16))
  block = T.EncoderBlock(4, 32, dropout_rate=0.5, attention_dropout_rate=0.5)
  variables = jax.jit(block.init)(jax.random.key(0), x)
  apply = jax.jit(block.apply)
  np.testing.assert_allclose(apply(variables, x), apply(variables, x), atol=0)
  train_apply = jax.jit(lambda v, a, r: block.apply(v, a, train=True, rngs={"dropout": r}))
  t1, t2 = train_apply(variables, x, jax.random.key(1)), train_apply(variables, x, jax.random.key(2))
  assert float(jnp.max(jnp.abs(t1 - t2))) > 1e-3


def test_encoder_hidden_states_and_lm_encode():
  lm = T.TransformerLM(50, embed_dim=16, num_layers=3, num_heads=2, mlp_dim=32, tie_embeddings=False)
  tokens = _tokens((2, 7))
  variables = jax.eval_shape(lm.init, jax.random.key(0), tokens)
  final, hidden = jax.eval_shape(functools.partial(lm.apply, return_hidden_states=True, method="encode"), variables,
                                 tokens)
  assert final.shape == (2, 7, 16) and hidden.shape == (3, 2, 7, 16)
  assert "head" in variables["params"]
  assert jax.eval_shape(lm.apply, variables, tokens).shape == (2, 7, 50)


@pytest.mark.parametrize("make, args, match", [
    (lambda: T.MultiHeadAttention(4), lambda: (_x((8, 16)),), r"inputs_q.*rank 3"),
    (lambda: T.MultiHeadAttention(4), lambda: (_x().astype(jnp.int32),), r"floating"),
    (lambda: T.MultiHeadAttention(4, num_kv_heads=3), lambda: (_x(),), r"num_kv_heads.*divide"),
    (lambda: T.MultiHeadAttention(4, head_dim=3, use_rope=True), lambda: (_x(),), r"even head_dim"),
    (lambda: T.MultiHeadAttention(4), lambda: (_x(), _x((4, 3, 16))), r"inputs_kv.*batch=8"),
    (lambda: T.MLPBlock(8, activation="nope"), lambda: (_x(),), r"unknown activation"),
    (lambda: T.Encoder(1, 4, 32, position="alibi"), lambda: (_x(),), r"position"),
    (lambda: T.Encoder(1, 4, 32, max_length=4), lambda: (_x(),), r"max_length=4"),
    (lambda: T.TransformerLM(50, embed_dim=16, num_heads=2), lambda: (_x((2, 5)),), r"tokens.*integer"),
    (lambda: T.ViT(patch_size=3), lambda: (_x((2, 8, 8, 1)),), r"multiples of patch_size=3"),
    (lambda: T.ViT(pool="max"), lambda: (_x((2, 8, 8, 1)),), r"pool"),
    (lambda: T.ViT(), lambda: (_x((2, 8, 8)),), r"image.*rank 4"),
    (lambda: T.SingleLayerTransformer(pos_enc="rope"), lambda: (_x((2, 4, 2)),), r"pos_enc"),
])
def test_bad_input_raises_a_clear_error(make, args, match):
  with pytest.raises((ValueError, TypeError), match=match):
    make().init(jax.random.key(0), *args())


def test_bad_masks_raise():
  x = _x((2, 5, 16))
  with pytest.raises(TypeError, match="mask.*bool"):
    T.MultiHeadAttention(4).init(jax.random.key(0), x, mask=jnp.ones((2, 1, 5, 5), jnp.int32))
  with pytest.raises(ValueError, match="mask"):
    T.EncoderBlock(4, 32).init(jax.random.key(0), x, mask=jnp.ones((2, 4), bool))
  with pytest.raises(ValueError, match="positions"):
    T.apply_rope(_x((1, 6, 2, 8)), jnp.arange(5))


def test_vit_sows_every_blocks_attention_weights():
  model = T.ViT(num_classes=3, patch_size=2, hidden=16, num_layers=2, num_heads=2, mlp_dim=16)
  image = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
  variables = model.init(jax.random.key(1), image)
  logits, state = model.apply(variables, image, sow_weights=True, mutable=["intermediates"])
  np.testing.assert_array_equal(logits, model.apply(variables, image))  # sowing changes nothing
  for i in range(2):
    (weights,) = state["intermediates"]["encoder"][f"block_{i}"]["attention"]["attention_weights"]
    assert weights.shape == (2, 2, 5, 5)  # [batch, heads, 1 + 4 patches, 1 + 4 patches]
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert float(weights.min()) >= 0.0
