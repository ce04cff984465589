"""Effect test: "Sequential Training of Neural Networks with Gradient Boosting" (Emami & Martinez-Munoz, 2019,
arXiv:1909.12098), ``zoo.recipes.procedures.boosting`` on ``zoo.boosted.BoostedNet``.

Every stage is fitted by the procedure's default solver, ``optax.lbfgs`` (the paper's), full batch, on one
Bernoulli(0.5) subsample drawn per stage (the paper's), then the Newton step on the whole training set.

Default test (``test_stages_fit_the_residuals_friedman``, seed offset ``ZOO_TEST_SEED``): Friedman #1
(``function_fitting`` ``friedman1``: 5 inputs, 1000 train / 1000 test points, target variance 0.97), T = 10
single logistic units (J = 1), the reference's shrinkage 1.0, 100 L-BFGS steps per stage. The mechanism is that a
stage fits the pseudo-residuals of the ensemble so far; the ablation is the same procedure with
``fit_residuals=False`` (every stage fits the residuals of the constant F_0); the baseline is the same 10-unit
network trained end to end by full-batch Adam (lr 1e-2) for 1000 and 3000 steps. Measured test MSE, seeds 0 / 1 / 2:

  GBNN                        0.0385 / 0.0562 / 0.0242  (staged training MSE falls monotonically, 0.97 -> 0.02-0.05)
  not fitted to residuals     0.2359 / 0.2309 / 0.2299  (GBNN / ablation = 0.16 / 0.24 / 0.11; asserted < 0.6)
  backprop, 1000 steps        0.0602 / 0.0739 / 0.1729  (GBNN beats it at every seed)
  backprop, 3000 steps        0.0068 / 0.0104 / 0.0198  (better than GBNN: asserted, documents the gap)

Mutation check: making the stage fit the residuals of F_0 in ``GradientBoosting.step`` (``units=previous`` ->
all units off) fails ``gb_mse < 0.6 * abl_mse`` (numbers in the note of this change). CPU time of the default test
26-39 s (user, 2-core machine under heavy load; compiling the L-BFGS step twice is ~12 s of it).

Slow tests (the paper's "competitive with backprop" on the bundled tabular sets): breast cancer (398 train / 171
test, 2 classes) and diabetes (309 / 133, regression, target standardised); T = 20 units grown one per stage,
shrinkage 0.1, 50 L-BFGS steps per stage. Baseline: the same network (same init, 20 logistic units) trained end
to end by full-batch Adam; since it overfits, it gets a small grid (lr 1e-2 for 300 and 1000 steps, lr 3e-3 for 1000
steps) and the *best test score of the grid* counts, an optimistic baseline. Claims:

1. Competitive with Adam-trained backprop: breast cancer accuracy >= best backprop - 0.02; diabetes test MSE <=
   1.05 x best backprop (PAPERS.md: "within 5%").
2. The training loss of the boosted network is non-increasing in t (exact for the squared loss; measured for
   softmax cross-entropy with the reference's diagonal Newton step).
3. Switching off the units trained last degrades the network gently, and much less than switching off the same
   number of units of the backprop-trained network: with half of the units off, GBNN keeps >= final - 0.03
   accuracy (breast cancer) and MSE <= 1.3 x final (diabetes); the backprop net's corresponding loss is worse.

Measured before the switch to L-BFGS (50 Adam steps per stage, a fresh subsample per step), seed 0: breast cancer
GBNN 0.965 (half the units 0.965) vs backprop grid 0.953; diabetes GBNN MSE 0.478 vs backprop 0.528 / 0.861 /
0.572. With L-BFGS (200 steps per stage, the configs): breast cancer 0.947, diabetes 0.478 (seed 0). The slow
tests' L-BFGS numbers are in the note of this change.

Digits (10 classes, 1347 train, 64 features, T = 30 single units, slow ``test_digits_gap``, seed 0): with Adam
stages GBNN reached 0.811 vs backprop 0.976 of the same 30-unit net; with the paper's L-BFGS stages (50 steps each)
it reaches 0.951 vs 0.976, within 0.03. L-BFGS slow runs (seed 0 unless noted): diabetes GBNN MSE 0.480 vs the
backprop grid 0.528 / 0.861 / 0.572; breast cancer seeds 1 / 2 GBNN 0.959 / 0.959 vs the best of the backprop grid
0.971 / 0.959; diabetes seeds 1 / 2 0.482 / 0.479 vs best backprop 0.609 / 0.520.
"""

import jax
import numpy as np
import optax
import pytest

from zoo import boosted
from zoo.recipes.procedures import boosting
from zoo.recipes import data
from zoo.recipes import tasks
from zoo.recipes import train

T = 20
STAGE_STEPS = 50
GBNN = dict(shrinkage=0.1, stage_steps=STAGE_STEPS, estimate_steps=1, subsample=0.5)
BACKPROP_GRID = [(1e-2, 300), (1e-2, 1000), (3e-3, 1000)]
# The default test: Friedman #1, 10 single-unit stages, the reference's shrinkage 1.0, 100 L-BFGS steps per stage.
FRIEDMAN_T = 10
FRIEDMAN = dict(shrinkage=1.0, stage_steps=100, estimate_steps=1, subsample=0.5)


