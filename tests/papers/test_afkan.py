"""AF-KAN (Ta & Tran, 2025, arXiv 2503.06112) and the KANs it builds on: the effects, on small real and planted data.

(a) ReLU-KAN's basis R_i is supported on [s_i, e_i] and peaks at 1 at the midpoint (the construction AF-KAN
    generalises).
(b) On exp(sin(pi x) + y^2), a [2, 5, 1] B-spline KAN (150 parameters) reaches RMSE < 2e-2, far below an MLP
    [2, 10, 10, 1] (tanh, 151 parameters) trained as long (the issue's "a KAN beats an MLP of equal parameter
    count"), and refining its grid 5 -> 20 with ``zoo.kan.update_grid`` then training on lowers the RMSE against
    the G = 5 KAN trained as long.
(c) On the bundled digits at (nearly) equal parameter count, AF-KAN beats ReLU-KAN (3-seed mean), as the paper says.

Measured here (CPU, Adam, batch 64/128; thresholds below leave margin):

* (b) Adam 1e-2, 700 steps at G = 5, then 350 more at G = 20 or at G = 5 (RMSE, seeds 0 / 1 / 2): G = 5 0.0103 /
  0.0090 / 0.0073; G = 20 0.0019 / 0.0065 / 0.0029 (5.4x / 1.4x / 2.5x lower); MLP (1050 steps) 0.117 / 0.105 / 0.127.
  The refit right after ``update_grid`` keeps the function (0.0158 vs 0.0159 before, seed 0).
* (c) 1000 steps, lr 1e-3: AF-KAN [64, 32, 10] (2580 parameters) 0.924 / 0.927 / 0.922, ReLU-KAN [64, 4, 10] (2382)
  0.798 / 0.853 / 0.822, MLP [64, 32, 10] (2410) 0.971 / 0.969 / 0.962 (the slow test; not re-run after the
  last changes). Default test, 350 steps (seeds 0 / 1 / 2): AF-KAN 0.909 / 0.891 / 0.909, ReLU-KAN 0.709 / 0.831 / 0.756.

Not reproduced at this scale: the KAN paper's ">= 2x lower RMSE after refining the grid 5 -> 20" holds for seeds 0
and 2 but not seed 1 (1.4x; with a cosine learning-rate decay 3.7x / 1.5x / 1.8x), so the test asserts >= 1.2x.
And the paper's "AF-KAN significantly outperforms MLP" at the same parameter count; here
the MLP is ahead by ~4 points (the slow test asserts only what holds, AF-KAN within 8 points of the MLP).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import kan
from zoo.kernels import kan_basis
from zoo.recipes.procedures import backprop
from zoo.recipes import train
from zoo.recipes.datasets import functions


@dataclasses.dataclass(frozen=True)
class _FromVariables(backprop.Backprop):
  """Backprop that starts from given variables (here: a KAN after ``update_grid``)."""
  initial: object = None

  def init(self, rng, batch):
    state = super().init(rng, batch)
    params = jax.tree.map(jnp.asarray, self.initial["params"])
    rest = {k: v for k, v in self.initial.items() if k != "params"}
    return state.replace(params=params, opt_state=self.optimizer.init(params), model_state=rest)


def test_relu_kan_basis_is_a_bump_on_its_interval():
  g, k = 5, 3
  basis = kan_basis.Basis.relu(g, k)
  grid = kan_basis.make_grid(basis, 1, lo=0.0, hi=1.0)
  s = (np.arange(g + k) - k) / g
  e = s + (k + 1) / g
  x = np.linspace(-1.0, 2.0, 601, dtype=np.float32)
  r = np.asarray(kan_basis.basis_values(jnp.asarray(x[:, None]), grid, basis))[:, 0]      # [x, K]
  outside = (x[:, None] <= s) | (x[:, None] >= e)
  inside = (x[:, None] > s + 1e-2) & (x[:, None] < e - 1e-2)
  assert np.all(r[outside] == 0.0) and np.all(r[inside] > 0)
  mid = np.asarray(kan_basis.basis_values(jnp.asarray(((s + e) / 2)[:, None], jnp.float32), grid, basis))[:, 0]
  np.testing.assert_allclose(np.diag(mid), 1.0, atol=1e-5)
  assert np.all(r <= 1.0 + 1e-5)


def _rmse(model, variables, data):
  pred = model.apply(variables, data["x"])
  return float(jnp.sqrt(jnp.mean((pred - data["y"]) ** 2)))


STEPS = int(os.environ.get("ZOO_AFKAN_STEPS", 700))
SEED = int(os.environ.get("ZOO_AFKAN_SEED", 0))


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores
def test_kan_fits_exp_sin_and_grid_refinement_lowers_the_error(single_device_mesh):
  train_data = functions.sample("exp_sin", 1000, SEED)
  test_data = functions.sample("exp_sin", 1000, SEED + 99)
  common = dict(task="regression", optimizer=optax.adam(1e-2), batch_size=128, mesh=single_device_mesh, seed=SEED)
  coarse = kan.KAN((5, 1), impl="xla")
  first = train.fit(coarse, train_data, steps=STEPS, **common)
  rmse_coarse = _rmse(coarse, first.variables, test_data)
  fine, fine_vars = kan.update_grid(coarse, first.variables, jnp.asarray(train_data["x"]), grid_size=20)
  assert fine.grid_size == 20
  rmse_refit = _rmse(fine, fine_vars, test_data)
  refined = train.fit(fine, train_data, steps=STEPS // 2, procedure=_FromVariables,
                      procedure_kwargs={"initial": fine_vars}, **common)
  rmse_fine = _rmse(fine, refined.variables, test_data)
  same_budget = train.fit(coarse, train_data, steps=STEPS // 2, procedure=_FromVariables,
                          procedure_kwargs={"initial": first.variables}, **common)
  rmse_coarse_longer = _rmse(coarse, same_budget.variables, test_data)
  # An MLP with the KAN's parameter count (KAN [2, 5, 1]: 150; MLP [2, 10, 10, 1] tanh: 151), trained as long.
  mlp = core.MLP(features=(10, 10, 1), activation="tanh")
  baseline = train.fit(mlp, train_data, steps=STEPS + STEPS // 2, **common)
  rmse_mlp = _rmse(mlp, baseline.variables, test_data)
  n_kan, n_mlp = (sum(np.size(p) for p in jax.tree.leaves(v["params"])) for v in (first.variables, baseline.variables))
  print(f"RMSE G=5: {rmse_coarse:.4f} (1.5x the steps: {rmse_coarse_longer:.4f}); refit at G=20: {rmse_refit:.4f}; "
        f"G=20 trained: {rmse_fine:.4f} ({rmse_coarse_longer / rmse_fine:.2f}x lower); MLP ({n_mlp} vs {n_kan} "
        f"parameters): {rmse_mlp:.4f}")
  assert abs(n_kan - n_mlp) <= 2
  assert rmse_coarse_longer < 2e-2                 # the G = 5 KAN fits the formula
  assert rmse_coarse_longer * 5.0 < rmse_mlp       # far better than an MLP of its size
  assert rmse_refit < 1.5 * rmse_coarse            # the refit at G = 20 keeps the function
  assert rmse_fine * 1.2 <= rmse_coarse_longer     # and the finer grid then fits it better (2x: seed-dependent)


def _digits_accuracy(model, digits, seed, steps, mesh, lr=1e-3):
  train_data, test_data = digits
  result = train.fit(model, train_data, task="classification", optimizer=optax.adam(lr), steps=steps, batch_size=64,
                     eval_data=test_data, mesh=mesh, seed=seed)
  params = sum(np.size(p) for p in jax.tree.leaves(result.variables["params"]))
  return result.metrics["accuracy"], params


def test_afkan_beats_relukan_on_digits_at_equal_parameters(digits, single_device_mesh):
  # One seed by default (each fit compiles anew); the 3-seed mean is the slow test below.
  a, n_af = _digits_accuracy(kan.AFKAN((32, 10), impl="xla"), digits, SEED, STEPS // 2, single_device_mesh)
  r, n_relu = _digits_accuracy(kan.ReLUKAN((4, 10), impl="xla"), digits, SEED, STEPS // 2, single_device_mesh)
  print(f"AF-KAN ({n_af} params): {a:.4f}, ReLU-KAN ({n_relu} params): {r:.4f}")
  assert abs(n_af - n_relu) / n_relu < 0.1
  assert a >= r + 0.02
  assert a > 0.85


@pytest.mark.slow
def test_afkan_against_relukan_and_mlp_longer(digits, single_device_mesh):
  accs = {"afkan": [], "relukan": [], "mlp": []}
  for seed in range(3):
    accs["afkan"].append(_digits_accuracy(kan.AFKAN((32, 10), impl="xla"), digits, seed, 1000,
                                          single_device_mesh)[0])
    accs["relukan"].append(_digits_accuracy(kan.ReLUKAN((4, 10), impl="xla"), digits, seed, 1000,
                                            single_device_mesh)[0])
    accs["mlp"].append(_digits_accuracy(core.MLP(features=(32, 10)), digits, seed, 1000, single_device_mesh)[0])
  means = {k: float(np.mean(v)) for k, v in accs.items()}
  print(accs, means)
  assert means["afkan"] >= means["relukan"] + 0.05
  assert means["afkan"] >= means["mlp"] - 0.08   # the paper's win over the MLP does not reproduce here
