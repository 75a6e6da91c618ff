#!/usr/bin/env bash
# Deploys edgeroom to Cloudflare as three Workers (docs/deploy.md): applies the D1 migrations,
# then deploys the counters and rooms Workers (they define the Durable Object classes) and the
# router last (its bindings name theirs). Each `wrangler deploy` builds its Worker through the
# config's [build] command (scripts/build-worker.sh <worker>).
#
#   scripts/deploy.sh             deploy (after `npx wrangler login` and the ids in deploy/*.toml)
#   scripts/deploy.sh --dry-run   build and bundle all three without uploading, and print what
#                                 each would upload ("Total Upload: … / gzip: …")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" WRANGLER_SEND_METRICS=false
wrangler=node_modules/.bin/wrangler
[ -x "$wrangler" ] || { echo "error: wrangler is missing; run scripts/setup.sh first" >&2; exit 1; }
workers=(counters rooms router)

case "${1:-}" in
  --dry-run)
    for worker in "${workers[@]}"; do
      printf '==> %s (deploy/%s.toml)\n' "$worker" "$worker"
      out=$("$wrangler" deploy --dry-run --env production -c "deploy/$worker.toml" 2>&1) ||
        { printf '%s\n' "$out" >&2; exit 1; }
      printf '%s\n' "$out" | grep 'Total Upload'
    done
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

if grep -l 'REPLACE-WITH-' deploy/*.toml; then
  echo "error: put your D1 database and KV namespace ids into the files above (docs/deploy.md)" >&2
  exit 1
fi
"$wrangler" d1 migrations apply DB --env production --remote -c deploy/router.toml
for worker in "${workers[@]}"; do
  printf '==> deploying the %s Worker\n' "$worker"
  "$wrangler" deploy --env production -c "deploy/$worker.toml"
done
