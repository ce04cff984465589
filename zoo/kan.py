"""Kolmogorov-Arnold networks: B-spline KAN, ReLU-KAN, AF-KAN and S-KAN / S-ConvKAN, all through one kernel.

Kolmogorov-Arnold attention (KArAt), which uses the same kernel for its attention operator, is ``zoo.karat``.

Every layer here evaluates its basis and contracts it with its coefficients through the one entry point
:func:`zoo.kernels.kan_basis.kan` (the fused Pallas kernel on GPU/TPU, the XLA reference elsewhere; ``impl`` picks),
so the ``[batch, in, num_basis]`` tensor is never written to memory on an accelerator; the exception is AF-KAN with
trainable phases (its default, see the deviations below), which uses the kernel module's basis tables in ``jnp``.

Papers:

* "KAN: Kolmogorov-Arnold Networks", Liu et al., 2024 (arXiv 2404.19756), in the efficient-kan form
  (github.com/Blealtan/efficient-kan): :class:`KANLinear`, :class:`KAN`, :func:`update_grid`.
* "ReLU-KAN: New Kolmogorov-Arnold Networks that Only Need Matrix Addition, Dot Multiplication, and ReLU", Qiu et
  al., 2024 (arXiv 2406.02075): :class:`ReLUKANLayer`, :class:`ReLUKAN`.
* "AF-KAN: Activation Function-Based Kolmogorov-Arnold Networks for Efficient Representation Learning", Ta & Tran,
  2025 (arXiv 2503.06112): :class:`AFKANLayer`, :class:`AFKAN`.
* "Activation Space Selectable Kolmogorov-Arnold Networks", Yang et al., 2024 (arXiv 2408.08338):
  :class:`SelectableKANLayer`, :class:`SKAN`, :class:`SelectableKANConv`, :class:`SConvKAN` (the three-phase
  schedule is ``zoo.recipes.procedures.skan``).

Public names (``b`` batch, ``i`` input features, ``o`` output features):

* :class:`KANLinear` ``x [..., i] -> [..., o]``: ``silu(x) W_base + spline(x)``, spline = B-splines of order
  ``spline_order`` on ``grid_size`` intervals with coefficients ``spline_weight * spline_scaler``; the grid is the
  ``'grid'`` variable collection (updated from data by :func:`update_grid`).
* :class:`KAN` ``x [b, ...] -> [b, o]``: a stack of :class:`KANLinear` (inputs flattened after the batch axis).
* :func:`update_grid` ``(model, variables, x, grid_size=None) -> (model, variables)``: efficient-kan's grid update
  from data (adaptive quantile grid mixed with a uniform one by ``grid_eps``) and, with a larger ``grid_size``,
  pykan's grid extension; the coefficients are refitted by least squares to the splines they replace.
* :class:`ReLUKANLayer` / :class:`ReLUKAN`: ReLU-KAN's basis, coefficients and a bias (its convolution is a dense
  contraction over ``[i, G + k]``).
* :class:`AFKANLayer` / :class:`AFKAN`: AF-KAN's basis ``f(a(x - s_k), a(e_k - x))``, min-max normalised, reduced per
  input over the basis axis by global attention or by a linear map, then LayerNorm, ``a``, and ``Linear(i -> o)``.
* :class:`SelectableKANLayer` ``x [..., i] -> [..., o]`` / :class:`SKAN`: every input node mixes the candidate
  activation spaces (:data:`SPACES`) with ``softmax`` of its selection logits over the spaces its mask keeps.
* :class:`SelectableKANConv` ``x [b, H, W, C] -> [b, H', W', o]`` / :class:`SConvKAN`: the selectable KAN layer on
  ``jax.lax.conv_general_dilated_patches`` patches.
* :func:`selection_probabilities` ``(variables) -> {layer path: [i, spaces]}``: the S-KAN mixing weights.

Deviations and choices (also in the report of the issue that added this file):

* Grids are buffers (not trained) on every kernel path, as in efficient-kan; ReLU-KAN's optionally trainable phases
  are therefore fixed. AF-KAN trains its phases ``s_k, e_k`` by default (``train_phases``, the reference code's
  ``train_ab=True``; one ``[K]`` vector each, shared by every input, as there) and then evaluates its basis in plain
  ``jnp`` from the kernel module's activation and function tables (the fused kernel never differentiates a grid;
  AF-KAN's min-max normalisation materialises the basis tensor anyway); ``train_phases=False`` is the fixed-grid
  kernel path.
* Ablation flags (default = the paper's method): ``AFKAN(af_basis=False)`` replaces every basis function by the
  identity; ``SKAN(learn_selection=False)`` (and the other selectable modules) freezes the selection logits at 0.
* :func:`update_grid` refits the *unscaled* spline weights (pykan's convention). efficient-kan refits the scaled
  spline into ``spline_weight`` and then multiplies by ``spline_scaler`` again, which changes the function; here the
  layer's function is preserved up to the least-squares error.
* AF-KAN: the reference code normalises the basis tensor of the whole batch (L2 over every entry, then min-max);
  the L2 step cancels in the min-max, so only the min-max is computed. It couples the examples of a batch (as in the
  paper's code); ``func_norm=False`` turns it off. The local/self/multi-head attention reductions of the code base
  (marked slow there) are not implemented; ``global_attn`` (the paper's default) and ``multistep`` are.
* S-KAN: selection is per *input node* (the data at a node takes one activation space toward every output), logits
  ``[i, spaces]``. Each space takes the form of its reference KAN: B-spline as efficient-KAN, RBF as FastKAN and
  wavelet as Wav-KAN (each with a ``silu`` base branch), Chebyshev of ``tanh(x)`` as ChebyKAN and Fourier as
  FourierKAN (no base branch; harmonics of the grid interval). The wavelet space is a Mexican-hat frame at fixed
  translations with learned coefficients (Wav-KAN learns a scale and translation per edge, which is not a linear
  basis and cannot share the fused kernel).
  Pruning keeps the selected space by masking: the kernel still evaluates every space.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.kernels import kan_basis

__all__ = ["AFKAN", "AFKANLayer", "KAN", "KANLinear", "ReLUKAN", "ReLUKANLayer", "SConvKAN", "SKAN", "SPACES",
           "SelectableKANConv", "SelectableKANLayer", "edge_activations", "selection_probabilities", "space_basis",
           "update_grid"]

Array = jax.Array
Basis = kan_basis.Basis

SPACES = ("bspline", "chebyshev", "fourier", "rbf", "wavelet")
"""S-KAN's candidate activation spaces, in the order of the selection logits."""

