"""zoo.llm_eval_net (WideDeep evaluator networks): query layout, both answer orders (exact symmetry), layer 2
reading layer-1 verdicts (and the ``read_verdicts=False`` ablation), mean/vote aggregation, jit, a sharded forward
on the 8-device mesh, bad input; the planted judge data (recipes/datasets/docstring_judge.py) and the metrics of
recipes/procedures/llm_eval.py. A randomly initialised judge is enough for these properties (the trained judge and
the network's effect: tests/papers/test_widedeep_eval.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import llm_eval_net as ev
from zoo.recipes import sharding
from zoo.recipes.datasets import docstring_judge as dj
from zoo.recipes.procedures import llm_eval

VOCAB, R, BATCH = 40, 6, 8


def _run(module, variables, *args, **kwargs):
  """``module.apply`` under jit (an eager first call of the judge costs seconds of op-by-op compiles)."""
  return jax.jit(lambda *a: module.apply(variables, *a, **kwargs))(*args)


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
  t = ev.judge_tokens(np.array([2]), np.array([[20]]), np.full((1, 4), 30), np.full((1, 4), 31),
                      np.array([[ev.A, ev.B]]))
  assert t.shape == (1, ev.LENGTH) == (1, 20)
  assert list(t[0]) == [ev.ROLE0 + 2, 20, ev.SEP, 30, 30, 30, 30, ev.SEP, 31, 31, 31, 31, ev.HINT, ev.A, ev.B,
                        0, 0, 0, 0, ev.ASK]
  with pytest.raises(ValueError, match="hints"):
    ev.judge_tokens(np.array([0]), np.zeros((1, 1), np.int32), np.zeros((1, 4), np.int32),
                    np.zeros((1, 4), np.int32), np.zeros((1, 7), np.int32))


def test_both_orders_make_the_neuron_exactly_antisymmetric(setup):
  judge, variables, name, doc_a, doc_b = setup
  neuron = ev.EvaluatorNeuron(judge, role=1)
  f = jax.jit(neuron.apply)
  p_ab = f(variables, name[:, 1], doc_a[:, 1], doc_b[:, 1])
  p_ba = f(variables, name[:, 1], doc_b[:, 1], doc_a[:, 1])
  assert p_ab.shape == (BATCH,)
  np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-5)
  one = ev.EvaluatorNeuron(judge, role=1, swap_orders=False)
  q_ab, q_ba = _run(one, variables, name[:, 1], doc_a[:, 1], doc_b[:, 1]), _run(one, variables, name[:, 1],
                                                                                 doc_b[:, 1], doc_a[:, 1])
  assert np.abs(np.asarray(q_ab + q_ba) - 1.0).max() > 1e-4  # one order alone has a position bias
  np.testing.assert_allclose(p_ab, 0.5 * (q_ab + 1 - q_ba), atol=1e-5)


def test_network_layers_roles_hints_and_aggregation(setup):
  judge, variables, name, doc_a, doc_b = setup
  deep = ev.WideDeepEvaluator(judge, width=3, depth=2)
  p, per_layer = _run(deep, variables, name, doc_a, doc_b, return_layers=True)
  assert p.shape == (BATCH,) and per_layer.shape == (2, BATCH, 3)
  np.testing.assert_allclose(p, per_layer[1].mean(1), atol=1e-6)
  hints = np.where(np.asarray(per_layer[0]) > 0.5, ev.A, ev.B).astype(np.int32)
  conf = np.abs(np.asarray(per_layer[0]) - 0.5)
  margin = float(np.median(conf))  # about half the layer-1 neurons abstain
  abstained = np.where(conf <= margin, ev.PAD, hints).astype(np.int32)

  @jax.jit
  def others(name, doc_a, doc_b, hints):  # one compile for every other network and neuron
    neurons = [ev.EvaluatorNeuron(judge, role=i).apply(variables, name[:, i], doc_a[:, i], doc_b[:, i])
               for i in range(3)]
    reading = ev.EvaluatorNeuron(judge, role=2).apply(variables, name[:, 2], doc_a[:, 2], doc_b[:, 2], hints)
    shallow = ev.WideDeepEvaluator(judge, width=3, depth=1).apply(variables, name, doc_a, doc_b)
    vote = ev.WideDeepEvaluator(judge, width=3, depth=2, aggregate="vote").apply(variables, name, doc_a, doc_b)
    deaf = ev.WideDeepEvaluator(judge, width=3, depth=2, read_verdicts=False)
    abstaining = ev.WideDeepEvaluator(judge, width=3, depth=2, abstain_margin=margin)
    reading_abstained = ev.EvaluatorNeuron(judge, role=1).apply(variables, name[:, 1], doc_a[:, 1], doc_b[:, 1],
                                                                 abstained)
    return (neurons, reading, shallow, vote, deaf.apply(variables, name, doc_a, doc_b, return_layers=True)[1],
            abstaining.apply(variables, name, doc_a, doc_b, return_layers=True)[1], reading_abstained)

  neurons, reading, shallow, vote, deaf_layers, abstain_layers, reading_abstained = others(name, doc_a, doc_b, hints)
  # layer 1, neuron i = the neuron of role i on view i
  for i in range(3):
    np.testing.assert_allclose(per_layer[0][:, i], neurons[i], atol=1e-5)
  # layer 2 = the same neurons reading layer 1's verdict tokens as hints
  np.testing.assert_allclose(per_layer[1][:, 2], reading, atol=1e-5)
  np.testing.assert_allclose(shallow, per_layer[0].mean(1), atol=1e-5)
  np.testing.assert_allclose(vote, (np.asarray(per_layer[1]) > 0.5).mean(1), atol=1e-6)
  # the ablation: layer 2 without layer 1's verdicts repeats layer 1
  np.testing.assert_allclose(deaf_layers[1], per_layer[0], atol=1e-6)
  assert np.abs(np.asarray(per_layer[1] - per_layer[0])).max() > 1e-4  # reading the verdicts changes layer 2
  # abstaining neurons (|p - 0.5| <= abstain_margin) pass PAD instead of a verdict
  assert 0 < (abstained == ev.PAD).sum() < abstained.size
  np.testing.assert_allclose(abstain_layers[0], per_layer[0], atol=1e-6)
  np.testing.assert_allclose(abstain_layers[1][:, 1], reading_abstained, atol=1e-5)


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
  with pytest.raises(ValueError, match="abstain_margin"):
    ev.WideDeepEvaluator(judge, abstain_margin=0.5).apply(variables, name, doc_a, doc_b)
  with pytest.raises(TypeError, match="doc_a"):
    ev.WideDeepEvaluator(judge).apply(variables, name, doc_a.astype(np.float32), doc_b)
  with pytest.raises(ValueError, match="doc_b"):
    ev.WideDeepEvaluator(judge).apply(variables, name, doc_a, doc_b[:, :, :3])
  with pytest.raises(ValueError, match="name"):
    ev.WideDeepEvaluator(judge).apply(variables, np.concatenate([name, name], -1), doc_a, doc_b)
  with pytest.raises(ValueError, match="role"):
    ev.EvaluatorNeuron(judge, role=9).apply(variables, name[:, 0], doc_a[:, 0], doc_b[:, 0])
  # out-of-range token ids: an error naming the argument and the range (concrete); NaN inside jit
  bad = doc_b.copy()
  bad[0, 1, 2] = VOCAB
  with pytest.raises(ValueError, match=r"doc_b.*\[0, 40\)"):
    ev.WideDeepEvaluator(judge).apply(variables, name, doc_a, bad)
  with pytest.raises(ValueError, match="name"):
    ev.WideDeepEvaluator(judge).apply(variables, -name, doc_a, doc_b)
  traced = jax.jit(ev.WideDeepEvaluator(judge, width=2, depth=1).apply)(variables, name, doc_a, bad)
  assert np.isnan(traced[0]) and np.isfinite(traced[1:]).all()
  voted = jax.jit(ev.WideDeepEvaluator(judge, width=2, depth=2, aggregate="vote").apply)(variables, name, doc_a, bad)
  assert np.isnan(voted[0]) and np.isfinite(voted[1:]).all()
  # an empty batch, a wrong dtype, bad hints
  with pytest.raises(ValueError, match="batch"):
    ev.WideDeepEvaluator(judge).apply(variables, name[:0], doc_a[:0], doc_b[:0])
  with pytest.raises(TypeError, match="name"):
    ev.EvaluatorNeuron(judge).apply(variables, name[:, 0].astype(np.float32), doc_a[:, 0], doc_b[:, 0])
  with pytest.raises(ValueError, match="hints"):
    ev.EvaluatorNeuron(judge).apply(variables, name[:, 0], doc_a[:, 0], doc_b[:, 0], np.full((BATCH, 2), 7))
  with pytest.raises(ValueError, match="hints"):
    ev.EvaluatorNeuron(judge).apply(variables, name[:, 0], doc_a[:, 0], doc_b[:, 0], np.full((BATCH, 7), ev.A))
  with pytest.raises(ValueError, match="vocab_size"):
    small = ev.JudgeLM(8, embed_dim=16, num_layers=1, num_heads=2, mlp_dim=32, max_length=ev.LENGTH)
    ev.WideDeepEvaluator(small).init(jax.random.key(0), name % 8, doc_a % 8, doc_b % 8)


def test_network_vmaps_over_a_leading_axis(setup):
  judge, variables, name, doc_a, doc_b = setup
  net = ev.WideDeepEvaluator(judge, width=2, depth=2)
  split = lambda x: x.reshape(2, BATCH // 2, *x.shape[1:])
  out = jax.jit(jax.vmap(lambda *a: net.apply(variables, *a)))(split(name), split(doc_a), split(doc_b))
  np.testing.assert_allclose(out.reshape(BATCH), _run(net, variables, name, doc_a, doc_b), atol=1e-5)


def test_planted_pairs_spread_the_evidence_over_independent_role_views():
  views = dict(num_words=4, num_fillers=4, reliability=0.8, ambiguity=0.4)
  p = dj.pair_views(4000, np.random.default_rng(0), **views)
  assert p["name"].shape == (4000, ev.MAX_ROLES, ev.NAME_LEN) and p["doc_a"].shape == (4000, ev.MAX_ROLES, ev.DOC_LEN)
  in_a = (p["doc_a"] == p["name"]).any(-1)
  in_b = (p["doc_b"] == p["name"]).any(-1)
  np.testing.assert_array_equal(p["evidence"], in_a.astype(int) - in_b.astype(int))  # as the tokens say
  assert not (in_a & in_b).any()
  informative = p["evidence"] != 0
  assert abs(informative.mean() - 0.6) < 0.02
  sign = np.where(p["label"] == 1, 1, -1)[:, None]
  right, wrong = p["evidence"] * sign > 0, p["evidence"] * sign < 0
  assert abs(right[informative].mean() - 0.8) < 0.02 and abs(p["label"].mean() - 0.5) < 0.03
  assert abs(np.corrcoef(right[:, 0], right[:, 1])[0, 1]) < 0.05  # independent views
  assert abs(np.corrcoef(wrong[:, 2], wrong[:, 5])[0, 1]) < 0.05
  vocab = dj.vocab_size(4, 4)
  assert p["name"].min() >= dj.WORD0 and max(p["doc_a"].max(), p["doc_b"].max()) < vocab
  q = dj.training_queries(4000, np.random.default_rng(1), first_bias=0.6, **views)
  assert q["tokens"].shape == (4000, ev.LENGTH) and abs((q["label"] == ev.A).mean() - 0.6) < 0.03
  assert q["tokens"].max() < vocab
  assert abs((q["tokens"][:, 13] != ev.PAD).mean() - 0.5) < 0.03  # half the queries carry hints
  a = dj.training_queries(4000, np.random.default_rng(1), first_bias=0.6, abstain=True, **views)
  np.testing.assert_array_equal(a["label"], q["label"])  # same pairs; only the hints of ambiguous views differ
  changed = a["tokens"] != q["tokens"]
  assert changed.any() and (a["tokens"][changed] == ev.PAD).all()
  with pytest.raises(ValueError, match="reliability"):
    dj.pair_views(4, np.random.default_rng(0), reliability=1.5)


def test_agreement_is_accuracy_and_cohens_kappa():
  label = np.array([1, 1, 0, 0, 1, 0])
  m = llm_eval.agreement(np.array([0.9, 0.6, 0.2, 0.7, 0.4, 0.1]), label)
  # 4 of 6 right; chance agreement 0.5 (both sides half A): kappa = (4/6 - 0.5) / 0.5
  np.testing.assert_allclose([m["accuracy"], m["kappa"]], [4 / 6, 1 / 3], atol=1e-6)
  assert llm_eval.agreement(np.full(6, 0.9), label)["kappa"] == 0.0  # always A: no agreement beyond chance
  with pytest.raises(ValueError, match="label"):
    llm_eval.agreement(np.ones(6), np.ones(5))
  with pytest.raises(ValueError, match="tokens"):
    llm_eval.fine_tune_judge(ev.JudgeLM(30), {"tokens": np.zeros((4, 7), np.int32), "label": np.zeros(4, np.int32)})
  with pytest.raises(ValueError, match="one seed per query set"):
    llm_eval.fine_tune_best_judge(ev.JudgeLM(30), [{}, {}], [0], {})
  # the config procedure's kappa from mean metrics equals sklearn's on the same verdicts
  rng = np.random.default_rng(3)
  label, says = rng.integers(0, 2, 300), (rng.random(300) < 0.35).astype(int)
  means = {"label_a": label.mean(), "x/correct": (says == label).mean(), "x/says_a": says.mean()}
  np.testing.assert_allclose(llm_eval.kappas_from_means(means)["x"],
                             llm_eval.agreement(says * 0.8 + 0.1, label)["kappa"], atol=1e-9)
  assert llm_eval.parse_setting("6x2-noread-vote") == (6, 2, True, False, "vote")
  with pytest.raises(ValueError, match="setting"):
    llm_eval.parse_setting("6by2")
  with pytest.raises(ValueError, match="flags"):
    llm_eval.parse_setting("6x2-deaf")


def test_config_procedure_evaluates_the_networks_on_pair_batches(setup):
  judge, variables, name, doc_a, doc_b = setup
  proc = llm_eval.JudgeThenNetworks(model=judge, task=llm_eval.judge_task(), optimizer=optax.adam(1e-3),
                                    settings="1x1,3x2-noread")
  state = jax.eval_shape(proc.init, jax.random.key(0), {"tokens": np.zeros((2, ev.LENGTH), np.int32),
                                                        "label": np.zeros(2, np.int32)})
  label = np.arange(BATCH) % 2
  net = ev.WideDeepEvaluator(judge, width=3, depth=2, read_verdicts=False)

  @jax.jit
  def run(params, batch):  # evaluate reads only the state's params
    return proc.evaluate(state.replace(params=params), batch), net.apply(variables, batch["name"], batch["doc_a"],
                                                                          batch["doc_b"])

  m, want = run(variables["params"]["judge"], {"name": name, "doc_a": doc_a, "doc_b": doc_b,
                                               "label": np.where(label == 1, ev.A, ev.B)})
  np.testing.assert_allclose(m["3x2-noread/p"], want, atol=1e-5)
  np.testing.assert_array_equal(m["3x2-noread/correct"], (np.asarray(want) > 0.5) == (label == 1))
  np.testing.assert_array_equal(m["label_a"], label)
  with pytest.raises(ValueError, match="setting"):
    llm_eval.JudgeThenNetworks(model=judge, task=llm_eval.judge_task(), optimizer=optax.adam(1e-3), settings="6")
