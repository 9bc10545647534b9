#!/bin/sh
# `make vendor`: install the console's browser libraries from package.json + package-lock.json with
# `npm ci --ignore-scripts` in a temporary folder, and copy their minified builds and licences into
# adapters/web/static/vendor/. Only this needs Node; the pages and `make test` use the copied files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
m="$tmp/node_modules"
rm -rf "$dest"
mkdir -p "$dest"
cp "$m/htmx.org/dist/htmx.min.js"             "$dest/htmx.min.js"
cp "$m/htmx.org/LICENSE"                       "$dest/htmx.LICENSE"
cp "$m/htmx-ext-sse/dist/sse.min.js"           "$dest/htmx-ext-sse.min.js"
cp "$m/htmx-ext-sse/LICENSE"                   "$dest/htmx-ext-sse.LICENSE"
cp "$m/@alpinejs/csp/dist/cdn.min.js"          "$dest/alpinejs-csp.min.js"
cp "$here/licenses/alpinejs-LICENSE.md"        "$dest/alpinejs.LICENSE"   # the npm package ships none
cp "$m/@vue/reactivity/LICENSE"                "$dest/vue-reactivity.LICENSE"   # bundled into Alpine
cp "$m/echarts/dist/echarts.min.js"            "$dest/echarts.min.js"
cp "$m/echarts/LICENSE"                        "$dest/echarts.LICENSE"
cp "$m/echarts/NOTICE"                         "$dest/echarts.NOTICE"
cp "$m/echarts/licenses/LICENSE-d3"            "$dest/echarts-d3.LICENSE"
cp "$m/zrender/LICENSE"                        "$dest/zrender.LICENSE"   # bundled into ECharts
cp "$m/tslib/LICENSE.txt"                      "$dest/tslib.LICENSE"     # helpers bundled into ECharts
for p in htmx.org htmx-ext-sse @alpinejs/csp @vue/reactivity echarts zrender tslib; do
  node -e "const p=require('$m/$p/package.json'); console.log(p.name + ' ' + p.version + ' ' + (p.license || 'see its LICENCE file'))"
done > "$dest/VERSIONS"
echo "vendored into $dest:"; cat "$dest/VERSIONS"
