#!/usr/bin/env bash
# Re-fetches the Amazon RDS certificate authorities the binary trusts for a database URL built
# from an RDS secret (verify-full), from the npm package that carries them, and checks it.
#   1. `npm pack` downloads the package tarball; it must have the sha512 pinned in rds-ca.pin
#      (npm itself also checks it against the registry's metadata).
#   2. The PEM certificates in lib/profiles/ca/defaults.js (the RDS CAs of every region, as
#      AWS publishes them in its global bundle) are written to rds-ca-bundle.pem, which the
#      binary embeds; openssl must parse every one of them.
# To refresh (AWS adds or rotates a CA), change `version` in rds-ca.pin, clear
# `tarball_integrity`, run this, review the diff of the bundle and commit both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pin="$here/rds-ca.pin"
# shellcheck source=service/npm-pinned.sh
source "$here/../npm-pinned.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm_fetch_pinned "$pin"
tar xzf ./*.tgz package/lib/profiles/ca/defaults.js
# The file lists each certificate as JavaScript string literals joined with `+`.
python3 - package/lib/profiles/ca/defaults.js "$here/rds-ca-bundle.pem" <<'PY'
import re, sys
source = open(sys.argv[1]).read()
lines = [l.replace("\\n", "\n") for l in re.findall(r"'([^']*)'", source)]
pems = re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", "".join(lines), re.S)
if not pems:
    sys.exit("no certificate found")
with open(sys.argv[2], "w") as out:
    out.write("".join(pems))
print(f"{len(pems)} certificates")
PY
count=0
while openssl x509 -noout 2>/dev/null; do count=$((count + 1)); done <"$here/rds-ca-bundle.pem"
grep -c 'BEGIN CERTIFICATE' "$here/rds-ca-bundle.pem" | grep -qx "$count" ||
  { echo "openssl could not parse every certificate" >&2; exit 1; }
cat >"$pin" <<PIN
package = $package
version = $version
tarball_integrity = $integrity
PIN
echo "pinned $package@$version: $count certificates"
