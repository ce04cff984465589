"""The data layer: named datasets read through TFDS ``data_source`` (array_record, no TensorFlow), and
deterministic global batches.

Two kinds of dataset share one interface (:func:`load`):

* **Generated** sets (sklearn's bundled sets, planted-structure generators, PDE solutions): a function registered
  with :func:`register` returns numpy arrays; on first use it becomes a TFDS ``GeneratorBasedBuilder`` prepared as
  array_record in a cache directory (``$ZOO_DATA_DIR``, default ``~/.cache/zoo/datasets``), and every later read
  goes through ``tfds`` exactly as real data does. Keyword arguments of the function are part of the cache key.
* **Real** TFDS sets (mnist, cifar10 ...), read from ``data_dir`` (default ``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``). This machine cannot download: a set that is not prepared there fails at once with a
  message saying how to prepare it, never a network retry loop.

Batches are a pure function of ``(seed, step)`` (:class:`Batches`), so a resumed run sees exactly the batches an
uninterrupted one would, and each process reads only the rows its devices hold.

Adding a generated dataset: put a module in ``recipes/datasets/`` (it is discovered automatically) with::

    @data.register("my_set", version="1.0.0")
    def my_set(n: int = 1000, seed: int = 0) -> data.Generated:
      return data.Generated({"train": {"x": ..., "y": ...}, "test": {...}}, metadata={"num_classes": 3})

Bump ``version`` whenever the generated values change, so stale caches are not reused.

Why not grain (yet). grain's ``MapDataset`` / ``IndexSampler`` / ``ShardByJaxProcess`` over ``tfds.data_source`` is
the standard JAX input pipeline, and it would keep both properties above. What this layer does today is small: a
seeded permutation per epoch, a gather of in-memory (or array_record) rows, and this process's slice of them
(:class:`Batches`, about 40 lines); grain's strengths, worker processes and in-order prefetch for decoding and
augmenting large real datasets, have no user here yet (every default dataset fits in memory, and the loop already
overlaps the host gather with the device step). Switching the sampler would change the batch order of every run,
so every effect test's calibration and every config's measured result would have to be redone. The trigger to adopt
it: the first real-data recipe whose per-example decoding or augmentation costs more than its train step; then
``_TFDSSource`` reads through a grain ``MapDataset`` (``.map`` for the preprocessing, read threads for prefetch)
behind :class:`Batches`' own permutation, so batches stay a pure function of ``(seed, step)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["ArraySource", "Batches", "DatasetInfo", "Generated", "eval_batches", "load", "names", "register",
           "register_tfds"]

_log = logging.getLogger(__name__)

# Sets that fit this budget are read into memory once; larger ones are read per batch by random access.
IN_MEMORY_BYTES = 512 * 2**20


@dataclasses.dataclass
class Generated:
  """What a generator returns: ``{split: {key: array [examples, ...]}}`` and JSON-able metadata."""
  splits: dict[str, dict[str, np.ndarray]]
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a loaded dataset looks like.

  Attributes:
    name: the registry name.
    num_examples: examples per split.
    element_spec: ``{key: (shape, dtype)}`` of one example.
    metadata: dataset facts (``num_classes`` ...).
  """
  name: str
  num_examples: dict[str, int]
  element_spec: dict[str, tuple[tuple[int, ...], str]]
  metadata: dict[str, Any]

  @property
  def num_classes(self) -> int | None:
    return self.metadata.get("num_classes")


@dataclasses.dataclass(frozen=True)
class _Entry:
  kind: str  # 'generated' | 'tfds'
  fn: Callable[..., Generated] | None = None
  version: str = "1.0.0"
  tfds_name: str | None = None
  preprocess: Callable[[dict], dict] | None = None
  doc: str = ""


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *, version: str = "1.0.0"):
  """Decorator registering a generator function ``fn(**kwargs) -> Generated`` as dataset ``name``."""
  def deco(fn):
    if name in _REGISTRY:
      raise ValueError(f"dataset {name!r} is registered twice.")
    _REGISTRY[name] = _Entry("generated", fn=fn, version=version, doc=(fn.__doc__ or "").strip())
    return fn
  return deco


def register_tfds(name: str, tfds_name: str | None = None, preprocess: Callable[[dict], dict] | None = None,
                  doc: str = ""):
  """Registers a real TFDS dataset (read with ``tfds.data_source``) under ``name``."""
  if name in _REGISTRY:
    raise ValueError(f"dataset {name!r} is registered twice.")
  _REGISTRY[name] = _Entry("tfds", tfds_name=tfds_name or name, preprocess=preprocess, doc=doc)


