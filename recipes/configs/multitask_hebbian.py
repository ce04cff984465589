"""The multitasking Hebbian network learning from diluted examples ("Parallel Learning by Multitasking Neural
Networks", Agliari, Alessandrelli, Barra, Ricci-Tersenghi, 2023, arXiv 2308.04106).

``hebbian.HebbianNetwork`` (N = 1000 neurons, 10 asynchronous zero-temperature sweeps), couplings set by the
``hebbian.HebbianLearning`` procedure from the ``hebbian_examples`` data (K = 3 patterns blank w.p. d = 0.3,
M = 64 examples each of quality r = 0.8; one pass of 3 batches of 64), unsupervised (``--config.procedure.mode=
supervised`` for the teacher's class means; ``--config.data.kwargs.dilution=0.8`` for the parallel regime). The
evaluation starts the dynamics near each pattern and reports the Mattis magnetisations.

Command::

  python -m zoo.recipes.train --config recipes/configs/multitask_hebbian.py --workdir /tmp/zoo-hebbian

Expected (measured, seed 0): m_self 0.704, m_second 0.228, m_third 0.063 (mean over 24 starts; the hierarchical
state (1 - d) d^{k-1} = 0.70, 0.21, 0.063), accuracy 1.0; ~6 s of CPU (17 s wall on a loaded 2-core machine).
tests/papers/test_multitask_hebbian.py runs the issue's N = 4000 setting.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "hebbian.HebbianNetwork"
  c.model.num_neurons = 1000
  c.model.sweeps = 10
  c.data.name = "hebbian_examples"
  c.data.kwargs.num_neurons = 1000
  c.data.kwargs.num_patterns = 3
  c.data.kwargs.num_examples = 64
  c.data.kwargs.dilution = 0.3
  c.data.kwargs.quality = 0.8
  c.data.batch_size = 64
  c.data.eval_batch_size = 24
  c.task.input_key = "x"
  c.procedure.name = "hebbian.HebbianLearning"
  c.procedure.mode = "unsupervised"
  c.procedure.num_patterns = 3
  c.steps = 3
  c.log_every = 1
  c.eval_every = 0
  c.checkpoint_every = 3
  c.seed = 0
  return c
