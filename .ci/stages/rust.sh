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

# Every migration must keep the previous release working while both run on one schema during
# a rollout (README, "Migrations"). squawk flags what breaks that or locks out traffic: a NOT
# NULL column without a default, a dropped default or column, an index built without
# CONCURRENTLY, DDL without a lock timeout. sqlx runs each file in a transaction, unless it
# starts with `-- no-transaction`. 0001 and 0002 are excluded: they shipped before this rule,
# and sqlx refuses to run against a database whose applied migrations changed (checksums), so
# they stay as they are; 0002's dropped default is the mistake the rule exists for.
log "squawk: migrations"
ensure_pip squawk-cli squawk
in_transaction=() on_their_own=()
for migration in service/migrations/*.sql; do
  case "$(basename "$migration")" in 0001_* | 0002_*) continue ;; esac
  if head -n1 "$migration" | grep -qx -- '-- no-transaction'; then
    on_their_own+=("$migration")
  else
    in_transaction+=("$migration")
  fi
done
[ ${#in_transaction[@]} -eq 0 ] || squawk --pg-version=15.0 --assume-in-transaction "${in_transaction[@]}"
[ ${#on_their_own[@]} -eq 0 ] || squawk --pg-version=15.0 "${on_their_own[@]}"
echo "squawk: ${#in_transaction[@]} + ${#on_their_own[@]} migrations clean"

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
