#!/usr/bin/env bash
# One call on a lent GPU/TPU: kernel correctness (compiled), then speed and memory of every kernel against its
# baselines, all in one results file. Installs nothing: it needs the repo (pip install -e . already done, or the
# venv carried) and runs in under 10 minutes on an H100/H200 (each step has its own time limit, so one slow step
# cannot eat the others' time; a step that hits its limit is reported as such and the script goes on).
#
#   bash benchmarks/device.sh             # on the device; results in $OUT/device_results.md (or benchmarks/)
#   bash benchmarks/device.sh --dry-run   # anywhere (CPU): the same steps at tiny sizes, kernels interpreted
#
# Steps (see each script's docstring for what it measures):
#   1. kernels_check.py  every Pallas kernel compiled vs its jnp reference, forward and gradients, f32 and bf16
#   2. attention.py      fwd and fwd+bwd TFLOP/s vs jax.nn.dot_product_attention (cuDNN and XLA) and jax's own
#                        Pallas attention, lengths 1k-16k, bf16, causal and not; O(length) memory sweep
#   3. kan.py            fused KAN kernel vs the naive jnp layer and an equal-parameter MLP: time and memory
#   4. multigrid.py      V-cycle and MgNO layer, kernels vs lax.conv: time and memory
#   5. maxsim.py         ColBERT MaxSim kernel vs einsum + max: time and memory
#   6. segment_attention.py  segment-id attention (packed ART-style sequences, 10-100% coverage): FLOPs skipped
#                        and time against full attention and a dense mask, causal and not; output checked
# Record the figures in benchmarks/RESULTS.md with the device named.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
[[ -d .venv ]] && source .venv/bin/activate
# zoo maps kernels/, recipes/ and checkpoints/ into one import root: on a bare machine install the repo itself (no
# dependencies: jax, flax and optax must already be there, or travel as wheels, see .library/device/README.md).
python -c "import zoo" 2> /dev/null || python -m pip install -q --no-deps --no-build-isolation -e . || exit 1
RESULTS="${OUT:-benchmarks}/device_results.md"
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
FAILED=()

step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo -e "\n## $name\n\n\`$*\` (limit ${limit}s)\n" | tee -a "$RESULTS"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E '^(W|I)[0-9]{4} |^WARNING: All log messages' | tee -a "$RESULTS"
  local rc=${PIPESTATUS[0]}
  echo -e "\n($name: exit $rc, $((SECONDS - start)) s)" | tee -a "$RESULTS"
  [[ $rc -ne 0 ]] && FAILED+=("$name (exit $rc$([[ $rc -eq 124 ]] && echo ', time limit'))")
  return 0
}

{
  echo "# Device benchmark results, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
  python -c "import jax; print('devices:', jax.devices(), '| jax', jax.__version__)"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee -a "$RESULTS"

if [[ $DRY -eq 1 ]]; then
  step "kernel correctness" 300 python benchmarks/kernels_check.py --dry-run
  step "attention" 300 python benchmarks/attention.py --lengths 128 --causal both --reps 1 --memory-lengths 256 512
  step "kan" 300 python benchmarks/kan.py --batches 256 --widths 32 --reps 1
  step "multigrid" 300 python benchmarks/multigrid.py --sizes 32 --channels 4 --batch 1 --reps 1
  step "maxsim" 300 python benchmarks/maxsim.py --docs 4 --doc-lengths 32 --reps 1
  step "segment attention" 300 python benchmarks/segment_attention.py --lengths 256 --coverages 0.25 1.0 --reps 1
else
  step "kernel correctness" 90 python benchmarks/kernels_check.py
  step "attention" 200 python benchmarks/attention.py --lengths 1024 2048 4096 8192 16384 --head-dims 64 128 \
    --causal both --dtype bfloat16 --reps 10
  step "kan" 60 python benchmarks/kan.py
  step "multigrid" 60 python benchmarks/multigrid.py
  step "maxsim" 50 python benchmarks/maxsim.py
  step "segment attention" 50 python benchmarks/segment_attention.py --lengths 4096 8192 --reps 10
  step "segment attention, causal" 30 python benchmarks/segment_attention.py --lengths 8192 --causal --padding 0.1 \
    --reps 10
fi

if [[ ${#FAILED[@]} -eq 0 ]]; then
  echo -e "\nall steps finished; results in $RESULTS" | tee -a "$RESULTS"
else
  echo -e "\nsteps that failed: ${FAILED[*]}; results in $RESULTS" | tee -a "$RESULTS"
  exit 1
fi
