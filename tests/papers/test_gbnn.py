"""Effect test: "Sequential Training of Neural Networks with Gradient Boosting" (Emami & Martinez-Munoz, 2019,
arXiv:1909.12098), ``zoo.recipes.procedures.boosting`` on ``zoo.boosted.BoostedNet``.

Setting: the bundled breast-cancer (398 train / 171 test, 2 classes) and diabetes (309 / 133, regression, target
standardised) sets; one hidden layer of T = 20 logistic units grown one unit per stage (J = 1, the paper's
default), shrinkage 0.1, each stage fitted to the pseudo-residuals by 50 full-batch Adam steps (lr 1e-2) on a
Bernoulli(0.5) subsample of the training set, the Newton step over the whole training set. Baseline: the same
network (same init, 20 logistic units) trained end to end by full-batch Adam; since it overfits, it gets a small
grid (lr 1e-2 for 300 and 1000 steps, lr 3e-3 for 1000 steps) and the *best test score of the grid* counts, an
optimistic baseline.

Claims checked (PAPERS.md, the paper's Sections 4-5):

1. Competitive with Adam-trained backprop: breast cancer accuracy >= best backprop - 0.02; diabetes test MSE <=
   1.05 x best backprop (PAPERS.md: "within 5%").
2. The training loss of the boosted network is non-increasing in t (the staged training loss of the assembled
   network with the stages after t switched off): exact for the squared loss (the line search is exact on the full
   training set); measured for softmax cross-entropy with the reference's diagonal Newton step.
3. Switching off the units trained last degrades the network gently, and much less than switching off the same
   number of units of the backprop-trained network (the paper's claim; it only says "without a significant
   reduction"): with half of the units off, GBNN keeps >= final - 0.03 accuracy (breast cancer) and MSE <= 1.3 x
   final (diabetes); the backprop net's corresponding loss is worse than GBNN's.

Measured (seed 0; the slow ``test_competitive_over_seeds`` repeats 1 and 2):

  breast cancer: GBNN accuracy 0.965, with the last 10 of 20 units off 0.965; backprop grid 0.953 / 0.953 / 0.953,
                 the best with its last 10 units off 0.848. Staged training cross-entropy 0.660 -> 0.084, monotone.
  diabetes:      GBNN test MSE 0.478 (RMSE 54.8 in the target's units), with 10 units off 0.536; backprop grid
                 0.528 (lr 1e-2, 300 steps) / 0.861 / 0.572 (the longer runs overfit), the best with 10 units off
                 0.715. Staged training MSE 1.000 -> 0.495, monotone.

Not reproduced at this scale: on the 10-class digits (1347 train, 64 features) GBNN with T = 30 single units
reaches only 0.81-0.89 test accuracy against 0.97 for backprop of the same 30-unit net (``test_digits_gap``, slow,
documents it); one logistic unit per stage carries too little for 10 output logits in 30 stages (the paper uses up
to 200+ units and tunes eta and J).
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


def _load(name):
  sources, info = data.load(name)
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
  """Documents what did not reproduce: 10-class digits with 30 single-unit stages stays well below backprop."""
  train_data, test_data, _ = _load("digits")
  flat = lambda d: {"x": d["image"].reshape(len(d["image"]), -1), "label": d["label"]}
  train_data, test_data = flat(train_data), flat(test_data)
  task = tasks.Classification(input_key="x")
  _, gb = _gbnn(train_data, test_data, task, 10, single_device_mesh, num_stages=30)
  _, bp = _backprop(train_data, test_data, task, 10, single_device_mesh, 1e-2, 300, num_units=30)
  print(f"digits: GBNN {gb.metrics['accuracy']:.4f}, backprop {bp.metrics['accuracy']:.4f}")
  assert gb.metrics["accuracy"] > 0.7  # it learns ...
  assert bp.metrics["accuracy"] - gb.metrics["accuracy"] > 0.03  # ... but stays clearly below backprop here


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
