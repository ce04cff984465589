"""Effect test of "A Deep Look into Neural Ranking Models for Information Retrieval" (Guo et al., 2019, arXiv
1903.06902): relevance matching (K-NRM's exact-match kernel) generalises to unseen query words; a representation
model (DSSM) does not.

Data: ``docstring_ranking`` (recipes/datasets/docstring_ranking.py): 1801 stdlib docstrings (first 32 words); a
query is 2-3 rare words (>= 5 letters, in <= 2 documents) of one document; the rare words are split at random into
training and test words, so every test query word is unseen in training queries. Each test query reranks 50
candidates (its document + 49 random); training uses the first 8 candidates of each training list. ~250 training /
~260 test queries.

* full: ``KNRM`` (11 kernels, exact-match mu = 1 / sigma = 1e-3 and ten soft kernels, one 50-d word embedding table
  for queries and documents, trained end to end), pairwise hinge loss (``rax.pairwise_hinge_loss``, margin 1), Adam
  1e-2;
* ablation: the same with ``shared_embeddings=False``: documents get their own embedding table, so a word no longer
  matches itself (term matching off; the model must learn a translation between two vocabularies, which it cannot
  for unseen words);
* reported, not asserted: ``exact_match=False`` (no mu = 1 kernel); the three K-NRMs are trained side by side in one
  program (independent parameters, summed losses);
* baseline: ``DSSM`` (letter-trigram hashing into 4096 buckets, towers 128-64, gamma 10), listwise softmax loss
  (``rax.softmax_loss``), Adam 1e-3.

200 steps of 16 lists each. Asserted: NDCG@10(KNRM) >= 0.8 (PAPERS.md), >= NDCG@10(DSSM) + 0.5 (PAPERS.md: + 0.1)
and >= NDCG@10(ablation) + 0.5.

Measured (ZOO_TEST_SEED 0/1/2; data and training seed = offset), NDCG@10 over 50 candidates:

  =================  =====  =====  =====
  model              0      1      2
  =================  =====  =====  =====
  KNRM               1.000  0.951  0.999
  ablation (tables)  0.062  0.066  0.094
  no exact kernel    0.994  0.767  0.841
  DSSM               0.148  0.163  0.146
  =================  =====  =====  =====

Chance (one relevant among 50) is ~0.09. The exact-match kernel itself is not what generalises here: without it the
mu = 0.9 soft kernel still fires on identical words (exp(-0.5) at cosine 1), and K-NRM stays at 0.77-0.99; what
matters is that query and document words are compared in one space. The other models, separately (seed 0, 100
steps, scripts in the note): DRMM 1.00, MatchPyramid 0.94, Duet 1.00 (interaction models), CDSSM 0.15 (a
representation model, like DSSM). Mutation check: with the document embedding table always separate in
``zoo.ranking._cosine_matrix`` (``demb = _embed(..., "doc_embedding")``), K-NRM fell to 0.096 and the test failed.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from zoo import ranking
from zoo.recipes import data, sharding, train
from zoo.recipes.procedures.colbert import rerank_metrics
from zoo.recipes.procedures.ranking import ListRanking


VARIANTS = (("knrm", {}), ("ablation", {"shared_embeddings": False}), ("no_exact_kernel", {"exact_match": False}))


class KNRMs(nn.Module):
  """K-NRM and its two ablations, independent parameters, one batch: scores ``[3, b, n]``."""
  vocab_size: int

  @nn.compact
  def __call__(self, inputs):
    return jnp.stack([ranking.KNRM(self.vocab_size, embed_dim=50, **kw, name=n)(inputs) for n, kw in VARIANTS])


class SummedHinge(ListRanking):
  def loss(self, scores, batch):
    return sum(super(SummedHinge, self).loss(s, batch) for s in scores)

  def metrics(self, scores, batch):
    return {"loss": self.loss(scores, batch)}


@pytest.fixture(scope="module")
def ndcg():
  seed = int(os.environ.get("ZOO_TEST_SEED", 0))
  sources, info = data.load("docstring_ranking", seed=seed)
  tr, te = sources["train"].arrays, sources["test"].arrays
  vocab, buckets = info.metadata["vocab_size"], info.metadata["num_buckets"]
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  test_inputs = {k: v for k, v in te.items() if k.startswith(("query", "docs"))}
  out = {}
  pair = KNRMs(vocab)
  fitted = train.fit(pair, tr, task=SummedHinge(loss_name="pairwise_hinge", list_size=8), steps=200, batch_size=16,
                     seed=seed, mesh=mesh, optimizer={"name": "adam", "learning_rate": 1e-2})
  scores = jax.jit(pair.apply)(fitted.variables, test_inputs)
  for i, (name, _) in enumerate(VARIANTS):
    out[name] = float(rerank_metrics(scores[i], te["labels"])["ndcg_at_10"].mean())
  dssm = ranking.DSSM(buckets, hidden=(128, 64))
  fitted = train.fit(dssm, tr, task=ListRanking(loss_name="softmax", list_size=8), steps=200, batch_size=16,
                     seed=seed, mesh=mesh, optimizer={"name": "adam", "learning_rate": 1e-3})
  out["dssm"] = float(rerank_metrics(jax.jit(dssm.apply)(fitted.variables, test_inputs), te["labels"])[
      "ndcg_at_10"].mean())
  return out


def test_knrm_generalises_to_unseen_query_words(ndcg):
  print("NDCG@10", {k: round(v, 4) for k, v in ndcg.items()})
  assert ndcg["knrm"] >= 0.8, ndcg
  assert ndcg["knrm"] >= ndcg["dssm"] + 0.5, ndcg
  assert ndcg["knrm"] >= ndcg["ablation"] + 0.5, ndcg
