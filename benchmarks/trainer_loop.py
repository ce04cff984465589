r"""The trainer's loop against a bare jitted loop, same model, same batches, one run: steps per second and the ratio.

    python benchmarks/trainer_loop.py                      # 64-256-256-10 MLP, batch 128, 2000 steps, 5 rounds
    python benchmarks/trainer_loop.py --steps 4000 --rounds 7 --batch 256

* ``bare``: the yardstick of issue 13. One ``jax.jit`` of the Adam step (``optax.adam(1e-3)``, softmax cross-entropy)
  on one device, fed by the same host gathers (``data.Batches``: a permutation per epoch, ``x[idx]``) passed as numpy
  arrays; metrics are never read until the end.
* ``fit``: ``zoo.recipes.train.fit`` with the same model, optimizer, batch size and steps on a one-device mesh, timed
  around the whole ``run_loop`` (``log_every = steps``: the loss is read once, at the end, as for ``bare``).
  Everything ``fit`` adds per step is in this figure: the batch put on the mesh, the procedure's step, the metric
  bookkeeping and the non-finite check.

Rounds alternate the two (``bare`` first on even rounds), so load from other processes falls on both alike; printed
are each one's median steps/s and ``fit / bare`` (issue 13's target: at least 0.9). Compilation is excluded: each
round builds the trainer once before the timed loop (``fit`` compiles in its first call; that round is a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import core
from zoo.recipes import data, sharding, tasks, train


def _data(n: int, features: int, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(n, features)).astype(np.float32),
          "label": rng.integers(0, classes, n).astype(np.int32)}


def bare_loop(model: nn.Module, arrays, *, steps: int, batch_size: int) -> tuple[float, float]:
  """(wall, CPU) seconds for ``steps`` Adam steps of a plain jitted loop over host batches (compile excluded)."""
  optimizer = optax.adam(1e-3)
  batches = data.Batches(data.ArraySource(arrays), batch_size, seed=0)

  def loss_fn(params, batch):
    logits = model.apply({"params": params}, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params = model.init(jax.random.key(0), batches(0)["x"])["params"]
  opt_state = optimizer.init(params)
  jax.block_until_ready(step(params, opt_state, batches(0)))  # compile
  start, cpu = time.perf_counter(), time.process_time()
  losses = []
  for s in range(steps):
    params, opt_state, loss = step(params, opt_state, batches(s))
    losses.append(loss)
  jax.block_until_ready((params, losses))
  return time.perf_counter() - start, time.process_time() - cpu


def fit_loop(model: nn.Module, arrays, *, steps: int, batch_size: int, mesh) -> tuple[float, float]:
  """(wall, CPU) seconds of ``train.fit``'s ``run_loop`` for ``steps`` steps (its trainer is built and compiled before)."""
  task = tasks.Classification(input_key="x")
  proc = train.builders.resolve_procedure("backprop")(model=model, task=task, optimizer=optax.adam(1e-3))
  source = data.ArraySource(arrays)
  batches = data.Batches(source, batch_size, seed=0)
  example = {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), sharding.device_dtype(v.dtype))
             for k, v in arrays.items()}
  trainer = train.Trainer(proc, mesh, example)
  state = trainer.init(0, trainer.put(batches(0), batch_size))
  state = train.run_loop(trainer, state, batches=batches, batch_size=batch_size, start=0, steps=1, log_every=1)
  jax.block_until_ready(state)  # compiled and warm
  start, cpu = time.perf_counter(), time.process_time()
  state = train.run_loop(trainer, state, batches=batches, batch_size=batch_size, start=1, steps=steps + 1,
                         log_every=steps, history=[])
  jax.block_until_ready(state)
  return time.perf_counter() - start, time.process_time() - cpu


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--batch", type=int, default=128)
  args = parser.parse_args()
  model = core.MLP(features=(256, 256, 10))
  arrays = _data(4096, 64, 10)
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  wall, cpu = {"bare": [], "fit": []}, {"bare": [], "fit": []}
  for r in range(args.rounds):
    order = ("bare", "fit") if r % 2 == 0 else ("fit", "bare")
    for name in order:
      if name == "bare":
        w, c = bare_loop(model, arrays, steps=args.steps, batch_size=args.batch)
      else:
        w, c = fit_loop(model, arrays, steps=args.steps, batch_size=args.batch, mesh=mesh)
      wall[name].append(args.steps / w)
      cpu[name].append(args.steps / c)
  med = lambda d, k: statistics.median(d[k])
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}); MLP 64-256-256-10, batch {args.batch}, "
        f"{args.steps} steps x {args.rounds} rounds (medians; per CPU second: steps over the process's CPU time, "
        "which load from other processes disturbs less)")
  print("                  steps/s   steps per CPU s")
  print(f"bare jitted loop: {med(wall, 'bare'):8.1f}  {med(cpu, 'bare'):8.1f}")
  print(f"train.run_loop:   {med(wall, 'fit'):8.1f}  {med(cpu, 'fit'):8.1f}")
  print(f"fit / bare:       {med(wall, 'fit') / med(wall, 'bare'):8.3f}  {med(cpu, 'fit') / med(cpu, 'bare'):8.3f}")


if __name__ == "__main__":
  jnp.zeros(())  # initialise the backend before timing
  main()
