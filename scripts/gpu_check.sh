#!/usr/bin/env bash
# The device checks, as one script, for a machine with a GPU whose Python already has
# jax with CUDA, flax, optax, chex, absl-py, pytest, matplotlib, scikit-learn (and torch
# for the peer): no .venv is made. Writes everything into OUT (default gpu-out/), the most
# important first, so that a run cut short still leaves it:
#   env.txt          GPU, driver, jax and torch versions; each part's exit status and time
#   bench.json/.log  scripts/bench.py, full run (flax + optax and PyTorch eager peers)
#   profile.log/.tgz scripts/profile_step.py at tiny, small and large: where the step's time
#                    goes, kernel counts, optimised HLO (in the archive); and the tiny MLP,
#                    the CNN and the transformer at unroll 1, 4 and 8 (train.GPU_UNROLL)
#   train.json       experiments.train's summary.json with default flags, on the GPU
#   fused.json/.log  scripts/probe_fused_update.py: the large layer's weight gradient with the
#                    momentum update in its epilogue (Pallas Triton and Mosaic GPU kernels)
#   pytest.log       the test suite under this machine's jax (the tests pin themselves to
#                    the CPU), in 14 workers, for what time is left of BUDGET seconds; cut
#                    short, it is interrupted (SIGINT) so that it still names its failures
# tensorboardX, which that machine lacks, comes from .venv when it is carried there.
# PARTS (third argument, default all: "bench profile train probe pytest") picks the parts.
set -uo pipefail
OUT="${1:-gpu-out}"
BUDGET="${2:-340}"
PARTS=" ${3:-bench profile train probe pytest} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$SECONDS
log() { echo "$1: exit $2 after $((SECONDS - start)) s" >> "$OUT/env.txt"; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
    python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tail -1
} > "$OUT/env.txt" 2>&1
if [ -d .venv/lib/python3.11/site-packages/tensorboardX ]; then  # carried: not on the machine
    mkdir -p /tmp/gdlab-extra && cp -r .venv/lib/python3.11/site-packages/tensorboardX /tmp/gdlab-extra/
    export PYTHONPATH="$PYTHONPATH:/tmp/gdlab-extra"
fi
if want bench; then
    timeout 300 python scripts/bench.py --torch_compile=false --json_out="$OUT/bench.json" \
        > "$OUT/bench.log" 2>&1
    log bench $?
fi
if want profile; then
    timeout 170 python scripts/profile_step.py --sizes=tiny,small,large --unrolls=1,4,8 \
        --out=/tmp/gdlab-profile > "$OUT/profile.log" 2>&1
    log profile $?
    tar czf "$OUT/profile.tgz" -C /tmp gdlab-profile
fi
if want train; then
    timeout 40 python -m experiments.train --overwrite --workdir=/tmp/gdlab-train > "$OUT/train.log" 2>&1 \
        && cp /tmp/gdlab-train/summary.json "$OUT/train.json"
    log train $?
fi
if want probe; then
    timeout 100 python scripts/probe_fused_update.py --json_out="$OUT/fused.json" > "$OUT/fused.log" 2>&1
    log probe $?
fi
left=$((BUDGET - (SECONDS - start)))
if want pytest && [ "$left" -gt 30 ]; then
    timeout -s INT -k 30 "$left" python -m pytest -q -rf -n 14 -p no:benchmark \
        -p no:cacheprovider tests > "$OUT/pytest.log" 2>&1
    log pytest $?
fi
