r"""The one training loop: any procedure, any zoo model, jitted once over a mesh, checkpointed and resumable.

Command line::

  python -m zoo.recipes.train --config recipes/configs/hopfield_digits.py --workdir /tmp/zoo-run \
      [--config.steps=200 ...]

From Python: :func:`train_and_evaluate` (a config and a work directory) or :func:`fit` (a model and arrays in
memory, e.g. in a notebook). Both run the same :class:`Trainer` and :func:`run_loop`.

What a run writes into its work directory:

* ``checkpoints/<step>/``: Orbax checkpoints of the whole state (atomic, every ``checkpoint_every`` steps and at
  the end); a rerun with the same work directory resumes from the latest and ends with the same numbers as an
  uninterrupted run;
* ``metrics.jsonl``: one JSON object per logged step (``{"step": 100, "train/loss": ...}``) and per evaluation
  (``"eval/accuracy"`` ...);
* ``results.json``: the final evaluation and the config;
* ``run.lock`` while it runs: a second run in the same work directory fails at once, naming this one.

Reliability: checkpoints carry checksums of every state leaf and are verified on restore (a damaged latest one
is moved to ``damaged_checkpoints/`` and the run resumes from the newest intact one); a non-finite training loss
stops the run before a bad state is checkpointed (``config.stop_on_nonfinite=False`` continues instead);
classification labels are checked once (integer, one per example, ``0 <= label < classes``); a truncated last
``metrics.jsonl`` line (a kill mid-write) is dropped; ``steps`` below the checkpoint's step is an error, and so
is a changed ``steps`` on resume when the learning-rate schedule depends on it (``optimizer.schedule`` other than
``'constant'``) unless ``config.allow_schedule_change=True``.

Multi-host: start every process with ``--jax_distributed`` (or the explicit ``--coordinator_address``,
``--num_processes``, ``--process_id``); each process loads only its own rows of every global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from zoo.recipes import builders
from zoo.recipes import checkpointing
from zoo.recipes import data as data_lib
from zoo.recipes import sharding
from zoo.recipes import tasks as tasks_lib
from zoo.recipes.configs import base_config

__all__ = ["FitResult", "NonFiniteLossError", "Trainer", "fit", "run_loop", "train_and_evaluate", "validate_config"]

_log = logging.getLogger(__name__)
_clock = time.perf_counter  # the loop's clock (a test replaces it to check what throughput counts)


# -------------------------------------------------------------------------------------------------------- config


class NonFiniteLossError(FloatingPointError):
  """A training metric (loss, gradient norm ...) became NaN or infinite; the run stopped before saving the state."""


def _positive_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fills defaults from ``base_config()`` and rejects unknown keys (with the valid ones listed)."""
  base = base_config()
  given = config.to_dict() if hasattr(config, "to_dict") else dict(config)

  def merge(base_block, given_block, path):
    open_blocks = ("model", "task", "procedure", "data.kwargs", "data.sampler", "optimizer.kwargs")
    for key, value in given_block.items():
      full = f"{path}{key}"
      if path.rstrip(".") in open_blocks:
        base_block[key] = value
        continue
      if key not in base_block:
        raise ValueError(f"Unknown config key {full!r}. Valid keys{' of ' + path.rstrip('.') if path else ''}: "
                         f"{', '.join(sorted(base_block.keys()))}.")
      if isinstance(base_block[key], ml_collections.ConfigDict) and isinstance(value, Mapping):
        merge(base_block[key], value, full + ".")
      else:
        with base_block.ignore_type():
          base_block[key] = value

  merge(base, given, "")
  if not base.model.name:
    raise ValueError("config.model.name is required, e.g. 'hopfield.HopfieldClassifier'.")
  if not base.data.name:
    raise ValueError(f"config.data.name is required; valid datasets: {', '.join(data_lib.names())}.")
  for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
    if base[key] < 0:
      raise ValueError(f"config.{key} must be >= 0; got {base[key]}.")
  if not _positive_int(base.keep_checkpoints):
    raise ValueError(f"config.keep_checkpoints must be an integer >= 1 (a run needs a checkpoint to resume from); "
                     f"got {base.keep_checkpoints!r}.")
  for key in ("batch_size", "eval_batch_size"):
    if not _positive_int(base.data[key]):
      raise ValueError(f"config.data.{key} must be an integer >= 1; got {base.data[key]!r}.")
  return base


# ------------------------------------------------------------------------------------------------------- trainer