# The spaces whose reference implementations add a ``silu(x) W`` branch: efficient-KAN (B-spline), FastKAN (RBF),
# Wav-KAN (wavelet). ChebyKAN and FourierKAN have none.
_SPACES_WITH_BASE = ("bspline", "rbf", "wavelet")


def _kaiming_uniform(a: float):
  """torch's ``kaiming_uniform_(w, a)`` for a weight whose fan-in is ``shape[-2]`` (``[..., in, out]`` layout)."""
  def init(rng, shape, dtype=jnp.float32):
    fan_in = shape[-2]
    bound = math.sqrt(2.0 / (1.0 + a * a)) * math.sqrt(3.0 / fan_in)
    return jax.random.uniform(rng, shape, dtype, -bound, bound)
  return init


def _uniform(bound: float):
  def init(rng, shape, dtype=jnp.float32):
    return jax.random.uniform(rng, shape, dtype, -bound, bound)
  return init


def _check_batched(x, where: str) -> None:
  layers.check_shape(x, "x", "... features", where=where, dtype="floating")
  if x.ndim < 2:
    raise ValueError(f"{where}: `x` must have shape [batch, ...] (rank >= 2, flattened after the batch axis); got "
                     f"shape {x.shape}.")


def _flatten(x: Array) -> Array:
  return x.reshape(x.shape[0], -1) if x.ndim > 2 else x


def _lstsq_per_input(vals: Array, target: Array, ridge: float = 1e-6) -> Array:
  """Least-squares coefficients per input: ``vals [b, i, K]``, ``target [b, i, o]`` -> ``[K, i, o]``.

  Normal equations with a small relative ridge (which also picks a small-norm solution when there are fewer samples
  than basis functions, as at initialisation): far cheaper to compile than an SVD-based ``lstsq``.
  """
  vals, target = vals.astype(jnp.float32), target.astype(jnp.float32)
  gram = jnp.einsum("bik,bil->ikl", vals, vals)                                   # [i, K, K]
  rhs = jnp.einsum("bik,bio->iko", vals, target)                                  # [i, K, o]
  k = gram.shape[-1]
  lam = ridge * jnp.trace(gram, axis1=1, axis2=2)[:, None, None] / k + 1e-12
  sol = jnp.linalg.solve(gram + lam * jnp.eye(k, dtype=gram.dtype), rhs)          # [i, K, o]
  return jnp.transpose(sol, (1, 0, 2))


# ------------------------------------------------------------------------------------------------- B-spline KAN


