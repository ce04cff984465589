"""AF-KAN (Ta & Tran, 2025, arXiv 2503.06112) and the KANs it builds on: the effects, on small real and planted data.

(a) ReLU-KAN's basis R_i is supported on [s_i, e_i] and peaks at 1 at the midpoint (the construction AF-KAN
    generalises).
(b) On exp(sin(pi x) + y^2), a [2, 5, 1] B-spline KAN (150 parameters) reaches RMSE < 2e-2, far below an MLP
    [2, 10, 10, 1] (tanh, 151 parameters) trained as long (the issue's "a KAN beats an MLP of equal parameter
    count"), and refining its grid 5 -> 20 with ``zoo.kan.update_grid`` then training on lowers the RMSE against
    the G = 5 KAN trained as long (slow).
(c) Digits, the paper's claim "AF-KAN beats ReLU-KAN at (nearly) equal parameter count", tested against its
    mechanism: in the same budget (350 steps, Adam 1e-3, batch 64, seed ``ZOO_TEST_SEED``) it trains

    * AF-KAN [64, 32, 10] (silu, quad1, global attention, LayerNorm, trainable phases as the reference's
      ``train_ab=True``; 2612 parameters);
    * the ablation ``AFKAN(af_basis=False)``: the activation-function basis replaced by the identity, every
      ``f_k(x) = x``, all else equal (2580);
    * ReLU-KAN matched in parameters by basis count, not by width: [64, 16, 10] with G = 1, k = 1 (K = 2; 2394);
      the earlier test's [64, 4, 10] ReLU-KAN (K = 8) had a 4-unit bottleneck and measured that, not the basis;
    * ReLU-KAN at AF-KAN's width [64, 32, 10] (K = 8; 18986 parameters, 7.3x).

Measured (test accuracy, ``ZOO_TEST_SEED`` = 0 / 1 / 2):

==================================  =====  =====  =====
model                               0      1      2
==================================  =====  =====  =====
AF-KAN (trainable phases)           0.942  0.880  0.942
AF-KAN, fixed phases (not in test)  0.909  0.891  0.909
ablation: identity basis            0.967  0.964  0.971
ReLU-KAN [64, 16, 10], K = 2        0.940  0.949  0.927
ReLU-KAN [64, 32, 10], K = 8        0.973  0.964  0.969
==================================  =====  =====  =====

Not reproduced: the basis does not help on digits. The identity-basis ablation beats the full AF-KAN on every seed
(+0.025 / +0.084 / +0.029), so what makes AF-KAN work here is the architecture around the basis (the per-input
attention, LayerNorm, activation and one ``Linear(i -> o)``: with ``f_k(x) = x`` it is an MLP with input gating).
Against a fair ReLU-KAN, AF-KAN ties at equal parameters (+0.002 / -0.069 / +0.015: no consistent win, so nothing is
asserted about it) and loses at equal width, where ReLU-KAN has 7.3x the parameters (-0.031 / -0.084 / -0.027). The
earlier "AF-KAN beats ReLU-KAN by 10 points" came from the ReLU-KAN's 4-unit hidden layer. Training the phases
(the reference's default, now the default here) is worth +0.033 on seeds 0 and 2 and -0.011 on seed 1 at 350 steps.

Asserted (what holds, with margin): the identity ablation >= AF-KAN + 0.01 (the basis changes the result, in the
direction opposite to the paper's); ReLU-KAN at equal width >= AF-KAN + 0.01; AF-KAN > 0.85; the parameter counts
(AF-KAN within 10% of the matched ReLU-KAN, >= 5x fewer than the equal-width one). Mutation check: replacing the
AF basis line in ``AFKANLayer`` by the identity makes the full model the ablation (equal accuracy) and the first
assertion fails.

(b) measured (Adam 1e-2, 700 steps at G = 5, then 350 more at G = 20 or at G = 5; RMSE, seeds 0 / 1 / 2): G = 5
0.0103 / 0.0090 / 0.0073; G = 20 0.0019 / 0.0065 / 0.0029 (5.4x / 1.4x / 2.5x lower); MLP (1050 steps) 0.117 /
0.105 / 0.127. The refit right after ``update_grid`` keeps the function (0.0158 vs 0.0159 before, seed 0). Not
reproduced: the KAN paper's ">= 2x lower RMSE after refining the grid 5 -> 20" holds for seeds 0 and 2 but not seed
1 (1.4x), so the test asserts >= 1.2x.

The slow digits test (1000 steps, three seeds; its docstring has the numbers): AF-KAN 0.937 mean, identity ablation
0.974, parameter-matched ReLU-KAN 0.966, MLP 0.967, fixed phases 0.924: at 1000 steps even the parameter-matched
ReLU-KAN is ahead of AF-KAN.
"""