@functools.cache
def _discover() -> None:
  from zoo.recipes import datasets  # pylint: disable=g-import-not-at-top
  for info in pkgutil.iter_modules(datasets.__path__):
    importlib.import_module(f"{datasets.__name__}.{info.name}")


def names() -> list[str]:
  """Every registered dataset name."""
  _discover()
  return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
  _discover()
  if name not in _REGISTRY:
    raise ValueError(f"Unknown dataset {name!r}. Valid datasets: {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name]


# ----------------------------------------------------------------------------------------------------- sources


class ArraySource:
  """An in-memory split: ``{key: array [examples, ...]}`` with the random-access interface of a TFDS source."""

  def __init__(self, arrays: Mapping[str, np.ndarray], *, name: str = "a split"):
    if not isinstance(arrays, Mapping):
      raise TypeError(f"{name} must be a mapping {{key: array [examples, ...]}} (e.g. {{'image': x, 'label': y}}); "
                      f"got {type(arrays).__name__}.")
    if not arrays:
      raise ValueError(f"{name} holds no arrays.")
    converted = {}
    for k, v in arrays.items():
      try:
        a = np.asarray(v)
      except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name}[{k!r}] is not a rectangular array ({e}); pass a numpy array.") from None
      if a.dtype == object or a.dtype.kind in "USV":
        raise ValueError(f"{name}[{k!r}] must be a numeric array; got dtype {a.dtype} (ragged lists or strings?).")
      if a.ndim == 0:
        raise ValueError(f"{name}[{k!r}] must have a leading examples axis; got a scalar.")
      converted[k] = a
    arrays = converted
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"every array of a split must have the same number of examples; got {lengths}.")
    self.arrays = arrays
    self._len = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._len

  def __getitems__(self, indices) -> dict[str, np.ndarray]:
    indices = np.asarray(indices, dtype=np.int64)
    return {k: v[indices] for k, v in self.arrays.items()}


class _TFDSSource:
  """A TFDS array_record source whose reads are stacked into batch arrays (and preprocessed)."""

  def __init__(self, source, preprocess=None):
    self.source = source
    self.preprocess = preprocess

  def __len__(self) -> int:
    return len(self.source)

  def __getitems__(self, indices) -> dict[str, np.ndarray]:
    examples = self.source.__getitems__([int(i) for i in indices])
    batch = {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}
    return self.preprocess(batch) if self.preprocess else batch


def _maybe_in_memory(source: _TFDSSource) -> ArraySource | _TFDSSource:
  n = len(source)
  if n == 0:
    return source
  first = source.__getitems__([0])
  nbytes = sum(v.nbytes for v in first.values()) * n
  if nbytes > IN_MEMORY_BYTES:
    return source
  chunks = [source.__getitems__(range(i, min(i + 4096, n))) for i in range(0, n, 4096)]
  return ArraySource({k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]})


# ------------------------------------------------------------------------------------------- generated sets


