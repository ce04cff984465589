r"""Cyclical Curriculum Learning on sklearn digits with 30% planted label noise: MLP 64-128-10 with the CCL sampler.

Paper: "Cyclical Curriculum Learning" (Kesgin & Amasyali, IEEE TNNLS 2023, arXiv 2202.05531). The batch sampler
``zoo.recipes.curriculum.CyclicalCurriculum`` (``data.sampler.name = 'cyclical'``): each epoch draws a fraction
0.25 -> 0.5 -> 1 -> 0.5 -> ... of the training set without replacement, with probability proportional to a logistic
regression's probability of each example's (noisy) label. Any model and procedure train with it; here the default
backprop on ``core.MLP``. Baseline: ``--config.data.sampler.name=''`` (vanilla shuffled epochs); ablation of the
score: ``--config.data.sampler.kind=random``.

Command::

  python -m zoo.recipes.train --config recipes/configs/curriculum_digits_noisy.py --workdir /tmp/zoo-ccl

Expected: clean test accuracy 0.953 with CCL, 0.929 vanilla, 0.936 with ``kind=random`` (seed 0). Time: ~14 s of CPU
time (the logistic-regression reference model included).

Shipped checkpoint: this command's run (seed 0, 4000 steps) is ``zoo.checkpoints.load('curriculum_digits_noisy')``;
clean test accuracy 0.953.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (128, 10)
  c.data.name = "digits_noisy_labels"
  c.data.kwargs = {"noise": 0.3, "seed": 0}
  c.data.batch_size = 32
  c.data.sampler = {"name": "cyclical", "kind": "easy", "lamda": 1.0, "sp": 0.25, "ep": 1.0, "alpha": 0.5,
                    "direction": "lower_to_bigger", "input_key": "image", "target_key": "label"}
  c.task.name = "classification"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 4000
  c.log_every = 200
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.seed = 0
  return c
