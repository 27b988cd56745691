#!/usr/bin/env bash
# Builds the npm package and serves the demo page (www/) on 127.0.0.1, printing the URL.
# Usage: scripts/demo.sh [port]   (default 8080; 0 picks a free port)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
bash scripts/build-npm.sh
(cd www && npm ci --no-audit --no-fund --loglevel=error)
exec node www/serve.mjs "${1:-${PORT:-8080}}"