def default_data_dir() -> str:
  return os.environ.get("ZOO_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "zoo", "datasets"))


def _config_name(kwargs: dict[str, Any]) -> str:
  if not kwargs:
    return "default"
  blob = json.dumps(kwargs, sort_keys=True, default=str)
  return "k" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _features(arrays: dict[str, np.ndarray], metadata: dict[str, Any]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  feats = {}
  for key, value in arrays.items():
    value = np.asarray(value)
    if key == "label" and metadata.get("num_classes") and np.issubdtype(value.dtype, np.integer):
      feats[key] = tfds.features.ClassLabel(num_classes=int(metadata["num_classes"]))
    else:
      feats[key] = tfds.features.Tensor(shape=value.shape[1:], dtype=value.dtype)
  return tfds.features.FeaturesDict(feats)


@contextlib.contextmanager
def _file_lock(path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _generated_builder(name: str, entry: _Entry, kwargs: dict[str, Any], data_dir: str):
  """A TFDS builder for a registered generator (called only when the cache is not prepared)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  generated = entry.fn(**kwargs)

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(entry.version)

    def _info(self):
      first = next(iter(generated.splits.values()))
      return tfds.core.DatasetInfo(builder=self, description=entry.doc,
                                   features=_features(first, generated.metadata),
                                   metadata=tfds.core.MetadataDict(generated.metadata))

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(arrays) for split, arrays in generated.splits.items()}

    def _generate_examples(self, arrays):
      n = len(next(iter(arrays.values())))
      for i in range(n):
        yield i, {k: v[i] for k, v in arrays.items()}

  Builder.name = name
  config = tfds.core.BuilderConfig(name=_config_name(kwargs), description=json.dumps(kwargs, default=str))
  return Builder(data_dir=data_dir, config=config, file_format="array_record")


def _prepared_generated(name: str, entry: _Entry, kwargs: dict[str, Any], data_dir: str | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or default_data_dir()
  config = _config_name(kwargs)
  version_dir = os.path.join(data_dir, name, config, entry.version)
  info_file = os.path.join(version_dir, "dataset_info.json")
  # TFDS prepares into a temporary directory and renames it when complete, so a prepared set can be read without
  # the lock (a read-only cache directory works).
  if not os.path.exists(info_file):
    lock = os.path.join(data_dir, f".{name}-{config}.lock")
    try:
      guard = _file_lock(lock)
      guard.__enter__()
    except OSError as e:
      raise ValueError(f"dataset {name!r} ({kwargs or 'default arguments'}) is not prepared in {data_dir}, and it "
                       f"cannot be prepared there ({type(e).__name__}: {e}). Set ZOO_DATA_DIR (or "
                       "config.data.data_dir) to a writable directory.") from None
    try:
      if not os.path.exists(info_file):
        _log.info("preparing dataset %s %s into %s", name, kwargs, version_dir)
        with _quiet_tfds():
          _generated_builder(name, entry, kwargs, data_dir).download_and_prepare()
    finally:
      guard.__exit__(None, None, None)
  # Read back through TFDS from the prepared files: the same path as a real dataset.
  return tfds.builder_from_directory(version_dir)


@contextlib.contextmanager
def _quiet_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # A generated set has no download: TFDS's "Downloading and preparing dataset Unknown size ..." lines (printed to
  # stdout) and its "Using custom data configuration" warning would only be noise.
  tfds.disable_progress_bar()
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    logger.setLevel(level)


# ---------------------------------------------------------------------------------------------------- real sets


def _scale_uint8_images(batch: dict) -> dict:
  batch = dict(batch)
  if "image" in batch and batch["image"].dtype == np.uint8:
    batch["image"] = batch["image"].astype(np.float32) / 255.0
  return batch


def _prepared_tfds(entry: _Entry, data_dir: str | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"),
                                                                           "tensorflow_datasets")
  name = entry.tfds_name
  how = (f"Prepare it on a machine with internet access with\n"
         f"    python -c \"import tensorflow_datasets as tfds; tfds.data_source('{name}', data_dir='{data_dir}')\"\n"
         f"(or `tfds build {name} --file_format=array_record --data_dir={data_dir}`), copy the folder here, and "
         f"pass --config.data.data_dir=DIR if it lives elsewhere.")
  with _quiet_tfds():
    try:
      builder = tfds.builder(name, data_dir=data_dir)
      prepared = builder.is_prepared()
    except Exception as e:  # an unknown name, or a broken dataset_info.json
      raise ValueError(f"TFDS dataset {name!r} is not available offline in {data_dir}: {e}\n{how}") from e
  if not prepared:
    raise ValueError(f"TFDS dataset {name!r} is not prepared in {data_dir}, and this run does not download "
                     f"(offline machines would retry for minutes).\n{how}")
  return builder, how


# ------------------------------------------------------------------------------------------------------ loading


def load(name: str, *, data_dir: str | None = None, splits=None, **kwargs) -> tuple[dict[str, Any], DatasetInfo]:
  """Loads the ``splits`` (default: all) of dataset ``name``; ``kwargs`` go to a generated set's function.

  Returns:
    ``({split: source}, info)``; a source has ``len()`` and ``__getitems__(indices) -> {key: array [n, ...]}``.
  """
  entry = _entry(name)
  if entry.kind == "generated":
    builder = _prepared_generated(name, entry, kwargs, data_dir)
    preprocess, how = None, ""
  else:
    if kwargs:
      raise ValueError(f"dataset {name!r} (TFDS) takes no keyword arguments; got {sorted(kwargs)}.")
    builder, how = _prepared_tfds(entry, data_dir)
    preprocess = entry.preprocess or _scale_uint8_images
  available = list(builder.info.splits)
  splits = available if splits is None else [s for s in dict.fromkeys(splits) if s]
  missing = [s for s in splits if available and s not in available]
  if missing:
    raise ValueError(f"dataset {name!r} has no split(s) {missing}; its splits: {available}.")
  sources = {}
  for split in splits:
    try:
      sources[split] = _maybe_in_memory(_TFDSSource(builder.as_data_source(split=split), preprocess))
    except NotImplementedError as e:  # TFDS's answer for data prepared as tfrecord, which needs TensorFlow
      raise ValueError(f"dataset {name!r} is not prepared as array_record (zoo reads by random access, without "
                       f"TensorFlow): {e}\n{how}") from e
    except Exception as e:  # pylint: disable=broad-except  # array_record / decoding errors of damaged files
      files = _split_files(builder, split)
      fix = (f"Delete {builder.data_dir} (it is a cache: it is prepared again on next use)." if entry.kind ==
             "generated" else f"Prepare it again.\n{how}")
      raise ValueError(f"dataset {name!r}, split {split!r}: its prepared files cannot be read, they are damaged or "
                       f"truncated ({type(e).__name__}: {str(e)[:300]}). Files: {', '.join(files) or builder.data_dir}"
                       f". {fix}") from e
  info = _info(name, builder, sources)
  return sources, info


def _split_files(builder, split: str) -> list[str]:
  try:
    prefix = f"{builder.info.name}-{split}."
    return sorted(os.path.join(builder.data_dir, f) for f in os.listdir(builder.data_dir) if f.startswith(prefix))
  except Exception:  # pylint: disable=broad-except
    return []


def _info(name, builder, sources) -> DatasetInfo:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  metadata = dict(builder.info.metadata or {})
  features = builder.info.features
  label = features["label"] if "label" in getattr(features, "keys", lambda: ())() else None
  if isinstance(label, tfds.features.ClassLabel) and "num_classes" not in metadata:
    metadata["num_classes"] = label.num_classes
  first_split = next(iter(sources.values()))
  example = first_split.__getitems__([0]) if len(first_split) else {}
  spec = {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in example.items()}
  return DatasetInfo(name=name, num_examples={s: len(src) for s, src in sources.items()}, element_spec=spec,
                     metadata=metadata)


# ------------------------------------------------------------------------------------------------------ batches


class Batches:
  """Deterministic training batches: the batch of step ``s`` is a pure function of ``(seed, s)``.

  Each epoch is a fresh permutation of the split (seeded by ``(seed, epoch)``), cut into ``batch_size`` slices;
  the remainder of an epoch is dropped. ``rows`` selects the part of each global batch this process loads.

  Args:
    source: a split from :func:`load` (or an :class:`ArraySource`).
    batch_size: the global batch size.
    seed: shuffling seed.
    rows: the rows of the global batch to return (``sharding.process_rows``); all by default.
    sampler: optional index sampler, ``sampler(step) -> indices [batch_size]`` into ``source``, a pure function of
      the step (e.g. ``zoo.recipes.curriculum.CyclicalCurriculum``); it replaces the epoch permutations.
  """

  def __init__(self, source, batch_size: int, *, seed: int, rows: slice = slice(None), shuffle: bool = True,
               sampler: Callable[[int], np.ndarray] | None = None):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
      raise ValueError(f"batch size must be an integer >= 1; got {batch_size!r}.")
    if len(source) == 0:
      raise ValueError("the training split is empty.")
    if batch_size > len(source):
      raise ValueError(f"batch size {batch_size} is larger than the split ({len(source)} examples).")
    self.source, self.batch_size, self.seed, self.rows, self.shuffle = source, batch_size, seed, rows, shuffle
    self.per_epoch = len(source) // batch_size
    self.sampler = sampler
    self._epoch, self._perm = None, None

  def indices(self, step: int) -> np.ndarray:
    if self.sampler is not None:
      idx = np.asarray(self.sampler(int(step)), dtype=np.int64)
      if idx.shape != (self.batch_size,) or (len(idx) and (idx.min() < 0 or idx.max() >= len(self.source))):
        raise ValueError(f"the batch sampler returned indices of shape {idx.shape} (range [{idx.min(initial=0)}, "
                         f"{idx.max(initial=0)}]) at step {step}; expected [{self.batch_size}] in "
                         f"[0, {len(self.source)}).")
      return idx
    epoch, i = divmod(int(step), self.per_epoch)
    if epoch != self._epoch:
      n = len(self.source)
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
      self._epoch = epoch
    return self._perm[i * self.batch_size:(i + 1) * self.batch_size]

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    return self.source.__getitems__(self.indices(step)[self.rows])


def eval_batches(source, batch_size: int, *, rows: slice = slice(None)) -> Iterator[tuple[dict, np.ndarray]]:
  """The whole split in order, as ``(batch, weight)``; the last batch is padded (weight 0) to ``batch_size``."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"eval batch size must be an integer >= 1; got {batch_size!r}.")
  n = len(source)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    weight = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    yield source.__getitems__(idx[rows]), weight[rows]
