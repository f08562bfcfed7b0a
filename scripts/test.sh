#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite. Arguments go to pytest.
source "$(dirname "$0")/_setup.sh"
exec python -m pytest "$@"
