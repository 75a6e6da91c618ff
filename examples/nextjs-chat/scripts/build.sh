#!/usr/bin/env bash
# Installs this example's npm packages (its own package-lock.json, pinned) and builds it for Workers
# with `opennextjs-cloudflare build` into .open-next/. Each step runs only when its inputs changed,
# so a second run takes a second. Needs the browser client built first (the repo's scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
export NEXT_TELEMETRY_DISABLED=1 WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

say() { printf '==> %s\n' "$*"; }
if [ ! -f "$root/client/js/dist/index.js" ]; then
  echo "error: client/js/dist is missing: run the repository's scripts/setup.sh first (it builds @edgeroom/client)" >&2
  exit 1
fi

# @edgeroom/client is installed as a copy of client/js (install-links in .npmrc), so a changed
# client means a fresh install too.
install_hash=$(cat package-lock.json .npmrc "$root"/client/js/package.json "$root"/client/js/dist/*.js "$root"/client/js/dist/*.d.ts | sha256sum | cut -d' ' -f1)
install_stamp=node_modules/.edgeroom-example-install.sha256
if [ ! -f "$install_stamp" ] || [ "$(cat "$install_stamp")" != "$install_hash" ]; then
  say "installing the Next.js example's npm packages (examples/nextjs-chat)"
  start=$SECONDS
  npm ci --no-audit --no-fund --loglevel=error
  echo "$install_hash" > "$install_stamp"
  say "installed in $((SECONDS - start)) s"
fi

build_hash=$( (echo "$install_hash"; find app lib scripts -type f | sort | xargs cat; cat env.d.ts next.config.ts open-next.config.ts tsconfig.json package.json) | sha256sum | cut -d' ' -f1)
build_stamp=.open-next/.edgeroom-example-build.sha256
if [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$build_hash" ] || [ ! -f .open-next/worker.js ]; then
  say "building the Next.js example for Workers (opennextjs-cloudflare build, about a minute)"
  start=$SECONDS
  node_modules/.bin/opennextjs-cloudflare build > .open-next-build.log 2>&1 || { cat .open-next-build.log; exit 1; }
  echo "$build_hash" > "$build_stamp"
  say "built in $((SECONDS - start)) s"
fi