class KANLinear(nn.Module):
  """One KAN layer in efficient-kan's form: ``y = silu(x) W_base + sum_k B_k(x) (spline_weight * spline_scaler)``.

  Attributes:
    features: output width o.
    grid_size: G, intervals of the spline grid on ``grid_range``.
    spline_order: k (3: cubic); the grid is extended by k knots on each side (K = G + k basis functions).
    grid_range: the initial grid's interval.
    scale_noise: spread of the random initial splines (least-squares fit of uniform noise at the grid points).
    scale_base: scales the ``kaiming_uniform`` init of ``W_base``.
    scale_spline: scales the init of ``spline_scaler`` (or of the spline weights when not standalone).
    standalone_scale_spline: learn a separate ``spline_scaler [i, o]``.
    impl: ``'auto' | 'pallas' | 'xla'`` for :func:`zoo.kernels.kan_basis.kan`.

  Variables: ``params``: ``base_weight [i, o]``, ``spline_weight [K, i, o]``, ``spline_scaler [i, o]``;
  ``grid``: ``grid [i, G + 2k + 1]`` knots per input.
  """
  features: int
  grid_size: int = 5
  spline_order: int = 3
  grid_range: Sequence[float] = (-1.0, 1.0)
  scale_noise: float = 0.1
  scale_base: float = 1.0
  scale_spline: float = 1.0
  standalone_scale_spline: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @property
  def basis(self) -> Basis:
    return Basis.bspline(self.grid_size, self.spline_order)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., i] -> [..., features]``."""
    where = type(self).__name__
    layers.check_shape(x, "x", "... features", where=where, dtype="floating")
    if self.grid_size < 1 or self.spline_order < 0:
      raise ValueError(f"{where}: need grid_size >= 1 and spline_order >= 0; got {self.grid_size}, "
                       f"{self.spline_order}.")
    n_in, basis = x.shape[-1], self.basis
    lo, hi = self.grid_range
    kan_basis.check_grid_range(lo, hi, where=where)
    grid = self.variable("grid", "grid", lambda: kan_basis.make_grid(basis, n_in, lo, hi)).value
    if grid.shape[0] != n_in:
      layers.check_shape(x, "x", "... features", where=where, features=grid.shape[0])

    def spline_init(rng, shape, dtype=jnp.float32):
      g, k = self.grid_size, self.spline_order
      points = grid[:, k:k + g + 1].T                                              # [G + 1, i] grid points
      noise = (jax.random.uniform(rng, (g + 1, n_in, self.features)) - 0.5) * self.scale_noise / g
      coef = _lstsq_per_input(kan_basis.basis_values(points, grid, basis), noise)
      scale = 1.0 if self.standalone_scale_spline else self.scale_spline
      return (coef * scale).astype(dtype)

    base_weight = self.param("base_weight", layers.partitioned(_kaiming_uniform(math.sqrt(5) * self.scale_base),
                                                                ("embed", "mlp")), (n_in, self.features),
                             self.param_dtype)
    coef = self.param("spline_weight", layers.partitioned(spline_init, (None, "embed", "mlp")),
                      (basis.size, n_in, self.features), self.param_dtype)
    if self.standalone_scale_spline:
      scaler = self.param("spline_scaler", layers.partitioned(_kaiming_uniform(math.sqrt(5) * self.scale_spline),
                                                               ("embed", "mlp")), (n_in, self.features),
                          self.param_dtype)
      coef = coef * scaler[None]
    dtype = self.dtype or x.dtype
    return kan_basis.kan(x.astype(dtype), coef.astype(dtype), basis=basis, grid=grid,
                         base_weight=base_weight.astype(dtype), impl=self.impl)


class KAN(nn.Module):
  """A stack of :class:`KANLinear` layers (a ``[i, *features]`` KAN); inputs ``[b, ...]`` are flattened to ``[b, i]``.

  Attributes:
    features: widths after the input, e.g. ``(5, 1)`` for pykan's ``[2, 5, 1]``.
    Others: as :class:`KANLinear`, shared by every layer.
  """
  features: Sequence[int]
  grid_size: int = 5
  spline_order: int = 3
  grid_range: Sequence[float] = (-1.0, 1.0)
  scale_noise: float = 0.1
  scale_base: float = 1.0
  scale_spline: float = 1.0
  standalone_scale_spline: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def _layer_kwargs(self) -> dict[str, Any]:
    return dict(grid_size=self.grid_size, spline_order=self.spline_order, grid_range=tuple(self.grid_range),
                scale_noise=self.scale_noise, scale_base=self.scale_base, scale_spline=self.scale_spline,
                standalone_scale_spline=self.standalone_scale_spline, impl=self.impl, dtype=self.dtype,
                param_dtype=self.param_dtype)

  def layer(self, index: int) -> KANLinear:
    """An unbound copy of layer ``index`` (its variables are ``params/layers_<index>`` and ``grid/layers_<index>``)."""
    return KANLinear(self.features[index], parent=None, **self._layer_kwargs())

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, ...] -> [b, features[-1]]``."""
    _check_batched(x, type(self).__name__)
    if not self.features:
      raise ValueError("KAN: `features` must name at least one layer width.")
    h = _flatten(x)
    for l in range(len(self.features)):
      h = KANLinear(self.features[l], name=f"layers_{l}", **self._layer_kwargs())(h)
    return h


