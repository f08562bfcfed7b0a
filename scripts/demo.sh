#!/usr/bin/env bash
# Set up .venv if needed, check the gradients of the demo model, then train it on digits.
source "$(dirname "$0")/_setup.sh"
WORKDIR="${1:-runs/demo}"
echo "== 1. gradient check: the demo MLP (64 inputs, 64 relu hidden units, 10 classes), manual vs jax.grad vs finite differences"
python -m experiments.gradcheck --hidden=64 --activation=relu --loss=xent \
    --input_dim=64 --num_classes=10 --dtype=float64
echo
echo "== 2. training on scikit-learn's digits: mini-batch descent with hand-written backprop"
python -m experiments.train --dataset=digits --model=mlp --hidden=64 --activation=relu \
    --descent=minibatch --batch_size=32 --optimizer=momentum --lr=0.05 --grad=manual \
    --epochs=10 --workdir="$WORKDIR" --overwrite
python - "$WORKDIR" <<'PY'
import json, os, sys
s = json.load(open(os.path.join(sys.argv[1], "summary.json")))
print(f"\nfinal test accuracy {s['test_accuracy']:.4f} ({s['status']}, {s['epochs_run']} epochs, "
      f"{s['wall_seconds']:.1f} s on {s['device']})")
print(f"outputs: {os.path.abspath(sys.argv[1])} (config.json, flags.txt, metrics.jsonl, metrics.csv, "
      "summary.json, loss.png, checkpoints/, TensorBoard events)")
PY
