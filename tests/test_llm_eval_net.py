"""zoo.llm_eval_net (WideDeep evaluator networks): query layout, both answer orders (exact symmetry), layer 2
reading layer-1 verdicts, mean/vote aggregation, jit, a sharded forward on the 8-device mesh, bad input.
A randomly initialised judge is enough for these properties (the effect test is not written: see the module
note in /work/notes/llm_note.md)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import llm_eval_net as ev
from zoo.recipes import sharding

VOCAB, R, BATCH = 40, 6, 8


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  name = rng.integers(12, VOCAB, size=(BATCH, R, ev.NAME_LEN)).astype(np.int32)
  doc_a = rng.integers(12, VOCAB, size=(BATCH, R, ev.DOC_LEN)).astype(np.int32)
  doc_b = rng.integers(12, VOCAB, size=(BATCH, R, ev.DOC_LEN)).astype(np.int32)
  judge = ev.JudgeLM(VOCAB, embed_dim=16, num_layers=1, num_heads=2, mlp_dim=32, max_length=ev.LENGTH)
  judge_vars = jax.jit(judge.init)(jax.random.key(0), np.zeros((1, ev.LENGTH), np.int32))
  variables = {"params": {"judge": judge_vars["params"]}}
  return judge, variables, name, doc_a, doc_b


def test_query_layout():
  t = ev.judge_tokens(np.array([2]), np.array([[20, 21, 0, 0]]), np.full((1, 8), 30), np.full((1, 8), 31),
                      np.array([[ev.A, ev.B]]))
  assert t.shape == (1, ev.LENGTH) and t[0, 0] == ev.ROLE0 + 2 and t[0, -1] == ev.ASK
  assert list(t[0, -8:-1]) == [ev.HINT, ev.A, ev.B, 0, 0, 0, 0]
  with pytest.raises(ValueError, match="hints"):
    ev.judge_tokens(np.array([0]), np.zeros((1, 4), np.int32), np.zeros((1, 8), np.int32),
                    np.zeros((1, 8), np.int32), np.zeros((1, 7), np.int32))


def test_both_orders_make_the_neuron_exactly_antisymmetric(setup):
  judge, variables, name, doc_a, doc_b = setup
  neuron = ev.EvaluatorNeuron(judge, role=1)
  f = jax.jit(neuron.apply)
  p_ab = f(variables, name[:, 1], doc_a[:, 1], doc_b[:, 1])
  p_ba = f(variables, name[:, 1], doc_b[:, 1], doc_a[:, 1])
  assert p_ab.shape == (BATCH,)
  np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-5)
  one = ev.EvaluatorNeuron(judge, role=1, swap_orders=False)
  q_ab, q_ba = one.apply(variables, name[:, 1], doc_a[:, 1], doc_b[:, 1]), one.apply(variables, name[:, 1],
                                                                                       doc_b[:, 1], doc_a[:, 1])
  assert np.abs(np.asarray(q_ab + q_ba) - 1.0).max() > 1e-4  # one order alone has a position bias
  np.testing.assert_allclose(p_ab, 0.5 * (q_ab + 1 - q_ba), atol=1e-5)


def test_network_layers_roles_hints_and_aggregation(setup):
  judge, variables, name, doc_a, doc_b = setup
  deep = ev.WideDeepEvaluator(judge, width=3, depth=2)
  p, per_layer = jax.jit(lambda *a: deep.apply(variables, *a, return_layers=True))(name, doc_a, doc_b)
  assert p.shape == (BATCH,) and per_layer.shape == (2, BATCH, 3)
  np.testing.assert_allclose(p, per_layer[1].mean(1), atol=1e-6)
  # layer 1, neuron i = the neuron of role i on view i
  for i in range(3):
    want = ev.EvaluatorNeuron(judge, role=i).apply(variables, name[:, i], doc_a[:, i], doc_b[:, i])
    np.testing.assert_allclose(per_layer[0][:, i], want, atol=1e-5)
  # layer 2 = the same neurons reading layer 1's verdict tokens as hints
  hints = np.where(np.asarray(per_layer[0]) > 0.5, ev.A, ev.B).astype(np.int32)
  want = ev.EvaluatorNeuron(judge, role=2).apply(variables, name[:, 2], doc_a[:, 2], doc_b[:, 2], hints)
  np.testing.assert_allclose(per_layer[1][:, 2], want, atol=1e-5)
  shallow = ev.WideDeepEvaluator(judge, width=3, depth=1).apply(variables, name, doc_a, doc_b)
  np.testing.assert_allclose(shallow, per_layer[0].mean(1), atol=1e-5)
  vote = ev.WideDeepEvaluator(judge, width=3, depth=2, aggregate="vote").apply(variables, name, doc_a, doc_b)
  np.testing.assert_allclose(vote, (np.asarray(per_layer[1]) > 0.5).mean(1), atol=1e-6)


def test_network_sharded_forward_on_8_devices(setup):
  judge, variables, name, doc_a, doc_b = setup
  net = ev.WideDeepEvaluator(judge, width=2, depth=2)
  mesh = sharding.make_mesh({"data": 8, "fsdp": 1})
  put = lambda x: jax.device_put(jnp.asarray(x), sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(net.apply)(variables, put(name), put(doc_a), put(doc_b))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(net.apply)(variables, name, doc_a, doc_b), atol=1e-5)


def test_bad_input(setup):
  judge, variables, name, doc_a, doc_b = setup
  with pytest.raises(ValueError, match="width"):
    ev.WideDeepEvaluator(judge, width=7).apply(variables, name, doc_a, doc_b)
  with pytest.raises(ValueError, match="depth"):
    ev.WideDeepEvaluator(judge, depth=0).apply(variables, name, doc_a, doc_b)
  with pytest.raises(ValueError, match="aggregate"):
    ev.WideDeepEvaluator(judge, aggregate="max").apply(variables, name, doc_a, doc_b)
  with pytest.raises(TypeError, match="doc_a"):
    ev.WideDeepEvaluator(judge).apply(variables, name, doc_a.astype(np.float32), doc_b)
  with pytest.raises(ValueError, match="doc_b"):
    ev.WideDeepEvaluator(judge).apply(variables, name, doc_a, doc_b[:, :, :5])
  with pytest.raises(ValueError, match="role"):
    ev.EvaluatorNeuron(judge, role=9).apply(variables, name[:, 0], doc_a[:, 0], doc_b[:, 0])
