#!/usr/bin/env bash
# Format, lints and every Rust test (unit, integration against real PostgreSQL and moto,
# the real binaries), all in the dev profile: no release build here; a stage that needs an
# optimised binary builds it itself.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

log "cargo fmt"
cargo fmt --all -- --check

# `cargo clippy` is `cargo check` with clippy-driver compiling the workspace's own crates. The
# test build goes through the same driver: it lints the same code, every target, and compiles
# each dependency once, instead of checking every dependency for clippy and then building it
# again for the tests (two to three minutes on two cores). Warnings fail the stage, as
# `cargo clippy --all-targets -- -D warnings` would.
# .ci/lib.sh sets the driver for every stage.
[ -n "${RUSTC_WORKSPACE_WRAPPER:-}" ] || { echo "clippy-driver not found: rustup component add clippy" >&2; exit 1; }

log "cargo clippy, in the build of every target"
cargo test --workspace --all-targets --locked --no-run --message-format=json-diagnostic-rendered-ansi |
  python3 .ci/cargo_warnings.py

# Installed after the build, so compiling starts at once on a fresh machine. Integration tests
# start their own PostgreSQL and moto server.
ensure_postgres
ensure_pip "moto[server]" moto_server

# An #[ignore]d test runs too: a test that is there is a test that runs.
log "cargo test"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --run-ignored all
else
  cargo test --workspace --locked --no-fail-fast -- --include-ignored
fi
