"""Dependency-preserving (LSTM) hypernetwork for continual learning on split-digits, 5 binary tasks.

Model: ``zoo.hypernet.HyperModel`` around ``HyperNetwork(conditioning='task', output='chunk', arch='lstm')``
("Continual Learning with Dependency Preserving Hypernetworks", Chandra, Varshney, Srijith, Gupta, WACV 2023, arXiv
2209.07712): an LSTM (32 units) runs over the 128-weight chunks of a 64-32-2 target in layer order with input
``[e_t; c_l]`` and a linear head emits each chunk. Procedure ``continual.HyperCL``: task ``t = step //
steps_per_task``, loss on that task's examples + ``beta`` times the output regulariser against the snapshot taken
at the task's start (von Oswald et al. 2020); only ``e_t`` learns; Adam restarts at each task. Data
``split_digits`` (5 tasks {0,1}, {2,3}, ...; within-task labels; task id known at test time). Task
``continual.TaskIncremental``.

Command::

  python -m zoo.recipes.train --config recipes/configs/hypercl_split_digits.py --workdir /tmp/zoo-hypercl

Expected (measured, seed 0): test accuracy 0.991 over all 5 tasks after 500 steps (each task evaluated with its own
id after the last one), 33 s wall on a loaded 2-core machine; tests/papers/test_dp_hypernet_cl.py (per-task batches
of 32): 0.975-0.996 over 9 seeds. The loop's
batches mix every task and the step keeps only the current task's examples (~1/5 of each batch of 128).
Fine-tuning baseline: ``--config.model.name=core.MLP --config.model.features='(32,2)'`` with the same procedure.

Shipped checkpoint: this command's run (seed 0, 500 steps) is ``zoo.checkpoints.load('hypercl_split_digits')``; the
hypernetwork with every task's embedding; ``model.apply(variables, {'task': ids, 'x': images})``; test accuracy
0.9911 (17 s of CPU, 70 s wall on the loaded machine, 2026-12-04).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "hypernet.HyperModel"
  c.model.hypernet = {"target": {"name": "core.MLP", "features": (32, 2)}, "target_input": (8, 8, 1),
                      "conditioning": "task", "num_tasks": 5, "output": "chunk", "chunk_size": 128,
                      "arch": "lstm", "hidden": (32,)}
  c.data.name = "split_digits"
  c.data.kwargs.num_tasks = 5
  c.data.batch_size = 128
  c.task.name = "continual.TaskIncremental"
  c.procedure.name = "continual.HyperCL"
  c.procedure.num_tasks = 5
  c.procedure.steps_per_task = 100
  c.procedure.beta = 0.05
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.steps = 500
  c.log_every = 50
  c.eval_every = 0
  c.checkpoint_every = 100
  c.seed = 0
  return c