import dataclasses

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


STEPS = 700


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores
def test_kan_fits_exp_sin_and_grid_refinement_lowers_the_error(single_device_mesh, seed):
  train_data = functions.sample("exp_sin", 1000, seed)
  test_data = functions.sample("exp_sin", 1000, seed + 99)
  common = dict(task="regression", optimizer=optax.adam(1e-2), batch_size=128, mesh=single_device_mesh, seed=seed)
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


def _models():
  return {"afkan": kan.AFKAN((32, 10), impl="xla"),
          "ablation": kan.AFKAN((32, 10), af_basis=False, impl="xla"),
          "relukan_matched": kan.ReLUKAN((16, 10), grid_size=1, order=1, impl="xla"),
          "relukan_width": kan.ReLUKAN((32, 10), impl="xla")}


def test_afkan_basis_against_its_identity_ablation_and_fair_relukans_on_digits(digits, single_device_mesh, seed):
  results = {name: _digits_accuracy(m, digits, seed, 350, single_device_mesh) for name, m in _models().items()}
  acc = {k: v[0] for k, v in results.items()}
  n = {k: v[1] for k, v in results.items()}
  print({k: f"{acc[k]:.4f} ({n[k]} params)" for k in acc})
  assert abs(n["afkan"] - n["relukan_matched"]) / n["relukan_matched"] < 0.1
  assert n["relukan_width"] >= 5 * n["afkan"]
  assert acc["afkan"] > 0.85
  # What holds here (the paper's direction does not): the AF basis changes the result, and the identity map in its
  # place does better; ReLU-KAN at AF-KAN's width (7x the parameters) is ahead too.
  assert acc["ablation"] >= acc["afkan"] + 0.01
  assert acc["relukan_width"] >= acc["afkan"] + 0.01


@pytest.mark.slow
def test_afkan_longer_three_seeds(digits, single_device_mesh, seed):
  """1000 steps, seeds ``seed + 0, 1, 2``: AF-KAN (trainable phases), AF-KAN with fixed phases, the identity-basis
  ablation, the parameter-matched ReLU-KAN and an MLP [64, 32, 10].

  Measured (``ZOO_TEST_SEED`` = 0, seeds 0 / 1 / 2, mean): AF-KAN 0.958 / 0.898 / 0.956 (0.937); fixed phases 0.924 /
  0.927 / 0.922 (0.924); identity ablation 0.978 / 0.967 / 0.978 (0.974); ReLU-KAN [64, 16, 10], K = 2 (2394
  parameters) 0.960 / 0.971 / 0.967 (0.966); MLP 0.971 / 0.969 / 0.962 (0.967). Trained longer, the parameter-matched
  ReLU-KAN is ahead of AF-KAN (the paper's claim reversed), and so are the ablation and the MLP. About 25 min wall
  (~165 s CPU) with the grid-refinement test on the loaded build machine.
  """
  models = {"afkan": kan.AFKAN((32, 10), impl="xla"),
            "fixed_phases": kan.AFKAN((32, 10), train_phases=False, impl="xla"),
            "ablation": kan.AFKAN((32, 10), af_basis=False, impl="xla"),
            "relukan_matched": kan.ReLUKAN((16, 10), grid_size=1, order=1, impl="xla"),
            "mlp": core.MLP(features=(32, 10))}
  accs = {k: [_digits_accuracy(m, digits, seed + j, 1000, single_device_mesh)[0] for j in range(3)]
          for k, m in models.items()}
  means = {k: float(np.mean(v)) for k, v in accs.items()}
  print(accs, means)
  assert means["afkan"] > 0.9
  assert means["ablation"] >= means["afkan"]           # the basis does not help on digits (see the module docstring)
  assert means["mlp"] >= means["afkan"]                # nor does AF-KAN beat the MLP, the paper's other claim
  assert means["relukan_matched"] >= means["afkan"]    # nor a ReLU-KAN of its parameter count, trained this long
