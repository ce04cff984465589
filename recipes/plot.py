"""PNG curves of every metric of one or more runs, overlaid: ``python -m zoo.recipes.plot WORKDIR [WORKDIR ...]``.

Reads each work directory's ``metrics.jsonl`` (what :mod:`zoo.recipes.train` writes) and draws one panel per metric
(``train/loss``, ``eval/accuracy`` ...), one line per run, labelled by the work directory's name::

  python -m zoo.recipes.plot /tmp/vit /tmp/activator --out curves.png

From Python: ``zoo.recipes.plot.plot_runs(["/tmp/vit", "/tmp/activator"], "curves.png")`` returns the figure.
For live curves use TensorBoard on the same directories (``tensorboard --logdir /tmp``): every run writes
``tensorboard/`` event files beside ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence

__all__ = ["main", "plot_runs", "read_metrics"]


def read_metrics(workdir: str) -> dict[str, tuple[list[int], list[float]]]:
  """``{metric: (steps, values)}`` from ``<workdir>/metrics.jsonl`` (a truncated last line is skipped)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"plot: {workdir!r} has no metrics.jsonl (is it the --workdir of a zoo.recipes.train "
                            "run?).")
  series: dict[str, tuple[list[int], list[float]]] = {}
  with open(path) as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
  for n, line in enumerate(lines):
    try:
      record = json.loads(line)
    except ValueError:
      if n == len(lines) - 1:
        continue  # a run killed while writing its last line
      raise ValueError(f"plot: {path}, line {n + 1}, is not a JSON record: {line[:80]!r}") from None
    step = record.get("step")
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)):
        steps, values = series.setdefault(key, ([], []))
        steps.append(int(step))
        values.append(float(value))
  return series


def plot_runs(workdirs: Sequence[str], out: str | None = None, *, labels: Sequence[str] | None = None,
              columns: int = 3):
  """One panel per metric, the runs overlaid; saved as a PNG at ``out`` if given. Returns the matplotlib figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  if out is not None:
    matplotlib.use("Agg")  # writing a file needs no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if not workdirs:
    raise ValueError("plot: give at least one work directory.")
  labels = list(labels) if labels is not None else [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  if len(labels) != len(workdirs):
    raise ValueError(f"plot: {len(labels)} labels for {len(workdirs)} work directories.")
  runs = [read_metrics(w) for w in workdirs]
  metrics = sorted({k for run in runs for k in run}, key=lambda k: (not k.startswith("train/"), k))
  if not metrics:
    raise ValueError(f"plot: no metrics in {', '.join(workdirs)} (has the run logged a step yet?).")
  columns = max(1, min(columns, len(metrics)))
  rows = math.ceil(len(metrics) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
  for ax, metric in zip(axes.ravel(), metrics):
    for run, label in zip(runs, labels):
      if metric in run:
        steps, values = run[metric]
        ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
    ax.set_title(metric)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  for ax in axes.ravel()[len(metrics):]:
    ax.axis("off")
  axes.ravel()[0].legend(fontsize="small")
  fig.tight_layout()
  if out is not None:
    fig.savefig(out, dpi=120)
  return fig


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m zoo.recipes.plot", description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="work directories of zoo.recipes.train runs")
  parser.add_argument("--out", default="curves.png", help="PNG file to write (default: curves.png)")
  parser.add_argument("--labels", nargs="*", help="one legend label per work directory (default: their names)")
  args = parser.parse_args(argv)
  try:
    plot_runs(args.workdirs, args.out, labels=args.labels)
  except (FileNotFoundError, ValueError) as e:
    parser.exit(2, f"error: {e}\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
