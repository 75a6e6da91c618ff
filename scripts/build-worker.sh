#!/bin/sh
# Builds the Rust Worker with worker-build, using the locally installed wasm-bindgen, wasm-opt and
# esbuild (worker-build would otherwise download them from outside the registries).
# wrangler runs this as its [build] command; tests set EDGEROOM_SKIP_BUILD=1 after building once.
#
#   sh scripts/build-worker.sh            the one Worker with everything, into build/ (wrangler.toml:
#                                         local development and tests)
#   sh scripts/build-worker.sh router     one Worker of the split deploy (docs/deploy.md), into
#   sh scripts/build-worker.sh rooms      build/<name>/ (deploy/<name>.toml)
#   sh scripts/build-worker.sh counters
#   sh scripts/build-worker.sh split      all three of them
set -eu
[ "${EDGEROOM_SKIP_BUILD:-0}" = 1 ] && exit 0
worker="${1:-all}"
if [ "$worker" = split ]; then
  for name in router rooms counters; do sh "$0" "$name"; done
  exit 0
fi
case "$worker" in
  all) out=build; features="" ;;
  router|rooms|counters) out="build/$worker"; features="--no-default-features --features $worker" ;;
  *) echo "usage: $0 [all|router|rooms|counters|split]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cd "$root"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen")}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/binaryen/bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}"
# Test runs (scripts/test.sh, the test harness) build with the test-only fault injection; a plain
# build, and so every `wrangler deploy`, leaves it out.
[ "${EDGEROOM_FAULT_INJECTION:-0}" = 1 ] && features="$features --features fault-injection"
# shellcheck disable=SC2086 # the features are separate words
worker-build --release --out-dir "$out" . $features
# wasm-opt runs here rather than in worker-build (`wasm-opt = false` in Cargo.toml), because
# worker-build always keeps the wasm name section: ~200 KB of function names, a tenth of the
# gzipped upload. EDGEROOM_KEEP_NAMES=1 keeps them (symbolized wasm stack traces, twiggy);
# docs/size.md has the measurements (-Os gzips a little smaller than -Oz here).
keep_names=""
[ "${EDGEROOM_KEEP_NAMES:-0}" = 1 ] && keep_names="--debuginfo"
# The same feature set worker-build enables (what workerd supports), no newer encodings.
"$WASM_OPT_BIN" "$out/index_bg.wasm" -o "$out/index_bg.opt.wasm" -Os --strip-producers $keep_names \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling
mv "$out/index_bg.opt.wasm" "$out/index_bg.wasm"
