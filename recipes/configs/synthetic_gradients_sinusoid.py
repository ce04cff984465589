r"""Fast & slow learning (arXiv:2011.05438): a neural memory network whose LSTM controller adapts within each episode
by synthetic gradients, on 10-shot sinusoid regression.

Model: ``zoo.memory.NeuralMemoryNetwork`` (LSTM controller of 32 units, 16 memory slots of 16, content-addressed
erase/add write and read). Data: ``sinusoid_episodes`` (A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]; 10 labelled
support steps then 10 query steps per episode; 20000 training episodes, 500 test episodes). Procedure
``synthetic_gradients.SyntheticGradients``: per episode, one fast step of the controller along the synthetic
gradient ``sum_t (ds_t/dtheta)^T S(s_t, x_t)`` (alpha = 0.03); slow Adam steps on the mean of the query loss before
and after it, and DNI's regression of S onto the true dL/ds_t. Baseline: ``synthetic_gradients_sinusoid_backprop.py``.

Command::

  python -m zoo.recipes.train --config recipes/configs/synthetic_gradients_sinusoid.py --workdir /tmp/zoo-sg-sin

Expected (``tests/papers/test_synthetic_grad_nmn.py``, slow, 200 test episodes, seeds 0 / 1): query MSE 1.54 /
0.98 without the fast step and 1.34 / 1.10 after it (the fast step helps at seed 0 and hurts at seed 1),
cosine(S's prediction, true dL/ds) 0.31 / 0.24; the same network trained by plain backprop for the same 2000 steps
reaches 1.11 / 0.78, i.e. the paper's advantage over backprop does not reproduce at this scale. About 3 minutes on
a laptop CPU (measured 4-6 minutes on a 2-core machine shared with ~10 other processes).
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with an 8-unit controller with 4 slots of 4, 256 training and 64 test
  episodes (the test's smoke run)."""
  c = base_config()
  c.model.name = "memory.NeuralMemoryNetwork"
  c.model.outputs = 1
  c.model.features = 32
  c.model.num_slots = 16
  c.model.slot_size = 16
  c.data.name = "sinusoid_episodes"
  c.data.kwargs.n_test = 500
  c.data.batch_size = 32
  c.data.eval_batch_size = 128
  c.task.name = "synthetic_gradients.EpisodeRegression"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.procedure.name = "synthetic_gradients.SyntheticGradients"
  c.procedure.fast_steps = 1
  c.procedure.fast_lr = 0.03
  c.procedure.adapted_weight = 0.5
  c.steps = 2000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 500
  c.seed = 0
  if is_smoke(arg, 'synthetic_gradients_sinusoid'):
    c.model.features = 8
    c.model.num_slots = 4
    c.model.slot_size = 4
    c.data.kwargs.n_train = 256
    c.data.kwargs.n_test = 64
    c.data.eval_batch_size = 64
  return c
