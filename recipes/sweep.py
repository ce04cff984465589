r"""A small sweep runner: many configs trained together, vmapped where their shapes agree, and a power-law fit.

Built for the hourglass MLP's architecture search ("Rethinking the shape convention of an MLP", Chen et al., 2025)
and the compute-scaling fit of "Scaling MLPs: A Tale of Inductive Bias" (Bachmann et al., 2023): each is tens of
small models on one dataset. Configs are the trainer's own (``zoo.recipes.configs.base_config`` fields, built by
``zoo.recipes.builders``); configs that differ only in ``seed`` have identical shapes and are trained as one
``jax.vmap``-ed member axis inside one ``lax.scan`` over the steps (one compilation per group). Each member sees the
batches ``data.Batches(train, batch_size, seed=member seed)`` and initialises from ``jax.random.key(seed)``, as
``train_and_evaluate`` would, so a member's result is that of the single run (up to floating-point reassociation).

The sweep runs on one device, with the whole training split in device memory: it is for small models and small data.
No checkpoints: a group is minutes at most.

Command::

  python -m zoo.recipes.sweep --config recipes/configs/scaling_mlps_sweep.py --workdir /tmp/scaling_sweep

The config file's ``get_config()`` is the base config and its ``get_sweep()`` returns ``{'overrides': [{'model.width':
32, 'seed': 0}, ...], 'power_law': ('compute', 'error')}`` (``power_law`` optional). The run writes
``<workdir>/sweep.json`` (one record per member: name, seed, overrides, trainable parameters, compute, final train
loss, evaluation metrics) and, with ``power_law``, the fit ``y = a * x^slope`` of the per-config means.

Public names:

* :func:`run_sweep` ``(configs) -> list[dict]``: train and evaluate every config.
* :func:`expand` ``(base, overrides) -> list[ConfigDict]``: the base config with each override dict applied
  (dotted keys).
* :func:`power_law` ``(x, y) -> {'slope', 'prefactor', 'r2'}``: least-squares line in log-log space.
* :func:`summarize` ``(records, x_key, y_key) -> (x [configs], y [configs])``: per-config means over seeds.
"""

from __future__ import annotations

import collections
import copy
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from zoo.recipes import builders
from zoo.recipes import data as data_lib
from zoo.recipes import train as train_lib

__all__ = ["expand", "power_law", "run_sweep", "summarize"]


def expand(base: ml_collections.ConfigDict, overrides: Sequence[Mapping[str, Any]]) -> list[ml_collections.ConfigDict]:
  """One config per override dict: ``base`` with each dotted key (``'model.width'``) set to its value."""
  configs = []
  for override in overrides:
    config = copy.deepcopy(base)
    for key, value in override.items():
      *path, leaf = key.split(".")
      block = config
      for part in path:
        if part not in block:
          raise ValueError(f"sweep override {key!r}: the config has no block {part!r}.")
        block = block[part]
      with block.ignore_type():
        block[leaf] = value
    configs.append(config)
  return configs


def _group_key(config: Mapping[str, Any]) -> str:
  rest = {k: v for k, v in config.items() if k != "seed"}
  return json.dumps(rest, sort_keys=True, default=str)


def _load_arrays(data_block, cache: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, Any]:
  key = json.dumps(data_block, sort_keys=True, default=str)
  if key not in cache:
    sources, info = data_lib.load(data_block["name"], data_dir=data_block.get("data_dir"),
                                  splits=(data_block["train_split"], data_block["eval_split"]),
                                  **dict(data_block.get("kwargs") or {}))
    read = lambda src: src.__getitems__(np.arange(len(src)))
    train = read(sources[data_block["train_split"]])
    test = read(sources[data_block["eval_split"]]) if data_block["eval_split"] else None
    cache[key] = (train, test, info)
  return cache[key]


def _compute(params: int, batch_size: int, steps: int) -> float:
  """Training compute in FLOPs, the usual estimate ``6 * params * examples seen`` (forward + backward)."""
  return 6.0 * params * batch_size * steps


