"""Exact SMT safety verification of ReLU MLPs on grid regions (z3), with the layer-by-layer variant.

Paper: "Safety Verification of Deep Neural Networks" (Huang, Kwiatkowska, Wang, Wu, CAV 2017, arXiv 1610.06940;
the DLV tool). A classifier is *safe* at an input ``x`` of class ``c`` for a region ``eta`` around ``x`` and a set
of manipulations if no point of ``eta`` reachable by the manipulations changes the class. Manipulations move a
feature by ``+-tau``; under the paper's minimality assumption the region is covered by finite ladders of such
moves, so the reachable points are the grid ``x' = x + tau * n``, ``n`` integer with ``|n_i| <= p`` (on the
manipulated features only), and the region is safe iff no grid point is classified differently. The paper decides
this exhaustively with an SMT solver (z3), layer by layer: at hidden layer ``k`` the region and manipulations act
on a few selected features (its "feature decomposition", chosen by the largest activations), and the rest of the
network decides the class.

Here the network is encoded *exactly*: every weight and bias becomes the rational number equal to its float
(``fractions.Fraction``), the affine maps are z3 real arithmetic and ``ReLU(z) = If(z > 0, z, 0)``, so a verdict is
a proof about the float64 network up to the float rounding of its own evaluation. The query is
``exists n: |n_i| <= p  and  exists j != c: y_j(x + tau n) >= y_c(x + tau n)``: ``unsat`` is SAFE, ``sat`` is
UNSAFE with the model's ``n`` as the witness.

With ``exact=False`` each hidden ReLU is replaced by its convex *triangle relaxation* over interval bounds
(``a >= 0, a >= z, a <= u (z - l) / (u - l)``; the LP relaxation of Ehlers' Planet and of most incomplete
verifiers): the ablation of the exact encoding. It is sound (SAFE stays SAFE) but incomplete: it can return UNSAFE
with a "witness" that does not change the network's class.

Public names (weights ``W_k: [in, out]``, ``b_k: [out]``, as flax's ``Dense`` stores them):

* :func:`mlp_layers` ``(variables)`` -> ``[(W_1, b_1), ..., (W_L, b_L)]`` float64 numpy from the variables of
  ``zoo.core.MLP`` (or any params tree of ``dense_<i>`` layers), or from such a list; ReLU between layers, the last
  layer linear.
* :func:`forward` ``(layers, x [batch, in], start=0)`` -> logits ``[batch, out]`` in float64 numpy (``start``: the
  index of the first layer applied, so ``x`` may be the activations after layer ``start``).
* :func:`encode_mlp_z3` ``(layers, inputs, *, start=0, exact=True, bounds=None)`` -> ``(outputs, constraints)``: z3
  expressions of the logits for the z3 input terms ``inputs`` and the constraints that define the hidden units.
* :func:`verify_region` ``(layers, x [in], *, tau, p, label=None, features=None, exact=True)`` -> :class:`Verdict`.
* :func:`layerwise_verify` ``(layers, x [in], *, layer, tau, p, num_features, label=None, exact=True)`` ->
  :class:`Verdict` for the region on the ``num_features`` most active features of hidden layer ``layer`` (1-based;
  the witness is a hidden activation vector ``[width]``, kept ``>= 0`` since ReLU outputs are).
* :func:`grid_points` ``(x [in], tau, p, features=None)`` -> every grid point ``[(2p+1)^k, in]``;
  :func:`brute_force_region` ``(layers, x, *, tau, p, label=None, features=None, start=0)`` -> ``(unsafe: bool,
  flipped points [m, in])`` by enumeration, the oracle the SMT verdict is checked against.
* :func:`fgsm_grid_points` ``(layers, x [batch, in], labels [batch], *, tau, p)`` -> ``[batch, in]``: the grid
  corner ``x + tau p sign(grad)`` of the fast-gradient-sign attack, the paper's comparison (it finds a
  counterexample only where that corner flips).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["Verdict", "brute_force_region", "encode_mlp_z3", "fgsm_grid_points", "forward", "grid_points",
           "layerwise_verify", "mlp_layers", "verify_region"]

SAFE, UNSAFE = "SAFE", "UNSAFE"


def _z3():
  try:
    import z3  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - z3-solver is a dependency
    raise ImportError("zoo.analysis.verify needs z3-solver: `pip install z3-solver`.") from e
  return z3


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The answer to one region query.

  Attributes:
    status: ``'SAFE'`` (no grid point changes the class) or ``'UNSAFE'``.
    label: the class ``c`` the region must keep.
    witness: for UNSAFE, the grid point ``x + tau n`` (float64 ``[in]``; hidden activations for the layer-wise
      query); None when SAFE.
    offsets: for UNSAFE, the integer ``n`` (``[in]``, 0 on unmanipulated features); None when SAFE.
    adversarial_class: for UNSAFE, a class ``j != c`` with ``y_j >= y_c`` at the witness (in the solver's model).
    features: the manipulated feature indices.
  """
  status: str
  label: int
  witness: np.ndarray | None = None
  offsets: np.ndarray | None = None
  adversarial_class: int | None = None
  features: tuple[int, ...] = ()

  @property
  def safe(self) -> bool:
    return self.status == SAFE


