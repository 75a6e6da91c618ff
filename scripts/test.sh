#!/usr/bin/env bash
# Sets up, then runs every check: formatting, clippy (native and wasm32, warnings denied), the
# native unit tests and the end-to-end tests against real `wrangler dev` servers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

say() { printf '\n==> %s\n' "$*"; }
say "cargo fmt --check"
cargo fmt --all --check
say "clippy (native crates)"
cargo clippy --locked --workspace --exclude edgeroom --all-targets -- -D warnings
say "clippy (the Worker, wasm32: the one Worker and each Worker of the split deploy)"
cargo clippy --locked -p edgeroom --target wasm32-unknown-unknown -- -D warnings
for worker in router rooms counters; do
  cargo clippy --locked -p edgeroom --target wasm32-unknown-unknown --no-default-features --features "$worker" -- -D warnings
done
say "building the Worker (with the test-only fault injection) and the split deploy's three (as deployed)"
EDGEROOM_FAULT_INJECTION=1 sh scripts/build-worker.sh
sh scripts/build-worker.sh split
say "the split deploy's production configs bundle (scripts/deploy.sh --dry-run); what each Worker uploads"
# Size budget (issue #14: 250 KB gzipped per Worker), reported, never failing the run; docs/size.md.
EDGEROOM_SKIP_BUILD=1 scripts/deploy.sh --dry-run
say "tests (native unit tests, the short fuzz run of edgeroom-fuzz, then end-to-end against wrangler dev)"
EDGEROOM_PREBUILT=1 cargo test --locked --workspace --exclude edgeroom
say "the Next.js example (examples/nextjs-chat): its own npm ci and OpenNext build (type-checked), skipped when unchanged"
examples/nextjs-chat/scripts/build.sh
say "browser client (client/js), admin console and the Next.js example: type check, then Node and headless Chromium tests against wrangler dev"
npm run --silent typecheck:client
EDGEROOM_PREBUILT=1 node --test --test-concurrency=1 tests/js/*.test.mjs
