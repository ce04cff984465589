"""Multi-label image data for SwinCheX (Taslimi et al., 2022, arXiv 2206.04246): ChestX-ray14 from a local copy, and
planted shapes for tests.

* :func:`load_chestxray14` / dataset ``chestxray14``: NIH ChestX-ray14 (Wang et al., CVPR 2017) read from a local
  copy: ``Data_Entry_2017.csv`` and the PNG images under ``images/`` (or ``images_*/images/`` as the NIH archives
  unpack) in the directory given by ``root`` or the ``ZOO_CHESTXRAY14_DIR`` environment variable. The split is
  patient-wise (no patient in two splits), seeded; ``image [n, size, size, 1]`` float32 in [0, 1], ``label [n, 14]``
  int32 multi-hot over :data:`PATHOLOGIES` ("No Finding" is all zeros). There is no download (the set is 45 GB and
  needs the NIH terms): without a local copy the loader raises :class:`ChestXray14NotFound` naming the path.
* ``planted_shapes``: ``image [n, size, size, 1]`` float32: Gaussian noise plus a random subset of five planted
  shapes (:data:`SHAPES`: a filled blob, a ring, a bar, a cross, a speckle patch), each present with probability
  ``p_present`` at a random position, brightness and (for the bar) orientation; ``label [n, 5]`` int32 multi-hot.
  A blob and a ring, or a bar and a cross, differ only in a shape wider than one 4x4-token window of a patch-2
  Swin at 32x32, so telling them apart needs attention across windows. Deterministic by ``seed``.
"""

from __future__ import annotations

import os

import numpy as np

from zoo.recipes import data

__all__ = ["ChestXray14NotFound", "ENV_VAR", "PATHOLOGIES", "SHAPES", "load_chestxray14", "patient_split",
           "planted_shapes"]

ENV_VAR = "ZOO_CHESTXRAY14_DIR"
PATHOLOGIES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
SHAPES = ("blob", "ring", "bar", "cross", "speckle")


class ChestXray14NotFound(FileNotFoundError):
  """No local ChestX-ray14 copy where the loader looked (the data cannot be fetched offline)."""


# ------------------------------------------------------------------------------------------------- ChestX-ray14


def _root(root: str | None) -> str:
  source = "root=" if root else ENV_VAR
  root = root or os.environ.get(ENV_VAR)
  if not root:
    raise ChestXray14NotFound(
        f"ChestX-ray14 is not available offline: set {ENV_VAR} (or pass root=) to a directory holding "
        "Data_Entry_2017.csv and images/ (from https://nihcc.app.box.com/v/ChestXray-NIHCC).")
  csv = os.path.join(root, "Data_Entry_2017.csv")
  if not os.path.isfile(csv):
    raise ChestXray14NotFound(f"ChestX-ray14 is not available: expected {csv} (directory from {source}); download "
                              "it from https://nihcc.app.box.com/v/ChestXray-NIHCC and unpack it there.")
  return root


def _find_image(root: str, name: str, cache: dict[str, str]) -> str:
  if not cache:
    for dirpath, _, files in os.walk(root):
      for f in files:
        if f.endswith(".png"):
          cache[f] = os.path.join(dirpath, f)
  if name not in cache:
    raise ChestXray14NotFound(f"ChestX-ray14: image {name} listed in Data_Entry_2017.csv is not under {root}.")
  return cache[name]


def patient_split(patients: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), *,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """Row indices ``{'train', 'validation', 'test'}`` with every patient's rows in exactly one split."""
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(f"patient_split: `fractions` must be three non-negative numbers summing to 1; got {fractions}.")
  patients = np.asarray(patients)
  unique = np.unique(patients)
  order = np.random.default_rng(seed).permutation(len(unique))
  cuts = np.round(np.cumsum(fractions)[:2] * len(unique)).astype(int)
  groups = np.split(unique[order], cuts)
  return {name: np.flatnonzero(np.isin(patients, g)) for name, g in zip(("train", "validation", "test"), groups)}


def load_chestxray14(root: str | None = None, *, image_size: int = 224, limit: int | None = None,
                     fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
                     ) -> dict[str, dict[str, np.ndarray]]:
  """``{split: {'image': [n, s, s, 1] float32, 'label': [n, 14] int32, 'patient': [n] int32}}`` from a local copy.

  Args:
    root: the directory with ``Data_Entry_2017.csv``; default ``$ZOO_CHESTXRAY14_DIR``.
    image_size: side the (1024^2, grey) images are resized to (the paper: 224).
    limit: read only the first ``limit`` rows of the csv (quick runs).
    fractions: train / validation / test shares of the patients.
  """
  import csv  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = _root(root)
  with open(os.path.join(root, "Data_Entry_2017.csv"), newline="") as f:
    reader = csv.DictReader(f)
    for column in ("Image Index", "Finding Labels", "Patient ID"):
      if column not in (reader.fieldnames or ()):
        raise ValueError(f"load_chestxray14: Data_Entry_2017.csv has no column {column!r}; got {reader.fieldnames}.")
    rows = [row for _, row in zip(range(limit) if limit is not None else iter(int, 1), reader)]
  findings = [row["Finding Labels"].split("|") for row in rows]
  labels = np.array([[p in f for p in PATHOLOGIES] for f in findings], np.int32).reshape(len(rows), len(PATHOLOGIES))
  patients = np.array([int(row["Patient ID"]) for row in rows], np.int32)
  cache: dict[str, str] = {}
  images = np.empty((len(rows), image_size, image_size, 1), np.float32)
  for i, name in enumerate(row["Image Index"] for row in rows):
    with Image.open(_find_image(root, name, cache)) as im:
      im = im.convert("L").resize((image_size, image_size), Image.BILINEAR)
      images[i, ..., 0] = np.asarray(im, np.float32) / 255.0
  split = patient_split(patients, fractions, seed=seed)
  return {k: {"image": images[idx], "label": labels[idx], "patient": patients[idx]} for k, idx in split.items()}


