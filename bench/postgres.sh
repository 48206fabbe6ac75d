#!/usr/bin/env bash
# PostgreSQL store figures (a measurement, not a test): the release binary with
# STORE=postgres against a throwaway cluster on loopback, driven by wrk, and pgbench's
# read-only workload on the same cluster in the same run as the ceiling.
#
#   bench/postgres.sh [CONNECTIONS] [SECONDS]      (defaults: 16 connections, 20 s each)
#
# Prints requests/s for GET /orders/{id} and POST /orders, pgbench -S transactions/s, and
# the ratio reads / pgbench. pgbench runs with -M prepared because sqlx prepares its
# statements too. Target: reads >= 0.6 x pgbench. Everything shares one machine, so the
# figures compare the service with the database's own ceiling here, not with production.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
connections="${1:-16}"
seconds="${2:-20}"

for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$dir:$PATH"; done
for tool in initdb pg_ctl pgbench psql wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install postgresql postgresql-contrib wrk curl" >&2
    exit 1
  }
done

# initdb refuses to run as root; the cluster then belongs to the postgres user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== release build"
cargo build --locked --release --quiet -p order-service
binary="$ROOT/target/release/order-service"

work=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres "$work"
service_pid=""
cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  as_owner pg_ctl stop -D "$work/data" -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== throwaway cluster"
pg_port=$(free_port)
as_owner initdb -D "$work/data" -U postgres -A trust --no-instructions >/dev/null
as_owner pg_ctl start -w -D "$work/data" -l "$work/server.log" \
  -o "-k $work -p $pg_port -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
psql_() { psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE bench"
pgbench -q -i -s 10 -h 127.0.0.1 -p "$pg_port" -U postgres bench >/dev/null 2>&1
url="postgres://postgres@127.0.0.1:$pg_port/bench"

echo "== service (STORE=postgres, DB_MAX_CONNECTIONS=$connections)"
port=$(free_port)
metrics_port=$(free_port)
env -i PATH="$PATH" STORE=postgres DATABASE_URL="$url" DB_SCHEMA=bench_orders \
  DB_MAX_CONNECTIONS="$connections" PORT="$port" METRICS_PORT="$metrics_port" \
  HOST=127.0.0.1 LOG_LEVEL=warn SEED_SAMPLE_DATA=true "$binary" >"$work/service.log" 2>&1 &
service_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 300); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/ready" >/dev/null || { cat "$work/service.log"; exit 1; }

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_name":"Bench","items":[{"product_id":1,"name":"Widget","quantity":2,"price":9.99}],"shipping_address":"1 Bench St"}'
LUA

rps() { awk '/^Requests\/sec:/ {print $2}'; }

echo "== GET /health (wrk, $connections connections, ${seconds}s): the HTTP stack alone"
wrk -t2 -c"$connections" -d"${seconds}s" "$base/health" >"$work/health.txt"
cat "$work/health.txt"
echo "== GET /orders/1 (wrk, $connections connections, ${seconds}s)"
wrk -t2 -c"$connections" -d"${seconds}s" "$base/orders/1" >"$work/get.txt"
cat "$work/get.txt"
echo "== POST /orders (wrk, $connections connections, ${seconds}s)"
wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/post.lua" "$base/orders" >"$work/post.txt"
cat "$work/post.txt"
echo "== pgbench -S -M prepared ($connections clients, ${seconds}s)"
pgbench -n -S -M prepared -c "$connections" -j 2 -T "$seconds" \
  -h 127.0.0.1 -p "$pg_port" -U postgres bench >"$work/pgbench.txt" 2>&1
cat "$work/pgbench.txt"

health=$(rps <"$work/health.txt")
reads=$(rps <"$work/get.txt")
writes=$(rps <"$work/post.txt")
ceiling=$(awk '/^tps = / {print $3}' "$work/pgbench.txt")
errors=$(cat "$work/get.txt" "$work/post.txt" | awk '/Non-2xx/ {n += $NF} END {print n + 0}')
ratio=$(echo "scale=2; $reads / $ceiling" | bc -l)
echo
echo "== summary ($(nproc) cores, $connections connections, ${seconds}s each)"
printf 'GET  /health:      %10.0f req/s (no database)\n' "$health"
printf 'GET  /orders/{id}: %10.0f req/s\n' "$reads"
printf 'POST /orders:      %10.0f req/s\n' "$writes"
printf 'pgbench -S:        %10.0f tps\n' "$ceiling"
printf 'non-2xx answers:   %10d\n' "$errors"
echo "reads / pgbench:   ${ratio}x (target >= 0.6x: $(echo "$ratio >= 0.6" | bc -l | sed 's/1/met/; s/0/MISSED/'))"
