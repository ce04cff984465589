r"""DIN on planted user-interest click logs: the local activation unit finds the history items that match the ad.

Model: ``zoo.ctr.DIN`` ("Deep Interest Network for Click-Through Rate Prediction", Zhou et al., KDD 2018, arXiv
1706.06978): goods_id ⊕ cate_id embeddings (8 each), the local activation unit (hidden 32-16, Dice, no softmax),
the head 64-32 with Dice, one click logit (the paper's sizes are 80-40 and 200-80: ``--config.model.head='(200,80)'
--config.model.attention_hidden='(80,40)'``). Data: ``ctr_interests`` (``recipes/datasets/ctr.py``) at the effect
test's size: 300 users with 5 interest categories out of 20, 200 items, histories of 10-20 behaviours, click
probability 0.8 when the ad's category is in the history and 0.1 otherwise; 6000 training / 3000 test impressions.
Task ``ctr.Click`` (``recipes/procedures/ctr.py``, sigmoid cross-entropy).

Command::

  python -m zoo.recipes.train --config recipes/configs/din_interests.py --workdir /tmp/zoo-din

Expected (measured, seed 0): test accuracy 0.689, logloss 0.884 after 300 steps, ~20 s of CPU time (32 s wall on a
loaded 2-core machine). The logloss is poor: at Adam 1e-2 the model memorises ids and is overconfident, while its
ranking is good (the same settings give GAUC 0.746 vs 0.614 for sum pooling in tests/papers/test_din.py; AUC/GAUC
need whole-split rankings, see ``zoo.ctr.gauc`` and notebooks/recsys.ipynb). A paper-size run (1000 items, 500
users, head 200-80, attention 80-40, 600 steps) measured accuracy 0.714, logloss 0.99. The sum-pooling base model is
``--config.model.name=ctr.EmbMLPBase``; the candidate-blind ablation ``--config.model.local_activation=False``.
This run is shipped: ``zoo.checkpoints.load('din_interests')`` (measured again: accuracy 0.689, logloss 0.884, 17 s of
user CPU).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "ctr.DIN"
  c.model.num_items = 200
  c.model.num_cates = 20
  c.model.num_users = 300
  c.model.embed_dim = 8
  c.model.head = (64, 32)
  c.model.attention_hidden = (32, 16)
  c.model.attention_activation = "dice"
  c.data.name = "ctr_interests"
  c.data.kwargs.num_users = 300
  c.data.kwargs.history = 20
  c.data.kwargs.items_per_cate = 10
  c.data.batch_size = 128
  c.task.name = "ctr.Click"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 300
  c.log_every = 100
  c.eval_every = 150
  c.checkpoint_every = 150
  c.seed = 0
  return c