def mlp_layers(variables: Any) -> list[tuple[np.ndarray, np.ndarray]]:
  """The ``(W [in, out], b [out])`` float64 pairs of a ReLU MLP, from its variables or from a list of pairs."""
  if isinstance(variables, Sequence) and not isinstance(variables, (str, bytes)):
    pairs = list(variables)
  elif isinstance(variables, Mapping):
    params = variables.get("params", variables)
    names = [k for k in params if re.fullmatch(r"dense_\d+", str(k))]
    if not names:
      raise ValueError(f"mlp_layers: `variables` must hold Dense layers named dense_0, dense_1, ... (the params of "
                       f"zoo.core.MLP); got keys {sorted(map(str, params))}.")
    pairs = [(params[k]["kernel"], params[k]["bias"]) for k in sorted(names, key=lambda k: int(k.split("_")[1]))]
  else:
    raise TypeError(f"mlp_layers: `variables` must be a variables dict or a list of (W, b); got "
                    f"{type(variables).__name__}.")
  if not pairs:
    raise ValueError("mlp_layers: the network has no layers.")
  out = []
  for i, pair in enumerate(pairs):
    w, b = (np.asarray(getattr(a, "value", a), dtype=np.float64) for a in pair)
    if w.ndim != 2 or b.shape != (w.shape[1],):
      raise ValueError(f"mlp_layers: layer {i} must have W [in, out] and b [out]; got {w.shape} and {b.shape}.")
    if out and out[-1][0].shape[1] != w.shape[0]:
      raise ValueError(f"mlp_layers: layer {i} takes {w.shape[0]} inputs but layer {i - 1} gives "
                       f"{out[-1][0].shape[1]}.")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
      raise ValueError(f"mlp_layers: layer {i} has non-finite weights.")
    out.append((w, b))
  return out


def forward(layers, x, start: int = 0) -> np.ndarray:
  """Float64 logits ``[batch, out]`` of ``x [batch, in]`` through layers ``start, start+1, ...``."""
  layers = mlp_layers(layers)
  h = np.asarray(x, dtype=np.float64)
  for k in range(start, len(layers)):
    w, b = layers[k]
    h = h @ w + b
    if k < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h


def _interval_bounds(layers, lo, hi, start):
  """Interval bounds ``(l, u)`` of every hidden pre-activation for inputs in the box ``[lo, hi]``."""
  bounds = []
  for k in range(start, len(layers) - 1):
    w, b = layers[k]
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    l, u = lo @ wp + hi @ wn + b, hi @ wp + lo @ wn + b
    bounds.append((l, u))
    lo, hi = np.maximum(l, 0.0), np.maximum(u, 0.0)
  return bounds


def encode_mlp_z3(layers, inputs: Sequence[Any], *, start: int = 0, exact: bool = True, bounds=None,
                  prefix: str = "h"):
  """The z3 encoding of layers ``start, ...``: ``(logit expressions [out], constraints)``.

  Args:
    layers: see :func:`mlp_layers`.
    inputs: z3 arithmetic terms, one per input of layer ``start``.
    exact: ReLU as ``If(z > 0, z, 0)`` (the paper's exact encoding); False: the triangle relaxation, which needs
      ``bounds``.
    bounds: one ``(l [width], u [width])`` of sound pre-activation bounds per hidden layer (interval propagation over
      the region); units they show always inactive (``u <= 0``) or active (``l >= 0``) are encoded as ``0`` or
      ``z``, which is exact and spares the solver their case split.
    prefix: name prefix of the fresh z3 variables.
  """
  z3 = _z3()
  layers = mlp_layers(layers)
  if len(inputs) != layers[start][0].shape[0]:
    raise ValueError(f"encode_mlp_z3: `inputs` must have {layers[start][0].shape[0]} terms; got {len(inputs)}.")
  if not exact and bounds is None:
    raise ValueError("encode_mlp_z3: exact=False (the triangle relaxation) needs `bounds` for every hidden layer.")
  constraints, h = [], list(inputs)
  for k in range(start, len(layers)):
    w, b = layers[k]
    # Fraction(float) is the float's exact binary value: the solver reasons about the very network jax evaluates.
    pre = [z3.Sum([z3.RealVal(Fraction(float(w[i, j]))) * h[i] for i in range(w.shape[0])])
           + z3.RealVal(Fraction(float(b[j]))) for j in range(w.shape[1])]
    if k == len(layers) - 1:
      return pre, constraints
    zs = [z3.Real(f"{prefix}{k}_z{j}") for j in range(w.shape[1])]
    acts = [z3.Real(f"{prefix}{k}_a{j}") for j in range(w.shape[1])]
    for j, (zj, aj) in enumerate(zip(zs, acts)):
      constraints.append(zj == pre[j])
      l, u = (None, None) if bounds is None else (Fraction(float(v[j])) for v in bounds[k - start])
      if u is not None and u <= 0:  # a unit that sound bounds show inactive (or active) on the whole region
        constraints.append(aj == 0)
      elif l is not None and l >= 0:
        constraints.append(aj == zj)
      elif exact:
        constraints.append(aj == z3.If(zj > 0, zj, z3.RealVal(0)))
      else:
        constraints += [aj >= 0, aj >= zj, aj <= z3.RealVal(u / (u - l)) * (zj - z3.RealVal(l))]
    h = acts
  raise AssertionError("unreachable")


