"""Effect test: "Pooling And Attention: What Are Effective Designs For LLM-Based Embedding Models?" (Tang and Yang,
2024, arXiv 2409.02727).

The paper's mechanism: an LLM's last layer is specialised for next-token prediction, so a pooler that reads only the
last layer (EOS pooling, last-layer trainable pooling) loses what earlier layers know; multi-layer trainable pooling
(ML-TP: the EOS state of every layer, a learned layer embedding, latent cross-attention) can recover it.

Default test (mechanism, generated data, the real pooler modules): per-layer EOS states ``[layers=4, n, 32]`` of
query/document pairs. Each of the three earlier layers carries a different third of the pair's shared 12-dimensional
code (through its own random projection, with independent noise on query and document); the last layer is either
"intact" (a projection of the whole code, the same noise level) or "randomised" (a vector independent of the pair,
as if the last layer had been replaced by a random one). Poolers trained with InfoNCE (temperature 0.05, batch 64,
Adam 3e-3, 120 steps, from :mod:`zoo.recipes.procedures.contrastive`), MRR@10 on 300 held-out pairs; chance is ~0.02.
In the same test: the paper's baseline (EOS pooling) and two ablations of the same ML-TP module, switched off by its
flags: ``last_layer_only=True`` (only the last layer's EOS state: last-layer trainable pooling) and
``layer_attention=False`` (every layer, uniform instead of learned attention weights over them). Measured
(ZOO_TEST_SEED 0 / 1 / 2):

* randomised last layer: EOS pooling 0.014 / 0.006 / 0.018; ablation last layer only 0.012 / 0.005 / 0.013;
  ablation uniform layer weights 0.668 / 0.707 / 0.736; ML-TP 0.949 / 0.959 / 0.981.
* intact last layer: the last-layer-only pooler 0.949 / 0.948 / 0.930.

Asserted: with a randomised last layer ML-TP >= last layer only + 0.1 (PAPERS.md's mechanism check) and >= EOS +
0.1, both last-layer poolers stay near chance, ML-TP >= uniform layer weights + 0.1 (measured gap 0.25-0.29); with
an intact last layer the same last-layer pooler retrieves (the gap comes from the last layer, not from a broken
pooler). Mutation checks: feeding ML-TP only the last layer's EOS state (``last_token(hidden_states[-1:], ...)``)
fails the first assertion (0.011 vs 0.012 + 0.1); forcing uniform weights in ``LatentAttentionPooling`` fails the
uniform-layers assertion (0.668 vs 0.668 + 0.1).

Slow test (real text, end to end): the zoo's small transformer (3 layers, width 32) on ``stdlib_docstrings`` (first
docstring sentence -> the rest, word tokeniser, 300 held-out pairs), briefly pretrained as a causal LM (150 steps)
and fine-tuned with InfoNCE (200 steps, in-batch negatives) under the paper's five designs (and mean pooling).
Measured MRR@10 / recall@1, seed 0 (chance MRR@10 0.0098; TF-IDF (scikit-learn, fitted on the training split, on
the same truncated word tokens the models see; computed in the slow test) MRR@10 0.385; the LM-pretrained backbone
with EOS pooling before fine-tuning 0.022 / 0.007):

* EOS + causal 0.051 / 0.027; last-layer trainable + causal 0.053 / 0.037; ML-TP + causal 0.044 / 0.023;
  last-layer trainable + bidirectional 0.041 / 0.020; ML-TP + bidirectional 0.047 / 0.027; mean + causal
  0.041 / 0.023.

What did not reproduce at this scale: PAPERS.md's (i) ML-TP >= EOS pooling (0.044 vs 0.051, and every design is
within ~0.01 of the others: differences of the size of seed noise at 300 queries), and the paper's bidirectional
gain. A 3-layer, 32-wide model after 350 steps is far from the LLM the paper's effects need. Asserted (slow) only
what holds: every design learns (MRR@10 > 3x chance) and fine-tuning improves on the pretrained backbone. The run
takes 205 s of CPU (23 minutes wall on the loaded 2-core machine); a second seed was not measured in the time
available.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import embedding_pooling as E
from zoo.recipes.procedures import contrastive

LAYERS, FEATURES, CODE = 4, 32, 12
UNIFORM_MARGIN = 0.1


def _eos_states(seed, n, intact_last_layer, noise=0.5):
  """Query and document EOS states ``[LAYERS, n, FEATURES]`` of ``n`` pairs (see the module docstring)."""
  rng = np.random.default_rng(seed)
  projections = rng.normal(size=(LAYERS, CODE, FEATURES)) / np.sqrt(CODE / 3)
  code = rng.normal(size=(n, CODE))
  chunk = CODE // (LAYERS - 1)
  out = []
  for _ in ("query", "doc"):
    layers = []
    for l in range(LAYERS - 1):  # layer l knows the l-th third of the code
      part = code[:, l * chunk:(l + 1) * chunk]
      layers.append(part @ projections[l, :chunk] + noise * rng.normal(size=(n, FEATURES)))
    if intact_last_layer:
      layers.append(code @ projections[-1] / np.sqrt(3) + noise * rng.normal(size=(n, FEATURES)))
    else:
      layers.append(rng.normal(size=(n, FEATURES)))
    out.append(np.stack(layers).astype(np.float32))
  return out


def _mrr_at_10(pooler, seed, intact_last_layer, steps=120, batch=64):
  """Trains ``pooler`` (if it has parameters) on 1024 generated pairs; MRR@10 on 300 held-out pairs."""
  train_q, train_d = _eos_states(seed, 1024, intact_last_layer)
  # Held-out pairs: the same projections (the same "backbone"), new codes and noise.
  all_q, all_d = _eos_states(seed, 1024 + 300, intact_last_layer)
  test_q, test_d = all_q[:, 1024:], all_d[:, 1024:]
  del all_q, all_d
  mask = jnp.ones((batch, 1), bool)

  def embed(params, states):  # states [LAYERS, b, FEATURES] -> hidden_states [LAYERS, b, length=1, FEATURES]
    return pooler.apply({"params": params}, states[:, :, None], jnp.ones((states.shape[1], 1), bool))

  params = nn.unbox(pooler.init(jax.random.key(seed), jnp.asarray(train_q[:, :batch, None]), mask)).get("params", {})
  task = contrastive.InfoNCE(temperature=0.05)
  optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 30, steps))

  @jax.jit
  def step(params, opt_state, q, d):
    def loss(p):
      outputs = jnp.concatenate([embed(p, q), embed(p, d)])
      return task.loss(outputs, {"query": q[0], "doc": d[0]}).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  if params:
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    train_q, train_d = jnp.asarray(train_q), jnp.asarray(train_d)
    for _ in range(steps):
      idx = rng.choice(train_q.shape[1], batch, replace=False)
      params, opt_state = step(params, opt_state, train_q[:, idx], train_d[:, idx])
  metrics = contrastive.retrieval_metrics(embed(params, jnp.asarray(test_q)), embed(params, jnp.asarray(test_d)),
                                          k=10)
  return float(metrics["mrr_at_k"].mean())


def _poolers():
  """The paper's baseline (EOS pooling), ML-TP, and ML-TP with its mechanism switched off by the module's flags."""
  return {"eos": E.EOSPooling(),
          "multi_layer": E.MultiLayerTrainablePooling(num_latents=4, num_heads=2),
          # Ablations of the same module: only the last layer's EOS state (= last-layer trainable pooling) ...
          "last_layer_only": E.MultiLayerTrainablePooling(num_latents=4, num_heads=2, last_layer_only=True),
          # ... and every layer, but uniform instead of learned attention weights over the layers.
          "uniform_layers": E.MultiLayerTrainablePooling(num_latents=4, num_heads=2, layer_attention=False)}


def _mechanism(seed):
  poolers = _poolers()
  randomised = {name: _mrr_at_10(p, seed, False) for name, p in poolers.items()}
  intact = {"last_layer_only": _mrr_at_10(poolers["last_layer_only"], seed, True)}
  print(f"seed {seed} randomised last layer: {randomised}  intact last layer: {intact}")
  return randomised, intact


def test_multi_layer_pooling_recovers_what_a_randomised_last_layer_lost(seed):
  randomised, intact = _mechanism(seed)
  assert randomised["multi_layer"] >= randomised["last_layer_only"] + 0.1  # PAPERS.md's mechanism check
  assert randomised["multi_layer"] >= randomised["eos"] + 0.1  # the paper's baseline
  assert randomised["last_layer_only"] < 0.06 and randomised["eos"] < 0.06  # chance is ~0.02
  assert randomised["multi_layer"] >= randomised["uniform_layers"] + UNIFORM_MARGIN  # learned layer weights matter
  assert intact["last_layer_only"] > randomised["last_layer_only"] + 0.1  # the gap is the last layer's lost information


DESIGNS = [("eos", True), ("last_layer", True), ("multi_layer", True), ("last_layer", False), ("multi_layer", False)]
"""The paper's five designs: (pooling, causal)."""