def _as_abstract(tree):
  def abstract(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return jax.ShapeDtypeStruct(x.shape, x.dtype)
    return jax.ShapeDtypeStruct(np.shape(x), sharding.device_dtype(np.asarray(x).dtype))
  return jax.tree.map(abstract, tree)


class Trainer:
  """A procedure's ``init``/``step``/``evaluate`` jitted once over ``mesh`` with explicit shardings.

  The batch is sharded over ``('data', 'fsdp')``; the state by its parameters' logical axis names
  (``sharding.LOGICAL_RULES``). The train step donates its input state.

  Args:
    procedure: built procedure (``zoo.recipes.procedures.backprop.Backprop`` or a paper's).
    mesh: a mesh from ``sharding.make_mesh``.
    example_batch: one global batch (or its ``ShapeDtypeStruct``s), for shapes.
  """

  def __init__(self, procedure, mesh, example_batch: Mapping[str, Any], rules=sharding.LOGICAL_RULES):
    self.procedure, self.mesh, self.rules = procedure, mesh, rules
    self.batch_sharding = sharding.batch_sharding(mesh)
    self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    example = _as_abstract(dict(example_batch))
    with self._context():
      abstract = jax.eval_shape(procedure.init, jax.random.key(0), example)
    self.state_shardings = sharding.state_shardings(abstract, mesh, rules)
    self.abstract_state = checkpointing.abstract_like(nn.unbox(abstract), self.state_shardings)
    # What the task scores (classes per target key), seen by tracing the evaluation once; label values are then
    # checked on the host against it (check_data).
    with self._context(), tasks_lib.observe_outputs() as seen:
      try:
        sharded_example = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_sharding)
                           for k, v in example.items()}
        jax.eval_shape(procedure.evaluate, self.abstract_state, sharded_example)
      except tasks_lib.LabelError:
        raise
      except Exception:  # pylint: disable=broad-except  # a procedure without a traceable evaluate
        pass
    self.num_classes: dict[str, int] = dict(seen)
    batch_sh = jax.tree.map(lambda _: self.batch_sharding, example)

    self._init = jax.jit(lambda rng, batch: nn.unbox(procedure.init(rng, batch)),
                         in_shardings=(self.replicated, batch_sh), out_shardings=self.state_shardings)
    self._step = jax.jit(procedure.step, in_shardings=(self.state_shardings, batch_sh),
                         out_shardings=(self.state_shardings, self.replicated), donate_argnums=0)

    def eval_sums(state, batch, weight):
      metrics = procedure.evaluate(state, batch)
      sums = {k: jnp.sum(v.astype(jnp.float32) * weight) for k, v in metrics.items()}
      return sums, jnp.sum(weight)

    self._eval = jax.jit(eval_sums, out_shardings=self.replicated)

  @contextlib.contextmanager
  def _context(self):
    """The mesh and the logical-axis rules, active while tracing and running the jitted functions."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def put(self, local_batch: Mapping[str, np.ndarray], global_batch_size: int):
    """This process's rows of a batch -> global sharded arrays."""
    return sharding.global_batch(local_batch, self.batch_sharding, global_batch_size)

  def feed(self, local_batch: Mapping[str, np.ndarray], global_batch_size: int):
    """This process's rows of a batch as :meth:`step` takes them most cheaply (``sharding.jit_batch``: the host
    arrays in a one-process run, which the jitted step copies onto the mesh itself; else :meth:`put`'s)."""
    return sharding.jit_batch(local_batch, self.batch_sharding, global_batch_size)

  def init(self, seed: int, batch):
    with self._context():
      return self._init(jax.random.key(seed), batch)

  def step(self, state, batch):
    with self._context():
      return self._step(state, batch)

  def check_data(self, source, where: str, fallback_classes: int | None = None) -> None:
    """Checks a split's targets with the procedure's task once (all of an in-memory split, else its first rows)."""
    task = getattr(self.procedure, "task", None)
    if task is None or source is None or not len(source):
      return
    if isinstance(source, data_lib.ArraySource):
      arrays = source.arrays
    else:
      arrays = source.__getitems__(range(min(len(source), 4096)))
    num_classes = self.num_classes.get(getattr(task, "target_key", None), fallback_classes)
    tasks_lib.check_data(task, arrays, num_classes=num_classes, where=where)

  def evaluate(self, state, source, batch_size: int) -> dict[str, float]:
    """Means of the procedure's per-example metrics over the whole ``source`` (padding excluded)."""
    rows = sharding.process_rows(batch_size, self.batch_sharding)
    totals, count = {}, 0.0
    with self._context():
      for batch, weight in data_lib.eval_batches(source, batch_size, rows=rows):
        batch = self.put(batch, batch_size)
        weight = sharding.global_batch({"w": weight}, self.batch_sharding, batch_size)["w"]
        sums, n = self._eval(state, batch, weight)
        sums, n = jax.device_get((sums, n))
        for k, v in sums.items():
          totals[k] = totals.get(k, 0.0) + float(v)
        count += float(n)
    return {k: v / max(count, 1.0) for k, v in totals.items()}


