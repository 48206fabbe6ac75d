#!/usr/bin/env bash
# PostgreSQL store figures (a measurement, not a test): the release binary with
# STORE=postgres against a throwaway cluster on loopback, driven by wrk, beside pgbench on
# the same cluster with the same number of clients, in the same run.
#
#   bench/postgres.sh [CONNECTIONS] [SECONDS]      (defaults: 16 connections, 10 s each)
#
# Each of BENCH_ROUNDS rounds (default 3) runs, one after the other: wrk GET /orders/1,
# pgbench -S (the target's ceiling), pgbench running the service's own SELECT of an order
# with its items, wrk POST /orders, and pgbench running the same insert as a create (the
# advisory lock that orders creates, the order row, its item). Medians are printed, and
# the ratios (median of the rounds' ratios) against the targets: reads >= 0.6 x pgbench -S,
# creates >= 0.5 x the pgbench insert. pgbench runs with -M prepared because sqlx prepares
# its statements too. Everything shares one machine, so the figures compare the service
# with the database's own ceiling here, not with production.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
connections="${1:-16}"
seconds="${2:-10}"
rounds="${BENCH_ROUNDS:-3}"

for tool in initdb pg_ctl pgbench psql wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install postgresql postgresql-contrib wrk curl" >&2
    exit 1
  }
done

binary=$(release_binary)

work=$(mktemp -d)
service_pid=""
cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  stop_cluster "$work"
  rm -rf "$work"
}
trap cleanup EXIT

start_cluster "$work" 200
pgbench -q -i -s 10 -h 127.0.0.1 -p "$pg_port" -U postgres bench >/dev/null 2>&1

echo "== service (STORE=postgres, DB_MAX_CONNECTIONS=$connections)"
port=$(free_port)
metrics_port=$(free_port)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
env -i PATH="$PATH" ENVIRONMENT=local STORE=postgres DATABASE_URL="$url" DB_SCHEMA=bench_orders \
  DB_MAX_CONNECTIONS="$connections" PORT="$port" METRICS_PORT="$metrics_port" \
  HOST=127.0.0.1 LOG_LEVEL=warn SEED_SAMPLE_DATA=true "$binary" >"$work/service.log" 2>&1 &
service_pid=$!
base="http://127.0.0.1:$port"
wait_ready "$base" "$work/service.log"

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_name":"Bench","items":[{"product_id":1,"name":"Widget","quantity":2,"price":9.99}],"shipping_address":"1 Bench St"}'
LUA

# The service's read of GET /orders/1, as pgbench statements (the order has two items).
cat >"$work/select.sql" <<'SQL'
SELECT o.seq, o.customer_name, o.order_date, o.total_amount, o.status, o.shipping_address,
       o.tracking_number, i.product_id, i.name AS item_name, i.quantity, i.price
FROM orders o LEFT JOIN order_items i ON i.order_seq = o.seq
WHERE o.seq = 1
ORDER BY i.position;
SQL
# A create as the store writes it: the advisory lock that puts creates in commit order
# (class "ords", then the schema's hash), the order row and its item, in one statement.
cat >"$work/insert.sql" <<'SQL'
WITH serialised AS (
    SELECT pg_advisory_xact_lock(1869767795, hashtext(current_schema()))
), new_order AS (
    INSERT INTO orders (customer_name, order_date, total_amount, status, shipping_address)
    SELECT 'Bench', now(), 19.98, 'PENDING', '1 Bench St' FROM serialised
    RETURNING seq
), new_items AS (
    INSERT INTO order_items (order_seq, position, product_id, name, quantity, price)
    SELECT new_order.seq, 1, 1, 'Widget', 2, 9.99 FROM new_order
)
SELECT seq FROM new_order;
SQL

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# wrk_rps NAME URL [SCRIPT]: requests/s; fails on any non-2xx answer.
wrk_rps() {
  local name="$1" url="$2" out="$work/$1.txt"
  wrk -t2 -c"$connections" -d"${seconds}s" ${3:+-s "$3"} "$url" >"$out"
  if grep -q 'Non-2xx' "$out"; then
    echo "$name: answers other than 2xx under load:" >&2
    cat "$out" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$out"
}
# pgbench_tps NAME ARGS…: transactions/s of one pgbench run; the service's schema first
# (current_schema() for the lock), then pgbench's own tables in public.
pgbench_tps() {
  local name="$1" out="$work/$1.txt"
  shift
  PGOPTIONS="-c search_path=bench_orders,public" pgbench -n -M prepared -c "$connections" -j 2 \
    -T "$seconds" -h 127.0.0.1 -p "$pg_port" -U postgres "$@" bench >"$out" 2>&1 ||
    { cat "$out" >&2; exit 1; }
  awk '/^tps = / { printf "%.0f\n", $3 }' "$out"
}

echo "== warm-up, then $rounds rounds of ${seconds}s runs, $connections connections/clients each"
wrk -t2 -c"$connections" -d2s "$base/orders/1" >/dev/null
health=$(wrk_rps health "$base/health")
for round in $(seq "$rounds"); do
  get=$(wrk_rps get "$base/orders/1")
  select_s=$(pgbench_tps pgbench-S -S)
  select_same=$(pgbench_tps pgbench-select -f "$work/select.sql")
  post=$(wrk_rps post "$base/orders" "$work/post.lua")
  insert=$(pgbench_tps pgbench-insert -f "$work/insert.sql")
  echo "$get $select_s $select_same $post $insert" >>"$work/rounds"
  echo "  round $round: GET $get req/s, pgbench -S $select_s tps, same SELECT $select_same tps;" \
    "POST $post req/s, same insert $insert tps"
done

col() { cut -d' ' -f"$1" "$work/rounds" | median; }
ratio() { awk -v a="$1" -v b="$2" '{ printf "%.3f\n", $a / $b }' "$work/rounds" | median; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v >= t) ? "PASS" : "MISS" }'; }
read_ratio=$(ratio 1 2)
read_same_ratio=$(ratio 1 3)
write_ratio=$(ratio 4 5)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "== summary ($(nproc) cores, $connections connections, ${seconds}s runs, medians of $rounds rounds)"
printf 'GET  /health:            %8.0f req/s (no database)\n' "$health"
printf 'GET  /orders/{id}:       %8.0f req/s\n' "$(col 1)"
printf 'pgbench -S:              %8.0f tps\n' "$(col 2)"
printf 'pgbench, same SELECT:    %8.0f tps\n' "$(col 3)"
printf 'POST /orders:            %8.0f req/s\n' "$(col 4)"
printf 'pgbench, same insert:    %8.0f tps\n' "$(col 5)"
printf 'reads / pgbench -S:      %8.2fx (target >= 0.6x: %s)\n' "$read_ratio" "$(verdict "$read_ratio" 0.6)"
printf 'reads / same SELECT:     %8.2fx\n' "$read_same_ratio"
printf 'creates / same insert:   %8.2fx (target >= 0.5x: %s)\n' "$write_ratio" "$(verdict "$write_ratio" 0.5)"
echo "load average before: $load_before, after: $load_after"
