"""Unit tests of zoo.archtext (ONNX graphs, chain_slim text, tokenizer, surrogate) and the mini-bench table."""

import flax.linen as nn
import jax
import numpy as np
import onnx
import pytest

from zoo import archtext
from zoo.recipes import sharding
from zoo.recipes.datasets import arch_bench
from zoo.recipes.procedures import onnxnet

A = {"space": "A", "depth": 2, "width": 16, "activation": "tanh", "norm": "layer"}
B = {"space": "B", "channels": (4, 8), "kernels": (3, 1), "pools": ("max", "none"), "activation": "relu"}


def test_onnx_graph_is_valid_and_text_follows_it():
  model = archtext.to_onnx(B)
  onnx.checker.check_model(model)
  assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "Flatten", "Gemm"]
  text = archtext.arch_to_text(model)
  lines = text.split("\n")
  assert lines[0] == "Conv k=3 p=1 s=1 [4,8,8] <- input"
  assert lines[2] == "MaxPool k=2 s=2 [4,4,4] <- 1"
  assert lines[5] == "Flatten [128] <- 4"  # 8 channels x 4 x 4, by ONNX shape inference
  assert lines[-1] == "Gemm [10] <- 5"
  assert archtext.arch_to_text(B) == text
  slim = archtext.arch_to_text(B, attributes=False, shapes=False).split("\n")
  assert slim[0] == "Conv <- input" and len(slim) == len(lines)


def test_param_count_matches_by_hand():
  assert archtext.param_count(A) == (64 * 16 + 16) + 2 * 16 + (16 * 16 + 16) + 2 * 16 + (16 * 10 + 10)
  assert archtext.param_count(B) == (9 * 4 + 4) + (4 * 8 + 8) + (128 * 10 + 10)
  bn = dict(A, norm="batch")
  assert archtext.param_count(bn) == archtext.param_count(A)  # BN running statistics are not trained


def test_bad_configs_raise_clear_errors():
  with pytest.raises(ValueError, match="unknown op type.*activation"):
    archtext.arch_to_text(dict(A, activation="swish9"))
  with pytest.raises(ValueError, match="unknown op type.*pools"):
    archtext.to_onnx(dict(B, pools=("max", "lp")))
  with pytest.raises(ValueError, match="space"):
    archtext.check_config({"space": "C", "activation": "relu"})
  with pytest.raises(ValueError, match="kernels"):
    archtext.check_config(dict(B, kernels=(2, 3)))


def test_tokenizer_roundtrip_and_errors():
  tok = archtext.ArchTokenizer()
  ids = tok.encode([archtext.arch_to_text(A), archtext.arch_to_text(B)], 96)
  assert ids.shape == (2, 96) and ids.dtype == np.int32
  words = [tok.words[i] for i in ids[0] if i]
  assert words[:6] == ["<cls>", "Gemm", "[", "16", "<-", "input"]
  with pytest.raises(ValueError, match="unknown word 'Softmax'"):
    tok.encode("Softmax [10] <- 0", 16)
  with pytest.raises(ValueError, match="max_length"):
    tok.encode(archtext.arch_to_text(B), 8)


@pytest.fixture(scope="module")
def surrogate():
  tok = archtext.ArchTokenizer()
  model = archtext.ArchTextSurrogate(tok.vocab_size, features=16, num_layers=1, num_heads=2, mlp_dim=32,
                                     max_length=96)
  ids = tok.encode([archtext.arch_to_text(c) for c in (A, B, dict(A, depth=1), dict(B, activation="tanh"))] * 2,
                   80)
  return model, model.init(jax.random.key(0), ids), ids


def test_surrogate_shapes_jit_vmap_and_padding(surrogate):
  model, variables, ids = surrogate
  out = model.apply(variables, ids)
  assert out.shape == (8,)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, ids), out, rtol=1e-5, atol=1e-5)
  vm = jax.vmap(model.apply, in_axes=(None, 0))(variables, ids.reshape(2, 4, 80))
  np.testing.assert_allclose(vm.reshape(-1), out, rtol=1e-5, atol=1e-5)
  longer = np.pad(ids, ((0, 0), (0, 16)))  # extra padding does not change the prediction
  np.testing.assert_allclose(model.apply(variables, longer), out, rtol=1e-4, atol=1e-5)


def test_surrogate_bad_tokens(surrogate):
  model, variables, ids = surrogate
  with pytest.raises(ValueError, match="tokens"):
    model.apply(variables, ids.copy() + 10_000)
  with pytest.raises(TypeError, match="integer"):
    model.apply(variables, ids.astype(np.float32))
  with pytest.raises(ValueError, match="max_length"):
    model.apply(variables, np.zeros((2, 97), np.int32))


def test_surrogate_sharded_forward_on_8_devices(surrogate):
  model, variables, ids = surrogate
  mesh = sharding.make_mesh({"data": 8})
  x = jax.device_put(ids, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(variables, x)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, model.apply(variables, ids), rtol=1e-4, atol=1e-5)


def test_task_loss_adds_pairwise_term():
  pred = np.array([0.0, 1.0, 2.0], np.float32)
  batch = {"y": np.array([0.8, 0.6, 1.0], np.float32)}
  plain = onnxnet.SurrogateRegression(pairwise_weight=0.0)
  ranked = onnxnet.SurrogateRegression(pairwise_weight=1.0)
  np.testing.assert_allclose(plain.loss(pred, batch), (pred - (batch["y"] - 0.8) / 0.2) ** 2, rtol=1e-5)
  assert float((ranked.loss(pred, batch) - plain.loss(pred, batch)).min()) > 0  # one pair is misordered
  with pytest.raises(ValueError, match="one accuracy per network"):
    plain.loss(pred, {"y": np.zeros(4, np.float32)})


def test_shipped_minibench_table_and_split():
  rows = arch_bench.load_minibench()
  assert sum(r["space"] == "A" for r in rows) == 200 and sum(r["space"] == "B" for r in rows) == 120
  assert [r["index"] for r in rows] == list(range(320))
  for r in rows[::37]:
    cfg = {k: v for k, v in r.items() if k not in ("params", "accuracy", "index")}
    assert archtext.param_count(cfg) == r["params"]
  acc = np.array([r["accuracy"] for r in rows])
  assert 0.0 <= acc.min() and acc.max() <= 1.0 and acc.std() > 0.05  # a spread worth ranking
  tr, te_a, te_b = arch_bench.minibench_split(rows, seed=0)
  assert len(tr) == 170 and len(te_a) == 50 and len(te_b) == 100
  assert not set(tr) & set(te_a) | set(tr) & set(te_b)


def test_retrained_nets_reproduce_the_shipped_accuracies():
  """Retrains one vmapped shape group (the 1-layer width-16 MLPs) and compares with the table."""
  rows = arch_bench.load_minibench()
  group = [r for r in rows if r["space"] == "A" and r["depth"] == 1 and r["width"] == 16]
  assert len(group) >= 3
  configs = [{k: v for k, v in r.items() if k not in ("params", "accuracy")} for r in group]
  acc = arch_bench.train_configs(configs)
  np.testing.assert_allclose(acc, [r["accuracy"] for r in group], atol=0.02)