# ---------------------------------------------------------------------------------------------------------- loop


class MetricWriter:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl``; on resume, drops lines past the restart.

  With ``tensorboard=True`` (and tensorboardX installed, a dependency of zoo) every record is also written as
  TensorBoard scalars under ``<workdir>/tensorboard/`` (``tensorboard --logdir WORKDIR``); a resumed run purges
  the events past its restart step, as metrics.jsonl does.
  """

  def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.records: list[dict[str, Any]] = []
    self._events = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        _log.warning("tensorboardX is not installed: no TensorBoard events (metrics.jsonl is still written).")
      else:
        self._events = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1,
                                     flush_secs=30)
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = f.read().split("\n")
      numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
      for n, (number, line) in enumerate(numbered):
        try:
          record = json.loads(line)
          if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        except ValueError as e:
          if n == len(numbered) - 1:  # a run killed while writing its last line: drop the fragment
            _say(f"{self.path}: dropped its truncated last line {number} ({line[:60]!r}), left by a run stopped "
                 "while writing it.")
            continue
          raise ValueError(f"{self.path}, line {number}, is not a JSON record ({e}): {line[:80]!r}. Fix or remove "
                           "that line (only a truncated last line is repaired automatically).") from None
        if record.get("step", 0) <= resume_step:
          self.records.append(record)
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in self.records)
      os.replace(self.path + ".tmp", self.path)

  def has(self, step: int, prefix: str) -> bool:
    """Whether a record of ``step`` with a key starting with ``prefix`` (``'eval/'``) is already written."""
    return any(r.get("step") == step and any(k.startswith(prefix) for k in r) for r in self.records)

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    self.records.append(record)
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._events is not None:
      for k, v in record.items():
        if k != "step":
          self._events.add_scalar(k, v, global_step=int(step))

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None


def _progress(total: int, initial: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)


def run_loop(trainer: Trainer, state, *, batches: data_lib.Batches, batch_size: int, start: int, steps: int,
             log_every: int = 0, eval_every: int = 0, evaluate: Callable[[Any], dict[str, float]] | None = None,
             checkpoint_every: int = 0, checkpointer: checkpointing.Checkpointer | None = None,
             writer: MetricWriter | None = None, progress: bool = False,
             history: list[dict[str, float]] | None = None, stop_on_nonfinite: bool = True):
  """Runs ``trainer.step`` from step ``start`` to ``steps``; logs, evaluates and checkpoints on the way.

  With ``stop_on_nonfinite`` the step metrics are checked at every log, before every checkpoint and at the end: a
  NaN or infinite one raises :class:`NonFiniteLossError` naming the step, so no checkpoint holds a state reached
  through it (the newest checkpoint is kept as it is).

  Returns the final state. ``history`` (if given) receives every logged record.
  """
  bar = _progress(steps, start, progress and jax.process_index() == 0)
  pending, t0, last = [], _clock(), start
  paused = 0.0  # seconds spent evaluating and checkpointing since the last log: not training throughput
  unchecked: list[tuple[int, Any]] = []  # (step done, metrics) not yet checked for non-finite values

  def check():
    if not stop_on_nonfinite or not unchecked:
      unchecked.clear()
      return
    values = jax.device_get([m for _, m in unchecked])
    for (done_at, _), m in zip(unchecked, values):
      bad = {k: float(np.asarray(v).ravel()[0]) for k, v in m.items()
             if np.issubdtype(np.asarray(v).dtype, np.inexact) and not np.all(np.isfinite(v))}
      if bad:
        if bar is not None:
          bar.close()
        kept = None if checkpointer is None else checkpointer.latest_step()
        where = (f" The newest checkpoint, step {kept} in {checkpointer.directory}, is from before it and is kept; "
                 "rerunning resumes from it." if kept is not None else "")
        raise NonFiniteLossError(
            f"Training stopped: non-finite {', '.join(f'{k}={v}' for k, v in sorted(bad.items()))} at step "
            f"{done_at} (learning rate too high, bad inputs or a numerically unstable model?).{where} To train on "
            "regardless, set config.stop_on_nonfinite=False (fit(..., stop_on_nonfinite=False)).")
    unchecked.clear()

  def log(step, record):
    if history is not None:
      history.append({"step": step, **record})
    if writer is not None:
      writer.write(step, record)

  for step in range(start, steps):
    state, metrics = trainer.step(state, trainer.feed(batches(step), batch_size))
    pending.append(metrics)
    done = step + 1
    unchecked.append((done, metrics))
    if bar is not None:
      bar.update(1)
    if log_every and (done % log_every == 0 or done == steps):
      check()
      values = jax.device_get(pending)
      record = {f"train/{k}": float(np.mean([m[k] for m in values])) for k in values[0]}
      record["train/steps_per_sec"] = (done - last) / max(_clock() - t0 - paused, 1e-9)
      pending, t0, last, paused = [], _clock(), done, 0.0
      log(done, record)
      if bar is not None:
        bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in record.items() if "loss" in k or "acc" in k})
    if evaluate is not None and eval_every and done % eval_every == 0 and done != steps:
      jax.block_until_ready(state)  # the steps already dispatched count as training time, not evaluation
      t_eval = _clock()
      results = evaluate(state)
      paused += _clock() - t_eval
      log(done, {f"eval/{k}": v for k, v in results.items()})
      if writer is not None:  # a config run's process 0 (fit() returns its history instead)
        line = f"eval at step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items()))
        print(line, flush=True) if bar is None else bar.write(line)
    if checkpointer is not None and checkpoint_every and done % checkpoint_every == 0:
      check()
      jax.block_until_ready(state)
      t_save = _clock()
      checkpointer.save(done, state)
      paused += _clock() - t_save
  check()
  if bar is not None:
    bar.close()
  return state


# --------------------------------------------------------------------------------------------- config-driven run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the config's model with its procedure; resumes from ``workdir`` if it holds a checkpoint.

  Returns:
    The final evaluation metrics on ``config.data.eval_split`` (empty if there is none).
  """
  config = validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  lock = _lock_workdir(workdir)
  try:
    return _train_and_evaluate(config, workdir)
  finally:
    if lock is not None:
      lock.release()


