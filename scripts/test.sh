#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite. Arguments go to pytest.
# The tests run in 2 worker processes (pytest-xdist) unless the arguments choose
# (-n N, or -n 0 for one process).
source "$(dirname "$0")/_setup.sh"
workers=(-n 2)
for arg in "$@"; do
    case "$arg" in -n|-n[0-9]*|--numprocesses*|--numprocesses=*) workers=() ;; esac
done
exec python -m pytest "${workers[@]}" "$@"