def _updated_layer(layer: KANLinear, variables, h: Array, grid_size: int, grid_eps: float, margin: float):
  """New ``(layer, variables)`` for one KANLinear whose input samples are ``h [b, i]``."""
  params, grid = variables["params"], variables["grid"]["grid"]
  old = layer.basis
  target = jnp.einsum("bik,kio->bio", kan_basis.basis_values(h, grid, old), params["spline_weight"])
  k = layer.spline_order
  xs = jnp.sort(h.astype(jnp.float32), axis=0)
  n = xs.shape[0]
  adaptive = xs[np.linspace(0, n - 1, grid_size + 1).astype(np.int64)]            # [G' + 1, i] data quantiles
  step = (xs[-1] - xs[0] + 2 * margin) / grid_size
  uniform = jnp.arange(grid_size + 1, dtype=jnp.float32)[:, None] * step + xs[0] - margin
  g = grid_eps * uniform + (1 - grid_eps) * adaptive
  ext = jnp.arange(1, k + 1, dtype=jnp.float32)[:, None] * step
  g = jnp.concatenate([g[:1] - ext[::-1], g, g[-1:] + ext], axis=0).T              # [i, G' + 2k + 1]
  new_layer = layer.clone(grid_size=grid_size)
  vals = kan_basis.basis_values(h, g, new_layer.basis)
  coef = _lstsq_per_input(vals, target).astype(params["spline_weight"].dtype)
  new_params = {**params, "spline_weight": coef}
  return new_layer, {"params": new_params, "grid": {"grid": g.astype(grid.dtype)}}


def update_grid(model: KAN | KANLinear, variables, x: Array, *, grid_size: int | None = None, grid_eps: float = 0.02,
                margin: float = 0.01):
  """Grid update from data (efficient-kan) and grid extension (pykan), layer by layer.

  Each layer's new knots mix the quantiles of its input samples with a uniform grid over their range
  (``grid_eps`` of uniform), extended by ``spline_order`` knots each side; its spline weights are refitted by least
  squares so the layer computes (nearly) the same function on the samples. With ``grid_size`` larger than the
  model's, the grid is also refined (the result is a new module with that ``grid_size``).

  Args:
    model: a :class:`KAN` or :class:`KANLinear`.
    variables: its variables (``{'params': ..., 'grid': ...}``, boxed or not).
    x: input samples ``[b, ...]`` (the model's input); a few hundred suffice.
    grid_size: the new number of intervals (default: keep).

  Returns:
    ``(model, variables)``: the (possibly re-sized) module and its new, unboxed variables.
  """
  variables = flax.core.unfreeze(nn.unbox(variables))
  size = model.grid_size if grid_size is None else int(grid_size)
  if isinstance(model, KANLinear):
    h = x.reshape(-1, x.shape[-1])
    return _updated_layer(model, variables, h, size, grid_eps, margin)
  if not isinstance(model, KAN):
    raise TypeError(f"update_grid: `model` must be a KAN or KANLinear; got {type(model).__name__}.")
  h = _flatten(x)
  params, grids = dict(variables["params"]), dict(variables["grid"])
  for l in range(len(model.features)):
    name = f"layers_{l}"
    layer_vars = {"params": params[name], "grid": grids[name]}
    new_layer, new_vars = _updated_layer(model.layer(l), layer_vars, h, size, grid_eps, margin)
    params[name], grids[name] = new_vars["params"], new_vars["grid"]
    h = new_layer.apply(new_vars, h)
  new_model = model.clone(grid_size=size)
  return new_model, {**variables, "params": params, "grid": grids}


def edge_activations(layer: KANLinear, variables, x: Array) -> Array:
  """The learned univariate function of every edge of one :class:`KANLinear`: ``phi[..., i, o]`` at ``x[..., i]``.

  ``phi_io(x_i) = W_base[i, o] silu(x_i) + sum_k B_k(x_i) spline_weight[k, i, o] spline_scaler[i, o]``, so the
  layer's output is ``phi.sum(-2)``. These are the curves the KAN paper plots on every edge (pykan's ``plot``).

  Args:
    layer: the layer's module (for a :class:`KAN`, ``model.layer(l)``).
    variables: its variables ``{'params': ..., 'grid': ...}`` (for a KAN, ``params/layers_<l>``, ``grid/layers_<l>``).
    x: ``[..., i]`` inputs of that layer.
  Returns:
    ``[..., i, o]``.
  """
  variables = nn.unbox(variables)
  params, grid = variables["params"], variables["grid"]["grid"]
  layers.check_shape(x, "x", "... features", where="edge_activations", dtype="floating", features=grid.shape[0])
  coef = params["spline_weight"]
  if "spline_scaler" in params:
    coef = coef * params["spline_scaler"][None]
  spline = jnp.einsum("...ik,kio->...io", kan_basis.basis_values(x, grid, layer.basis), coef)
  return spline + jax.nn.silu(x)[..., None] * params["base_weight"]


# ------------------------------------------------------------------------------------------------------ ReLU-KAN