def _end_to_end(seed, mesh, pretrain_steps=150, finetune_steps=200):
  """MRR@10 on the 300 held-out docstrings of every design, each fine-tuned from one LM-pretrained backbone."""
  from zoo.recipes import train  # pylint: disable=g-import-not-at-top
  from zoo.recipes.datasets import text  # pylint: disable=g-import-not-at-top
  gen = text.stdlib_docstrings(query_length=32, doc_length=64, tokenizer="words", vocab_size=2048)
  train_set, test_set = gen.splits["train"], gen.splits["test"]
  arch = dict(vocab_size=2048, embed_dim=32, num_layers=3, num_heads=4, mlp_dim=64, max_length=64, num_latents=16,
              pool_heads=4)

  def mrr(model, variables):
    f = jax.jit(lambda t: model.apply(variables, t))
    return float(contrastive.retrieval_metrics(f(test_set["query"]), f(test_set["doc"]), k=10)["mrr_at_k"].mean())

  base = E.EmbeddingModel(pooling="eos", causal=True, **arch)
  lm = train.fit(base, train_set, task=contrastive.InfoNCE(), procedure=contrastive.PretrainThenContrast,
                 procedure_kwargs={"pretrain_steps": pretrain_steps}, steps=pretrain_steps, batch_size=32, mesh=mesh,
                 seed=seed, optimizer=optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 50, pretrain_steps)))
  backbone = nn.unbox(lm.variables["params"]["backbone"])
  results = {"pretrained/eos/causal": mrr(base, lm.variables)}
  for pooling, causal in DESIGNS + [("mean", True)]:
    model = E.EmbeddingModel(pooling=pooling, causal=causal, **arch)
    fitted = train.fit(model, train_set, task=contrastive.InfoNCE(), procedure=contrastive.PretrainThenContrast,
                       procedure_kwargs={"initial_params": {"backbone": backbone}}, steps=finetune_steps,
                       batch_size=32, mesh=mesh, seed=seed,
                       optimizer=optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 30, finetune_steps)))
    results[f"{pooling}/{'causal' if causal else 'bidirectional'}"] = mrr(model, fitted.variables)
  results["tfidf"] = _tfidf_mrr(train_set, test_set)
  print(f"seed {seed}: {results}")
  return results


