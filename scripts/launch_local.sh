#!/usr/bin/env bash
# Start N processes of one experiment on this machine, joined by jax.distributed
# (on the CPU: gloo collectives), as a multi-host run would be:
#
#   scripts/launch_local.sh 2 -- -m experiments.train --epochs=2 --workdir=runs/two
#
# Process i gets --coordinator_address=localhost:PORT --num_processes=N --process_id=i;
# process 0 writes the workdir. Exits with the first non-zero status (0 when all
# succeed); Ctrl-C, or one process failing, stops them all: none is left behind.
set -euo pipefail
if [[ $# -lt 3 || "$2" != "--" || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N -- <python arguments, e.g. -m experiments.train --workdir=...>" >&2
    exit 2
fi
n="$1"; shift 2
python="${PYTHON:-python}"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for ((i = 0; i < n; i++)); do
    "$python" "$@" --coordinator_address="localhost:$port" --num_processes="$n" --process_id="$i" &
    pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
    code=0
    wait "$pid" || code=$?  # (in `if ! wait` the status would be the negation's, 0)
    if [[ $code -ne 0 && $status -eq 0 ]]; then status=$code; cleanup; fi
done
exit "$status"