@data.register("chestxray14", version="1.0.0")
def chestxray14(root: str | None = None, image_size: int = 224, limit: int | None = None, seed: int = 0
                ) -> data.Generated:
  """NIH ChestX-ray14 from a local copy (``root`` or ``$ZOO_CHESTXRAY14_DIR``), patient-wise split."""
  splits = load_chestxray14(root, image_size=image_size, limit=limit, seed=seed)
  return data.Generated(splits, metadata={"num_labels": len(PATHOLOGIES), "labels": list(PATHOLOGIES)})


# ------------------------------------------------------------------------------------------------ planted shapes


def _stamp(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
  """A ``[size, size]`` canvas with one shape of ``kind`` at a random place, values in [0, 1]; sizes are given for a
  16x16 image and scale with ``size / 16``."""
  f = size / 16.0
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / f  # pixel coordinates in 16x16 units
  cy, cx = rng.uniform(5, 11, size=2)
  r = np.hypot(yy - cy, xx - cx)
  if kind == "blob":  # a filled disc
    return (r <= rng.uniform(2.5, 3.5)).astype(np.float32)
  if kind == "ring":  # the outline of a larger disc
    radius = rng.uniform(4.0, 5.0)
    return (np.abs(r - radius) <= 0.7).astype(np.float32)
  if kind == "bar":  # a 2-wide straight bar, horizontal or vertical
    half = rng.uniform(4.5, 6.0)
    along, across = (xx - cx, yy - cy) if rng.random() < 0.5 else (yy - cy, xx - cx)
    return ((np.abs(along) <= half) & (np.abs(across) <= 1.0)).astype(np.float32)
  if kind == "cross":  # a 1-wide plus sign
    arm = rng.uniform(3.5, 4.5)
    horizontal = (np.abs(xx - cx) <= arm) & (np.abs(yy - cy) <= 0.5)
    vertical = (np.abs(yy - cy) <= arm) & (np.abs(xx - cx) <= 0.5)
    return (horizontal | vertical).astype(np.float32)
  if kind == "speckle":  # isolated dots in a 9x9 patch
    inside = (np.abs(yy - cy) <= 4) & (np.abs(xx - cx) <= 4)
    return (inside & (rng.random((size, size)) < 0.3)).astype(np.float32)
  raise ValueError(f"planted_shapes: unknown shape {kind!r}; valid: {SHAPES}.")


def _shapes_split(rng: np.random.Generator, n: int, size: int, p_present: float, noise: float):
  labels = (rng.random((n, len(SHAPES))) < p_present).astype(np.int32)
  images = np.empty((n, size, size, 1), np.float32)
  for i in range(n):
    canvas = noise * rng.standard_normal((size, size)).astype(np.float32)
    for k, kind in enumerate(SHAPES):
      if labels[i, k]:
        canvas = np.maximum(canvas, rng.uniform(0.6, 1.0) * _stamp(rng, kind, size))
    images[i, ..., 0] = canvas
  return {"image": images, "label": labels}


@data.register("planted_shapes", version="1.1.0")
def planted_shapes(num_train: int = 2048, num_test: int = 512, image_size: int = 32, p_present: float = 0.5,
                   noise: float = 0.1, seed: int = 0) -> data.Generated:
  """Noise images with a random subset of 5 planted shapes; ``image [size, size, 1]``, ``label [5]`` multi-hot."""
  if num_train < 1 or num_test < 1 or image_size < 16 or not 0 < p_present < 1 or noise < 0:
    raise ValueError(f"planted_shapes: need num_train, num_test >= 1, image_size >= 16, 0 < p_present < 1 and "
                     f"noise >= 0; got {num_train}, {num_test}, {image_size}, {p_present}, {noise}.")
  rng = np.random.default_rng(seed)
  splits = {"train": _shapes_split(rng, num_train, image_size, p_present, noise),
            "test": _shapes_split(rng, num_test, image_size, p_present, noise)}
  return data.Generated(splits, metadata={"num_labels": len(SHAPES), "labels": list(SHAPES)})