def _tfidf_mrr(train_set, test_set):
  """MRR@10 of TF-IDF (scikit-learn) on the very tokens the models see (truncated, UNK kept), fitted on train."""
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top

  def strings(tokens):
    return [" ".join(f"t{t}" for t in row if t > 2) for row in np.asarray(tokens)]  # drop PAD, BOS, EOS

  vectorizer = TfidfVectorizer(token_pattern=r"\S+").fit(strings(train_set["query"]) + strings(train_set["doc"]))
  q, d = (jnp.asarray(vectorizer.transform(strings(test_set[k])).toarray()) for k in ("query", "doc"))
  return float(contrastive.retrieval_metrics(q, d, k=10)["mrr_at_k"].mean())


@pytest.mark.slow
def test_designs_end_to_end_on_stdlib_docstrings(single_device_mesh, seed):
  results = _end_to_end(seed, single_device_mesh)
  chance = float(np.mean(np.where(np.arange(1, 301) <= 10, 1.0 / np.arange(1, 301), 0.0)))  # ~0.0098
  for pooling, causal in DESIGNS:  # contrastive fine-tuning works under every design
    assert results[f"{pooling}/{'causal' if causal else 'bidirectional'}"] > 3 * chance
  assert results["eos/causal"] > results["pretrained/eos/causal"] + 0.01
