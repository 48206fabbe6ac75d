# Shared helpers for the test stages: install a tool only when it is missing.
# Everything goes to user-level caches so a second run is fast:
#   Python tools -> ~/.cache/order-service/venv, Rust tools -> ~/.cargo/bin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/order-service"
VENV="$CACHE/venv"
export PATH="$VENV/bin:$HOME/.cargo/bin:$PATH"

log() { printf '\n=== %s\n' "$*"; }

# ensure_pip PACKAGE [COMMAND]: pip-install PACKAGE into the venv when COMMAND (or the
# import name) is missing.
ensure_pip() {
  local pkg="$1" cmd="${2:-}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ -n "$cmd" ]; then
    [ -x "$VENV/bin/$cmd" ] && return 0
  else
    "$VENV/bin/python" -c "import ${pkg//-/_}" 2>/dev/null && return 0
  fi
  log "installing $pkg"
  "$VENV/bin/pip" install -q "$pkg"
}

# ensure_apt COMMAND PACKAGE: apt-get install PACKAGE when COMMAND is not on PATH.
ensure_apt() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $pkg (apt)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ ! -f "$CACHE/.apt-updated" ]; then
    $sudo apt-get update -qq && mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
}

# ensure_cargo COMMAND CRATE: cargo install --locked CRATE when COMMAND is missing.
ensure_cargo() {
  local cmd="$1" crate="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $crate (cargo install, once)"
  cargo install --locked "$crate"
}
