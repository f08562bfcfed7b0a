#!/usr/bin/env bash
# Regenerate every figure in docs/ from the code as it is now, so the figures always
# match it: each experiment runs with the flags the README states beside its figure
# (fixed seeds: the defaults' --seed=0), into a work directory, and its figure is
# copied into docs/. docs/figures.json records each figure's command and the numbers
# the README quotes (accuracies, slopes, bounds), to check the text against.
#
#   scripts/make_figures.sh              # work directory in $TMPDIR, removed at the end
#   scripts/make_figures.sh runs/figs    # keep every run's outputs in runs/figs
#
# Runs on the CPU unless JAX_PLATFORMS says otherwise (the README's timings are CPU
# timings); a few minutes on 2 cores, the gradient-cost timing about 1.5 of them.
case "${1:-}" in
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "error: scripts/make_figures.sh takes one argument, a work directory, not $1" >&2
        exit 2 ;;
esac
if [ $# -gt 1 ]; then
    echo "error: scripts/make_figures.sh takes one argument, a work directory; got $#" >&2
    exit 2
fi
source "$(dirname "$0")/_setup.sh"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
if [ $# -ge 1 ]; then
    WORK="$1"
    mkdir -p -- "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/gdlab-figures.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
fi
DOCS="$ROOT/docs"
mkdir -p "$DOCS"
MANIFEST="$WORK/figures.tsv"   # figure <TAB> workdir <TAB> command, one line per figure
: > "$MANIFEST"

# figure NAME OUTPUT EXPERIMENT [FLAGS...]: run experiments.EXPERIMENT with FLAGS into
# $WORK/NAME, then copy its OUTPUT (a file name in that workdir) to docs/NAME.png.
figure() {
    local name="$1" output="$2" experiment="$3"
    shift 3
    local command="python -m experiments.$experiment${*:+ $*}"
    echo "== docs/$name.png: $command"
    python -m "experiments.$experiment" "$@" --workdir="$WORK/$name" --overwrite
    cp "$WORK/$name/$output" "$DOCS/$name.png"
    printf '%s\t%s\t%s\n' "$name" "$WORK/$name" "$command" >> "$MANIFEST"
    echo
}

figure train_digits loss.png train
figure train_cnn loss.png train --model=cnn
figure train_transformer loss.png train --model=transformer --dataset=sort
figure lr_sweep sweep.png lr_sweep
figure descent_modes modes.png descent_modes
figure backprop_cost cost.png backprop_cost
figure landscape landscape.png landscape
if [ -f experiments/edge_of_stability.py ]; then
    figure eos eos.png edge_of_stability
fi

python - "$MANIFEST" "$DOCS/figures.json" <<'PY'
"""docs/figures.json: per figure, the command that made it and the numbers the README quotes."""
import json
import os
import sys


def load(workdir, name):
    path = os.path.join(workdir, name)
    return json.load(open(path)) if os.path.exists(path) else None


def numbers(name, workdir):
    summary = load(workdir, "summary.json")
    if summary is not None:  # a training run
        keep = ("status", "epochs_run", "train_loss", "test_loss", "test_accuracy", "test_rmse",
                "wall_seconds")
        return {k: summary[k] for k in keep if summary.get(k) is not None}
    sweep = load(workdir, "sweep.json")
    if sweep is not None:
        return {**scalars(sweep), "counts": sweep.get("counts")}
    modes = load(workdir, "modes.json")
    if modes is not None:
        return {mode: {"updates": run["history"][-1]["step"],
                       "train_loss": run["history"][-1]["train_loss"],
                       "test_loss": run["history"][-1].get("test_loss"),
                       "test_accuracy": run["history"][-1].get("test_accuracy"),
                       "train_seconds": run["train_seconds"], "status": run["status"]}
                for mode, run in modes["modes"].items()}
    cost = load(workdir, "cost.json")
    if cost is not None:
        last = cost["sizes"][-1]
        return {"params": cost["params"], "slopes": cost["slopes"],
                "flop_slopes": cost["flop_slopes"], "largest_fd_over_backprop":
                last["fd_over_backprop"], "wall_seconds": cost["wall_seconds"]}
    landscape = load(workdir, "landscape.json")
    if landscape is not None:
        return {fn["name"]: {"stability_bound": fn["stability_bound"],
                             "runs": [{k: run[k] for k in ("optimizer", "lr", "lr_over_bound",
                                                           "role", "final_loss", "diverged_at_step")}
                                      for run in fn["runs"]]}
                for fn in landscape["functions"]}
    eos = load(workdir, "eos.json")
    if eos is not None:  # the README's table: per run, and the mini-batch run
        keep = ("lr", "two_over_lr", "sharpness_init", "ratio_init", "sharpness_last_third_median",
                "ratio_last_third", "initial_loss", "final_loss", "started_below", "at_edge",
                "diverged")
        table = {"runs": [{k: run.get(k) for k in keep} for run in eos.get("runs", [])]}
        if eos.get("minibatch"):
            table["minibatch"] = {k: eos["minibatch"].get(k) for k in (*keep, "batch_size")}
        return {**scalars(eos), **table}
    return {}


def scalars(summary):
    """The numbers of a summary's top level, and its short labels (no versions, no prose)."""
    skip = ("version", "device", "backend", "platform", "python", "git")
    return {k: v for k, v in summary.items()
            if (isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 80))
            and not any(s in k for s in skip)}


figures = {}
for line in open(sys.argv[1]):
    name, workdir, command = line.rstrip("\n").split("\t")
    figures[name] = {"figure": f"docs/{name}.png", "command": command,
                     "numbers": numbers(name, workdir)}
with open(sys.argv[2], "w") as f:
    json.dump(figures, f, indent=1)
    f.write("\n")
for name, entry in figures.items():
    print(f"{entry['figure']:<28} {entry['command']}")
print(f"numbers in {os.path.relpath(sys.argv[2])}")
PY
