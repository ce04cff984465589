r"""zoo against the papers' own PyTorch code, side by side in one run: forward+backward time, medians, ratios.

    pip install -e '.[bench]'           # torch (CPU wheels are enough); never a dependency of zoo itself
    python benchmarks/vs_pytorch.py                    # the default table, printed
    python benchmarks/vs_pytorch.py --append           # ... and appended to benchmarks/RESULTS.md
    python benchmarks/vs_pytorch.py --threads 1 --reps 31 --only kan hopfield

Workloads (float32, CPU unless jax and torch both see an accelerator; each zoo function is jitted and warmed up):

* ``kan``: one KAN layer ``[batch, i] -> [batch, o]``, G = 5, order 3, with the silu branch and the standalone
  spline scaler: ``zoo.kan.KANLinear`` against **efficient-kan**'s ``KANLinear`` (github.com/Blealtan/efficient-kan,
  ``src/efficient_kan/kan.py``; not on PyPI, so its forward -- Cox-de Boor on ``[batch, i, G + 2k]``, one
  ``F.linear`` of the flattened basis with ``spline_weight * spline_scaler``, one of ``silu(x)`` with
  ``base_weight`` -- is rewritten below in torch, operation for operation). The loss is ``sum(y^2)``; gradients of
  every parameter and of ``x``.
* ``mlp``: the equal-parameter MLP ``i -> (K + 2) i / 2 -> o`` (relu, no biases) in jax and in torch, the yardstick
  of issue 13's "a KAN layer costs at most 1.5x an MLP" (printed as the ``kan / mlp`` rows: zoo's KAN over zoo's
  MLP, efficient-kan over the torch MLP).
* ``hopfield``: ``zoo.hopfield.Hopfield`` (state ``[b, q, d]``, stored ``[b, n, d]``) against **hflayers**'
  ``Hopfield`` (github.com/ml-jku/hopfield-layers, ``hflayers/functional.py``, ``hopfield_core_forward``; not on
  PyPI either, so rewritten below with its defaults: LayerNorm on stored, state and projection patterns, separate
  q/k/v input projections with bias, ``beta = 1/sqrt(head_dim)`` applied to q, one association,
  ``(len, batch * heads, head_dim)`` bmm layout, output projection). Loss ``sum(y^2)``, parameter gradients.
* ``adam``: 50 Adam steps of a 64-256-256-10 relu MLP on one batch of 128 (softmax cross-entropy), plain jitted jax
  + optax against ``torch.optim.Adam``.

Method: warm-up, then ``--reps`` rounds; in each round every workload runs zoo and torch once, the order of the two
alternating between rounds, so load from other processes falls on both alike. Printed: the medians and
``torch / zoo`` (> 1: zoo is faster). Threads: ``--threads N`` gives torch ``N`` intra-op threads and XLA's CPU
backend the same (``intra_op_parallelism_threads``); 0 = each library's default.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform as _platform
import statistics
import sys
import time

__all__ = ["main"]

_PARSER = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_PARSER.add_argument("--reps", type=int, default=21)
_PARSER.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0: the defaults)")
_PARSER.add_argument("--only", nargs="+", default=None, help="workload prefixes to run (kan mlp hopfield adam)")
_PARSER.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
_PARSER.add_argument("--note", default="", help="a line to put under the appended table")


def _machine() -> str:
  model = _platform.processor() or _platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  return f"{model}, {os.cpu_count()} cores, load average {load:.1f} at the start"


# ------------------------------------------------------------------------------------------------ workloads
# Each builder returns (zoo_step, torch_step): zero-argument callables that run one forward+backward (or the Adam
# loop) to completion.


def _kan(batch: int, width: int, torch, jax, jnp, np):
  from zoo import kan as zkan
  g, k = 5, 3
  rng = np.random.default_rng(0)
  x_np = rng.uniform(-1, 1, (batch, width)).astype(np.float32)
  layer = zkan.KANLinear(width, grid_size=g, spline_order=k)
  variables = layer.init(jax.random.PRNGKey(0), jnp.asarray(x_np))
  params, rest = variables["params"], {kk: v for kk, v in variables.items() if kk != "params"}

  def loss(p, rest, x):
    return jnp.sum(jnp.square(layer.apply({"params": p, **rest}, x)))

  # Every array is an argument (closed-over arrays would become constants that XLA folds at compile time).
  step = jax.jit(jax.grad(loss, argnums=(0, 2)))
  xj = jnp.asarray(x_np)

  def zoo_step():
    jax.block_until_ready(step(params, rest, xj))

  # efficient-kan's KANLinear forward (the init does not matter for speed; shapes as there).
  grid = torch.tensor(np.asarray(zkan.kan_basis.make_grid(zkan.Basis.bspline(g, k), width)))
  base_weight = torch.randn(width, width, requires_grad=True)
  spline_weight = (0.1 * torch.randn(width, width, g + k)).requires_grad_()
  spline_scaler = torch.randn(width, width, requires_grad=True)
  xt = torch.tensor(x_np, requires_grad=True)

  def b_splines(x):
    x = x.unsqueeze(-1)
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
    for p in range(1, k + 1):
      bases = ((x - grid[:, :-(p + 1)]) / (grid[:, p:-1] - grid[:, :-(p + 1)]) * bases[:, :, :-1]) + (
          (grid[:, p + 1:] - x) / (grid[:, p + 1:] - grid[:, 1:(-p)]) * bases[:, :, 1:])
    return bases.contiguous()

  def torch_step():
    for t in (base_weight, spline_weight, spline_scaler, xt):
      t.grad = None
    base = torch.nn.functional.linear(torch.nn.functional.silu(xt), base_weight)
    scaled = spline_weight * spline_scaler.unsqueeze(-1)
    spline = torch.nn.functional.linear(b_splines(xt).view(batch, -1), scaled.view(width, -1))
    ((base + spline) ** 2).sum().backward()

  return zoo_step, torch_step


def _mlp(batch: int, width: int, torch, jax, jnp, np):
  hidden = (5 + 3 + 2) * width // 2  # K + 2 matrices of [i, o] in a KANLinear (base, K splines, scaler)
  rng = np.random.default_rng(0)
  x_np = rng.uniform(-1, 1, (batch, width)).astype(np.float32)
  w1_np = (rng.normal(size=(width, hidden)) / np.sqrt(width)).astype(np.float32)
  w2_np = (rng.normal(size=(hidden, width)) / np.sqrt(hidden)).astype(np.float32)

  def loss(w1, w2, x):
    return jnp.sum(jnp.square(jnp.dot(jax.nn.relu(jnp.dot(x, w1)), w2)))

  step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  args = tuple(jnp.asarray(a) for a in (w1_np, w2_np, x_np))

  def zoo_step():
    jax.block_until_ready(step(*args))

  w1, w2, xt = (torch.tensor(a, requires_grad=True) for a in (w1_np, w2_np, x_np))

  def torch_step():
    for t in (w1, w2, xt):
      t.grad = None
    (torch.relu(xt @ w1) @ w2).pow(2).sum().backward()

  return zoo_step, torch_step


def _hopfield(batch: int, q_len: int, n: int, width: int, heads: int, torch, jax, jnp, np):
  from zoo import hopfield as zh
  rng = np.random.default_rng(0)
  r_np = rng.normal(size=(batch, q_len, width)).astype(np.float32)
  y_np = rng.normal(size=(batch, n, width)).astype(np.float32)
  layer = zh.Hopfield(num_heads=heads)
  r, y = jnp.asarray(r_np), jnp.asarray(y_np)
  params = layer.init(jax.random.PRNGKey(0), r, y)

  def loss(p, r, y):
    return jnp.sum(jnp.square(layer.apply(p, r, y)))

  step = jax.jit(jax.grad(loss))

  def zoo_step():
    jax.block_until_ready(step(params, r, y))

  # hflayers' Hopfield(input_size=width, num_heads=heads, batch_first=True) with its defaults, as its functional
  # hopfield_core_forward computes it: (length, batch, features) inside, heads folded into the bmm batch.
  nn = torch.nn
  norm_stored, norm_state, norm_proj = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
  head_dim = width // heads
  q_w, k_w, v_w = (nn.Parameter(0.02 * torch.randn(width, width)) for _ in range(3))
  in_bias = nn.Parameter(torch.zeros(3 * width))
  out_proj = nn.Linear(width, width)
  modules = [norm_stored, norm_state, norm_proj, out_proj]
  tensors = [q_w, k_w, v_w, in_bias]
  rt, yt = torch.tensor(r_np), torch.tensor(y_np)
  scaling = head_dim ** -0.5

  def forward(state, stored):
    state, stored = state.transpose(0, 1), stored.transpose(0, 1)  # batch_first -> (length, batch, features)
    stored_n, state_n, proj_n = norm_stored(stored), norm_state(state), norm_proj(stored)
    tgt_len, bsz, _ = state_n.shape
    q = torch.nn.functional.linear(state_n, q_w, in_bias[:width]) * scaling
    k = torch.nn.functional.linear(stored_n, k_w, in_bias[width:2 * width])
    v = torch.nn.functional.linear(proj_n, v_w, in_bias[2 * width:])
    q = q.contiguous().view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
    weights = torch.nn.functional.dropout(weights, p=0.0, training=True)
    out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(tgt_len, bsz, width)
    return out_proj(out).transpose(0, 1)

  def torch_step():
    for m in modules:
      m.zero_grad(set_to_none=True)
    for t in tensors:
      t.grad = None
    forward(rt, yt).pow(2).sum().backward()

  return zoo_step, torch_step


def _adam(steps: int, torch, jax, jnp, np):
  import optax
  rng = np.random.default_rng(0)
  sizes = (64, 256, 256, 10)
  x_np = rng.normal(size=(128, 64)).astype(np.float32)
  y_np = rng.integers(0, 10, 128)
  ws_np = [(rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
  bs_np = [np.zeros(b, np.float32) for b in sizes[1:]]
  opt = optax.adam(1e-3)

  def net(p, x):
    h = x
    for i, (w, b) in enumerate(p):
      h = jnp.dot(h, w) + b
      if i < len(p) - 1:
        h = jax.nn.relu(h)
    return h

  @jax.jit
  def update(p, s, x, y):
    loss, g = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(net(p, x), y).mean())(p)
    upd, s = opt.update(g, s, p)
    return optax.apply_updates(p, upd), s, loss

  xj, yj = jnp.asarray(x_np), jnp.asarray(y_np)
  p0 = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(ws_np, bs_np)]
  s0 = opt.init(p0)

  def zoo_step():
    p, s = p0, s0
    for _ in range(steps):
      p, s, loss = update(p, s, xj, yj)
    jax.block_until_ready(loss)

  tnet = torch.nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:])
                               for m in (torch.nn.Linear(a, b), torch.nn.ReLU())][:-1])
  topt = torch.optim.Adam(tnet.parameters(), lr=1e-3)
  xt, yt = torch.tensor(x_np), torch.tensor(y_np)

  def torch_step():
    for _ in range(steps):
      topt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(tnet(xt), yt)
      loss.backward()
      topt.step()

  return zoo_step, torch_step


def _workloads():
  """(name, builder, args): the default table."""
  return [
      ("kan 1024x256->256 G=5 k=3", _kan, (1024, 256)),
      ("kan 4096x64->64 G=5 k=3", _kan, (4096, 64)),
      ("mlp 1024x256->1280->256", _mlp, (1024, 256)),
      ("mlp 4096x64->320->64", _mlp, (4096, 64)),
      ("hopfield small: b8 q16 n64 d64 h4", _hopfield, (8, 16, 64, 64, 4)),
      ("hopfield b32 q64 n256 d128 h4", _hopfield, (32, 64, 256, 128, 4)),
      ("hopfield large: b16 q128 n512 d256 h8", _hopfield, (16, 128, 512, 256, 8)),
      ("adam 64-256-256-10 b128, 50 steps", _adam, (50,)),
  ]


# ------------------------------------------------------------------------------------------------------ run


def run(reps: int, only=None):
  """Times every workload (alternating zoo / torch per round); returns ``[(name, zoo_s, torch_s)]``."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  todo = [w for w in _workloads() if only is None or any(w[0].startswith(o) for o in only)]
  steps = []
  for name, build, args in todo:
    zoo_step, torch_step = build(*args, torch, jax, jnp, np)
    zoo_step(), torch_step(), zoo_step(), torch_step()  # compile and warm up
    steps.append((name, zoo_step, torch_step))
  times = {name: ([], []) for name, _, _ in steps}
  for rep in range(reps):
    for name, zoo_step, torch_step in steps:
      order = ((0, zoo_step), (1, torch_step)) if rep % 2 == 0 else ((1, torch_step), (0, zoo_step))
      for slot, fn in order:
        start = time.perf_counter()
        fn()
        times[name][slot].append(time.perf_counter() - start)
  return [(name, statistics.median(z), statistics.median(t)) for name, (z, t) in times.items()]


