"""Continual Learning with Dependency Preserving Hypernetworks (Chandra, Varshney, Srijith, Gupta, WACV 2023,
arXiv 2209.07712).

Split-digits, 5 binary tasks ({0,1}, {2,3}, ..., within-task labels, task id known at test time), target 64-32-2
(2146 weights). The dependency-preserving hypernetwork: ``zoo.hypernet.HyperNetwork(arch='lstm', output='chunk')``,
an LSTM of 32 units over the 17 chunks of 128 weights with input ``[e_t; c_l]`` (embeddings of 8) and a linear head,
10672 parameters; trained by ``procedures.continual.HyperCL`` with the output regulariser (beta 0.05, Adam 3e-3
restarted per task, 100 steps of 32 per task, only ``e_t`` learning). 3 seeds vmapped.

* Baseline: sequential fine-tuning of the 64-32-2 target net (same procedure, no hypernetwork).
* Ablation: ``output_regularizer=False`` (the same LSTM hypernetwork fine-tuned task after task).
* Reported, not asserted (``slow``): the independent-chunk MLP hypernetwork of von Oswald et al. at about the same
  parameter count (body 52-52: 10600 parameters).

Measured (``ZOO_TEST_SEED`` = 0 / 1 / 2, three seeds each):

===========================================  =====================  =====================  =====================
run                                          offset 0               offset 1               offset 2
===========================================  =====================  =====================  =====================
LSTM HN + regulariser: final average acc.    0.987 / 0.982 / 0.975  0.996 / 0.978 / 0.987  0.978 / 0.978 / 0.987
LSTM HN + regulariser: task-1 forgetting     0.000 / 0.000 / 0.000  0.000 / 0.000 / 0.000  0.000 / 0.000 / 0.000
LSTM HN + regulariser: worst forgetting      0.022 / 0.011 / 0.022  0.000 / 0.011 / 0.022  0.011 / 0.022 / 0.011
ablation (no regulariser): final avg acc.    0.869 / 0.958 / 0.967  0.808 / 0.784 / 0.898  0.911 / 0.857 / 0.954
ablation: task-1 forgetting                  0.242 / 0.022 / 0.011  0.505 / 0.560 / 0.000  0.176 / 0.429 / 0.099
ablation: worst forgetting                   0.242 / 0.088 / 0.088  0.505 / 0.560 / 0.400  0.176 / 0.429 / 0.099
fine-tuning: final average accuracy          0.834 / 0.835 / 0.848  0.830 / 0.848 / 0.839  0.841 / 0.834 / 0.857
fine-tuning: task-1 forgetting               0.429 / 0.429 / 0.429  0.429 / 0.440 / 0.429  0.429 / 0.429 / 0.429
===========================================  =====================  =====================  =====================

(Fine-tuning's task-1 forgetting is 0.429 on most seeds: after task 5 the shared head maps task 1's test digits to
one class; 0.429 is the other class's share.)

Asserted: the hypernetwork's final average accuracy >= 0.9 on every seed and >= 0.1 above fine-tuning's, its task-1
forgetting <= 3 points and its worst forgetting over tasks <= 4 points; fine-tuning forgets task 1 by > 20 points;
the ablation's worst forgetting exceeds the regularised hypernetwork's by >= 4 points on every seed (it does not
always forget task 1: 0.0-0.56). **Not reproduced**: PAPERS.md's
">= 0.15 above fine-tuning": on these binary tasks sharing one 2-way head, fine-tuning keeps ~0.84 average accuracy
(the later tasks are learned, the first ones partly kept), so the measured gap is 0.127-0.166. Mutation check:
``return task_loss + 0.0 * self.beta * reg, ...`` in ``HyperCL.loss`` makes the method identical to the ablation
and fails ``average accuracy >= 0.9`` (0.869). Cost: ~27-45 s (3 vmapped runs, one compile each).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import hypernet
from zoo.recipes.datasets import split_digits
from zoo.recipes.procedures import continual

TASKS, STEPS, BATCH, LR, BETA, CHUNK = 5, 100, 32, 3e-3, 0.05, 128


def _batches(train, seeds):
  """``{key: [seeds, tasks, steps, batch, ...]}``: each task's steps draw from that task's examples only."""
  out = []
  for s in seeds:
    rng = np.random.default_rng(s)
    idx = np.stack([rng.choice(np.flatnonzero(train["task"] == t), (STEPS, BATCH)) for t in range(TASKS)])
    out.append({k: train[k][idx] for k in ("image", "label", "task")})
  return {k: jnp.asarray(np.stack([o[k] for o in out])) for k in out[0]}


def _matrices(models, seed):
  """The accuracy matrix ``R [seeds, T, T]`` of each named ``(model, output_regularizer)``."""
  gen = split_digits.split_digits(num_tasks=TASKS)
  test = {k: jnp.asarray(gen.splits["test"][k]) for k in ("image", "label", "task")}
  seeds = [seed + k for k in range(3)]
  batches = _batches(gen.splits["train"], seeds)
  out = {}
  for name, (model, reg) in models.items():
    proc = continual.HyperCL(model=model, optimizer=optax.adam(LR), num_tasks=TASKS, steps_per_task=STEPS,
                             beta=BETA, output_regularizer=reg)
    run = jax.vmap(lambda s, b, p=proc: continual.run_tasks(p, jax.random.key(s, impl="rbg"), b, test))
    out[name] = np.asarray(jax.jit(run)(jnp.asarray(seeds), batches))
    R = out[name]
    print(name, "avg", np.round(np.asarray(continual.average_accuracy(R)), 3), "task-1 forgetting",
          np.round(np.asarray(continual.forgetting(R))[:, 0], 3), "max forgetting",
          np.round(np.asarray(continual.forgetting(R)).max(-1), 3))
  return out


def _hn(arch, hidden):
  target = core.MLP((32, 2))
  return hypernet.HyperModel(hypernet.HyperNetwork(target, (8, 8, 1), conditioning="task", num_tasks=TASKS,
                                                   output="chunk", chunk_size=CHUNK, arch=arch, hidden=hidden))


def test_lstm_hypernetwork_with_output_regulariser_does_not_forget(seed):
  R = _matrices({"lstm": (_hn("lstm", (32,)), True), "ablation": (_hn("lstm", (32,)), False),
                 "finetune": (core.MLP((32, 2)), True)}, seed)
  avg = {k: np.asarray(continual.average_accuracy(v)) for k, v in R.items()}
  forget1 = {k: np.asarray(continual.forgetting(v))[:, 0] for k, v in R.items()}
  assert np.all(avg["lstm"] >= 0.9), avg
  assert np.all(avg["lstm"] - avg["finetune"] >= 0.1), avg
  assert np.all(forget1["lstm"] <= 0.03), forget1
  assert np.all(forget1["finetune"] > 0.2), forget1
  # Without the regulariser the hypernetwork forgets some task (not always task 1, and by 0.09-0.56).
  worst = {k: np.asarray(continual.forgetting(v)).max(-1) for k, v in R.items()}
  assert np.all(worst["lstm"] <= 0.04), worst
  assert np.all(worst["ablation"] >= worst["lstm"] + 0.04), worst


@pytest.mark.slow
def test_lstm_vs_mlp_hypernetwork_at_equal_size(seed):
  """Reports RNN vs independent-chunk MLP hypernetworks at ~equal parameter count (10672 vs 10600)."""
  models = {"lstm": (_hn("lstm", (32,)), True), "mlp": (_hn("mlp", (52, 52)), True)}
  R = _matrices(models, seed)
  for name, (model, _) in models.items():
    x = {"task": jnp.zeros((2,), jnp.int32), "x": jnp.zeros((2, 8, 8, 1))}
    print(name, "params", sum(int(np.size(a)) for a in jax.tree.leaves(model.init(jax.random.key(0), x))))
  assert all(np.all(np.asarray(continual.average_accuracy(v)) >= 0.85) for v in R.values())
