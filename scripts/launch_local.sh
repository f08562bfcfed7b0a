#!/usr/bin/env bash
# Start N processes of one experiment on this machine, joined by jax.distributed
# (on the CPU: gloo collectives), as a multi-host run would be:
#
#   scripts/launch_local.sh 2 -- -m experiments.train --epochs=2 --workdir=runs/two
#
# Process i gets --coordinator_address=localhost:PORT --num_processes=N --process_id=i;
# process 0 writes the workdir. Exits with the first non-zero status (0 when all
# succeed); Ctrl-C, SIGTERM, or one process failing, stops them all: none is left behind
# (one that has not stopped GDLAB_LAUNCH_GRACE seconds later, default 30, is killed).
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    exit 0
fi
if [[ $# -lt 3 || "$2" != "--" || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N -- <python arguments, e.g. -m experiments.train --workdir=...>" >&2
    exit 2
fi
n="$1"; shift 2
python="${PYTHON:-python}"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')"
pids=()
# stop SIGNAL: stop the processes still running. SIGNAL first (they finish the epoch and
# checkpoint; "" when they have one already: Ctrl-C reaches the whole group), then SIGKILL
# after GRACE seconds (a process waiting on a dead peer's all-reduce never finishes).
grace="${GDLAB_LAUNCH_GRACE:-30}"
alive() {  # the pids still running (an ended, not yet reaped one is a zombie: Z)
    local pid st
    for pid in "${pids[@]}"; do
        st="$(ps -o stat= -p "$pid" 2>/dev/null)" && [[ "$st" != Z* ]] && echo "$pid"
    done
    return 0
}
stop() {
    local left; left=($(alive)); [[ ${#left[@]} -eq 0 ]] && return
    if [[ -n "$1" ]]; then kill "-$1" "${left[@]}" 2>/dev/null || true; fi
    for ((t = 0; t < 10 * grace; t++)); do
        sleep 0.1; left=($(alive)); [[ ${#left[@]} -eq 0 ]] && return
    done
    kill -9 "${left[@]}" 2>/dev/null || true
}
trap 'stop TERM' EXIT
trap 'trap "stop \"\"" EXIT; exit 130' INT
trap 'exit 143' TERM
for ((i = 0; i < n; i++)); do
    "$python" "$@" --coordinator_address="localhost:$port" --num_processes="$n" --process_id="$i" &
    pids+=("$!")
done
status=0
for ((i = 0; i < n; i++)); do  # in the order they end: the first failure stops the rest
    code=0
    wait -n || code=$?  # (in `if ! wait` the status would be the negation's, 0)
    if [[ $code -ne 0 && $status -eq 0 ]]; then status=$code; stop TERM; fi
done
exit "$status"
