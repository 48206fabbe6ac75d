# shellcheck shell=bash
# Shared by the benchmarks: a free loopback port, and for the PostgreSQL ones
# (bench/postgres.sh, bench/overload.sh) the release binary to measure, a throwaway cluster and
# a service that is ready.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$dir:$PATH"; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# initdb refuses to run as root; the cluster then belongs to the postgres user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# release_binary: the binary to measure. BENCH_BINARY=PATH measures that build (an A/B of two
# builds, run one after the other); otherwise the release build of order-service.
release_binary() {
  if [ -n "${BENCH_BINARY:-}" ]; then
    echo "$BENCH_BINARY"
    return
  fi
  echo "== release build" >&2
  cargo build --locked --release --quiet -p order-service
  echo "$ROOT/target/release/order-service"
}

# start_cluster WORK MAX_CONNECTIONS [PREFIX...]: a cluster in WORK/data on a free loopback
# port ($pg_port), with an empty database "bench" at $url; PREFIX runs before pg_ctl (taskset,
# say). stop_cluster WORK stops it.
start_cluster() {
  local work="$1" max_connections="$2"
  shift 2
  echo "== throwaway cluster"
  [ "$(id -u)" = 0 ] && chown postgres "$work"
  pg_port=$(free_port)
  as_owner initdb -D "$work/data" -U postgres -A trust --no-instructions >/dev/null
  as_owner "$@" pg_ctl start -w -D "$work/data" -l "$work/server.log" \
    -o "-k $work -p $pg_port -c listen_addresses=127.0.0.1 -c max_connections=$max_connections" >/dev/null
  psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE bench"
  # shellcheck disable=SC2034 # read by the script that sources this file
  url="postgres://postgres@127.0.0.1:$pg_port/bench"
}

stop_cluster() { as_owner pg_ctl stop -D "$1/data" -m immediate >/dev/null 2>&1 || true; }

# wait_ready BASE_URL LOG: until the service answers /ready (30 s at most; then its log, and exit).
wait_ready() {
  for _ in $(seq 300); do
    curl -fsS "$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$2"
  exit 1
}
