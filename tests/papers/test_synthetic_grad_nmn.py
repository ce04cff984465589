"""Effect test: "Fast & Slow Learning: Incorporating Synthetic Gradients in Neural Memory Controllers" (Fernando et
al., 2020, arXiv:2011.05438), ``zoo.recipes.procedures.synthetic_gradients`` on ``zoo.memory.NeuralMemoryNetwork``.

Setting: few-shot sinusoid regression (``sinusoid_episodes``: A ~ U[0.1, 5], phase ~ U[0, pi], K = 10 labelled
support steps, then 10 query steps; MAML's task, one of the paper's regression benchmarks). The network reads an
episode as a sequence; the query loss is the squared error on the query steps. Training: the procedure's slow Adam
steps (lr 1e-3) on the mean of the query loss before and after one fast synthetic-gradient step of the controller,
plus DNI's regression of the module onto the true dL/ds_t. Evaluation on held-out episodes, with the slow weights
fixed: the query loss without any fast step ("no fast update") and after fast steps along the module's prediction
(the query targets are never used by them); the same with a randomly initialised (non-zero) module in place of the
trained one; and the same network trained by plain backprop for the same number of steps (the baseline of the issue).

Default test (``test_synthetic_gradients_against_untrained_module_and_backprop``, seed offset ``ZOO_TEST_SEED``):
the small network trained three times for 250 steps: the method, the ablation (``fast_gradient='untrained'``: the
same procedure whose fast steps follow a random module that never learns) and plain backprop (the baseline).
Measured, seed offsets 0 / 1 / 2 (held-out query MSE before -> after 5 fast steps at alpha 0.3):

  method      3.932 -> 3.878 / 4.095 -> 4.084 / 3.755 -> 3.687   cos(g_hat, g) 0.461 / 0.495 / 0.449, update 0.264 / 0.247 / 0.183
  ablation    3.940 -> 4.009 / 4.092 -> 4.337 / 3.754 -> 3.885   cos -0.008..0.021, update -0.005..0.008
  backprop    3.936 / 4.094 / 3.755

So the fast-adapted method ends below the ablation at every seed (asserted) and a little below plain backprop
(by 1.5% / 0.3% / 1.8%: too thin to assert; the network is still near the constant predictor, E[A^2] / 2 ~ 4.2).
The "fast steps lower the loss" assertion has a thin margin at seed 1 (-0.3%). Mutation check: making the fast
update follow zeros instead of the module's prediction (``synthetic_update``) makes the fast step a no-op (measured
loss - loss_before = 0.0, update cosine 0.0), so ``loss < loss_before`` and the update-cosine bar fail. Cost:
~120 s of CPU per run of this test on the loaded 2-core machine (three trainings and two evaluation compiles), well
over the ~30 s target.

Claims checked (PAPERS.md's summary of the paper), and what holds here:

1. The trained module predicts the true gradient: held-out cos(g_hat, dL/ds_t). PAPERS.md asks for >= 0.5;
   measured 0.46 / 0.49 (small network, seeds 0 / 1) and 0.31 / 0.24 (config scale), against ~0 (|.| < 0.01) for
   a random module. Asserted: >= 0.3 (small), >= 0.15 (config scale), |random| <= 0.1.
2. The fast update the module makes, sum_t (ds_t/dtheta)^T g_hat_t, follows the true dL/dtheta: cosine 0.26 / 0.25
   (small), 0.42 / 0.30 (config scale), ~0 for a random module.
3. Fast steps lower the query loss of the same slow weights. Small network (5 steps, alpha 0.3): 3.932 -> 3.878
   (-1.4%, seed 0) and 4.095 -> 4.084 (-0.3%, seed 1): a real but tiny gain, since after 250 steps the network is
   still near the constant predictor (E[A^2] / 2 ~ 4.2). Config scale (1 step, alpha 0.03, as trained):
   1.541 -> 1.343 (-13%, seed 0) but 0.976 -> 1.099 (+13%, seed 1). PAPERS.md's ">= 20% below the no-fast-update
   model" did not reproduce; neither did "5 fast steps": at config scale 5 steps of alpha 0.03 diverge (4.32 /
   5.11), since the network and the module were trained around one step.
4. A random module gives no gain: at config scale its fast step raises the loss more (1.94 / 1.31 after one
   step); asserted there as "the trained module's step beats the random one's". At the small scale a random
   module's 5 steps raise the loss (3.932 -> 4.130, 4.095 -> 4.188 with the test's draws) but another draw in a
   calibration run lowered it by 0.2% at seed 1, so only its uncorrelated update is asserted there.
5. Against plain backprop of the same network for the same 2000 steps (the issue's baseline): backprop reaches
   1.105 / 0.779 held-out query MSE, better than the fast-adapted network (1.343 / 1.099) and than the same slow
   weights without the fast step (1.541 / 0.976). The paper's advantage of fast & slow learning over backprop did
   not reproduce at this scale; the slow test asserts the gap to document it.
6. Training on the adapted loss alone (``adapted_weight = 1``, seed 0): the slow weights drift to a point that is
   good only after the fast step (held-out query MSE 20.7 before it, worse than a constant prediction, 2.17
   after), worse than the default mix (1.34 after); this is why the procedure's default mixes both losses.

The training runs are float-sensitive: the same config measured in a separate script on one device (no simulated
8-device XLA flags) gave 1.547 -> 1.299 and 1.058 -> 1.123 at config scale, so thresholds keep wide margins.
Test times (2-core machine under a load of ~10): the default test ~90 s wall (36 s CPU); the slow config-scale
seeds 250 s and 360 s, the adapted-loss run 300 s.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import memory
from zoo.recipes.procedures import synthetic_gradients as sgr
from zoo.recipes import train
from zoo.recipes.datasets import sinusoid

SHOTS = QUERIES = 10


def _data(seed, n_test):
  splits = sinusoid.sinusoid_episodes(shots=SHOTS, queries=QUERIES, n_train=20000, n_test=n_test, seed=seed).splits
  return splits["train"], splits["test"]


def _model(features, slots):
  return memory.NeuralMemoryNetwork(1, features=features, num_slots=slots, slot_size=slots)


def _run(mesh, *, seed, steps, batch_size, features, slots, fast_lr, evals, n_test, backprop, adapted_weight=0.5,
         ablation=False):
  """Trains with fast & slow learning (and by plain backprop); returns held-out means over the test episodes.

  ``evals``: ``[(fast steps, fast lr)]`` at evaluation. Returns ``{('trained' | 'random', steps, lr): metrics}``
  (metrics: ``loss`` after the fast steps, ``loss_before``, ``sg_cosine``, ``update_cosine``), ``'backprop'`` and,
  with ``ablation``, ``('ablation', steps, lr)``: the same procedure trained with ``fast_gradient='untrained'`` (the
  fast steps follow a random module that never learns), evaluated the same way.
  """
  train_data, test_data = _data(seed, n_test)
  model = _model(features, slots)
  task = sgr.EpisodeRegression()
  kw = dict(fast_steps=1, fast_lr=fast_lr, adapted_weight=adapted_weight)
  fs = train.fit(model, train_data, task=task, optimizer=optax.adam(1e-3), steps=steps, batch_size=batch_size,
                 procedure=sgr.SyntheticGradients, procedure_kwargs=kw, mesh=mesh, seed=seed)
  proc = sgr.SyntheticGradients(model=model, task=task, optimizer=optax.adam(1e-3), **kw)
  test = {k: jnp.asarray(v) for k, v in test_data.items()}
  # A random module: DNI's architecture with a non-zero (LeCun normal) output layer, untrained.
  states = [("trained", fs.state)]
  random_sg = memory.SyntheticGradient(model.state_size, hidden=proc.sg_hidden, zero_init=False).init(
      jax.random.key(seed + 1000), jnp.zeros((1, SHOTS + QUERIES, model.state_size)), test["x"][:1])["params"]
  if not ablation:  # the ablation run has its own untrained module; otherwise one is swapped in here
    states.append(("random", fs.state.replace(params={**fs.state.params, "sg": nn.unbox(random_sg)})))
  out = {}
  for fast_steps, lr in evals:
    evaluate = jax.jit(dataclasses.replace(proc, eval_fast_steps=fast_steps, fast_lr=lr).evaluate)
    for name, state in states:
      out[name, fast_steps, lr] = {k: float(np.mean(v)) for k, v in evaluate(state, test).items()}
  if ablation:
    abl_kw = dict(kw, fast_gradient="untrained")
    abl = train.fit(model, train_data, task=task, optimizer=optax.adam(1e-3), steps=steps, batch_size=batch_size,
                    procedure=sgr.SyntheticGradients, procedure_kwargs=abl_kw, mesh=mesh, seed=seed)
    abl_proc = sgr.SyntheticGradients(model=model, task=task, optimizer=optax.adam(1e-3), **abl_kw)
    for fast_steps, lr in evals:
      evaluate = jax.jit(dataclasses.replace(abl_proc, eval_fast_steps=fast_steps, fast_lr=lr).evaluate)
      out["ablation", fast_steps, lr] = {k: float(np.mean(v)) for k, v in evaluate(abl.state, test).items()}
  if backprop:
    bp = train.fit(model, train_data, task=task, optimizer=optax.adam(1e-3), steps=steps, batch_size=batch_size,
                   mesh=mesh, seed=seed, eval_data=test_data)
    out["backprop"] = bp.metrics["loss"]
  return out


def _report(tag, out):
  for key, m in out.items():
    print(f"{tag} {key}: " + (f"{m:.4f}" if isinstance(m, float) else ", ".join(f"{k} {v:.4f}" for k, v in m.items())))


# Default: a small network after 250 slow steps (the mechanism; the network is still far from solving the task).
SMALL = dict(steps=250, batch_size=16, features=16, slots=8, fast_lr=0.1, n_test=128)
SMALL_EVAL = (5, 0.3)


def test_synthetic_gradients_against_untrained_module_and_backprop(seed, single_device_mesh):
  """Full method vs the ablation (``fast_gradient='untrained'``: the same procedure, its fast steps following a
  random module that never learns) vs the baseline (plain backprop of the same network, same steps)."""
  out = _run(single_device_mesh, seed=seed, evals=[SMALL_EVAL], backprop=True, ablation=True, **SMALL)
  _report(f"small seed {seed}", out)
  trained, ablation = out[("trained", *SMALL_EVAL)], out[("ablation", *SMALL_EVAL)]
  # 1. The module predicts the true dL/ds_t, the untrained one does not ...
  assert trained["sg_cosine"] >= 0.3 and abs(ablation["sg_cosine"]) <= 0.1
  # 2. ... the fast update it makes follows the true dL/dtheta, the untrained module's is uncorrelated with it ...
  assert trained["update_cosine"] >= 0.15 and abs(ablation["update_cosine"]) <= 0.1
  # 3. ... fast steps along it lower the held-out query loss of the same slow weights (a little: the network is
  # still near the constant predictor here), and end below the ablation's fast-adapted network.
  assert trained["loss"] < trained["loss_before"]
  assert trained["loss"] < ablation["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_config_scale_against_backprop(seed, single_device_mesh):
  """The config's setting (``synthetic_gradients_sinusoid.py``): 32-unit controller, 16 x 16 memory, 2000 steps."""
  out = _run(single_device_mesh, seed=seed, steps=2000, batch_size=32, features=32, slots=16, fast_lr=0.03,
             n_test=200, evals=[(1, 0.03), (5, 0.03)], backprop=True)
  _report(f"config seed {seed}", out)
  one, random = out[("trained", 1, 0.03)], out[("random", 1, 0.03)]
  # The slow network learns the task (a constant prediction scores E[A^2] / 2 ~ 4.2) ...
  assert one["loss_before"] < 2.0
  # ... the module predicts the true gradient better than chance, and its update follows dL/dtheta ...
  assert one["sg_cosine"] >= 0.15 and abs(random["sg_cosine"]) <= 0.1
  assert one["update_cosine"] >= 0.2
  # ... a fast step along it does better than one along a random module ...
  assert one["loss"] < random["loss"]
  # ... but the paper's advantage does not reproduce here: plain backprop of the same network for the same steps
  # is better than the fast-adapted one (documents the gap; see the module docstring).
  assert out["backprop"] < one["loss"]


@pytest.mark.slow
def test_adapted_loss_alone_lets_the_slow_weights_drift(single_device_mesh):
  """Why the procedure's default mixes the losses before and after the fast step (``adapted_weight = 0.5``)."""
  out = _run(single_device_mesh, seed=0, steps=2000, batch_size=32, features=32, slots=16, fast_lr=0.03,
             n_test=200, evals=[(1, 0.03)], backprop=False, adapted_weight=1.0)
  _report("adapted_weight=1", out)
  one = out[("trained", 1, 0.03)]
  # The slow weights end up worse than a constant prediction (~4.2) without the fast step, good only after it.
  assert one["loss_before"] > 2 * 4.2 and one["loss"] < 0.25 * one["loss_before"]
