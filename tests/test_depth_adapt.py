"""zoo.depth_adapt (chains of layers, CoLa) and its search procedure: run_chain against explicit compositions,
padding = identity, skip/loop semantics, ChainTransformer's default chain = its plain forward, jit/vmap over
candidate chains, a sharded forward on the 8-device mesh, the search's bookkeeping, the dataset's labels, and
clear errors on bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import depth_adapt as da
from zoo.recipes import sharding
from zoo.recipes.datasets import modular_sums
from zoo.recipes.procedures import cola


def _affine(p, x):
  return jnp.tanh(p["w"] @ x + p["b"])


@pytest.fixture(scope="module")
def affine_stack():
  rng = np.random.default_rng(0)
  per_layer = [{"w": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=3),
                                                                                         jnp.float32)}
               for _ in range(4)]
  return per_layer, da.stack_layers(per_layer), jnp.asarray(rng.normal(size=3), jnp.float32)


def test_run_chain_is_the_composition_with_skips_loops_and_padding(affine_stack):
  per_layer, stacked, x = affine_stack
  for chain in ([0, 1, 2, 3], [2, 2, 0], [3, -1, 1, -1, -1], [-1, -1]):
    want = x
    for i in chain:
      if i >= 0:
        want = _affine(per_layer[i], want)
    np.testing.assert_allclose(da.run_chain(stacked, _affine, np.array(chain, np.int32), x), want, rtol=1e-6)
  assert int(da.chain_length(np.array([3, -1, 1, -1]))) == 2
  np.testing.assert_array_equal(da.default_chain(3, 5), [0, 1, 2, -1, -1])


def test_run_chain_one_jit_for_every_chain_and_vmap(affine_stack):
  _, stacked, x = affine_stack
  f = jax.jit(lambda c: da.run_chain(stacked, _affine, c, x))
  chains = np.array([[0, 1, 2, 3, -1], [1, 1, 1, -1, -1], [3, 2, 1, 0, 0]], np.int32)
  outs = [f(c) for c in chains]
  assert f._cache_size() == 1  # one compiled function for all chains of this length
  np.testing.assert_allclose(jax.vmap(f)(chains), np.stack(outs), rtol=1e-6)


def test_run_chain_bad_input(affine_stack):
  _, stacked, x = affine_stack
  with pytest.raises(ValueError, match=r"layer indices in \[0, 4\)"):
    da.run_chain(stacked, _affine, np.array([0, 4]), x)
  with pytest.raises(ValueError, match=r"layer indices"):
    da.run_chain(stacked, _affine, np.array([-2, 0]), x)
  with pytest.raises(ValueError, match="empty"):
    da.run_chain(stacked, _affine, np.zeros(0, np.int32), x)
  with pytest.raises(TypeError, match="integer"):
    da.run_chain(stacked, _affine, np.array([0.0, 1.0]), x)
  with pytest.raises(ValueError, match=r"\[steps\]"):
    da.run_chain(stacked, _affine, np.zeros((2, 2), np.int32), x)
  with pytest.raises(ValueError, match="leading"):
    da.run_chain({"w": stacked["w"], "b": stacked["b"][:2]}, _affine, np.array([0]), x)
  with pytest.raises(ValueError, match="empty"):
    da.stack_layers([])
  # traced out-of-range indices cannot raise: the output is NaN, never a clipped gather
  out = jax.jit(lambda c: da.run_chain(stacked, _affine, c, x))(jnp.array([0, 7]))
  assert np.isnan(np.asarray(out)).all()


@pytest.fixture(scope="module")
def small_model():
  model = da.ChainTransformer(vocab_size=modular_sums.vocab_size(5), num_classes=5, embed_dim=16, num_layers=3,
                              num_heads=2, mlp_dim=32, max_length=8)
  data = modular_sums.modular_sum_arrays(16, 5, 2, 4, np.random.default_rng(0))
  variables = jax.jit(model.init)(jax.random.key(0), data["tokens"])
  return model, variables, data


def test_chain_transformer_default_chain_equals_forward_and_chains_differ(small_model):
  model, variables, data = small_model
  tokens = data["tokens"]
  plain = jax.jit(model.apply)(variables, tokens)
  assert plain.shape == (16, 5) and plain.dtype == jnp.float32
  np.testing.assert_allclose(model.apply(variables, tokens, chain=da.default_chain(3, 6)), plain, atol=1e-5)
  skipped = model.apply(variables, tokens, chain=np.array([0, 2, -1], np.int32))
  assert np.abs(np.asarray(skipped) - np.asarray(plain)).max() > 1e-4
  # jit == no-jit, and candidate chains vmapped in one call
  chains = np.array([[0, 1, 2, -1], [0, 0, 1, 2], [2, -1, -1, -1]], np.int32)
  f = jax.jit(lambda c: model.apply(variables, tokens, chain=c))
  np.testing.assert_allclose(jax.vmap(f)(chains), np.stack([f(c) for c in chains]), atol=1e-5)
  np.testing.assert_allclose(f(chains[1]), model.apply(variables, tokens, chain=chains[1]), atol=1e-5)  # jit == eager
  with pytest.raises(ValueError, match="layer indices"):
    model.apply(variables, tokens, chain=np.array([3]))
  with pytest.raises(TypeError, match="tokens"):
    model.apply(variables, tokens.astype(np.float32))


def test_chain_transformer_sharded_forward_on_8_devices(small_model):
  model, variables, data = small_model
  mesh = sharding.make_mesh({"data": 8, "fsdp": 1})
  x = jax.device_put(jnp.asarray(data["tokens"]), sharding.batch_sharding(mesh))
  chain = np.array([0, 0, 2, -1], np.int32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(lambda v, t: model.apply(v, t, chain=chain))(variables, x)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, model.apply(variables, data["tokens"], chain=chain), atol=1e-5)


def test_modular_sums_labels_by_parsing_the_tokens():
  d = modular_sums.modular_sum_arrays(50, 7, 2, 5, np.random.default_rng(1))
  for tok, label, k, pos in zip(d["tokens"], d["label"], d["operands"], d["answer_position"]):
    text = "".join({0: "", 8: "+", 9: "="}.get(int(t), f"({int(t) - 1})") for t in tok)
    assert text.endswith("=") and text.count("+") == k - 1 and tok[pos] == 9
    assert eval(text[:-1].replace(")(", ")+(")) % 7 == label  # pylint: disable=eval-used
  with pytest.raises(ValueError, match="min_operands"):
    modular_sums.modular_sum_arrays(5, 7, 3, 2, np.random.default_rng(0))


def test_actions_skip_once_repeat():
  # (block size, copies): skip, once, repeat; a block is clipped at the top of the stack
  assert cola._step((0, ()), (2, 0), 6) == (2, ())
  assert cola._step((2, ()), (1, 1), 6) == (3, (2,))
  assert cola._step((3, (2,)), (2, 2), 6) == (5, (2, 3, 4, 3, 4))
  assert cola._step((5, ()), (2, 2), 6) == (6, (5, 5))


def test_search_budget_bookkeeping_and_bad_input(small_model):
  model, variables, data = small_model
  tokens, labels = data["tokens"], data["label"]
  res = cola.search_cola(model, variables, tokens, labels, num_simulations=5)
  assert (res["evaluations"] == 5).all() and res["chain"].shape == (16, 6)
  # the reported correctness and length are those of the returned chain, and the search never does worse than the
  # pretrained chain (it is the root)
  logits = jax.vmap(lambda t, c: model.apply(variables, t[None], chain=c)[0])(jnp.asarray(tokens),
                                                                            jnp.asarray(res["chain"]))
  np.testing.assert_array_equal(np.argmax(logits, -1) == labels, res["correct"])
  np.testing.assert_array_equal(res["length"], (res["chain"] >= 0).sum(1))
  assert (res["correct"] >= res["original_correct"]).all()
  skip = cola.search_cola(model, variables, tokens, labels, num_simulations=5, actions="skip")
  chains = skip["chain"]
  for c in chains:  # skip-only chains never repeat a layer
    c = c[c >= 0]
    assert (np.diff(c) > 0).all()
  with pytest.raises(ValueError, match="num_simulations"):
    cola.search_cola(model, variables, tokens, labels, num_simulations=0)
  with pytest.raises(ValueError, match="actions"):
    cola.search_cola(model, variables, tokens, labels, actions="loop")
  with pytest.raises(ValueError, match="labels"):
    cola.random_chain_search(model, variables, tokens, labels + 5)
  with pytest.raises(TypeError, match="labels"):
    cola.search_cola(model, variables, tokens, labels.astype(np.float32))