class ReLUKANLayer(nn.Module):
  """ReLU-KAN layer: ``y_o = sum_{i,k} w[k, i, o] R_k(x_i) + b_o``, ``R_k = [relu(e_k - x) relu(x - s_k)]^2 16/(e_k -
  s_k)^4``, ``s_k = (k - order)/G``, ``e_k = s_k + (order + 1)/G`` mapped onto ``grid_range``.

  Attributes:
    features: o. grid_size: G. order: k (K = G + k basis functions). grid_range: the paper's ``(0, 1)``.
    use_bias: the bias of ReLU-KAN's convolution.
  """
  features: int
  grid_size: int = 5
  order: int = 3
  grid_range: Sequence[float] = (0.0, 1.0)
  use_bias: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., i] -> [..., features]``."""
    layers.check_shape(x, "x", "... features", where=type(self).__name__, dtype="floating",
                       features=layers.dim(layers.param_shape(self, "coef"), 1))
    n_in = x.shape[-1]
    basis = Basis.relu(self.grid_size, self.order)
    grid = kan_basis.make_grid(basis, n_in, *self.grid_range)
    fan_in = n_in * basis.size    # torch Conv2d default init over the [K, i] kernel
    coef = self.param("coef", layers.partitioned(_uniform(1 / math.sqrt(fan_in)), (None, "embed", "mlp")),
                      (basis.size, n_in, self.features), self.param_dtype)
    dtype = self.dtype or x.dtype
    y = kan_basis.kan(x.astype(dtype), coef.astype(dtype), basis=basis, grid=grid, impl=self.impl)
    if self.use_bias:
      bias = self.param("bias", layers.partitioned(_uniform(1 / math.sqrt(fan_in)), ("mlp",)), (self.features,),
                        self.param_dtype)
      y = y + bias.astype(y.dtype)
    return y


class ReLUKAN(nn.Module):
  """A stack of :class:`ReLUKANLayer`; inputs ``[b, ...]`` flattened. ``features``: widths after the input."""
  features: Sequence[int]
  grid_size: int = 5
  order: int = 3
  grid_range: Sequence[float] = (0.0, 1.0)
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, ...] -> [b, features[-1]]``."""
    _check_batched(x, type(self).__name__)
    h = _flatten(x)
    for l, width in enumerate(self.features):
      h = ReLUKANLayer(width, self.grid_size, self.order, tuple(self.grid_range), impl=self.impl, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=f"layers_{l}")(h)
    return h


# -------------------------------------------------------------------------------------------------------- AF-KAN


