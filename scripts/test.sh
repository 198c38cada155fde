#!/usr/bin/env bash
# Runs the whole test suite, setting up first if needed (idempotent, fast when done).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --no-run
build_dir="${ECOMLA_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)" "$@"
