r"""Counter-current learning trains an MLP on scikit-learn's bundled 8x8 digits with a separate feedback network
and layer-local losses only.

Paper: Kao & Hariharan, "Counter-Current Learning: A Biologically Plausible Dual Network Approach for Deep
Learning" (NeurIPS 2024, arXiv:2409.19841). Model ``zoo.local_learning.CounterCurrentMLP`` (64-32-32-10 forward
network, 10-32-32-64 feedback network, ELU, no biases); procedure ``zoo.recipes.procedures.counter_current.CounterCurrent``
with the reference's MLP recipe: SGD at learning rate 1.0, gradient clipping 1 per network, pair-loss scale 0.5.
PAPERS.md's widths are ``--config.model.features='(256, 256, 10)'``.

Command::

  python -m zoo.recipes.train --config recipes/configs/counter_current_digits.py --workdir /tmp/ccl

Expected: test accuracy about 0.97 (seeds 0 / 1: 0.973 / 0.969; back-propagation 0.976 / 0.964, feedback alignment
0.958 / 0.958, the same model with the pair losses off 0.844 / 0.840, with the feedback network frozen at its
initialisation, ``procedure.learn_feedback = False``, 0.967 at seed 0: in this shallow net the feedback network's
learning hardly matters; it does in deeper ones, see tests/papers/test_counter_current.py).
Time: about 7 s of CPU time (user + sys) on this 2-core CPU, compilation, data preparation and the final
evaluation included.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "local_learning.CounterCurrentMLP"
  c.model.features = (32, 32, 10)
  c.model.activation = "elu"
  c.model.feedback_activation = "elu"
  c.data.name = "digits"
  c.data.batch_size = 128
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1.0
  c.optimizer.clip_norm = 1.0
  c.procedure.name = "counter_current.CounterCurrent"
  c.procedure.loss = "dot"
  c.procedure.loss_scale = 0.5
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
