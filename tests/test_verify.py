"""zoo.analysis.verify: the exact z3 encoding against float64 evaluation, hand-solvable SAFE/UNSAFE regions (input
and layer-wise), the relaxation's soundness, brute force and the FGSM corner, and bad inputs."""

from fractions import Fraction

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import z3

from zoo import core
from zoo.analysis import verify

# y0 = relu(x0) - relu(x1), y1 = relu(x1) - relu(x0): class 0 iff x0 > x1 (for positive inputs).
TOY = [(np.eye(2), np.zeros(2)), (np.array([[1.0, -1.0], [-1.0, 1.0]]), np.zeros(2))]


def test_encoding_is_exact_rational_arithmetic():
  model = core.MLP(features=(5, 4, 3))
  variables = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4))))
  layers = verify.mlp_layers(variables)
  assert [w.shape for w, _ in layers] == [(4, 5), (5, 4), (4, 3)] and layers[0][0].dtype == np.float64
  x = np.random.default_rng(0).normal(size=(6, 4))
  np.testing.assert_allclose(verify.forward(layers, x),
                             np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x, jnp.float32))),
                             rtol=1e-5, atol=1e-5)
  for row in x:
    outs, cons = verify.encode_mlp_z3(layers, [z3.RealVal(Fraction(float(v))) for v in row])
    solver = z3.Solver()
    solver.add(*cons)
    assert solver.check() == z3.sat
    m = solver.model()
    exact = [m.eval(o, model_completion=True) for o in outs]
    exact = np.array([float(Fraction(e.numerator_as_long(), e.denominator_as_long())) for e in exact])
    # Independent exact evaluation in Fractions (the solver's model must reproduce it digit for digit).
    h = [Fraction(float(v)) for v in row]
    for k, (w, b) in enumerate(layers):
      h = [sum(Fraction(float(w[i, j])) * h[i] for i in range(len(h))) + Fraction(float(b[j]))
           for j in range(w.shape[1])]
      if k < len(layers) - 1:
        h = [max(v, Fraction(0)) for v in h]
    np.testing.assert_array_equal(exact, np.array([float(v) for v in h]))
    np.testing.assert_allclose(exact, verify.forward(layers, row[None])[0], rtol=1e-12, atol=1e-12)


def test_hand_solved_input_regions():
  x = np.array([0.3, 0.12])  # flips when 0.05 (n0 + n1) >= 0.18, i.e. n0 + n1 >= 4
  safe = verify.verify_region(TOY, x, tau=0.05, p=1)
  assert safe.safe and safe.label == 0 and safe.witness is None
  unsafe = verify.verify_region(TOY, x, tau=0.05, p=2)
  assert unsafe.status == "UNSAFE" and unsafe.adversarial_class == 1
  assert np.all(np.abs(unsafe.offsets) <= 2) and -unsafe.offsets[0] + unsafe.offsets[1] >= 4
  np.testing.assert_allclose(unsafe.witness, x + 0.05 * unsafe.offsets)
  assert verify.verify_region(TOY, x, tau=0.05, p=2, features=[0]).safe  # x1 fixed: 0.3 - 0.1 > 0.12
  for p in (1, 2, 3):
    assert verify.brute_force_region(TOY, x, tau=0.05, p=p)[0] == (p >= 2)
  assert verify.grid_points(x, 0.05, 2).shape == (25, 2)


def test_hand_solved_layerwise_region():
  x = np.array([0.3, 0.12])
  # Layer 1's largest activation is unit 0 (0.3); moving it alone flips once 0.3 - 0.05 n <= 0.12, i.e. n >= 4.
  safe = verify.layerwise_verify(TOY, x, layer=1, tau=0.05, p=3, num_features=1)
  assert safe.safe and safe.features == (0,)
  unsafe = verify.layerwise_verify(TOY, x, layer=1, tau=0.05, p=4, num_features=1)
  assert not unsafe.safe and unsafe.offsets[0] == -4 and np.all(unsafe.witness >= 0)
  assert verify.brute_force_region(TOY, x, tau=0.05, p=4, features=[0], start=1, nonneg=True)[0]


def test_relaxation_is_sound_and_fgsm_is_a_grid_corner():
  model = core.MLP(features=(8, 3))
  variables = nn.unbox(jax.jit(model.init)(jax.random.key(1), jnp.ones((1, 4))))
  layers = verify.mlp_layers(variables)
  for i, x in enumerate(np.random.default_rng(1).normal(size=(6, 4))):
    exact = verify.verify_region(layers, x, tau=0.1, p=2)
    relaxed = verify.verify_region(layers, x, tau=0.1, p=2, exact=False)
    assert exact.safe == (not verify.brute_force_region(layers, x, tau=0.1, p=2)[0]), i
    assert exact.safe or not relaxed.safe, i  # the relaxation never proves a false SAFE
  x = np.random.default_rng(2).normal(size=(5, 4))
  corners = verify.fgsm_grid_points(layers, x, verify.forward(layers, x).argmax(1), tau=0.1, p=2)
  assert corners.shape == (5, 4) and set(np.round((corners - x) / 0.1).astype(int).ravel()) <= {-2, 0, 2}


def test_bad_inputs():
  x = np.array([0.3, 0.12])
  with pytest.raises(ValueError, match="`x` must be one input of shape \\[2\\]"):
    verify.verify_region(TOY, np.ones((1, 2)), tau=0.05, p=1)
  with pytest.raises(TypeError, match="`x` must be floating"):
    verify.verify_region(TOY, np.array([1, 0]), tau=0.05, p=1)
  with pytest.raises(ValueError, match="tau"):
    verify.verify_region(TOY, x, tau=0.0, p=1)
  with pytest.raises(ValueError, match="`p`"):
    verify.verify_region(TOY, x, tau=0.05, p=0)
  with pytest.raises(ValueError, match="features"):
    verify.verify_region(TOY, x, tau=0.05, p=1, features=[2])
  with pytest.raises(ValueError, match="label"):
    verify.verify_region(TOY, x, tau=0.05, p=1, label=3)
  with pytest.raises(ValueError, match="`layer`"):
    verify.layerwise_verify(TOY, x, layer=2, tau=0.05, p=1, num_features=1)
  with pytest.raises(ValueError, match="num_features"):
    verify.layerwise_verify(TOY, x, layer=1, tau=0.05, p=1, num_features=3)
  with pytest.raises(ValueError, match="layer 1 takes 3 inputs"):
    verify.mlp_layers([(np.eye(2), np.zeros(2)), (np.ones((3, 2)), np.zeros(2))])
  with pytest.raises(ValueError, match="dense_0"):
    verify.mlp_layers({"params": {"conv": {}}})
  with pytest.raises(ValueError, match="batch, 2"):
    verify.fgsm_grid_points(TOY, x, np.zeros(1, int), tau=0.05, p=1)
  with pytest.raises(ValueError, match="bounds"):
    verify.encode_mlp_z3(TOY, [z3.Real("a"), z3.Real("b")], exact=False)
