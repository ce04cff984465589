r"""ColBERT with the residual SwiGLU 4x projection on ``concept_match``: only the projection learns.

Paper: "Simple Projection Variants Improve ColBERT Performance" (2025), on ColBERT (Khattab and Zaharia, 2020, arXiv
2004.12832). Model ``colbert.ColBERT``: frozen random token embeddings (d = 64, ``num_layers=0``,
``freeze_encoder=True``), the projection ``residual_glu_upscaled`` to 128 dims (the paper's width), L2-normalised,
MaxSim through ``zoo.kernels.maxsim`` (the Pallas kernel on GPU/TPU). Data ``concept_match``
(recipes/datasets/concept_match.py): relevance is a token-to-concept match with hard negatives that share the
query's exact tokens. Task ``colbert.Contrastive`` (in-batch + hard negatives, PyLate's loss). The other variants
are overrides: ``--config.model.projection=linear`` (ColBERT's), ``glu_upscaled`` (no residual), ``residual_glu``
(no upscaling), or the linear ablation ``--config.model.nonlinear=False``.

Command::

  python -m zoo.recipes.train --config recipes/configs/colbert_proj.py --workdir /tmp/zoo-colbert

Expected: the ``eval`` metrics are in-batch retrieval among the 2 x 200 test documents of an eval batch (each
query's positive, the other positives and every hard negative): ``mrr``, ``recall_at_1``. Measured (seed 0, 300
steps, ~20 s wall on the loaded 2-core CPU, a third of it compilation): test mrr 0.539, recall_at_1 0.370, loss
4.03; the ``linear`` projection: mrr 0.069, recall_at_1 0.025. Reranking NDCG@10 over the 50 ``candidates``
needs ``ColBERT.score`` (tests/papers/test_colbert_proj.py: 0.54-0.68 for this projection at dim 64 after 200
steps, 0.05-0.08 linear). This run is shipped: ``zoo.checkpoints.load('colbert_proj')`` (measured again: mrr 0.539,
recall_at_1 0.370, loss 4.03; 18 s of user CPU).
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({
      "name": "colbert.ColBERT", "vocab_size": 257, "embed_dim": 64, "num_layers": 0, "position": "none",
      "dim": 128, "projection": "residual_glu_upscaled", "nonlinear": True, "freeze_encoder": True})
  c.data.name = "concept_match"
  c.data.kwargs = ml_collections.ConfigDict({"vocab_size": 257, "concepts": 64})
  c.data.batch_size = 32
  c.data.eval_batch_size = 200
  c.task = ml_collections.ConfigDict({"name": "colbert.Contrastive", "temperature": 1.0})
  c.optimizer.learning_rate = 1e-2
  c.steps = 300
  c.log_every = 50
  c.eval_every = 150
  c.checkpoint_every = 300
  return c
