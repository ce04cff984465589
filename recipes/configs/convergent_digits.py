"""One of the 64-128-64-10 ReLU MLPs on sklearn digits whose units ``zoo.analysis.repsim`` compares across seeds
("Convergent Learning: Do different neural networks learn the same representations?", Li, Yosinski, Clune, Lipson,
Hopcroft, ICLR 2016, arXiv 1511.07543).

Train it twice with different seeds (``--config.seed=1``), then correlate the hidden units of the two checkpoints
on a shared probe set and match them: ``repsim.unit_activations(model, variables, probe, ['dense_0', 'dense_1'])``,
``repsim.unit_correlations``, ``repsim.bipartite_match``, ``repsim.semi_match``, ``repsim.sparse_prediction_map``
(tests/papers/test_convergent_learning.py does this).

Command::

  python -m zoo.recipes.train --config recipes/configs/convergent_digits.py --workdir /tmp/zoo-convergent-0

Expected (measured, seed 0): test accuracy 0.971 after 400 steps (Adam 1e-3, batch 64), ~10 s of CPU time. Two
such nets (seeds 0, 1) have a mean Hungarian-matched unit correlation of 0.64 / 0.61 (layers dense_0 / dense_1) on
all 1797 digits, against 0.47 / 0.39 for a trained net against a random-init one. Both nets are shipped:
``zoo.checkpoints.load('convergent_digits')`` (seed 0) and ``'convergent_digits_seed1'`` (``--config.seed=1``,
accuracy 0.971, loss 0.106); their matched correlations are 0.639 / 0.611 (measured again on the shipped pair).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (128, 64, 10)
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 400
  c.log_every = 100
  c.checkpoint_every = 400
  c.seed = 0
  return c