class AFKANLayer(nn.Module):
  """AF-KAN layer (Ta & Tran, 2025).

  ``f_k(x_i) = func(a(x_i - s_k), a(e_k - x_i))`` on ReLU-KAN's phases ``s_k = (k - order)/G``, ``e_k = s_k +
  (order + 1)/G`` (mapped onto ``grid_range``), min-max normalised over the batch's basis tensor (``func_norm``),
  reduced over k per input by

  * ``'global_attn'``: ``score_i = sum_k w_k f_k + c``, ``alpha = softmax_i(score / max(T, 1))`` (T learned, initially
    ``sqrt(i)``), ``h_i = alpha_i sum_k f_k``;
  * ``'multistep'``: ``h_i = sum_k w_k f_k + c``;

  then ``y = a(LayerNorm(h)) W`` with ``W [i, o]`` (no bias). Parameters: ``i o + K + 2 + 2 i`` (+ ``2 K`` trainable
  phases), close to an MLP layer's ``i o + o``.

  Attributes:
    features: o. grid_size: G. order: k. activation: a (key of ``kan_basis.ACTIVATIONS``). func: the function type
    (key of ``kan_basis.AF_FUNCS``). method: ``'global_attn'`` or ``'multistep'``. norm: ``'layer'`` or ``'none'``.
    func_norm: min-max normalise the basis tensor. grid_range: ``(0, 1)`` as the paper's phases.
    train_phases: learn the phases ``s_k, e_k`` (parameters ``phase_low [K]``, ``phase_high [K]``, shared by every
      input, initialised as above), as the reference code's default ``train_ab=True``. Then the basis is evaluated
      in plain ``jnp`` from ``kan_basis.ACTIVATIONS`` / ``AF_FUNCS`` (the fused kernel treats grids as constants);
      with ``False`` the phases are fixed and the two sums over k go through the kernel's depthwise form.
    af_basis: the mechanism flag. ``True`` (the paper): the activation-function basis above. ``False`` (the
      ablation): every ``f_k(x) = x`` (an identity map in place of the basis; everything else, normalisation,
      reduction, LayerNorm, ``a`` and ``W``, unchanged).
  """
  features: int
  grid_size: int = 5
  order: int = 3
  activation: str = "silu"
  func: str = "quad1"
  method: str = "global_attn"
  norm: str = "layer"
  func_norm: bool = True
  grid_range: Sequence[float] = (0.0, 1.0)
  train_phases: bool = True
  af_basis: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, i] -> [b, features]``."""
    where = type(self).__name__
    layers.check_shape(x, "x", "batch features", where=where, dtype="floating",
                       features=layers.dim(layers.param_shape(self, "linear", "kernel"), 0)
                       if self.norm == "none" else layers.dim(layers.param_shape(self, "norm", "scale"), 0))
    if self.method not in ("global_attn", "multistep"):
      raise ValueError(f"{where}: `method` must be 'global_attn' or 'multistep'; got {self.method!r}.")
    if self.norm not in ("layer", "none"):
      raise ValueError(f"{where}: `norm` must be 'layer' or 'none'; got {self.norm!r}.")
    n_in = x.shape[-1]
    basis = Basis.af(self.grid_size, self.order, self.activation, self.func)
    k = basis.size
    w = self.param("reduce_kernel", _uniform(1 / math.sqrt(k)), (k,), self.param_dtype)
    c = self.param("reduce_bias", _uniform(1 / math.sqrt(k)), (), self.param_dtype)
    x32 = x.astype(jnp.float32)
    values = None                                                                # [b, i, K] when materialised
    if not self.af_basis:
      values = jnp.broadcast_to(x32[..., None], (*x32.shape, k))                 # ablation: f_k(x) = x
    elif self.train_phases:
      lo_r, hi_r = self.grid_range
      kan_basis.check_grid_range(lo_r, hi_r, where=type(self).__name__)
      step = (hi_r - lo_r) / self.grid_size
      low0 = lo_r + step * np.arange(-self.order, self.grid_size, dtype=np.float32)
      s = self.param("phase_low", lambda *_: jnp.asarray(low0), (k,), self.param_dtype)
      e = self.param("phase_high", lambda *_: jnp.asarray(low0 + (self.order + 1) * step), (k,), self.param_dtype)
      act = kan_basis.ACTIVATIONS[self.activation]
      values = kan_basis.AF_FUNCS[self.func](act(x32[..., None] - s.astype(jnp.float32)),
                                             act(e.astype(jnp.float32) - x32[..., None]))
    if values is None:
      grid = kan_basis.make_grid(basis, n_in, *self.grid_range)
      fn = functools.partial(kan_basis.kan, basis=basis, grid=grid, impl=self.impl)
      s_w = fn(x32, jnp.broadcast_to(w[:, None], (k, n_in)))                  # sum_k w_k f_k   [b, i]
      s_1 = fn(x32, jnp.ones((k, n_in), jnp.float32)) if self.method == "global_attn" else None   # sum_k f_k
      if self.func_norm:
        values = kan_basis.basis_values(x32, grid, basis)
    else:
      s_w = jnp.einsum("bik,k->bi", values, w.astype(jnp.float32))
      s_1 = jnp.sum(values, axis=-1)
    if self.func_norm:
      lo, hi = jnp.min(values), jnp.max(values)
      scale = 1.0 / jnp.maximum(hi - lo, 1e-12)
    else:
      lo, scale = jnp.zeros(()), jnp.ones(())
    score = (s_w - lo * jnp.sum(w)) * scale + c
    if self.method == "global_attn":
      temperature = self.param("temperature", nn.initializers.constant(math.sqrt(n_in)), (), self.param_dtype)
      alpha = jax.nn.softmax(score / jnp.maximum(temperature, 1.0), axis=-1)
      h = alpha * (s_1 - k * lo) * scale
    else:
      h = score
    if self.norm == "layer":
      h = layers.layer_norm(name="norm")(h)
    h = kan_basis.ACTIVATIONS[self.activation](h)
    dtype = self.dtype or x.dtype
    return layers.dense(self.features, use_bias=False, kernel_init=_kaiming_uniform(math.sqrt(5)), dtype=dtype,
                        param_dtype=self.param_dtype, name="linear")(h.astype(dtype))


class AFKAN(nn.Module):
  """A stack of :class:`AFKANLayer`; inputs ``[b, ...]`` flattened. ``features``: widths after the input.

  ``train_phases`` (default True, the reference's ``train_ab``) and ``af_basis`` (default True; False is the
  identity-basis ablation) as :class:`AFKANLayer`, for every layer.
  """
  features: Sequence[int]
  grid_size: int = 5
  order: int = 3
  activation: str = "silu"
  func: str = "quad1"
  method: str = "global_attn"
  norm: str = "layer"
  func_norm: bool = True
  grid_range: Sequence[float] = (0.0, 1.0)
  train_phases: bool = True
  af_basis: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, ...] -> [b, features[-1]]``."""
    _check_batched(x, type(self).__name__)
    h = _flatten(x)
    for l, width in enumerate(self.features):
      h = AFKANLayer(width, self.grid_size, self.order, self.activation, self.func, self.method, self.norm,
                     self.func_norm, tuple(self.grid_range), train_phases=self.train_phases, af_basis=self.af_basis,
                     impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype, name=f"layers_{l}")(h)
    return h


# --------------------------------------------------------------------------------------------------------- S-KAN