def _check_point(x, name, where, size):
  x = np.asarray(x)
  if x.ndim != 1 or x.shape[0] != size:
    raise ValueError(f"{where}: `{name}` must be one input of shape [{size}]; got shape {x.shape}.")
  if not np.issubdtype(x.dtype, np.floating):
    raise TypeError(f"{where}: `{name}` must be floating; got {x.dtype}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{where}: `{name}` has non-finite entries.")
  return x.astype(np.float64)


def _check_grid(tau, p, where):
  if not (isinstance(tau, (int, float, np.integer, np.floating)) and np.isfinite(tau) and tau > 0):
    raise ValueError(f"{where}: `tau` (the manipulation step) must be a positive number; got {tau!r}.")
  if not (isinstance(p, (int, np.integer)) and p >= 1):
    raise ValueError(f"{where}: `p` (the ladder length) must be an integer >= 1; got {p!r}.")


def _features(features, size, where):
  if features is None:
    return tuple(range(size))
  feats = tuple(int(f) for f in features)
  if not feats or len(set(feats)) != len(feats) or min(feats) < 0 or max(feats) >= size:
    raise ValueError(f"{where}: `features` must be distinct indices in [0, {size}); got {features!r}.")
  return feats


def _solve(layers, x, label, tau, p, feats, start, exact, nonneg, timeout_ms, where):
  z3 = _z3()
  tau, p = float(tau), int(p)
  num_out = layers[-1][0].shape[1]
  if not (0 <= label < num_out):
    raise ValueError(f"{where}: `label` must be in [0, {num_out}); got {label}.")
  ns = {i: z3.Int(f"n{i}") for i in feats}
  tau_q = Fraction(float(tau))
  point = [z3.RealVal(Fraction(float(v))) + (z3.RealVal(tau_q) * z3.ToReal(ns[i]) if i in ns else 0)
           for i, v in enumerate(x)]
  lo, hi = x.copy(), x.copy()
  lo[list(feats)] -= tau * p
  hi[list(feats)] += tau * p
  if nonneg:
    lo = np.maximum(lo, 0.0)
  bounds = _interval_bounds(layers, lo, hi, start)
  logits, constraints = encode_mlp_z3(layers, point, start=start, exact=exact, bounds=bounds)
  solver = z3.Solver()
  if timeout_ms:
    solver.set("timeout", int(timeout_ms))
  solver.add(*constraints)
  for i, n in ns.items():
    solver.add(n >= -p, n <= p)
    if nonneg:
      solver.add(point[i] >= 0)
  solver.add(z3.Or([logits[j] >= logits[label] for j in range(num_out) if j != label]))
  result = solver.check()
  if result == z3.unsat:
    return Verdict(SAFE, label, features=feats)
  if result != z3.sat:
    raise RuntimeError(f"{where}: z3 returned {result} ({solver.reason_unknown()}); raise `timeout_ms`.")
  model = solver.model()
  offsets = np.zeros(x.shape[0], np.int64)
  for i, n in ns.items():
    offsets[i] = model.eval(n, model_completion=True).as_long()
  values = [model.eval(y, model_completion=True) for y in logits]
  values = [Fraction(v.numerator_as_long(), v.denominator_as_long()) for v in values]
  adversarial = max((j for j in range(num_out) if j != label), key=lambda j: values[j])
  return Verdict(UNSAFE, label, witness=x + tau * offsets, offsets=offsets, adversarial_class=int(adversarial),
                 features=feats)


