r"""K-NRM on docstring retrieval with unseen-word test queries (term matching generalises to unseen words).

Paper: "A Deep Look into Neural Ranking Models for Information Retrieval" (Guo et al., 2019, arXiv 1903.06902);
model ``ranking.KNRM`` (Xiong et al., SIGIR 2017): 11 RBF kernels (exact match mu = 1, sigma = 1e-3; ten soft
kernels, sigma 0.1) over embedding cosines, 50-d word embeddings trained end to end, ``tanh(w . phi + b)``. Data
``docstring_ranking`` (recipes/datasets/docstring_ranking.py): stdlib docstrings, queries of 2-3 rare words of one
document, test query words never in a training query; 50 candidates per query, the first 8 used by training.
Task ``ranking.ListRanking`` with ``rax.pairwise_hinge_loss`` (K-NRM's). Ablations: ``--config.model.
shared_embeddings=False`` (documents get their own embedding table: the effect test's ablation) and
``--config.model.exact_match=False``. The other models (DRMM, MatchPyramid, Duet, DSSM, CDSSM) take other fields;
build them from Python as tests/papers/test_neural_ranking.py does.

Command::

  python -m zoo.recipes.train --config recipes/configs/neural_ranking.py --workdir /tmp/zoo-knrm

Expected: the eval metrics rerank the first 8 candidates of each test query (``task.list_size``): ``ndcg_at_10``,
``mrr``, ``ap``. Measured (seed 0, 200 steps, ~30 s wall on the loaded 2-core CPU): ndcg_at_10 1.000, mrr 1.000,
ap 1.000, loss 0.221. Over all 50 candidates (tests/papers/test_neural_ranking.py): NDCG@10 0.95-1.00 for
K-NRM, 0.06-0.09 with separate tables, 0.77-0.99 without the exact-match kernel, 0.15-0.16 for DSSM.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  # The corpus has 3682 word ids under Python 3.11.7 (dataset metadata `vocab_size`); 8192 leaves room for other
  # Python versions' docstrings (an id outside the table is an error, not a silent lookup).
  c.model = ml_collections.ConfigDict({"name": "ranking.KNRM", "vocab_size": 8192, "embed_dim": 50,
                                       "exact_match": True, "shared_embeddings": True})
  c.data.name = "docstring_ranking"
  c.data.batch_size = 16
  c.data.eval_batch_size = 64
  c.task = ml_collections.ConfigDict({"name": "ranking.ListRanking", "loss_name": "pairwise_hinge",
                                      "list_size": 8})
  c.optimizer.learning_rate = 1e-2
  c.steps = 200
  c.log_every = 50
  c.checkpoint_every = 200
  return c
