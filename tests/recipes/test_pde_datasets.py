"""recipes/datasets/pde.py: the generated PDE data solve their discrete equations, are deterministic by seed, and load
through the data layer (TFDS array_record)."""

import numpy as np
import pytest

from zoo.recipes import data
from zoo.recipes.datasets import pde


def _five_point(u, h, periodic=False):
  """-Laplacian of u with zero (Dirichlet) or periodic ghost nodes."""
  up = np.pad(u, 1, mode="wrap" if periodic else "constant")
  return (4 * u - up[:-2, 1:-1] - up[2:, 1:-1] - up[1:-1, :-2] - up[1:-1, 2:]) / h ** 2


def test_darcy_solves_its_equation():
  rng = np.random.default_rng(0)
  a = pde.darcy_coefficient(rng, 12, 1)[0]
  assert set(np.unique(a)) <= {3.0, 12.0}
  u = pde.solve_darcy(a)
  h = 1 / 13
  up = np.pad(u, 1)
  ax = 0.5 * (a[1:, 1:-1] + a[:-1, 1:-1])
  ay = 0.5 * (a[1:-1, 1:] + a[1:-1, :-1])
  flux = (ax[1:] * (up[2:, 1:-1] - up[1:-1, 1:-1]) - ax[:-1] * (up[1:-1, 1:-1] - up[:-2, 1:-1])
          + ay[:, 1:] * (up[1:-1, 2:] - up[1:-1, 1:-1]) - ay[:, :-1] * (up[1:-1, 1:-1] - up[1:-1, :-2]))
  np.testing.assert_allclose(-flux / h ** 2, 1.0, rtol=1e-8)
  # Constant coefficient: the Poisson problem, whose centre value is 0.0737 in the continuum.
  assert abs(pde.solve_darcy(np.ones((66, 66)))[31:33, 31:33].mean() - 0.0737) < 5e-4


@pytest.mark.parametrize("boundary", ["dirichlet", "periodic"])
def test_poisson_solves_its_equation(boundary):
  g = pde.poisson(resolution=10, boundary=boundary, num_train=3, num_test=2, seed=1)
  x, y = g.splits["train"]["x"][..., 0], g.splits["train"]["y"][..., 0]
  f = x * g.metadata["x_scale"]
  u = y * g.metadata["y_scale"]
  h = 1 / 10 if boundary == "periodic" else 1 / 11
  for fi, ui in zip(f, u):
    np.testing.assert_allclose(_five_point(ui, h, boundary == "periodic"), fi, atol=1e-4 * np.abs(fi).max())
  if boundary == "periodic":
    np.testing.assert_allclose(u.mean(axis=(1, 2)), 0.0, atol=1e-6)


def test_deterministic_by_seed_and_shapes():
  a = pde.darcy(resolution=8, num_train=4, num_test=2, seed=3)
  b = pde.darcy(resolution=8, num_train=4, num_test=2, seed=3)
  c = pde.darcy(resolution=8, num_train=4, num_test=2, seed=4)
  assert a.splits["train"]["x"].shape == (4, 8, 8, 1) and a.splits["test"]["y"].shape == (2, 8, 8, 1)
  assert a.splits["train"]["x"].dtype == np.float32
  np.testing.assert_array_equal(a.splits["train"]["y"], b.splits["train"]["y"])
  assert not np.array_equal(a.splits["train"]["y"], c.splits["train"]["y"])
  np.testing.assert_allclose(np.sqrt(np.mean(a.splits["train"]["y"] ** 2)), 1.0, rtol=1e-5)
  h = pde.helmholtz(resolution=9, num_train=2, num_test=1)
  assert h.splits["train"]["y"].shape == (2, 9, 9, 1) and np.all(np.isfinite(h.splits["train"]["y"]))


def test_loads_through_the_data_layer():
  sources, info = data.load("darcy", resolution=8, num_train=4, num_test=2, seed=0)
  direct = pde.darcy(resolution=8, num_train=4, num_test=2, seed=0)
  # TFDS orders the examples by a hash of their keys: compare the sets of (x, y) pairs, sorted the same way.
  got, want = sources["train"].arrays, direct.splits["train"]
  order = lambda arrays: np.argsort([a.tobytes() for a in arrays["x"]])
  for key in ("x", "y"):
    np.testing.assert_array_equal(got[key][order(got)], want[key][order(want)])
  assert info.element_spec["x"] == ((8, 8, 1), "float32")
  assert {"darcy", "poisson", "helmholtz"} <= set(data.names())


def test_clear_errors():
  with pytest.raises(ValueError, match="resolution >= 4"):
    pde.darcy(resolution=2)
  with pytest.raises(ValueError, match="`boundary` must be 'dirichlet' or 'periodic'"):
    pde.poisson(boundary="neumann")
