#!/usr/bin/env bash
# Set up .venv if needed, check the gradients of the demo model, then train it on digits.
#
#   scripts/demo.sh          # outputs in runs/demo
#   scripts/demo.sh DIR      # outputs in DIR (a new folder, or one an earlier demo wrote)
#
# The demo replaces only its own earlier run: a folder holding another run is refused.
case "${1:-}" in
    -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "error: scripts/demo.sh takes one argument, the output folder, not $1" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
    echo "error: scripts/demo.sh takes one argument, the output folder; got $#" >&2
    exit 2
fi
source "$(dirname "$0")/_setup.sh"
WORKDIR="${1:-runs/demo}"
DEMO_FLAGS=(--dataset=digits --model=mlp --hidden=64 --activation=relu --descent=minibatch
            --batch_size=32 --optimizer=momentum --lr=0.05 --grad=manual --epochs=10)
if [ -e "$WORKDIR/config.json" ]; then  # replace an earlier demo, never another run
    python - "$WORKDIR" "${DEMO_FLAGS[@]}" <<'PY' || exit 2
import json, os, sys
folder, wanted = sys.argv[1], dict(a[2:].split("=", 1) for a in sys.argv[2:])
try:
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    ours = isinstance(config, dict) and all(
        str(",".join(config[k]) if isinstance(config.get(k), list) else config.get(k)) == v
        or (k == "lr" and config.get(k) == float(v)) for k, v in wanted.items())
except (OSError, ValueError):
    ours = False
if not ours:
    sys.exit(f"error: {folder} holds a run that is not the demo's; give scripts/demo.sh "
             f"another folder (it replaces only an earlier demo)")
PY
fi
echo "== 1. gradient check: the demo MLP (64 inputs, 64 relu hidden units, 10 classes), manual vs jax.grad vs finite differences"
python -m experiments.gradcheck --hidden=64 --activation=relu --loss=xent \
    --input_dim=64 --num_classes=10 --dtype=float64
echo
echo "== 2. training on scikit-learn's digits: mini-batch descent with hand-written backprop"
python -m experiments.train "${DEMO_FLAGS[@]}" --workdir="$WORKDIR" --overwrite
python - "$WORKDIR" <<'PY'
import json, os, sys
s = json.load(open(os.path.join(sys.argv[1], "summary.json")))
print(f"\nfinal test accuracy {s['test_accuracy']:.4f} ({s['status']}, {s['epochs_run']} epochs, "
      f"{s['wall_seconds']:.1f} s on {s['device']})")
print(f"outputs: {os.path.abspath(sys.argv[1])} (config.json, flags.txt, metrics.jsonl, metrics.csv, "
      "summary.json, loss.png, checkpoints/, TensorBoard events)")
PY