def _load(name, **kwargs):
  sources, info = data.load(name, **kwargs)
  return sources["train"].arrays, sources["test"].arrays, info


def _gbnn(train_data, test_data, task, outputs, mesh, seed=0, num_stages=T, stage_units=1, **kw):
  model = boosted.BoostedNet(outputs, num_stages=num_stages, stage_units=stage_units)
  kw = {**GBNN, **kw}
  steps = boosting.boosting_schedule(num_stages, kw["stage_steps"], kw["estimate_steps"])[-1].start
  n = len(next(iter(train_data.values())))
  result = train.fit(model, train_data, task=task, optimizer=optax.adam(1e-2), steps=steps, batch_size=n,
                     eval_data=test_data, procedure=boosting.GradientBoosting, procedure_kwargs=kw, mesh=mesh,
                     seed=seed)
  return model, result


def _backprop(train_data, test_data, task, outputs, mesh, lr, steps, seed=0, num_units=T):
  model = boosted.BoostedNet(outputs, num_stages=num_units)
  n = len(next(iter(train_data.values())))
  return model, train.fit(model, train_data, task=task, optimizer=optax.adam(lr), steps=steps, batch_size=n,
                          eval_data=test_data, mesh=mesh, seed=seed)


def _first_units(model, variables, n):
  """The network with only its first ``n`` hidden units, as a plain MLP keeps its bias (backprop's case)."""
  mlp, mlp_vars = boosted.to_single_network(model, variables)
  kernel = mlp_vars["params"]["dense_1"]["kernel"]
  mlp_vars["params"]["dense_1"]["kernel"] = kernel * (np.arange(kernel.shape[0]) < n)[:, None]
  return mlp, mlp_vars


def _accuracy(logits, labels):
  return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def _mse(pred, y):
  return float(np.mean((np.asarray(pred) - y) ** 2))