def _lock_workdir(workdir: str) -> checkpointing.WorkdirLock | None:
  """Process 0 locks the work directory for the run (all processes fail together if it cannot)."""
  lock = checkpointing.WorkdirLock(workdir) if jax.process_index() == 0 else None
  error = None
  if lock is not None:
    try:
      lock.acquire()
    except checkpointing.WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if failed and error is None:
      if lock is not None:
        lock.release()
      raise checkpointing.WorkdirLockedError(f"process 0 could not lock the work directory {workdir}; see its log.")
  if error is not None:
    raise error
  return lock


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  mesh = sharding.make_mesh(config.mesh.to_dict())
  sources, info = data_lib.load(config.data.name, data_dir=config.data.data_dir,
                                splits=(config.data.train_split, config.data.eval_split),
                                **config.data.kwargs.to_dict())
  eval_source = sources.get(config.data.eval_split) if config.data.eval_split else None

  model = builders.make_model(config.model)
  task = builders.make_task(config.task)
  optimizer = builders.make_optimizer(config.optimizer, total_steps=config.steps, seed=config.seed)
  procedure = builders.make_procedure(config.procedure, model=model, task=task, optimizer=optimizer)

  batch_size = config.data.batch_size
  from zoo.recipes import curriculum  # pylint: disable=g-import-not-at-top
  sampler = curriculum.make_sampler(config.data.sampler, source=sources[config.data.train_split],
                                    batch_size=batch_size, seed=config.seed)
  batches = data_lib.Batches(sources[config.data.train_split], batch_size, seed=config.seed, sampler=sampler)
  example = {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), sharding.device_dtype(v.dtype))
             for k, v in batches.source.__getitems__([0]).items()}
  trainer = Trainer(procedure, mesh, example)
  batches.rows = sharding.process_rows(batch_size, trainer.batch_sharding)
  trainer.check_data(sources[config.data.train_split], f" (split {config.data.train_split!r} of {config.data.name})",
                     info.num_classes)
  trainer.check_data(eval_source, f" (split {config.data.eval_split!r} of {config.data.name})", info.num_classes)

  checkpointer = checkpointing.Checkpointer(workdir, config.to_dict(), max_to_keep=config.keep_checkpoints)
  is_main = jax.process_index() == 0
  writer = None
  with contextlib.ExitStack() as cleanup:
    cleanup.callback(lambda: writer is not None and writer.close())  # flushes TensorBoard events, even on error
    with contextlib.closing(checkpointer):
      start, state = checkpointer.restore_latest(trainer.abstract_state)
      if start is not None:
        _check_resume(config, start, checkpointer)
        _say(f"resumed from {checkpointer.directory}/{start}")
      else:
        start = 0
        state = trainer.init(config.seed, trainer.put(batches(0), batch_size))
      writer = MetricWriter(workdir, resume_step=start) if is_main else None
      evaluate = None
      if eval_source is not None:
        evaluate = lambda s: trainer.evaluate(s, eval_source, _eval_batch_size(config, trainer))

      state = run_loop(trainer, state, batches=batches, batch_size=batch_size, start=start, steps=config.steps,
                       log_every=config.log_every, eval_every=config.eval_every, evaluate=evaluate,
                       checkpoint_every=config.checkpoint_every, checkpointer=checkpointer, writer=writer,
                       progress=config.progress_bar, stop_on_nonfinite=config.stop_on_nonfinite)
      if checkpointer.latest_step() != config.steps:
        checkpointer.save(config.steps, state)

    results = evaluate(state) if evaluate is not None else {}
    if is_main:
      if results and not writer.has(config.steps, "eval/"):  # a rerun of a finished run writes no second line
        writer.write(config.steps, {f"eval/{k}": v for k, v in results.items()})
        _say(f"{config.data.eval_split} after {config.steps} steps: "
             + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))
      with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"step": config.steps, "eval_split": config.data.eval_split, "metrics": results,
                   "dataset": dataclasses.asdict(info), "config": config.to_dict(), "command": _command()}, f,
                  indent=2, default=str)
  return results


