"""Effect test for MgNO (He, Liu and Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid",
ICLR 2024, arXiv:2310.19809).

The paper's claim: parameterising each linear map between neurons by a multigrid V-cycle gives an operator with a
global receptive field from a few 3x3 convolutions, so a small MgNO learns elliptic solution operators far more
accurately than local networks of the same size.

Checked here (default, ~30 s of CPU):

* Poisson ``-Laplacian u = f`` on 32^2 interior nodes, zero Dirichlet boundary, ``f`` a Gaussian random field,
  ``u`` from a sparse direct solve (``recipes/datasets/pde.py``), 400 train / 100 test. MgNO (one hidden layer of
  width 8, 4 levels 32^2 -> 4^2, one smoothing step per level, the pointwise term) against (a) its ablation, the
  same MgNO with ``coarse_correction=False`` (its 4 smoothing steps on the 32^2 grid only: no restriction, no
  coarse grids, no prolongation, so a local operator of the same depth; 745 parameters, since the coarse levels'
  convolutions go with them) and (b) a 6-layer 3x3 CNN of width 12 with *more* parameters (5,461 vs 4,687); all
  trained the same way (Adam 3e-3, cosine decay, relative-L2 loss, 300 steps of batch 8, training seed
  ZOO_TEST_SEED). Measured test relative L2, offsets 0 / 1 / 2: MgNO 0.070 / 0.075 / 0.069; single grid
  0.447 / 0.438 / 0.324; CNN 0.374 / 0.383 / 0.375 (ratios MgNO/CNN 0.19 / 0.20 / 0.18, MgNO/ablation
  0.16 / 0.17 / 0.21).
  Asserted: MgNO < 0.2, MgNO <= 0.6x the CNN's error (PAPERS.md) and <= 0.4x the ablation's.
* One MgNO layer has d out(centre) / d in(corner) != 0 (a global receptive field); the CNN's is exactly 0.

Deviation: the default test's MgNO uses a per-channel constant bias instead of the paper's bias *field* (one value
per grid node and channel, 32*32*8 extra parameters), so that the parameter counts compare the operators' weights
(MgNO 4,687 vs CNN 5,461); the field bias is the model's default and is used in the slow test.

Slow (``-m slow``): Darcy flow on 32^2 with FNO's piecewise-constant coefficients, 400 train / 100 test, MgNO (the
paper's layer, field bias) against a CNN, a U-Net and a small FNO (numbers in the test's docstring). MgNO beats the
CNN (~0.18x its error) and the larger U-Net (~0.76x), but only ties with the small FNO: the paper's margin over FNO
did not reproduce at this scale (32^2, 400 samples, 600 steps). The CNN is smaller than MgNO in parameters (5,461 vs
31,654, of which 17,408 are MgNO's bias fields): a CNN of MgNO's size costs ~1.4 s per step on this CPU.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import mgno, operators
from zoo.recipes.datasets import pde

def _relative_l2(pred, y):
  pred, y = pred.reshape(pred.shape[0], -1), y.reshape(y.shape[0], -1)
  return jnp.linalg.norm(pred - y, axis=-1) / jnp.linalg.norm(y, axis=-1)


def _num_params(params):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nn.unbox(params)))


def train_and_test(model, generated, *, seed, steps, batch, learning_rate=3e-3):
  """Adam with cosine decay on the relative-L2 loss; returns (parameter count, test relative L2)."""
  x, y = jnp.asarray(generated.splits["train"]["x"]), jnp.asarray(generated.splits["train"]["y"])
  params = jax.jit(model.init)(jax.random.key(seed), x[:1])["params"]
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  rng = np.random.default_rng(seed)
  batches = jnp.asarray(np.stack([rng.choice(len(x), batch, replace=False) for _ in range(steps)]))

  def loss(p, xb, yb):
    return _relative_l2(model.apply({"params": p}, xb), yb).mean()

  @jax.jit
  def fit(params, batches):
    def step(carry, idx):
      p, s = carry
      g = jax.grad(loss)(p, x[idx], y[idx])
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(step, (params, opt.init(params)), batches)[0][0]

  params = fit(params, batches)
  xt, yt = jnp.asarray(generated.splits["test"]["x"]), jnp.asarray(generated.splits["test"]["y"])
  return _num_params(params), float(jax.jit(loss)(params, xt, yt))


@pytest.fixture(scope="module")
def poisson():
  return pde.poisson(resolution=32, boundary="dirichlet", num_train=400, num_test=100, seed=0)


def _small_mgno(**kw):
  return mgno.MgNO(**{**dict(features=8, num_layers=1, levels=4, pre_smooth=1, bias="constant", impl="xla"), **kw})


def test_mgno_beats_its_single_grid_ablation_and_a_larger_cnn_on_poisson(poisson, seed):
  # Ablation: the same MgNO with coarse_correction=False (its smoothing steps on the finest grid only, no
  # restriction or prolongation); baseline: a deeper, larger CNN. Same training for all three.
  kw = dict(seed=seed, steps=300, batch=8)
  n_mg, err_mg = train_and_test(_small_mgno(), poisson, **kw)
  n_sg, err_sg = train_and_test(_small_mgno(coarse_correction=False), poisson, **kw)
  n_cnn, err_cnn = train_and_test(operators.CNN(features=12, num_layers=6), poisson, **kw)
  errs = {"mgno": err_mg, "single grid": err_sg, "cnn": err_cnn}
  print(f"Poisson test relative L2 (seed {seed}): {errs}; parameters MgNO {n_mg}, single grid {n_sg}, CNN {n_cnn}")
  assert n_cnn >= n_mg > n_sg, (n_cnn, n_mg, n_sg)
  assert err_mg < 0.2, errs
  assert err_mg <= 0.6 * err_cnn, errs  # PAPERS.md
  assert err_mg <= 0.4 * err_sg, errs


def test_one_layer_sees_the_whole_grid_a_cnn_does_not():
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 1))
  layer = mgno.MgNOLayer(4, levels=4, pre_smooth=1, impl="xla")
  v = jax.jit(layer.init)(jax.random.key(1), x)
  g = jax.jit(jax.grad(lambda x: layer.apply(v, x)[0, 16, 16].sum()))(x)
  assert abs(float(g[0, 0, 0, 0])) > 1e-9
  assert float(jnp.min(jnp.abs(g))) > 0  # every input node reaches the centre
  cnn = operators.CNN(features=4, num_layers=6)
  vc = jax.jit(cnn.init)(jax.random.key(1), x)
  gc = jax.jit(jax.grad(lambda x: cnn.apply(vc, x)[0, 16, 16].sum()))(x)
  assert float(gc[0, 0, 0, 0]) == 0.0 and float(jnp.abs(gc[0, 10:23, 10:23]).sum()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_darcy_mgno_against_cnn_unet_fno(seed):
  """Darcy flow, 32^2 interior nodes, 400 train / 100 test, 600 steps of batch 8 (Adam 3e-3, cosine, relative L2).

  Measured test relative L2 (training seeds 0, 1), parameters in brackets:

  =========================================================  ===============  ===============
  model                                                      seed 0           seed 1
  =========================================================  ===============  ===============
  MgNO: 2 layers of width 8, 4 levels, (1, 1, 2, 2), field    0.0373           0.0342
  bias, pointwise term (31,654; 17,408 of them bias fields)
  CNN: 6 layers of width 12 (5,461)                           0.195            0.197
  U-Net: width 8, 3 levels (40,889)                           0.048            0.0436
  FNO: width 8, 6 modes, 3 layers, projection 32 (28,217)     0.0367           0.0372
  =========================================================  ===============  ===============

  What holds and is asserted: MgNO <= 0.6x the CNN's error and below the (larger) U-Net's. What did not reproduce at
  this scale: the paper's clear margin over FNO; the small FNO ties with MgNO (within 10%), so only "MgNO is not
  worse than 1.25x FNO" is asserted.
  """
  data = pde.darcy(resolution=32, num_train=400, num_test=100, seed=0)
  kw = dict(seed=seed, steps=600, batch=8)
  _, err_mg = train_and_test(mgno.MgNO(features=8, num_layers=2, levels=4, pre_smooth=(1, 1, 2, 2), impl="xla"),
                             data, **kw)
  baselines = {
      "cnn": operators.CNN(features=12, num_layers=6),
      "unet": operators.UNet(features=8, levels=3),
      "fno": operators.FNO(features=8, modes=6, num_layers=3, projection=32),
  }
  errs = {name: train_and_test(model, data, **kw)[1] for name, model in baselines.items()}
  assert err_mg <= 0.6 * errs["cnn"], (err_mg, errs)
  assert err_mg < errs["unet"], (err_mg, errs)
  assert err_mg <= 1.25 * errs["fno"], (err_mg, errs)
