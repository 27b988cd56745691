#!/usr/bin/env bash
# Builds the npm package into pkg/: the wasm for browsers (IndexedDB, no Node.js imports) and for
# Node.js (feature `node`: the file backend), assembled with pkg-template/ into one package with
# conditional exports. The browser build is ES modules (web.js, no top-level await); the Node.js
# build is one CommonJS file (node/tidekv.cjs: wasm-bindgen's `nodejs` glue with its snippets,
# bundled by esbuild) that both `require('tidekv')` (node.cjs) and `import` (node.js) load, so a
# program using both gets one Store class and one wasm instance. Prints the gzip size of each
# build's wasm + JS glue. Keeps the browser build's wasm with function names as
# target/wasm-size/web.wasm for scripts/wasm_size.py (what the wasm is made of).
#
# The browser build's JS glue and snippets are bundled and minified by esbuild into one module.
#
# Usage: scripts/build-npm.sh [--pack]     (--pack also writes pkg/../tidekv-<version>.tgz)
# Needs: the wasm32 target and wasm-bindgen-cli equal to the pinned wasm-bindgen
# (scripts/install-tools.sh), and the npm dev dependencies of package.json (installed here with
# `npm ci` when missing): wasm-opt comes from the `binaryen` npm package, because Debian's
# binaryen is too old for wasm-bindgen's externref tables; esbuild turns the Node.js glue into
# one CommonJS file.
set -euo pipefail
cd "$(dirname "$0")/.."

pack=false
[ "${1:-}" = "--pack" ] && pack=true

target_dir=${CARGO_TARGET_DIR:-target}
out=pkg
wasm="$target_dir/wasm32-unknown-unknown/release/tidekv.wasm"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -x node_modules/.bin/esbuild ] || [ ! -d node_modules/redis ]; then
  echo "[build-npm] npm ci (dev tools: binaryen, esbuild, playwright-core, typescript; redis for the tests)"
  npm ci --no-audit --no-fund --loglevel=error
fi

rm -rf "$out"
mkdir -p "$out"

# build <dir> <wasm-bindgen target> [cargo args...]
build() {
  local dir=$1 bindgen_target=$2
  shift 2
  echo "[build-npm] cargo build --release --target wasm32-unknown-unknown $*"
  cargo build --quiet --lib --release --target wasm32-unknown-unknown "$@"
  wasm-bindgen --target "$bindgen_target" --no-typescript --out-dir "$out/$dir" "$wasm"
  rm -f "$out/$dir/package.json"
  if [ "$dir" = web ]; then
    # The same optimisation with function names kept, for scripts/wasm_size.py.
    mkdir -p "$target_dir/wasm-size"
    node_modules/.bin/wasm-opt -O3 -g -o "$target_dir/wasm-size/web.wasm" "$out/$dir/tidekv_bg.wasm"
  fi
  node_modules/.bin/wasm-opt -O3 -o "$out/$dir/tidekv_bg.wasm" "$out/$dir/tidekv_bg.wasm"
}

build web web
# The browser glue and its snippets (the `inline_js` of the Rust code) as one minified ES module:
# one request instead of a waterfall of modules before the wasm can start loading, and about 40%
# fewer gzip bytes. Exports and names stay (`--keep-names`: error classes keep theirs);
# `new URL('tidekv_bg.wasm', import.meta.url)` stays for bundlers, like web.js's own.
node_modules/.bin/esbuild "$out/web/tidekv.js" --bundle --format=esm --minify --keep-names \
  --log-level=warning --log-override:duplicate-object-key=silent \
  --outfile="$out/web/tidekv.min.js"
mv "$out/web/tidekv.min.js" "$out/web/tidekv.js"
rm -rf "$out/web/snippets"
build node nodejs --features node
# wasm-bindgen's CommonJS glue require()s its snippets, which are ES modules: bundle them into one
# CommonJS file (Node.js 18 cannot require an ES module). `redis` stays an import at run time.
# esbuild follows only require()s of plain string literals, not the glue's String.raw`...` ones.
sed -i 's/require(String\.raw`\([^`]*\)`)/require("\1")/' "$out/node/tidekv.js"
node_modules/.bin/esbuild "$out/node/tidekv.js" --bundle --platform=node --format=cjs \
  --target=node18 --external:redis --log-level=warning \
  --log-override:duplicate-object-key=silent --outfile="$out/node/tidekv.cjs"
rm -rf "$out/node/tidekv.js" "$out/node/snippets"
# wasm-bindgen copies each exported item's rustdoc into the glue as a JSDoc block; the package's
# documentation is index.d.ts (and the rustdoc), so those blocks are only bytes to download.
perl -0pi -e 's{^[ \t]*/\*\*.*?\*/[ \t]*\n}{}gms' "$out/web/tidekv.js" "$out/node/tidekv.cjs"

cp pkg-template/package.json pkg-template/index.d.ts pkg-template/web.js pkg-template/node.js \
  pkg-template/node.cjs pkg-template/README.md "$out/"
# The same declarations for `require('tidekv')` (TypeScript reads .d.cts as CommonJS).
cp pkg-template/index.d.ts "$out/index.d.cts"
node -e '
  const fs = require("fs");
  const file = process.argv[1];
  const p = JSON.parse(fs.readFileSync(file, "utf8"));
  p.version = process.argv[2];
  fs.writeFileSync(file, JSON.stringify(p, null, 2) + "\n");
' "$out/package.json" "$version"

gz() { cat "$@" | gzip -9 | wc -c; }
for dir in web node; do
  glue=$(find "$out/$dir" -name '*.js' -o -name '*.cjs' | sort)
  # shellcheck disable=SC2086
  printf '[build-npm] %-4s wasm %7d B, gzip: wasm + JS glue %6d B (wasm %d B, glue %d B)\n' \
    "$dir" "$(wc -c < "$out/$dir/tidekv_bg.wasm")" "$(gz "$out/$dir/tidekv_bg.wasm" $glue)" \
    "$(gz "$out/$dir/tidekv_bg.wasm")" "$(gz $glue)"
done

if $pack; then
  (cd "$out" && npm pack --quiet --pack-destination ..) >/dev/null
  echo "[build-npm] packed tidekv-$version.tgz"
fi
echo "[build-npm] package ready in $out/ (tidekv $version)"
