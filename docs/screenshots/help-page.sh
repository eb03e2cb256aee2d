#!/bin/sh
# Renders the help page of a worker of the bundled example (examples/cluster.json,
# examples/topology.toml) with `sdwan-discovery plan` and takes two screenshots with headless
# Chromium (Debian: apt-get install chromium): docs/screenshots/help-desktop.png (1280 wide)
# and docs/screenshots/help-phone.png (390 wide). Not run in CI.
#
# Usage: docs/screenshots/help-page.sh [NODE]     (default worker1)
set -eu
node=${1:-worker1}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/docs/screenshots"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 1; }

cargo run -q -p sdwan-discovery -- plan --cluster-file "$root/examples/cluster.json" \
    --topology "$root/examples/topology.toml" --out "$tmp/plan" --serial 1
python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["files"]["help.html"])' \
    "$tmp/plan/nodes/$node.json" > "$tmp/help.html"

shot() { # shot FILE WIDTH HEIGHT
    "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run \
        --user-data-dir="$(mktemp -d -p "$tmp")" --hide-scrollbars \
        --screenshot="$1" --window-size="$2,$3" "file://$tmp/help.html" 2>/dev/null
}
shot "$out/help-desktop.png" 1280 900
shot "$out/help-phone.png" 390 844
echo "wrote $out/help-desktop.png $out/help-phone.png"
