#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every check and test tidekv has.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

step "tools"
bash scripts/install-tools.sh

step "format"
cargo fmt --all -- --check

step "clippy (native, all features)"
cargo clippy --all-targets --all-features -- -D warnings

step "clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown --lib --tests -- -D warnings

step "clippy (wasm32, Node.js build: feature node)"
cargo clippy --target wasm32-unknown-unknown --lib --tests --features node -- -D warnings

step "rustdoc (every public item documented, no broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --quiet

step "no_std build of the core (x86_64-unknown-none)"
cargo rustc --lib --crate-type rlib --no-default-features --target x86_64-unknown-none

step "native tests (unit, model-based, integration, doc)"
cargo test --all-features

step "wasm tests under Node.js (the browser build is tested in Chromium below, through the npm package)"
wasm-pack test --node --mode no-install -- --test wasm_node

step "npm package: build (web + Node.js), pack, install the tarball into an empty folder"
bash scripts/build-npm.sh
TIDEKV_APP_DIR=$(node tests/node/package.mjs)
export TIDEKV_APP_DIR
echo "installed in $TIDEKV_APP_DIR"

step "ready to publish: cargo package --list, cargo publish --dry-run, npm publish --dry-run"
bash scripts/publish-check.sh

step "npm package under Node.js: files, lock, exit, bad input, types, cross-target with Rust, require and import on the oldest Node.js claimed"
node --test tests/node/

step "npm package in headless Chromium: IndexedDB, ticks, events (playwright-core)"
node --test tests/browser/

step "bundlers: an app built by Vite and webpack 5 (default configs) and Vite's dev server, in headless Chromium"
(cd tests/bundlers && npm ci --no-audit --no-fund --loglevel=error)
node --test tests/bundlers/

step "demo page end to end in headless Chromium (playwright-core)"
(cd www && npm ci --no-audit --no-fund --loglevel=error)
node --test www/test/

step "fuzz targets (cargo-fuzz on stable): build, then 20 s each over the seed corpora"
bash scripts/fuzz.sh quick

step "benchmarks build and run against their peers (reduced run; no figure is checked)"
scripts/bench.sh --quick

echo
echo "all checks passed in $(( $(date +%s) - start )) s"
