#!/usr/bin/env bash
# Installs everything edgeroom needs to build, run and test, idempotently: what is already
# installed at the right version is skipped, so a second run takes seconds.
# Everything comes from the package registries (crates.io, npm, PyPI, Debian); nothing else is downloaded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

WORKER_BUILD_VERSION=0.8.7
# wasm-bindgen-cli must match the wasm-bindgen library the Worker links (from Cargo.lock).
WASM_BINDGEN_VERSION=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

say() { printf '==> %s\n' "$*"; }
has_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qwF "$2"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding rustup component $component"
    rustup component add "$component"
  fi
done

if ! has_version worker-build "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi
if ! has_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about two minutes, once)"
  # Not --locked: its locked set needs a crate version the registry here lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# npm packages (wrangler, binaryen's wasm-opt, ws), pinned by package-lock.json.
stamp=node_modules/.edgeroom-lock.sha256
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$stamp"
fi
# The browser client (client/js): its ES module and the demo page's bundle (public/demo/lib/),
# rebuilt (~2 s) only when its sources or the lock file changed.
client_stamp=node_modules/.edgeroom-client.sha256
client_hash=$(cat client/js/src/*.ts client/js/build.mjs client/js/tsconfig.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$client_stamp" ] || [ "$(cat "$client_stamp")" != "$client_hash" ] \
  || [ ! -f client/js/dist/index.js ] || [ ! -f public/demo/lib/edgeroom-client.js ]; then
  say "building the browser client"
  npm run --silent build:client
  echo "$client_hash" > "$client_stamp"
fi
# The admin console (admin/): its bundle with uPlot into public/admin/, served at /admin/, ~1 s.
console_stamp=node_modules/.edgeroom-console.sha256
console_hash=$(cat admin/src/* admin/build.mjs package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$console_stamp" ] || [ "$(cat "$console_stamp")" != "$console_hash" ] || [ ! -d public/admin ]; then
  say "building the admin console"
  npm run --silent build:console
  echo "$console_hash" > "$console_stamp"
fi
# Headless Chromium for the browser tests (Debian's package, driven by npm's playwright-core).
if [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium (once)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
# schemathesis (PyPI) checks the REST API against docs/openapi.yaml in the tests.
SCHEMATHESIS_VERSION=4.32.5
if ! .venv/bin/schemathesis --version 2>/dev/null | grep -qwF "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
say "setup complete"
