"""Synthetic layered canvases for ART (Pu et al., "ART: Anonymous Region Transformer for Variable Multi-Layer
Transparent Image Generation", 2025, arXiv 2502.18364): a background and 2-5 alpha-blended shape layers.

Every example is a ``size x size`` canvas (default 32) built back to front: a background (a flat colour plus a soft
linear gradient, alpha 1) and ``n`` foreground layers (``n`` uniform in ``[min_layers, max_layers]``), each one
shape (rectangle, ellipse or diamond) of one colour with a constant opacity in ``[0.7, 1]`` inside the shape and 0
outside. A layer's box is the shape's bounding box; boxes are aligned to the latent grid (multiples of ``grid``
pixels, default 4 = the autoencoder's patch), which is the paper's ceiling alignment of anonymous regions to the
latent grid done at generation time, so a box's latent tokens are exactly its area over ``grid**2``.

Keys (float32 in [0, 1] unless said otherwise; ``L = max_layers``):

* ``layers`` ``[L, size, size, 4]``: the foreground RGBA layers, front-most last; padded layers are all 0.
* ``background`` ``[size, size, 3]``; ``composite`` ``[size, size, 3]``: the layers alpha-blended over it ("over").
* ``boxes`` ``[L, 4]`` int32 ``(y0, x0, y1, x1)`` in pixels, end exclusive; ``(0, 0, 0, 0)`` for padding.
* ``layer_valid`` ``[L]`` int32 (1 = a real layer); ``num_layers`` int32.
* ``prompt`` ``[L]`` int32: the global prompt, one token ``1 + shape * colours + colour`` per layer in a random order
  (0 = padding). It names what is on the canvas but not which box holds what: the regions are anonymous.

Deterministic by ``seed``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["COLOURS", "SHAPES", "composite_over", "layered_canvas", "make_canvases"]

SHAPES = ("rectangle", "ellipse", "diamond")
COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.95, 0.85, 0.1], [0.8, 0.2, 0.8],
                    [0.1, 0.85, 0.85], [0.95, 0.55, 0.1], [0.15, 0.15, 0.15]], np.float32)


def composite_over(background: np.ndarray, layers: np.ndarray) -> np.ndarray:
  """``background [..., H, W, 3]`` with ``layers [..., L, H, W, 4]`` blended over it in order (layer 0 first)."""
  out = np.asarray(background, np.float32)
  for i in range(layers.shape[-4]):
    a = layers[..., i, :, :, 3:]
    out = a * layers[..., i, :, :, :3] + (1.0 - a) * out
  return out


def _shape_alpha(kind: int, h: int, w: int) -> np.ndarray:
  yy, xx = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
  if kind == 0:
    return np.ones((h, w), np.float32)
  if kind == 1:
    return (yy ** 2 + xx ** 2 <= 1.0).astype(np.float32)
  return (np.abs(yy) + np.abs(xx) <= 1.0).astype(np.float32)


def make_canvases(n: int, *, size: int = 32, min_layers: int = 2, max_layers: int = 5, grid: int = 4,
                  min_box: int = 2, max_box: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
  """``n`` canvases (module docstring); box sides are ``min_box..max_box`` grid cells."""
  cells = size // grid
  if size % grid or not 1 <= min_layers <= max_layers or not 1 <= min_box <= max_box <= cells:
    raise ValueError(f"make_canvases: need size % grid == 0, 1 <= min_layers <= max_layers and 1 <= min_box <= "
                     f"max_box <= size // grid; got size={size}, grid={grid}, layers=({min_layers}, {max_layers}), "
                     f"box=({min_box}, {max_box}).")
  rng = np.random.default_rng(seed)
  out = {"layers": np.zeros((n, max_layers, size, size, 4), np.float32),
         "background": np.zeros((n, size, size, 3), np.float32),
         "boxes": np.zeros((n, max_layers, 4), np.int32), "layer_valid": np.zeros((n, max_layers), np.int32),
         "num_layers": np.zeros((n,), np.int32), "prompt": np.zeros((n, max_layers), np.int32)}
  ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  for e in range(n):
    base = rng.uniform(0.3, 0.7, 3).astype(np.float32)
    slope = rng.uniform(-0.15, 0.15, (2, 3)).astype(np.float32)
    out["background"][e] = np.clip(base + ramp[:, None, None] * slope[0] + ramp[None, :, None] * slope[1], 0, 1)
    k = int(rng.integers(min_layers, max_layers + 1))
    tokens = []
    for i in range(k):
      bh, bw = (int(rng.integers(min_box, max_box + 1)) for _ in range(2))
      y0, x0 = int(rng.integers(0, cells - bh + 1)), int(rng.integers(0, cells - bw + 1))
      kind, colour = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS)))
      opacity = float(rng.uniform(0.7, 1.0))
      box = np.array([y0, x0, y0 + bh, x0 + bw]) * grid
      alpha = _shape_alpha(kind, bh * grid, bw * grid) * opacity
      layer = out["layers"][e, i]
      layer[box[0]:box[2], box[1]:box[3], :3] = COLOURS[colour] * (alpha[..., None] > 0)
      layer[box[0]:box[2], box[1]:box[3], 3] = alpha
      out["boxes"][e, i] = box
      tokens.append(1 + kind * len(COLOURS) + colour)
    out["layer_valid"][e, :k] = 1
    out["num_layers"][e] = k
    out["prompt"][e, :k] = rng.permutation(tokens)
  out["composite"] = composite_over(out["background"], out["layers"]).astype(np.float32)
  return out


@data.register("layered_canvas", version="1.0.0")
def layered_canvas(num_train: int = 2048, num_test: int = 256, size: int = 32, min_layers: int = 2,
                   max_layers: int = 5, grid: int = 4, min_box: int = 2, max_box: int = 5,
                   seed: int = 0) -> data.Generated:
  """Layered shape canvases (module docstring): ``layers``, ``background``, ``composite``, ``boxes``,
  ``layer_valid``, ``num_layers``, ``prompt``."""
  kw = dict(size=size, min_layers=min_layers, max_layers=max_layers, grid=grid, min_box=min_box, max_box=max_box)
  return data.Generated({"train": make_canvases(num_train, seed=seed, **kw),
                         "test": make_canvases(num_test, seed=seed + 100003, **kw)},
                        metadata={"size": size, "max_layers": max_layers, "grid": grid,
                                  "vocab_size": 1 + len(SHAPES) * len(COLOURS)})
