#!/bin/sh
# The benchmark's one command: edgeroom against the partyserver peer on the same local workerd.
# Builds what it needs, runs every scenario with the state on tmpfs and on disk, and writes
# bench/RESULTS.md, bench/results.json and bench/plots/. See bench/README.md.
#   bench/run.sh            full run (about 29 minutes on 2 cores)
#   bench/run.sh --quick    smoke run (under 3 minutes): one round, short steps, smaller scenarios
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The project's setup (idempotent) when a tool the build needs is missing.
if [ ! -x node_modules/.bin/wrangler ] || ! command -v worker-build >/dev/null 2>&1 || ! command -v wasm-bindgen >/dev/null 2>&1; then
  sh scripts/setup.sh
fi
exec node bench/run.mjs "$@"
