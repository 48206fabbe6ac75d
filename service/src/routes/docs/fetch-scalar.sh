#!/usr/bin/env bash
# Re-fetches the pinned API reference script from the npm registry and checks it.
#   1. `npm pack` downloads the package tarball; the tarball must have the sha512 pinned in
#      scalar.pin (npm itself also checks it against the registry's metadata).
#   2. dist/browser/standalone.js is copied next to this script, and its sha384 (the
#      Subresource Integrity value the page's CSP and a test use) is written to scalar.pin;
#      service/build.rs cuts and compresses it for the binary.
# To move to another version, change `version` in scalar.pin, clear `tarball_integrity`, run
# this, review the new values and commit them with the script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pin="$here/scalar.pin"
# shellcheck source=service/npm-pinned.sh
source "$here/../../../npm-pinned.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm_fetch_pinned "$pin"
tar xzf ./*.tgz package/dist/browser/standalone.js
cp package/dist/browser/standalone.js "$here/scalar-standalone.js"
sri="sha384-$(openssl dgst -sha384 -binary "$here/scalar-standalone.js" | base64 -w0)"
cat >"$pin" <<PIN
package = $package
version = $version
tarball_integrity = $integrity
script_integrity = $sri
PIN
echo "pinned $package@$version: $sri"
