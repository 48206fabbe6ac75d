#!/usr/bin/env bash
# Format, lints and every Rust test (unit, integration against real PostgreSQL and moto,
# the real binaries), all in the dev profile: no release build here; a stage that needs an
# optimised binary builds it itself.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

# Integration tests start their own PostgreSQL and moto server when these are missing.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  ensure_apt psql postgresql
fi
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && export PATH="$PATH:$dir"; done
ensure_pip "moto[server]" moto_server

log "cargo fmt"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