def _check_resume(config, start: int, checkpointer: checkpointing.Checkpointer) -> None:
  """A resume must not go backwards, nor silently change a learning-rate schedule built from ``steps``."""
  where = f"{checkpointer.directory}/{start}"
  if start > config.steps:
    raise ValueError(f"config.steps={config.steps} is below the step of the checkpoint it would resume from "
                     f"({where}, step {start}): its state is {start} steps trained. Pass --config.steps={start} or "
                     "more, or use a new --workdir.")
  saved_steps = (checkpointer.restored_config or {}).get("steps")
  schedule = config.optimizer.schedule
  if saved_steps is not None and saved_steps != config.steps and schedule != "constant" \
      and not config.allow_schedule_change:
    raise ValueError(
        f"config.steps changed from {saved_steps} (the run that wrote {where}) to {config.steps}, and the "
        f"{schedule!r} learning-rate schedule is built from it: the resumed steps would follow a different "
        f"schedule than the first {start}. Keep --config.steps={saved_steps}, use a new --workdir, or pass "
        "--config.allow_schedule_change=True to accept the change.")


def _eval_batch_size(config, trainer: Trainer) -> int:
  shards = trainer.mesh.shape["data"] * trainer.mesh.shape["fsdp"]
  return -(-config.data.eval_batch_size // shards) * shards  # round up to a multiple of the data shards


def _command() -> str:
  """How this process was started, for provenance (``results.json``, shipped checkpoints)."""
  argv = list(sys.argv)
  if argv and argv[0].endswith(os.path.join("recipes", "train.py")):
    argv[0] = "python -m zoo.recipes.train"
  return " ".join(argv)


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------------ in-memory fit


@dataclasses.dataclass
class FitResult:
  """What :func:`fit` returns.

  Attributes:
    state: the procedure's final state.
    variables: ``procedure.variables(state)``, ready for ``model.apply``.
    history: logged training records (``{'step': ..., 'train/loss': ...}``).
    metrics: final evaluation on ``eval_data`` (empty without it).
    trainer: the compiled :class:`Trainer` (reuse it: ``result.evaluate(arrays)``).
  """
  state: Any
  variables: Any
  history: list[dict[str, float]]
  metrics: dict[str, float]
  trainer: Trainer
  eval_batch_size: int

  def evaluate(self, arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean per-example metrics of the procedure on ``arrays`` (``{key: [examples, ...]}``)."""
    return self.trainer.evaluate(self.state, data_lib.ArraySource(arrays), self.eval_batch_size)


def fit(model: nn.Module, train_data: Mapping[str, np.ndarray], *, task: Any = "classification",
        optimizer: optax.GradientTransformation | Mapping[str, Any] | None = None, steps: int = 500,
        batch_size: int = 64, eval_data: Mapping[str, np.ndarray] | None = None, procedure: Any = "backprop",
        procedure_kwargs: Mapping[str, Any] | None = None, seed: int = 0, mesh=None, log_every: int = 0,
        eval_batch_size: int | None = None, progress: bool = False, stop_on_nonfinite: bool = True,
        sampler: Callable[[int], np.ndarray] | None = None) -> FitResult:
  """Trains ``model`` on arrays in memory with the same trainer and loop as a config run (no checkpoints).

  Args:
    model: any Linen module the task can score.
    train_data: ``{key: array [examples, ...]}``, keys as the task expects (``image``/``label``, ``x``/``y`` ...).
    task: a task name from ``zoo.recipes.tasks.TASKS`` or a task object.
    optimizer: an optax transformation, an optimizer config dict, or None for ``optax.adam(1e-3)``.
    steps: training steps; batch_size: the global batch size (a multiple of the mesh's data shards).
    eval_data: arrays to evaluate on at the end.
    procedure: ``'backprop'``, ``'module.Class'`` under ``zoo.recipes.procedures``, or a class; built with
      ``(model=, task=, optimizer=, **procedure_kwargs)``.
    mesh: default: all devices, data parallel.
    log_every: record training metrics every this many steps (0: only at the end).
    stop_on_nonfinite: raise :class:`NonFiniteLossError` when a training metric becomes NaN or infinite.
    sampler: optional ``sampler(step) -> indices [batch_size]`` into ``train_data`` replacing the shuffled epochs
      (e.g. ``zoo.recipes.curriculum.CyclicalCurriculum``; see ``data.Batches``).

  Example::

    result = fit(zoo.core.MLP(features=(64, 10)), {"x": x, "label": y}, task=Classification(input_key="x"))
    logits = model.apply(result.variables, x)
  """
  if not _positive_int(batch_size):
    raise ValueError(f"fit: batch_size must be an integer >= 1; got {batch_size!r}.")
  if eval_batch_size is not None and not _positive_int(eval_batch_size):
    raise ValueError(f"fit: eval_batch_size must be an integer >= 1; got {eval_batch_size!r}.")
  source = data_lib.ArraySource(train_data, name="train_data")
  eval_source = None if eval_data is None else data_lib.ArraySource(eval_data, name="eval_data")
  if isinstance(task, str):
    task = builders.make_task({"name": task})
  if optimizer is None:
    optimizer = optax.adam(1e-3)
  elif isinstance(optimizer, Mapping):
    optimizer = builders.make_optimizer(dict(optimizer), total_steps=steps, seed=seed)
  if isinstance(procedure, str):
    procedure = builders.resolve_procedure(procedure)
  proc = procedure(model=model, task=task, optimizer=optimizer, **dict(procedure_kwargs or {}))
  mesh = sharding.make_mesh() if mesh is None else mesh
  batches = data_lib.Batches(source, batch_size, seed=seed, sampler=sampler)
  example = {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), sharding.device_dtype(v.dtype))
             for k, v in source.arrays.items()}
  trainer = Trainer(proc, mesh, example)
  batches.rows = sharding.process_rows(batch_size, trainer.batch_sharding)
  trainer.check_data(source, " (train_data)")
  trainer.check_data(eval_source, " (eval_data)")
  state = trainer.init(seed, trainer.put(batches(0), batch_size))
  history: list[dict[str, float]] = []
  state = run_loop(trainer, state, batches=batches, batch_size=batch_size, start=0, steps=steps,
                   log_every=log_every or steps, history=history, progress=progress,
                   stop_on_nonfinite=stop_on_nonfinite)
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  eval_bs = eval_batch_size or -(-max(batch_size, 256) // shards) * shards
  result = FitResult(state=state, variables=proc.variables(state), history=history, metrics={}, trainer=trainer,
                     eval_batch_size=eval_bs)
  if eval_source is not None:
    result.metrics = result.trainer.evaluate(state, eval_source, eval_bs)
  return result


# ----------------------------------------------------------------------------------------------------------- CLI


# The command line (``--help``, config names, ``--print_config``, overrides) is zoo.recipes.cli.


if __name__ == "__main__":
  from zoo.recipes import cli  # pylint: disable=g-import-not-at-top
  cli.main()
