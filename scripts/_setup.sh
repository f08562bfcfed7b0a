# Sourced by demo.sh and test.sh: create .venv if it is missing and install
# gdlab with its test extra, skipping the install when pyproject.toml is
# unchanged since the last successful one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "gdlab: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
STAMP=.venv/.gdlab-install-stamp
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    echo "gdlab: installing the package and its test extra into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel  # the build backend, for offline builds too
    .venv/bin/python -m pip install --quiet -e ".[test]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
