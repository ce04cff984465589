"""MgNO: neural operators whose linear maps between neurons are multigrid V-cycles.

He, Liu and Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid", ICLR 2024, arXiv:2310.19809.

A neuron of an MgNO layer is a function, and the layer is a fully connected network of functions::

  O_i(u) = sigma( sum_j W_ij u_j + B_i ),       u_j, B_i: functions on the grid, W_ij: bounded linear operators

All ``W_ij`` of a layer form one multi-channel linear operator ``W: [c_in functions] -> [c_out functions]``,
parameterised by one V-cycle of MgNet (the paper's Algorithm 1, :class:`VCycleConv`). With ``f^1 = u`` the layer's
input (``c_in`` channels, the right-hand side) and ``u^{l,0} = 0``::

  for l = 1 .. J:                                   (fine to coarse)
    for i = 1 .. nu_l:  u^{l,i} = u^{l,i-1} + S^{l,i} * (f^l - A^l * u^{l,i-1})     (smoothing; the first is S f)
    f^{l+1} = R^l *_2 (f^l - A^l * u^l)                                          (restriction of the residual)
  for l = J-1 .. 1:                                 (coarse to fine)
    u^l = u^l + P^l *_2^T u^{l+1}                                               (prolongation)
    (optional post-smoothing, as in MgNet)
  W u = u^1                                           (``c_out`` channels)

``A^l: c_out -> c_in`` and ``S^{l,i}: c_in -> c_out`` are 3x3 convolutions, ``R^l`` a stride-2 3x3 convolution
(``c_in -> c_in``), ``P^l`` a stride-2 3x3 transposed convolution (``c_out -> c_out``); all without bias. The
bias ``B_i`` is a function: a learned field on the grid (bilinearly resampled when the model is applied on another
grid). There are no lifting or projection layers: the first layer maps the input's channels to the width, the last
one (linear, no activation) to the output's channels. Boundary conditions enter only through the convolutions'
padding (``boundary``): ``'dirichlet'`` zero padding, ``'periodic'`` circular, ``'neumann'`` reflection. Every
multigrid operation goes through ``zoo.kernels.multigrid`` (Pallas kernels on GPU/TPU, ``lax.conv`` elsewhere).

Public names:

* :class:`VCycleConv` (1D/2D): ``x [batch, *spatial, c_in] -> [batch, *spatial, features]``, the operator ``W``.
* :class:`MgNOLayer`: ``sigma(W u + B)``, same shapes.
* :class:`MgNO`: ``num_layers`` MgNO layers of width ``features`` and a linear output layer:
  ``x [batch, *spatial, in_channels] -> [batch, *spatial, out_features]``.
* ``PRESETS``: ``'darcy'`` (the authors' Darcy setting: 5 layers of width 24, 5 grid levels with (1, 1, 1, 2, 2)
  smoothing steps, the pointwise term) and ``'tiny'`` (for tests).

Defaults and deviations. The paper's text fixes the structure; sizes follow the authors' public Darcy script (5
layers of width 24, 5 levels = 64^2 -> 4^2, smoothing steps (1, 1, 1, 2, 2), Adam with lr 3e-4 and a one-cycle
schedule for 500 epochs, an H1 loss); they are :class:`MgNO`'s defaults and ``PRESETS['darcy']``. Initialisation is
PyTorch's convolution default (uniform, variance 1/(3 fan_in)), which the authors' code uses. One ``A^l`` per level
is shared by its smoothing steps and its residual, as in Algorithm 1 and MgNet (``share_operator=True``, the
default); the authors' code draws a new ``A`` for each step (``share_operator=False``). The two are the same
operator when every level smooths once; with the slow Darcy test's (1, 1, 2, 2) steps (2 layers of width 8, 600
steps, seed 0) they measured test relative L2 0.0373 shared (31,654 parameters) and 0.0382 per step (33,094): the
extra operators bought nothing here, so the default is the paper's Algorithm 1. ``coarse_correction=False`` is the
ablation of the multigrid mechanism (the same smoothing steps on the finest grid only; tests/papers/test_mgno.py).
The authors' Darcy code adds a pointwise (1x1, bias-free here) linear term to each layer's ``W``
(``pointwise=True``; still a bounded linear operator, so still ``sigma(W u + B)``) and ends in a 1x1 projection;
here the output layer is an MgNO layer without activation, so there is no projection. Algorithm 1 restricts the
residual and starts each coarse level from zero, as implemented; the authors' script by default restricts ``f``
itself and carries ``u`` down with another learned stride-2 convolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo.kernels import multigrid as mg

__all__ = ["MgNO", "MgNOLayer", "PRESETS", "VCycleConv"]

# Initialisations of the convolutions by name (configs name them): PyTorch's Conv default (kaiming_uniform with
# a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which the authors' code uses), LeCun normal (variance 1/fan_in)
# and He normal (variance 2/fan_in).
INITS = {
    "torch": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "lecun": nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
    "he": nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
}

_ACTIVATIONS = {"gelu": functools.partial(nn.gelu, approximate=False), "relu": nn.relu, "tanh": jnp.tanh,
                "silu": nn.silu}


def _check_input(x, name: str, where: str):
  layers.check_shape(x, name, "... channels", where=where, dtype="floating")
  if x.ndim not in (3, 4):
    raise ValueError(f"{where}: `{name}` must have shape [batch, length, channels] (1D) or [batch, height, width, "
                     f"channels] (2D); got shape {tuple(x.shape)}.")


class VCycleConv(nn.Module):
  """The multi-channel linear operator ``W`` of an MgNO layer: one V-cycle with learned convolutions.

  Attributes:
    features: output channels (``c_out``, the channels of ``u``).
    levels: number of grids ``J`` (the finest included).
    pre_smooth: smoothing steps ``nu_l`` per level (an int for every level, or one per level); the coarsest
      level needs at least one.
    post_smooth: smoothing steps after each prolongation (0 in the paper's Algorithm 1).
    boundary: ``'dirichlet'`` | ``'neumann'`` | ``'periodic'`` (the convolutions' padding).
    impl: ``zoo.kernels.multigrid`` implementation (``'auto'`` | ``'pallas'`` | ``'xla'``).
    backend: None (by platform), or force a kernel: ``'triton'``, ``'mosaic'`` (e.g. for export), ``'jnp'``.
    dtype: computation dtype (default: the input's).
    coarse_correction: True (default, the paper's V-cycle). False is the ablation of the multigrid mechanism: all
      the cycle's smoothing steps (``sum(pre_smooth)``, plus the post-smoothing ones) run on the finest grid, with
      no restriction, no coarser grid and no prolongation, so ``W`` becomes a local operator of the same depth.
    share_operator: True (default): one ``A^l`` per level, shared by the level's smoothing steps and its residual
      (``A_{l}``), as in the paper's Algorithm 1 and MgNet. False: a new ``A`` for every smoothing step after the
      first (``A_{l}_{i}``, and ``A_post_{l}_{i}`` for post-smoothing; the residual keeps ``A_{l}``), as in the
      authors' code. Identical when every level smooths once (the first step from zero is ``S f``).
  Input ``f: [batch, *spatial, c_in]``; output ``[batch, *spatial, features]``.
  """
  features: int
  levels: int = 5
  pre_smooth: int | Sequence[int] = 1
  post_smooth: int = 0
  boundary: str = "dirichlet"
  coarse_correction: bool = True
  share_operator: bool = True
  impl: str = "auto"
  backend: str | None = None
  kernel_init: str = "torch"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def _weight(self, name: str, d: int, cin: int, cout: int):
    window = (None,) * d
    w = self.param(name, layers.partitioned(INITS[self.kernel_init], window + ("conv_in", "conv_out")),
                   (3,) * d + (cin, cout), self.param_dtype)
    return w

  @nn.compact
  def __call__(self, f):
    where = type(self).__name__
    _check_input(f, "f", where)
    if self.levels < 1:
      raise ValueError(f"{where}: `levels` must be >= 1; got {self.levels}.")
    nus = [self.pre_smooth] * self.levels if isinstance(self.pre_smooth, int) else list(self.pre_smooth)
    if len(nus) != self.levels or min(nus) < 0 or nus[-1] < 1:
      raise ValueError(f"{where}: `pre_smooth` must be one int or {self.levels} ints >= 0 with at least one step on "
                       f"the coarsest level; got {self.pre_smooth}.")
    d = f.ndim - 2
    dtype = self.dtype or f.dtype
    f = f.astype(dtype)
    cf, cu = f.shape[-1], self.features
    shapes = [tuple(f.shape[1:-1])]
    for _ in range(self.levels - 1):
      try:
        shapes.append(mg.coarse_shape(shapes[-1], self.boundary))
      except ValueError as e:
        raise ValueError(f"{where}: a grid of spatial shape {shapes[0]} cannot be coarsened {self.levels - 1} times "
                         f"with boundary={self.boundary!r}: {e}") from None
    kw = dict(boundary=self.boundary, impl=self.impl, backend=self.backend)
    w = lambda name, cin, cout: self._weight(name, d, cin, cout).astype(dtype)

    if not self.coarse_correction:
      # The ablation: every smoothing step of the cycle on the finest grid; no restriction, no prolongation.
      nus = [sum(nus) + self.post_smooth * (self.levels - 1)]

    us, fs, ops = [], [], []
    for level, nu in enumerate(nus):
      a = w(f"A_{level}", cu, cf)  # A^l: u -> f channels, the level's residual (and, shared, its smoothing steps)
      # share_operator=False draws a new A for each smoothing step after the first (the first, from zero, is S f).
      step_op = lambda i: a if self.share_operator or i == 0 else w(f"A_{level}_{i}", cu, cf)
      u = None
      for i in range(nu):
        u = mg.smooth(u, f, step_op(i), w(f"S_{level}_{i}", cf, cu), **kw)
      us.append(u)
      fs.append(f)
      ops.append(a)
      if level < len(nus) - 1:  # the coarse-grid correction: restrict the residual, recurse
        r = f if u is None else mg.residual(u, f, a, **kw)
        f = mg.restrict(r, w(f"R_{level}", cf, cf), **kw)
    u = us[-1]
    for level in range(len(nus) - 2, -1, -1):
      e = mg.prolong(u, w(f"P_{level}", cu, cu), shape=shapes[level], **kw)
      u = e if us[level] is None else us[level] + e
      for i in range(self.post_smooth):
        a = ops[level] if self.share_operator else w(f"A_post_{level}_{i}", cu, cf)
        u = mg.smooth(u, fs[level], a, w(f"S_post_{level}_{i}", cf, cu), **kw)
    return u


class MgNOLayer(nn.Module):
  """``sigma(W u + B)``: an MgNO layer. ``W`` is a :class:`VCycleConv`, ``B`` a learned function on the grid.

  Attributes:
    features: output channels.
    activation: ``'gelu'`` (the paper's), ``'relu'``, ``'tanh'``, ``'silu'``, or None for a linear layer.
    bias: ``'field'`` (a function: one value per grid point and channel, the paper's), ``'constant'`` (one per
      channel) or ``'none'``.
    Other attributes (``coarse_correction``, ``share_operator`` ...) as :class:`VCycleConv`.
  Input ``u: [batch, *spatial, c_in]``; output ``[batch, *spatial, features]``.
  """
  features: int
  levels: int = 5
  pre_smooth: int | Sequence[int] = 1
  post_smooth: int = 0
  boundary: str = "dirichlet"
  activation: str | None = "gelu"
  bias: str = "field"
  pointwise: bool = False
  coarse_correction: bool = True
  share_operator: bool = True
  kernel_init: str = "torch"
  impl: str = "auto"
  backend: str | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, u):
    where = type(self).__name__
    _check_input(u, "u", where)
    if self.activation is not None and self.activation not in _ACTIVATIONS:
      raise ValueError(f"{where}: `activation` must be one of {sorted(_ACTIVATIONS)} or None; got "
                       f"{self.activation!r}.")
    if self.bias not in ("field", "constant", "none"):
      raise ValueError(f"{where}: `bias` must be 'field', 'constant' or 'none'; got {self.bias!r}.")
    if self.kernel_init not in INITS:
      raise ValueError(f"{where}: `kernel_init` must be one of {sorted(INITS)}; got {self.kernel_init!r}.")
    y = VCycleConv(self.features, levels=self.levels, pre_smooth=self.pre_smooth, post_smooth=self.post_smooth,
                   boundary=self.boundary, coarse_correction=self.coarse_correction,
                   share_operator=self.share_operator, impl=self.impl, backend=self.backend,
                   kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype, name="W")(u)
    if self.pointwise:
      w0 = self.param("W0", layers.partitioned(INITS[self.kernel_init], ("conv_in", "conv_out")),
                      (u.shape[-1], self.features), self.param_dtype)
      y = y + jnp.einsum("...i,io->...o", u.astype(y.dtype), w0.astype(y.dtype))
    spatial = tuple(u.shape[1:-1])
    if self.bias == "field":
      if self.is_initializing() or not self.has_variable("params", "B"):
        b = self.param("B", layers.partitioned(nn.initializers.zeros_init(), (None,) * len(spatial) + ("conv_out",)),
                       spatial + (self.features,), self.param_dtype)
      else:
        b = nn.unbox(self.get_variable("params", "B"))
      if tuple(b.shape[:-1]) != spatial:
        # B is a function: evaluated on another grid by linear interpolation of its grid values.
        b = jax.image.resize(b, spatial + (self.features,), method="linear")
      y = y + b.astype(y.dtype)
    elif self.bias == "constant":
      b = self.param("B", layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)), (self.features,),
                     self.param_dtype)
      y = y + b.astype(y.dtype)
    return y if self.activation is None else _ACTIVATIONS[self.activation](y)


class MgNO(nn.Module):
  """The multigrid neural operator: ``num_layers`` MgNO layers and a linear MgNO output layer.

  Defaults are the authors' Darcy setting (module docstring); ``pointwise=False`` gives the plain
  ``sigma(W_Mg u + B)`` layers.

  Attributes:
    features: width (functions per hidden layer).
    num_layers: hidden (nonlinear) MgNO layers.
    out_features: output channels.
    levels, pre_smooth, post_smooth, boundary, activation, bias, pointwise, coarse_correction, share_operator,
      impl, backend, dtype: as :class:`MgNOLayer` (``pointwise``: add a 1x1 linear term to each layer's ``W``;
      ``coarse_correction=False``: the single-grid ablation; ``share_operator``: see :class:`VCycleConv`).
  Input ``x: [batch, *spatial, in_channels]`` (1D or 2D); output ``[batch, *spatial, out_features]``.
  """
  features: int = 24
  num_layers: int = 5
  out_features: int = 1
  levels: int = 5
  pre_smooth: int | Sequence[int] = (1, 1, 1, 2, 2)
  post_smooth: int = 0
  boundary: str = "dirichlet"
  activation: str = "gelu"
  bias: str = "field"
  pointwise: bool = True
  coarse_correction: bool = True
  share_operator: bool = True
  kernel_init: str = "torch"
  impl: str = "auto"
  backend: str | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    where = type(self).__name__
    _check_input(x, "x", where)
    if self.num_layers < 0 or self.features < 1 or self.out_features < 1:
      raise ValueError(f"{where}: `num_layers` must be >= 0 and `features`, `out_features` >= 1; got "
                       f"{self.num_layers}, {self.features}, {self.out_features}.")
    kw = dict(levels=self.levels, pre_smooth=self.pre_smooth, post_smooth=self.post_smooth, boundary=self.boundary,
              bias=self.bias, pointwise=self.pointwise, coarse_correction=self.coarse_correction,
              share_operator=self.share_operator, kernel_init=self.kernel_init, impl=self.impl,
              backend=self.backend, dtype=self.dtype, param_dtype=self.param_dtype)
    for k in range(self.num_layers):
      x = MgNOLayer(self.features, activation=self.activation, name=f"layer_{k}", **kw)(x)
    return MgNOLayer(self.out_features, activation=None, name="output", **kw)(x)


PRESETS = {
    # The authors' public Darcy configuration: 5 layers of 24 functions, 5 levels with (1, 1, 1, 2, 2) smoothing
    # steps, zero padding, a pointwise term per layer.
    "darcy": functools.partial(MgNO, features=24, num_layers=5, levels=5, pre_smooth=(1, 1, 1, 2, 2),
                               pointwise=True),
    "tiny": functools.partial(MgNO, features=8, num_layers=2, levels=3, pre_smooth=1),
}