def test_stages_fit_the_residuals_friedman(single_device_mesh, seed):
  """The mechanism: each stage fits the pseudo-residuals of the ensemble so far. Ablation: the same procedure with
  ``fit_residuals=False`` (every stage fits the residuals of F_0); baseline: the same 10-unit net by backprop."""
  train_data, test_data, _ = _load("function_fitting", formula="friedman1")
  task = tasks.Regression()
  model, gb = _gbnn(train_data, test_data, task, 1, single_device_mesh, seed=seed, num_stages=FRIEDMAN_T,
                    **FRIEDMAN)
  _, ablation = _gbnn(train_data, test_data, task, 1, single_device_mesh, seed=seed, num_stages=FRIEDMAN_T,
                      fit_residuals=False, **FRIEDMAN)
  bp = [_backprop(train_data, test_data, task, 1, single_device_mesh, 1e-2, steps, seed=seed,
                   num_units=FRIEDMAN_T)[1].metrics["loss"] for steps in (1000, 3000)]
  xt, yt = train_data["x"], train_data["y"]
  staged = [_mse(model.apply(gb.variables, xt, units=t), yt) for t in range(FRIEDMAN_T + 1)]
  gb_mse, abl_mse = gb.metrics["loss"], ablation.metrics["loss"]
  print(f"friedman1 seed {seed}: test MSE GBNN {gb_mse:.4f}, not fitted to residuals {abl_mse:.4f}, backprop "
        f"(1000, 3000 steps) {np.round(bp, 4).tolist()} (target variance ~0.97); staged train MSE "
        f"{np.round(staged, 4).tolist()}")
  # Exact line search on the full training set: the staged training loss can only fall.
  assert all(b <= a + 1e-6 for a, b in zip(staged, staged[1:])), staged
  # Boosting: stages fitted to the residuals reach far below stages fitted to the targets.
  assert gb_mse < 0.6 * abl_mse
  # Not reproduced on this function: "competitive with backprop" (it holds on the bundled tabular sets, the slow
  # tests). 10 greedy single-unit stages beat 1000 Adam steps of the same 10-unit network at every calibrated
  # seed, but backprop trained 3000 steps is better (measured 0.18x, 0.19x, 0.82x GBNN's MSE at seeds 0, 1, 2).
  assert min(bp) < gb_mse


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores (L-BFGS: ~10 ms of CPU per step)
def test_classification_breast_cancer(single_device_mesh):
  train_data, test_data, _ = _load("breast_cancer")
  task = tasks.Classification(input_key="x")
  model, gb = _gbnn(train_data, test_data, task, 2, single_device_mesh)
  bp = [_backprop(train_data, test_data, task, 2, single_device_mesh, lr, steps) for lr, steps in BACKPROP_GRID]
  bp_acc = [r.metrics["accuracy"] for _, r in bp]
  gb_acc = gb.metrics["accuracy"]
  x, y = test_data["x"], test_data["label"]
  # Staged training loss (softmax CE) of the assembled network, stage by stage.
  xt, yt = train_data["x"], train_data["label"]
  staged = [float(np.mean(task.loss(model.apply(gb.variables, xt, units=t), {"label": yt}))) for t in range(T + 1)]
  half_gb = _accuracy(model.apply(gb.variables, x, units=T // 2), y)
  best_model, best = bp[int(np.argmax(bp_acc))]
  mlp, half_vars = _first_units(best_model, best.variables, T // 2)
  half_bp = _accuracy(mlp.apply(half_vars, x), y)
  print(f"breast cancer: GBNN {gb_acc:.4f} (half the units: {half_gb:.4f}); backprop grid {bp_acc} "
        f"(best with half the units: {half_bp:.4f}); staged train loss {np.round(staged, 4).tolist()}")
  assert gb_acc >= max(bp_acc) - 0.02
  assert all(b <= a + 1e-6 for a, b in zip(staged, staged[1:])), staged
  assert half_gb >= gb_acc - 0.03
  assert half_gb >= half_bp - 0.01


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores
def test_regression_diabetes(single_device_mesh):
  train_data, test_data, info = _load("diabetes")
  task = tasks.Regression()
  model, gb = _gbnn(train_data, test_data, task, 1, single_device_mesh)
  bp = [_backprop(train_data, test_data, task, 1, single_device_mesh, lr, steps) for lr, steps in BACKPROP_GRID]
  bp_mse = [r.metrics["loss"] for _, r in bp]
  gb_mse = gb.metrics["loss"]
  x, y = test_data["x"], test_data["y"]
  xt, yt = train_data["x"], train_data["y"]
  staged = [_mse(model.apply(gb.variables, xt, units=t), yt) for t in range(T + 1)]
  half_gb = _mse(model.apply(gb.variables, x, units=T // 2), y)
  best_model, best = bp[int(np.argmin(bp_mse))]
  mlp, half_vars = _first_units(best_model, best.variables, T // 2)
  half_bp = _mse(mlp.apply(half_vars, x), y)
  y_std = info.metadata["y_std"]
  print(f"diabetes: GBNN MSE {gb_mse:.4f} (RMSE {np.sqrt(gb_mse) * y_std:.1f}; half the units: {half_gb:.4f}); "
        f"backprop grid {bp_mse} (best with half the units: {half_bp:.4f}); staged train MSE "
        f"{np.round(staged, 4).tolist()}")
  assert gb_mse <= 1.05 * min(bp_mse)
  # Exact line search on the full training set: the staged training loss can only fall.
  assert all(b <= a + 1e-6 for a, b in zip(staged, staged[1:])), staged
  assert staged[-1] < 0.7 * staged[0]
  assert half_gb <= 1.3 * gb_mse
  assert half_bp > half_gb


@pytest.mark.slow
def test_digits_gap(single_device_mesh):
  """10-class digits with 30 single-unit L-BFGS stages: GBNN learns it and stays within 0.05 of backprop of the same
  30-unit net (measured 0.951 vs 0.976, seed 0; with Adam stages it was 0.811, a gap this test used to document)."""
  train_data, test_data, _ = _load("digits")
  flat = lambda d: {"x": d["image"].reshape(len(d["image"]), -1), "label": d["label"]}
  train_data, test_data = flat(train_data), flat(test_data)
  task = tasks.Classification(input_key="x")
  _, gb = _gbnn(train_data, test_data, task, 10, single_device_mesh, num_stages=30)
  _, bp = _backprop(train_data, test_data, task, 10, single_device_mesh, 1e-2, 300, num_units=30)
  print(f"digits: GBNN {gb.metrics['accuracy']:.4f}, backprop {bp.metrics['accuracy']:.4f}")
  assert gb.metrics["accuracy"] > 0.92
  assert bp.metrics["accuracy"] - gb.metrics["accuracy"] < 0.05  # a small gap remains (0.024 measured)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_competitive_over_seeds(seed, single_device_mesh):
  for name, task, outputs in [("breast_cancer", tasks.Classification(input_key="x"), 2),
                              ("diabetes", tasks.Regression(), 1)]:
    train_data, test_data, _ = _load(name)
    _, gb = _gbnn(train_data, test_data, task, outputs, single_device_mesh, seed=seed)
    bp = [_backprop(train_data, test_data, task, outputs, single_device_mesh, lr, steps, seed=seed)[1]
          for lr, steps in BACKPROP_GRID]
    key = "loss" if outputs == 1 else "accuracy"
    print(f"{name} seed {seed}: GBNN {key} {gb.metrics[key]:.4f}, backprop grid {[r.metrics[key] for r in bp]}")
    if outputs == 1:
      assert gb.metrics["loss"] <= 1.05 * min(r.metrics["loss"] for r in bp)
    else:
      assert gb.metrics["accuracy"] >= max(r.metrics["accuracy"] for r in bp) - 0.02
