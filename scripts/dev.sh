#!/usr/bin/env bash
# Sets up, builds and serves edgeroom at http://127.0.0.1:${PORT:-8787} with local Durable Objects,
# D1, KV and R2 persisted in .state/ (delete that folder to start over).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
state="${EDGEROOM_STATE:-$root/.state}"
# Local secrets (never committed): an admin key, a signing secret for tenant "demo", and
# anonymous dev access (honored only on 127.0.0.1/localhost; never in wrangler.toml).
if [ ! -f .dev.vars ]; then
  random() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
  printf 'ADMIN_KEY=%s\nTENANT_SECRETS={"demo":"%s"}\n' "$(random)" "$(random)" > .dev.vars
  echo "==> wrote .dev.vars (ADMIN_KEY and TENANT_SECRETS for tenant demo)"
fi
if ! grep -q '^AUTH_MODE=' .dev.vars; then
  echo 'AUTH_MODE=dev' >> .dev.vars
fi
node_modules/.bin/wrangler d1 migrations apply DB --local --persist-to "$state"
# wrangler runs the [build] command (scripts/build-worker.sh) before serving.
exec node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" \
  --persist-to "$state" --inspector-port 0
