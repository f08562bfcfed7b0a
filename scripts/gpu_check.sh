#!/usr/bin/env bash
# The device checks, as one script, for a machine with a GPU whose Python already has
# jax with CUDA, flax, chex, absl-py, pytest, matplotlib, scikit-learn (and torch for
# the peer): no .venv is made. Writes everything into OUT (default gpu-out/):
#   env.txt        GPU, driver, jax and torch versions
#   bench.json     scripts/bench.py, full run (PyTorch eager peer on the GPU)
#   bench.log      its table
#   compile.json   scripts/bench.py again for the torch.compile peer (tiny, medium), if time allows
#   gradcheck.log  every layer and loss, float64 and float32, on the GPU
#   train.json     experiments.train's summary.json with default flags, on the GPU
#   train_cnn.json the same for --model=cnn
#   pytest.log     the test suite under this machine's jax (the tests pin themselves to the CPU)
set -uo pipefail
OUT="${1:-gpu-out}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$SECONDS
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
    python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tail -1
} > "$OUT/env.txt" 2>&1
timeout 330 python scripts/bench.py --torch_compile=false --json_out="$OUT/bench.json" > "$OUT/bench.log" 2>&1
echo "bench: exit $? after $((SECONDS - start)) s" >> "$OUT/env.txt"
{
    timeout 60 python -m experiments.gradcheck --layers=all --dtype=float64
    timeout 60 python -m experiments.gradcheck --layers=all --dtype=float32
    timeout 60 python -m experiments.gradcheck --hidden=64 --activation=relu --loss=xent --dtype=float32 --input_dim=64 --num_classes=10
    timeout 60 python -m experiments.gradcheck --model=cnn --dtype=float64
    timeout 60 python -m experiments.gradcheck --model=transformer --dtype=float64
} > "$OUT/gradcheck.log" 2>&1
timeout 90 python -m experiments.train --overwrite --workdir=/tmp/gdlab-train > /dev/null 2>&1 && cp /tmp/gdlab-train/summary.json "$OUT/train.json"
timeout 90 python -m experiments.train --overwrite --model=cnn --workdir=/tmp/gdlab-cnn > /dev/null 2>&1 && cp /tmp/gdlab-cnn/summary.json "$OUT/train_cnn.json"
echo "experiments: done after $((SECONDS - start)) s" >> "$OUT/env.txt"
timeout 150 python -m pytest -q -x -p no:cacheprovider tests > "$OUT/pytest.log" 2>&1
echo "pytest: exit $? after $((SECONDS - start)) s" >> "$OUT/env.txt"
left=$((540 - (SECONDS - start)))
if [ "$left" -gt 60 ]; then
    timeout "$left" python scripts/bench.py --sizes=tiny,medium --repeats=5 --json_out="$OUT/compile.json" > /dev/null 2>&1
    echo "torch.compile bench: exit $? after $((SECONDS - start)) s" >> "$OUT/env.txt"
fi
