#!/usr/bin/env bash
# Checks that the crate and the npm package are ready to publish, without publishing:
# `cargo package --list` holds only what the crate needs, `cargo publish --dry-run` builds the
# packaged crate, and `npm publish --dry-run` accepts pkg/ (built by scripts/build-npm.sh).
# Usage: scripts/publish-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "publish-check: $*" >&2; exit 1; }

echo "[publish-check] cargo package --list"
list=$(cargo package --list --allow-dirty 2>/dev/null)
for needed in Cargo.toml README.md LICENSE-MIT LICENSE-APACHE src/lib.rs src/redis/write.lua \
  docs/ARCHITECTURE.md docs/REDIS.md src/wasm/backend_redis.js; do
  grep -qx "$needed" <<<"$list" || fail "the crate misses $needed"
done
if grep -E '\.(png|jpg|mjs|sh|py|tgz)$|package(-lock)?\.json$|^(www|pkg|pkg-template|bench|benches|fuzz|tests|scripts)/' <<<"$list"; then
  fail "the crate holds files it does not need (above)"
fi
grep -q 'example.invalid' Cargo.toml && fail "Cargo.toml names a placeholder URL"

echo "[publish-check] cargo publish --dry-run"
if ! out=$(cargo publish --dry-run --allow-dirty 2>&1); then
  echo "$out" | tail -n 30
  fail "cargo publish --dry-run failed"
fi

echo "[publish-check] npm publish --dry-run (pkg/)"
[ -f pkg/package.json ] || fail "no pkg/: run scripts/build-npm.sh first"
grep -q 'example.invalid' pkg/package.json && fail "pkg/package.json names a placeholder URL"
(cd pkg && npm publish --dry-run --ignore-scripts 2>&1 | tail -n 20)
echo "[publish-check] ok"