def verify_region(layers, x, *, tau: float, p: int, label: int | None = None, features: Sequence[int] | None = None,
                  exact: bool = True, timeout_ms: int | None = None) -> Verdict:
  """SAFE, or UNSAFE with a witness, for the grid ``x + tau n`` (``|n_i| <= p`` on ``features``, default all).

  ``label`` defaults to the network's own class at ``x`` (the paper's ``c``).
  """
  where = "verify_region"
  layers = mlp_layers(layers)
  x = _check_point(x, "x", where, layers[0][0].shape[0])
  _check_grid(tau, p, where)
  feats = _features(features, x.shape[0], where)
  label = int(np.argmax(forward(layers, x[None])[0])) if label is None else int(label)
  return _solve(layers, x, label, tau, p, feats, 0, exact, False, timeout_ms, where)


def _hidden(layers, x, layer):
  h = x[None]
  for k in range(layer):
    w, b = layers[k]
    h = np.maximum(h @ w + b, 0.0)
  return h[0]


def layerwise_verify(layers, x, *, layer: int, tau: float, p: int, num_features: int, label: int | None = None,
                     exact: bool = True, timeout_ms: int | None = None) -> Verdict:
  """The layer-``layer`` query: the region on the ``num_features`` largest activations of hidden layer ``layer``.

  The activations ``alpha = h_layer(x)`` are manipulated by ``+-tau`` ladders of length ``p`` on the selected
  features (the paper's feature decomposition by largest activation), kept ``>= 0``, and the layers above decide
  the class. The witness is the manipulated activation vector.
  """
  where = "layerwise_verify"
  layers = mlp_layers(layers)
  x = _check_point(x, "x", where, layers[0][0].shape[0])
  _check_grid(tau, p, where)
  if not (isinstance(layer, (int, np.integer)) and 1 <= layer < len(layers)):
    raise ValueError(f"{where}: `layer` must be a hidden layer in [1, {len(layers) - 1}]; got {layer!r}.")
  width = layers[layer][0].shape[0]
  if not (isinstance(num_features, (int, np.integer)) and 1 <= num_features <= width):
    raise ValueError(f"{where}: `num_features` must be in [1, {width}]; got {num_features!r}.")
  alpha = _hidden(layers, x, layer)
  feats = tuple(int(i) for i in np.argsort(-alpha, kind="stable")[:num_features])
  label = int(np.argmax(forward(layers, x[None])[0])) if label is None else int(label)
  return _solve(layers, alpha, label, tau, p, feats, layer, exact, True, timeout_ms, where)


def grid_points(x, tau: float, p: int, features: Sequence[int] | None = None) -> np.ndarray:
  """Every grid point ``x + tau n``, ``n in {-p..p}^k`` on ``features``: ``[(2p+1)^k, in]`` float64."""
  x = np.asarray(x, np.float64)
  feats = _features(features, x.shape[0], "grid_points")
  _check_grid(tau, p, "grid_points")
  offsets = np.array(list(itertools.product(range(-p, p + 1), repeat=len(feats))), np.float64)
  points = np.repeat(x[None], len(offsets), axis=0)
  points[:, list(feats)] += tau * offsets
  return points


def brute_force_region(layers, x, *, tau: float, p: int, label: int | None = None,
                       features: Sequence[int] | None = None, start: int = 0, nonneg: bool = False):
  """Enumerates the grid: ``(unsafe, flipped [m, in])``, the points whose float64 argmax is not ``label``."""
  layers = mlp_layers(layers)
  x = np.asarray(x, np.float64)
  points = grid_points(x, tau, p, features)
  if nonneg:
    points = points[np.all(points >= 0, axis=1)]
  if label is None:
    label = int(np.argmax(forward(layers, x[None], start)[0]))
  flipped = points[np.argmax(forward(layers, points, start), axis=1) != label]
  return bool(len(flipped)), flipped


def fgsm_grid_points(layers, x, labels, *, tau: float, p: int) -> np.ndarray:
  """``x + tau p sign(grad_x CE(f(x), label))``: ``zoo.attacks.fgsm`` snapped to the grid's corner.

  ``x: [batch, in]`` float, ``labels: [batch]`` int -> ``[batch, in]`` float64.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from zoo import attacks  # pylint: disable=g-import-not-at-top
  layers = mlp_layers(layers)
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[1] != layers[0][0].shape[0] or not x.shape[0]:
    raise ValueError(f"fgsm_grid_points: `x` must have shape [batch, {layers[0][0].shape[0]}]; got {x.shape}.")
  _check_grid(tau, p, "fgsm_grid_points")
  params = [(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in layers]

  def logits_fn(h):
    for k, (w, b) in enumerate(params):
      h = h @ w + b
      h = jnp.maximum(h, 0.0) if k < len(params) - 1 else h
    return h
  x32 = jnp.asarray(x, jnp.float32)
  x_adv = attacks.fgsm(logits_fn, x32, jnp.asarray(labels, jnp.int32), 1.0)
  offsets = np.rint(np.asarray(x_adv - x32, np.float64)) * p  # sign(grad) * p, in {-p, 0, p}
  return x.astype(np.float64) + tau * offsets
