r"""Feedback alignment (random fixed feedback weights) trains an MLP on scikit-learn's bundled 8x8 digits.

Paper: Lillicrap, Cownden, Tweed & Akerman, "Random synaptic feedback weights support error backpropagation for
deep learning" (Nature Communications 2016; arXiv:1411.0247). Model ``zoo.core.MLP`` 64-32-32-10 (any zoo model
made of Dense/Conv layers works: try ``--config.model.name=core.ConvNet``); procedure
``zoo.recipes.procedures.feedback_alignment.FeedbackAlignment``; Adam 1e-3. The baseline of counter-current learning
(``counter_current_digits.py``).

Command::

  python -m zoo.recipes.train --config recipes/configs/feedback_alignment_digits.py --workdir /tmp/fa

Expected: test accuracy about 0.96 (seeds 0 / 1: 0.958 / 0.958; backprop on the same MLP 0.976 / 0.964).
Time: about 7 s of CPU time (user + sys) on this 2-core CPU, compilation, data preparation and the final
evaluation included.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (32, 32, 10)
  c.data.name = "digits"
  c.data.batch_size = 128
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.procedure.name = "feedback_alignment.FeedbackAlignment"
  c.procedure.feedback_seed = 1
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