def table(rows) -> str:
  lines = ["| workload | zoo ms | PyTorch ms | PyTorch / zoo |", "|---|---|---|---|"]
  for name, z, t in rows:
    lines.append(f"| {name} | {z * 1e3:.2f} | {t * 1e3:.2f} | {t / z:.2f} |")
  by = {name: (z, t) for name, z, t in rows}
  for kan_name, mlp_name in (("kan 1024x256->256 G=5 k=3", "mlp 1024x256->1280->256"),
                             ("kan 4096x64->64 G=5 k=3", "mlp 4096x64->320->64")):
    if kan_name in by and mlp_name in by:
      (kz, kt), (mz, mt) = by[kan_name], by[mlp_name]
      lines.append(f"| {kan_name}: KAN / equal-parameter MLP | {kz / mz:.2f} (zoo) | {kt / mt:.2f} (torch) | |")
  return "\n".join(lines)


def _command_args(argv) -> list[str]:
  """The command-line arguments without ``--note`` and its text (which goes under the table)."""
  args, out = list(argv if argv is not None else sys.argv[1:]), []
  skip = False
  for a in args:
    if skip:
      skip = False
    elif a == "--note":
      skip = True
    elif not a.startswith("--note="):
      out.append(a)
  return out


def main(argv=None):
  args = _PARSER.parse_args(argv)
  if args.threads:
    # Before jax is imported: XLA reads its flags once.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                               f"intra_op_parallelism_threads={args.threads}")
  try:
    import torch
  except ImportError:
    sys.exit("benchmarks/vs_pytorch.py needs torch: pip install -e '.[bench]' (or pip install torch).")
  if args.threads:
    torch.set_num_threads(args.threads)
  import jax
  machine = _machine()
  header = (f"{machine}; jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); threads={args.threads or 'default'}, median of {args.reps} "
            "alternating rounds")
  print(header, flush=True)
  rows = run(args.reps, args.only)
  text = table(rows)
  print(text)
  if args.append:
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    path = pathlib.Path(__file__).with_name("RESULTS.md")
    with path.open("a") as f:
      f.write(f"\n## zoo vs the papers' PyTorch code (`benchmarks/vs_pytorch.py`), {day}\n\n"
              f"Command: `python benchmarks/vs_pytorch.py {' '.join(_command_args(argv))}`"
              f"; {header}.\n\n{text}\n")
      if args.note:
        f.write(f"\n{args.note}\n")
  return rows


if __name__ == "__main__":
  main()
