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

step "no_std build of the core (x86_64-unknown-none)"
cargo rustc --lib --crate-type rlib --no-default-features --target x86_64-unknown-none

step "native tests (unit, model-based, integration, doc)"
cargo test --all-features

step "wasm tests under Node.js"
wasm-pack test --node --mode no-install -- --test wasm_node --test wasm_browser

step "wasm tests in headless Chromium"
wasm-pack test --headless --chrome --mode no-install -- --test wasm_node --test wasm_browser

echo
echo "all checks passed in $(( $(date +%s) - start )) s"
