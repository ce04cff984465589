r"""Exports a finished run's model as a shipped checkpoint (``zoo.checkpoints``).

  python -m zoo.recipes.export --workdir /tmp/zoo-run --name hopfield_digits [--out checkpoints]

Reads the latest checkpoint of ``--workdir`` (written by ``zoo.recipes.train``), keeps only what inference needs
(the procedure's ``variables(state)``, i.e. params and e.g. batch statistics, not the optimizer state), and writes
``<out>/<name>/variables`` (Orbax) and ``<out>/<name>/meta.json`` with the model config and the evaluation the run
recorded in ``results.json`` (and the evaluation batch size, so ``zoo.checkpoints.evaluate`` batches as the run
did). A procedure whose evaluation is not its task's metrics of ``model.apply`` defines
``evaluate_variables(model, task, variables, batch)`` (a plain function, e.g. a ``staticmethod``); its dotted path goes
into ``meta["evaluate"]``.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import orbax.checkpoint as ocp

from zoo.recipes import builders
from zoo.recipes import checkpointing
from zoo.recipes import data as data_lib
from zoo.recipes import sharding
from zoo.recipes import train as train_lib

__all__ = ["export"]


def export(workdir: str, name: str, out: str) -> str:
  """Writes ``<out>/<name>/`` from the run in ``workdir``; returns that directory."""
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  config = train_lib.validate_config(_config_dict(results["config"]))
  # Rebuild the run's trainer to restore the state with its exact structure (optax state types included).
  sources, _ = data_lib.load(config.data.name, data_dir=config.data.data_dir, splits=[config.data.train_split],
                             **config.data.kwargs.to_dict())
  model = builders.make_model(config.model)
  procedure = builders.make_procedure(
      config.procedure, model=model, task=builders.make_task(config.task),
      optimizer=builders.make_optimizer(config.optimizer, total_steps=config.steps, seed=config.seed))
  first = sources[config.data.train_split].__getitems__([0])
  example = {k: jax.ShapeDtypeStruct((config.data.batch_size, *v.shape[1:]), sharding.device_dtype(v.dtype))
             for k, v in first.items()}
  trainer = train_lib.Trainer(procedure, sharding.make_mesh(config.mesh.to_dict()), example)
  checkpointer = checkpointing.Checkpointer(workdir, config.to_dict(), max_to_keep=config.keep_checkpoints)
  try:
    step = checkpointer.latest_step()
    if step != results["step"]:
      raise ValueError(f"{workdir}: its latest checkpoint is step {step}, but results.json is from step "
                       f"{results['step']}; rerun the training to finish it before exporting.")
    state = checkpointer.restore(trainer.abstract_state, step)  # verified against its checksums; never a fallback
  finally:
    checkpointer.close()
  variables = jax.device_get(procedure.variables(state))

  target = os.path.join(os.path.abspath(out), name)
  if os.path.exists(target):
    shutil.rmtree(target)
  os.makedirs(target)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(target, "variables"), variables)
  meta = {
      "model": config.model.to_dict(),
      "dataset": {"name": config.data.name, "kwargs": config.data.kwargs.to_dict(), "split": results["eval_split"]},
      "metrics": results["metrics"],
      "eval_batch_size": train_lib._eval_batch_size(config, trainer),  # pylint: disable=protected-access
      "steps": results["step"],
      "task": config.task.to_dict(),
      "produced_by": results.get("command", ""),
  }
  evaluate = getattr(procedure, "evaluate_variables", None)  # a procedure whose evaluation is not the task's
  if evaluate is not None:
    meta["evaluate"] = f"{evaluate.__module__}:{evaluate.__qualname__}"
  with open(os.path.join(target, "meta.json"), "w") as f:
    json.dump(meta, f, indent=2)
  return target


def _config_dict(d):
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(d)


def main(argv) -> None:
  del argv
  from absl import flags, logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)
  f = flags.FLAGS
  print(export(f.workdir, f.name, f.out))


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A finished run's work directory.", required=True)
  flags.DEFINE_string("name", None, "Name of the shipped checkpoint.", required=True)
  from zoo import checkpoints as _shipped  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out", _shipped.__path__[0], "Where shipped checkpoints live (default: zoo.checkpoints).")
  app.run(main)