def _train_group(configs: list[ml_collections.ConfigDict], train: dict[str, np.ndarray],
                 test: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
  """Trains configs that differ only in ``seed`` as one vmapped member axis."""
  first = configs[0]
  model = builders.make_model(first.model)
  task = builders.make_task(first.task)
  optimizer = builders.make_optimizer(first.optimizer, total_steps=first.steps, seed=int(first.seed))
  procedure = builders.make_procedure(first.procedure, model=model, task=task, optimizer=optimizer)
  seeds = [int(c.seed) for c in configs]
  batch_size, steps = int(first.data.batch_size), int(first.steps)
  if steps < 1:
    raise ValueError(f"run_sweep: `steps` must be >= 1; got {steps}.")
  source = data_lib.ArraySource(train, name="train")
  batches = [data_lib.Batches(source, batch_size, seed=s) for s in seeds]
  order = np.zeros((steps, len(seeds), batch_size), np.int32)  # [steps, members, batch] row indices
  for t in range(steps):
    for m, b in enumerate(batches):
      order[t, m] = b.indices(t)
  device_train = {k: jnp.asarray(v) for k, v in train.items()}
  # The optimizer is built once, so its gradient noise key (optax.add_noise) is a constant of the init; each member
  # gets the key its own run would draw (noise_seed, else its seed: builders.make_optimizer's rule).
  noise_seeds = [int(c.seed if c.optimizer.get("noise_seed") is None else c.optimizer.noise_seed) for c in configs]
  noise_keys = jnp.stack([jax.random.key(s) for s in noise_seeds])

  @jax.jit
  def run(arrays, seeds_arr, order_arr, noise_keys):
    def init(seed, idx, noise_key):  # the member's first batch, as the trainer initialises from batches(0)
      state = nn.unbox(procedure.init(jax.random.key(seed), {k: v[idx] for k, v in arrays.items()}))
      return jax.tree.map(lambda x: x._replace(rng_key=noise_key) if isinstance(x, optax.AddNoiseState) else x,
                          state, is_leaf=lambda x: isinstance(x, optax.AddNoiseState))

    states = jax.vmap(init)(seeds_arr, order_arr[0], noise_keys)

    def body(states, idx):  # idx: [members, batch]
      batch = {k: v[idx] for k, v in arrays.items()}
      states, metrics = jax.vmap(procedure.step)(states, batch)
      return states, metrics.get("loss", jnp.zeros(len(seeds)))

    return jax.lax.scan(body, states, order_arr)

  states, losses = run(device_train, jnp.asarray(seeds), jnp.asarray(order), noise_keys)
  evals = [{} for _ in seeds]
  if test is not None:
    evaluate = jax.jit(jax.vmap(procedure.evaluate, in_axes=(0, None)))
    n = len(next(iter(test.values())))
    chunk = max(1, min(n, 1024))
    sums: dict[str, np.ndarray] = collections.defaultdict(lambda: np.zeros(len(seeds)))
    for start in range(0, n, chunk):
      batch = {k: jnp.asarray(v[start:start + chunk]) for k, v in test.items()}
      for name, values in jax.device_get(evaluate(states, batch)).items():
        sums[name] += np.asarray(values, np.float64).reshape(len(seeds), -1).sum(-1)
    for name, total in sums.items():
      for i in range(len(seeds)):
        evals[i][name] = float(total[i] / n)
    for e in evals:
      if "accuracy" in e:
        e["error"] = 1.0 - e["accuracy"]
  variables = procedure.variables(jax.tree.map(lambda x: x[0], states))
  params = int(sum(x.size for x in jax.tree.leaves(variables.get("params", {}))))
  losses = np.asarray(jax.device_get(losses))
  records = []
  for i, config in enumerate(configs):
    records.append({"seed": seeds[i], "params": params, "compute": _compute(params, batch_size, steps),
                    "train_loss": float(losses[-1, i]), "metrics": evals[i],
                    "state": jax.tree.map(lambda x, i=i: x[i], states), "procedure": procedure})
  return records


def run_sweep(configs: Sequence[ml_collections.ConfigDict], *, names: Sequence[str] | None = None,
              keep_states: bool = False) -> list[dict[str, Any]]:
  """Trains and evaluates every config (each a full trainer config), vmapping configs that differ only in seed.

  Args:
    configs: trainer configs (``base_config`` fields); all sizes must fit one device.
    names: a label per config (default its index).
    keep_states: keep each member's final state and procedure under ``'state'`` / ``'procedure'``.

  Returns:
    One record per config, in order: ``name``, ``seed``, ``params`` (trainable), ``compute`` (``6 * params *
    batch * steps``), ``train_loss`` (last step), ``metrics`` (means over the evaluation split; ``error = 1 -
    accuracy`` where there is an accuracy).
  """
  validated = [train_lib.validate_config(c) for c in configs]
  names = [str(i) for i in range(len(validated))] if names is None else list(names)
  if len(names) != len(validated):
    raise ValueError(f"run_sweep: {len(names)} names for {len(validated)} configs.")
  groups: dict[str, list[int]] = collections.OrderedDict()
  for i, config in enumerate(validated):
    groups.setdefault(_group_key(config.to_dict()), []).append(i)
  cache: dict = {}
  records: list[dict[str, Any] | None] = [None] * len(validated)
  for indices in groups.values():
    members = [validated[i] for i in indices]
    if len({int(c.seed) for c in members}) != len(members):
      raise ValueError(f"run_sweep: configs {[names[i] for i in indices]} are identical (same seed too).")
    train, test, _ = _load_arrays(members[0].data.to_dict(), cache)
    for i, record in zip(indices, _train_group(members, train, test)):
      if not keep_states:
        record.pop("state"), record.pop("procedure")
      records[i] = {"name": names[i], **record}
  return records


def power_law(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
  """Least-squares fit of ``log y = log a + slope * log x``: ``{'slope', 'prefactor': a, 'r2'}``."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
    raise ValueError(f"power_law: x and y must be 1-d of the same length >= 2; got {x.shape} and {y.shape}.")
  if np.any(x <= 0) or np.any(y <= 0):
    raise ValueError("power_law: x and y must be positive (a log-log fit).")
  lx, ly = np.log(x), np.log(y)
  slope, intercept = np.polyfit(lx, ly, 1)
  residual = ly - (slope * lx + intercept)
  total = np.sum((ly - ly.mean()) ** 2)
  r2 = 1.0 - float(np.sum(residual ** 2) / total) if total > 0 else 1.0
  return {"slope": float(slope), "prefactor": float(np.exp(intercept)), "r2": r2}


def _value(record, key):
  return record[key] if key in record else record["metrics"][key]


def summarize(records: Sequence[Mapping[str, Any]], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
  """Per-config means over seeds (configs grouped by ``name``), in first-seen order: ``(x, y)``."""
  grouped: dict[str, list] = collections.OrderedDict()
  for r in records:
    grouped.setdefault(r["name"], []).append((_value(r, x_key), _value(r, y_key)))
  xs = np.array([np.mean([p[0] for p in v]) for v in grouped.values()])
  ys = np.array([np.mean([p[1] for p in v]) for v in grouped.values()])
  return xs, ys


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  module = _load_module(f.config)
  base = module.get_config()
  spec = module.get_sweep()
  overrides = list(spec["overrides"])
  names = [", ".join(f"{k}={v}" for k, v in o.items() if k != "seed") or "base" for o in overrides]
  records = run_sweep(expand(base, overrides), names=names)
  for r, o in zip(records, overrides):
    r["overrides"] = o
  out = {"config": base.to_dict(), "records": records}
  if spec.get("power_law"):
    x_key, y_key = spec["power_law"]
    xs, ys = summarize(records, x_key, y_key)
    out["power_law"] = {"x": x_key, "y": y_key, **power_law(xs, ys), "points": [list(p) for p in zip(xs, ys)]}
  os.makedirs(f.workdir, exist_ok=True)
  with open(os.path.join(f.workdir, "sweep.json"), "w") as fh:
    json.dump(out, fh, indent=2, default=str)
  for r in records:
    print(f"{r['name']} seed={r['seed']} params={r['params']} " +
          " ".join(f"{k}={v:.4f}" for k, v in sorted(r["metrics"].items())), flush=True)
  if "power_law" in out:
    p = out["power_law"]
    print(f"power law {p['y']} ~ {p['prefactor']:.3g} * {p['x']}^{p['slope']:.3f} (r2 {p['r2']:.3f})", flush=True)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("config", None, "Path to a sweep config file (get_config() and get_sweep()).")
  flags.DEFINE_string("workdir", None, "Directory for sweep.json.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
