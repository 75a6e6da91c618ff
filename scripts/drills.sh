#!/usr/bin/env bash
# The long fault drills (issue 14): SIGKILLs of the runtime during acknowledged publishing,
# 5 minutes of connection churn with 200 clients, and D1/R2/KV failures during flushes, each
# against its own `wrangler dev` on loopback, one after the other. Prints each drill's summary
# and keeps them in target/drills-report.txt. `scripts/test.sh` runs a short version of the same
# drills (tests/drills.rs with its defaults).
#
# Every size can be changed: EDGEROOM_DRILL_SECS (publishing/churn time per drill),
# EDGEROOM_DRILL_CLIENTS, EDGEROOM_DRILL_KILLS, EDGEROOM_DRILL_ROOMS, EDGEROOM_DRILL_RATE
# (publishes/s per publisher), EDGEROOM_DRILL_FAULT_SECS, EDGEROOM_DRILL_SESSION_MS,
# EDGEROOM_DRILL_SEED (replays the random choices of an earlier run). Extra arguments go to the
# test binary, e.g. `scripts/drills.sh drill_connection_churn` runs only the churn drill.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
export EDGEROOM_DRILL_SECS="${EDGEROOM_DRILL_SECS:-300}"
export EDGEROOM_DRILL_CLIENTS="${EDGEROOM_DRILL_CLIENTS:-200}"
export EDGEROOM_DRILL_KILLS="${EDGEROOM_DRILL_KILLS:-10}"
export EDGEROOM_DRILL_FAULT_SECS="${EDGEROOM_DRILL_FAULT_SECS:-30}"
# 200 clients (and the relays in front of some) hold a few sockets each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

printf '==> building the Worker (with the test-only fault injection)\n'
EDGEROOM_FAULT_INJECTION=1 sh scripts/build-worker.sh
mkdir -p target
report=target/drills-report.txt
printf '==> fault drills: %s s per drill, %s churn clients, %s kills, %s s per flush fault (report: %s)\n' \
  "$EDGEROOM_DRILL_SECS" "$EDGEROOM_DRILL_CLIENTS" "$EDGEROOM_DRILL_KILLS" "$EDGEROOM_DRILL_FAULT_SECS" "$report"
EDGEROOM_PREBUILT=1 cargo test --locked -p edgeroom-tests --test drills -- --test-threads=1 --nocapture "$@" \
  2>&1 | tee "$report"
