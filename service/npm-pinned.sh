# shellcheck shell=bash
# Shared by the scripts that take a file from an npm package at a pinned version
# (service/src/routes/docs/fetch-scalar.sh, service/certs/fetch-rds-ca.sh).
#
# npm_fetch_pinned PIN_FILE: reads `package`, `version` and `tarball_integrity` from PIN_FILE
# (`key = value` lines), downloads the package tarball with `npm pack` into the current
# directory and fails unless its sha512 is the pinned one (an empty pin accepts the download,
# for a deliberate move to another version). Sets package, version and integrity.
pin_value() { awk -F' = ' -v key="$2" '$1 == key { print $2 }' "$1"; }

npm_fetch_pinned() {
  local pin="$1" want
  package="$(pin_value "$pin" package)"
  version="$(pin_value "$pin" version)"
  want="$(pin_value "$pin" tarball_integrity)"
  integrity="$(npm pack --json "$package@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["integrity"])')"
  if [ -n "$want" ] && [ "$integrity" != "$want" ]; then
    echo "tarball integrity $integrity differs from the pinned $want" >&2
    return 1
  fi
}
