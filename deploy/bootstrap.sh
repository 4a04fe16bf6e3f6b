#!/usr/bin/env bash
# Make (or reuse) the Python environment streamrec runs in, then print its path.
#
# The environment lives outside the work tree, keyed by a hash of
# the dependency lists in pyproject.toml and the Python version, so a fresh clone reuses a matching one
# and torch (several GB) is installed once per dependency set, not per clone.
# The project itself is always re-installed (editable, no deps: seconds) so the
# environment points at the clone that called this script.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
python=${STREAMREC_PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
cache=${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}
# Only the dependency lists (and the interpreter) decide which venv fits.
key=$( (sed -n '/^dependencies = \[/,/^\[project.scripts\]/p' "$here/pyproject.toml"; "$python" --version) \
  | sha256sum | cut -c1-12)
venv=${STREAMREC_VENV:-$cache/venv-$key}

if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: creating $venv (first run: downloads torch and friends, a few minutes)" >&2
  # Built in place (a moved venv keeps stale paths in its scripts); the
  # marker file is written last, so an interrupted build is redone.
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet --progress-bar off -e "$here[dev]" >&2
  touch "$venv/.complete"
else
  "$venv/bin/pip" install --quiet --no-deps -e "$here" >&2
fi
# Data-only packages: `streamrec evaluate` reads MovieLens-100k from the files
# recbole ships and never imports recbole, so its dependency tree (ray,
# tensorboard, a second torch pin) is not installed.
for pin in $(grep -v '^#' "$here/deploy/data-packages.txt"); do
  if ! "$venv/bin/pip" show --quiet "${pin%%==*}" >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --no-deps "$pin" >&2
  fi
done
echo "$venv"