def space_basis(space: str, grid_size: int = 5, spline_order: int = 3,
                grid_range: Sequence[float] = (-1.0, 1.0)) -> Basis:
  """The basis of one S-KAN activation space with about ``grid_size + spline_order`` functions.

  The Fourier space is the harmonic series of the grid interval (fundamental ``2 pi / (hi - lo)``, so ``pi`` on
  ``[-1, 1]``); the others as in the module docstring.
  """
  if space == "bspline":
    return Basis.bspline(grid_size, spline_order)
  if space == "chebyshev":
    return Basis.chebyshev(grid_size + spline_order - 1)
  if space == "fourier":
    lo, hi = grid_range
    return Basis.fourier(max(1, (grid_size + spline_order) // 2), frequency=2 * math.pi / (hi - lo))
  if space == "rbf":
    return Basis.rbf(grid_size + spline_order)
  if space == "wavelet":
    return Basis.wavelet(grid_size + spline_order)
  raise ValueError(f"unknown S-KAN space {space!r}; valid: {SPACES}.")


class SelectableKANLayer(nn.Module):
  """S-KAN layer: ``phi_io(x_i) = sum_m p_im phi^m_io(x_i)``, ``p_i = softmax(alpha_i)`` over the kept spaces.

  All spaces are evaluated and contracted in one kernel call (their bases concatenated, each block of coefficients
  scaled by its input's mixing weight). The ``'selection'`` collection holds ``mask [i, spaces]`` (1 = kept), which
  the three-phase schedule (``zoo.recipes.procedures.skan``) narrows to the top-k spaces and then to one per node.

  Attributes:
    features: o.
    spaces: the candidate spaces (subset of :data:`SPACES`, in any order; one space = a plain single-space KAN).
    grid_size, spline_order: resolution of every space (:func:`space_basis`).
    grid_range: interval of the grids of the B-spline, RBF and wavelet spaces.
    learn_selection: the mechanism flag. True (the paper): the selection logits are trained, so each node's mixing
      weights (and the schedule's top-k / argmax narrowing, which reads the logits) follow the data. False (the
      ablation): the logits' gradient is stopped, so they stay at their init 0: a uniform mixture over the kept
      spaces, and every narrowing keeps the first spaces in ``spaces`` order (ties), i.e. one fixed space per node.

  Variables: ``params``: ``selection_logits [i, spaces]``, per space ``coef_<space> [K_m, i, o]``, and for the
  B-spline, RBF and wavelet spaces (as efficient-KAN, FastKAN and Wav-KAN) a ``silu`` branch ``base_<space> [i, o]``;
  ``selection``: ``mask [i, spaces]``.
  """
  features: int
  spaces: Sequence[str] = SPACES
  grid_size: int = 5
  spline_order: int = 3
  grid_range: Sequence[float] = (-1.0, 1.0)
  learn_selection: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., i] -> [..., features]``."""
    where = type(self).__name__
    layers.check_shape(x, "x", "... features", where=where, dtype="floating",
                       features=layers.dim(layers.param_shape(self, "selection_logits"), 0))
    spaces = tuple(self.spaces)
    if not spaces or len(set(spaces)) != len(spaces) or any(s not in SPACES for s in spaces):
      raise ValueError(f"{where}: `spaces` must be distinct names from {SPACES}; got {spaces}.")
    n_in = x.shape[-1]
    lo, hi = self.grid_range
    bases = tuple(space_basis(s, self.grid_size, self.spline_order, (lo, hi)) for s in spaces)
    logits = self.param("selection_logits", layers.partitioned(nn.initializers.zeros_init(), ("embed", None)),
                        (n_in, len(spaces)), self.param_dtype)
    if not self.learn_selection:
      logits = jax.lax.stop_gradient(logits)
    mask = self.variable("selection", "mask", lambda: jnp.ones((n_in, len(spaces)), jnp.float32)).value
    p = jax.nn.softmax(jnp.where(mask > 0, logits.astype(jnp.float32), -jnp.inf), axis=-1)   # [i, spaces]
    coefs, base = [], None
    for m, (space, b) in enumerate(zip(spaces, bases)):
      if space == "bspline":
        init = lambda rng, shape, dtype=jnp.float32: ((jax.random.uniform(rng, shape, dtype) - 0.5) * 0.1
                                                      / self.grid_size)
      else:
        init = nn.initializers.normal(1.0 / math.sqrt(n_in * b.size))
      c = self.param(f"coef_{space}", layers.partitioned(init, (None, "embed", "mlp")), (b.size, n_in, self.features),
                     self.param_dtype)
      coefs.append(c * p[None, :, m, None])
      if space in _SPACES_WITH_BASE:
        # Every silu branch has the same input, so the mixed branches are one [i, o] weight for the kernel.
        w = self.param(f"base_{space}", layers.partitioned(_kaiming_uniform(math.sqrt(5)), ("embed", "mlp")),
                       (n_in, self.features), self.param_dtype)
        base = w * p[:, m, None] if base is None else base + w * p[:, m, None]
    grid = kan_basis.make_grid(bases, n_in, lo, hi)
    dtype = self.dtype or x.dtype
    return kan_basis.kan(x.astype(dtype), jnp.concatenate(coefs, axis=0).astype(dtype), basis=bases, grid=grid,
                         base_weight=None if base is None else base.astype(dtype), impl=self.impl)


class SKAN(nn.Module):
  """A stack of :class:`SelectableKANLayer`; inputs ``[b, ...]`` flattened. ``features``: widths after the input.

  ``learn_selection`` (default True; False is the frozen-uniform-selection ablation) as :class:`SelectableKANLayer`.
  """
  features: Sequence[int]
  spaces: Sequence[str] = SPACES
  grid_size: int = 5
  spline_order: int = 3
  grid_range: Sequence[float] = (-1.0, 1.0)
  learn_selection: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, ...] -> [b, features[-1]]``."""
    _check_batched(x, type(self).__name__)
    h = _flatten(x)
    for l, width in enumerate(self.features):
      h = SelectableKANLayer(width, tuple(self.spaces), self.grid_size, self.spline_order, tuple(self.grid_range),
                             learn_selection=self.learn_selection, impl=self.impl, dtype=self.dtype,
                             param_dtype=self.param_dtype, name=f"layers_{l}")(h)
    return h


class SelectableKANConv(nn.Module):
  """S-ConvKAN layer: a :class:`SelectableKANLayer` on every ``kernel_size`` patch (a KAN convolution).

  Attributes:
    features: output channels. kernel_size, strides, padding: of the patches
    (``jax.lax.conv_general_dilated_patches``). Others: as :class:`SelectableKANLayer`.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  spaces: Sequence[str] = SPACES
  grid_size: int = 5
  spline_order: int = 3
  grid_range: Sequence[float] = (-1.0, 1.0)
  learn_selection: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [b, H, W, C] -> [b, H', W', features]``."""
    logits = layers.param_shape(self, "kan", "selection_logits")  # [C * kh * kw, spaces] once initialised
    kh, kw = self.kernel_size
    layers.check_shape(x, "x", "batch height width channels", where=type(self).__name__, dtype="floating",
                       channels=None if logits is None else logits[0] // (kh * kw))
    patches = jax.lax.conv_general_dilated_patches(x, tuple(self.kernel_size), tuple(self.strides), self.padding,
                                                   dimension_numbers=("NHWC", "OIHW", "NHWC"))
    return SelectableKANLayer(self.features, tuple(self.spaces), self.grid_size, self.spline_order,
                              tuple(self.grid_range), learn_selection=self.learn_selection, impl=self.impl,
                              dtype=self.dtype, param_dtype=self.param_dtype, name="kan")(patches)


class SConvKAN(nn.Module):
  """S-ConvKAN classifier: ``[SelectableKANConv -> max-pool 2]`` per entry of ``channels``, then a selectable KAN
  head on the flattened features. ``image [b, H, W, C] -> logits [b, num_classes]``."""
  num_classes: int = 10
  channels: Sequence[int] = (8, 16)
  kernel_size: Sequence[int] = (3, 3)
  spaces: Sequence[str] = SPACES
  grid_size: int = 5
  spline_order: int = 3
  learn_selection: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array) -> Array:
    layers.check_shape(image, "image", "batch height width channels", where=type(self).__name__, dtype="floating")
    h = image
    for l, c in enumerate(self.channels):
      h = SelectableKANConv(c, tuple(self.kernel_size), spaces=tuple(self.spaces), grid_size=self.grid_size,
                            spline_order=self.spline_order, learn_selection=self.learn_selection, impl=self.impl,
                            dtype=self.dtype, param_dtype=self.param_dtype, name=f"conv_{l}")(h)
      h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="SAME")
    h = h.reshape(h.shape[0], -1)
    return SelectableKANLayer(self.num_classes, tuple(self.spaces), self.grid_size, self.spline_order,
                              learn_selection=self.learn_selection, impl=self.impl, dtype=self.dtype,
                              param_dtype=self.param_dtype, name="head")(h).astype(jnp.float32)


def selection_probabilities(variables) -> dict[str, Array]:
  """S-KAN mixing weights per layer: ``{'layers_0': p [i, spaces], ...}`` (softmax over the kept spaces; the key of a
  lone layer's own variables is ``''``)."""
  params = flax.traverse_util.flatten_dict(flax.core.unfreeze(nn.unbox(variables["params"])), sep="/")
  masks = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get("selection", {})), sep="/")
  out = {}
  for path, logits in params.items():
    scope, _, leaf = path.rpartition("/")
    if leaf == "selection_logits":
      mask = masks.get(f"{scope}/mask" if scope else "mask", jnp.ones_like(logits))
      out[scope] = jax.nn.softmax(jnp.where(mask > 0, logits, -jnp.inf), axis=-1)
  return out
