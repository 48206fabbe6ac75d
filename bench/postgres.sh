#!/usr/bin/env bash
# PostgreSQL store figures (a measurement, not a test): the release binary with
# STORE=postgres against a throwaway primary whose commits wait for a synchronous standby, as on
# RDS Multi-AZ, driven by wrk, beside pgbench on the same cluster, in the same run.
#
#   bench/postgres.sh [SECONDS]      (default 10 s per run)
#
# The standby is a second cluster made with pg_basebackup and started from the same binaries;
# the primary has synchronous_standby_names naming it and synchronous_commit = remote_apply, and
# the standby applies WAL with recovery_min_apply_delay = 2ms, so every commit waits a few
# milliseconds, as a commit to another availability zone does.
#
# Each of BENCH_ROUNDS rounds (default 3) runs, one after the other:
#   reads:   wrk GET /orders/1, wrk against a bare HTTP read, and pgbench -S (the read ceiling),
#            16 connections/clients each;
#   creates: wrk POST /orders at 1 and at 16 connections, and pgbench running a plain one-row
#            insert at 1 and at 16 clients.
# BENCH_BASELINE=PATH also starts that build of the service beside the measured one (same
# database, same settings) and adds a GET /orders/1 run against it to every round, right after
# the measured build's: an A/B of the read path inside one run.
# Medians are printed, with the ratios (medians of the rounds' ratios) against the targets:
#   creates scale: POST at 16 / POST at 1 >= 5x (nothing serialises creates);
#   reads:         GET /orders/1 / pgbench -S >= 0.6x.
# The bare HTTP read is bench-ceiling's `pg` mode: bare hyper running pgbench -S's own statement
# once per request on a PostgreSQL connection of its own, and answering the service's body. It
# is the most any HTTP service reading PostgreSQL once per request can reach beside pgbench -S on
# this machine, so bare read / pgbench -S says how much of the reads target the machine leaves.
# Beside the rates, the CPU time each read costs (from /proc): the service's, and the primary's
# (postmaster and backends) per GET and per pgbench -S transaction. On a shared machine the rates
# are shares of the CPU, and these say where the difference goes.
# pgbench runs with -M prepared because the service prepares its statements too. Everything
# shares one 2-core machine: the figures compare the service with the database's own ceiling
# here, not with production.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
seconds="${1:-10}"
rounds="${BENCH_ROUNDS:-3}"
connections=16

for tool in initdb pg_ctl pg_basebackup pgbench psql wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install postgresql postgresql-contrib wrk curl" >&2
    exit 1
  }
done

binary=$(release_binary)
cargo build --locked --release --quiet -p bench-ceiling
bare_binary="$ROOT/target/release/bench-ceiling"

work=$(mktemp -d)
service_pid=""
baseline_pid=""
bare_pid=""
baseline="${BENCH_BASELINE:-}"
cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  [ -n "$baseline_pid" ] && kill "$baseline_pid" 2>/dev/null && wait "$baseline_pid" 2>/dev/null
  # The bare server dies of the signal, so its wait fails: that must not end the cleanup.
  [ -n "$bare_pid" ] && kill "$bare_pid" 2>/dev/null && { wait "$bare_pid" 2>/dev/null || true; }
  as_owner pg_ctl stop -D "$work/standby" -m immediate >/dev/null 2>&1 || true
  stop_cluster "$work"
  rm -rf "$work"
}
trap cleanup EXIT

start_cluster "$work" 200
psql_primary() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
pgbench -q -i -s 10 -h 127.0.0.1 -p "$pg_port" -U postgres bench >/dev/null 2>&1
psql_primary -d bench -c "CREATE TABLE plain_insert (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int NOT NULL)"

echo "== synchronous standby (remote_apply, recovery_min_apply_delay 2ms)"
standby_port=$(free_port)
as_owner pg_basebackup -D "$work/standby" -h 127.0.0.1 -p "$pg_port" -U postgres -X stream -R -c fast
cat >>"$work/standby/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=127.0.0.1 port=$pg_port user=postgres application_name=standby'
recovery_min_apply_delay = '2ms'
CONF
# A hot standby needs at least the primary's max_connections.
as_owner pg_ctl start -w -D "$work/standby" -l "$work/standby.log" \
  -o "-k $work -p $standby_port -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null ||
  { cat "$work/standby.log" >&2; exit 1; }
psql_primary -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = 'standby'" \
  -c "ALTER SYSTEM SET synchronous_commit = 'remote_apply'" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 100); do
  state=$(psql_primary -d postgres -At -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'")
  [ "$state" = sync ] && break
  sleep 0.1
done
[ "$state" = sync ] || { echo "the standby did not become synchronous" >&2; cat "$work/standby.log" >&2; exit 1; }
echo "standby $state on port $standby_port"

echo "== service (STORE=postgres, DB_MAX_CONNECTIONS=$connections)"
port=$(free_port)
metrics_port=$(free_port)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The adaptive concurrency limit is off: it refuses part of 16 connections once the shared
# cores slow every request down (for either build), and a refusal is not a read; bench/overload.sh
# measures the limit.
service_env=(ENVIRONMENT=local STORE=postgres DATABASE_URL="$url" DB_SCHEMA=bench_orders
  DB_MAX_CONNECTIONS="$connections" PORT="$port" METRICS_PORT="$metrics_port"
  HOST=127.0.0.1 LOG_LEVEL=warn SEED_SAMPLE_DATA=true ADAPTIVE_CONCURRENCY=false)
env -i PATH="$PATH" "${service_env[@]}" "$binary" migrate >"$work/migrate.log" 2>&1 ||
  { cat "$work/migrate.log" >&2; exit 1; }
env -i PATH="$PATH" "${service_env[@]}" "$binary" >"$work/service.log" 2>&1 &
service_pid=$!
base="http://127.0.0.1:$port"
wait_ready "$base" "$work/service.log"
if [ -n "$baseline" ]; then
  echo "== baseline build beside it: $baseline"
  baseline_port=$(free_port)
  env -i PATH="$PATH" "${service_env[@]}" PORT="$baseline_port" METRICS_PORT="$(free_port)" \
    "$baseline" >"$work/baseline.log" 2>&1 &
  baseline_pid=$!
  baseline_base="http://127.0.0.1:$baseline_port"
  wait_ready "$baseline_base" "$work/baseline.log"
fi

echo "== bare HTTP read (hyper, pgbench -S's statement per request)"
bare_port=$(free_port)
env -i PATH="$PATH" HOST=127.0.0.1 PORT="$bare_port" DATABASE_URL="$url" "$bare_binary" \
  "$(curl -fs -o /dev/null -w '%{size_download}' "$base/orders/1")" pg >"$work/bare.log" 2>&1 &
bare_pid=$!
bare_base="http://127.0.0.1:$bare_port"
wait_ready "$bare_base" "$work/bare.log"

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_name":"Bench","items":[{"product_id":1,"name":"Widget","quantity":2,"price":9.99}],"shipping_address":"1 Bench St"}'
LUA
echo "INSERT INTO plain_insert (v) VALUES (1);" >"$work/insert.sql"

hz=$(getconf CLK_TCK)
# cpu_ticks PID: user and system time of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# primary_ticks: the primary's postmaster and backends, those that exited included.
primary_ticks() {
  local postmaster ticks child
  postmaster=$(head -1 "$work/data/postmaster.pid")
  ticks=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat")
  for child in $(pgrep -P "$postmaster"); do ticks=$((ticks + $(cpu_ticks "$child"))); done
  echo "$ticks"
}
# micros_per TICKS RATE: CPU microseconds per operation of a run of $seconds at RATE per second.
micros_per() { awk -v t="$1" -v r="$2" -v s="$seconds" -v hz="$hz" 'BEGIN { printf "%.0f\n", t * 1e6 / hz / (r * s) }'; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# wrk_rps NAME CONNECTIONS URL [SCRIPT]: requests/s; fails on any non-2xx answer.
wrk_rps() {
  local name="$1" clients="$2" url="$3" out="$work/$1.txt" threads=2
  [ "$clients" -lt 2 ] && threads=1
  wrk -t"$threads" -c"$clients" -d"${seconds}s" ${4:+-s "$4"} "$url" >"$out"
  if grep -q 'Non-2xx' "$out"; then
    echo "$name: answers other than 2xx under load:" >&2
    cat "$out" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$out"
}
# pgbench_tps NAME CLIENTS ARGS…: transactions/s of one pgbench run.
pgbench_tps() {
  local name="$1" clients="$2" out="$work/$1.txt" threads=2
  shift 2
  [ "$clients" -lt 2 ] && threads=1
  pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" -h 127.0.0.1 -p "$pg_port" \
    -U postgres "$@" bench >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
  awk '/^tps = / { printf "%.0f\n", $3 }' "$out"
}

echo "== warm-up, then $rounds rounds of ${seconds}s runs"
wrk -t2 -c"$connections" -d2s "$base/orders/1" >/dev/null
[ -n "$baseline" ] && wrk -t2 -c"$connections" -d2s "$baseline_base/orders/1" >/dev/null
wrk -t2 -c"$connections" -d2s "$bare_base/orders/1" >/dev/null
for round in $(seq "$rounds"); do
  service_before=$(cpu_ticks "$service_pid")
  primary_before=$(primary_ticks)
  get=$(wrk_rps get "$connections" "$base/orders/1")
  get_service_us=$(micros_per $(($(cpu_ticks "$service_pid") - service_before)) "$get")
  get_primary_us=$(micros_per $(($(primary_ticks) - primary_before)) "$get")
  get_baseline=0 baseline_service_us=0 baseline_primary_us=0
  if [ -n "$baseline" ]; then
    service_before=$(cpu_ticks "$baseline_pid")
    primary_before=$(primary_ticks)
    get_baseline=$(wrk_rps get-baseline "$connections" "$baseline_base/orders/1")
    baseline_service_us=$(micros_per $(($(cpu_ticks "$baseline_pid") - service_before)) "$get_baseline")
    baseline_primary_us=$(micros_per $(($(primary_ticks) - primary_before)) "$get_baseline")
  fi
  bare_before=$(cpu_ticks "$bare_pid")
  primary_before=$(primary_ticks)
  bare=$(wrk_rps bare "$connections" "$bare_base/orders/1")
  bare_us=$(micros_per $(($(cpu_ticks "$bare_pid") - bare_before)) "$bare")
  bare_primary_us=$(micros_per $(($(primary_ticks) - primary_before)) "$bare")
  primary_before=$(primary_ticks)
  select_s=$(pgbench_tps pgbench-S "$connections" -S)
  sleep 1 # pgbench's backends exit with it: counted once the postmaster has reaped them
  select_primary_us=$(micros_per $(($(primary_ticks) - primary_before)) "$select_s")
  post1=$(wrk_rps post1 1 "$base/orders" "$work/post.lua")
  post16=$(wrk_rps post16 "$connections" "$base/orders" "$work/post.lua")
  insert1=$(pgbench_tps insert1 1 -f "$work/insert.sql")
  insert16=$(pgbench_tps insert16 "$connections" -f "$work/insert.sql")
  echo "$get $select_s $post1 $post16 $insert1 $insert16 $get_baseline" \
    "$get_service_us $get_primary_us $select_primary_us $baseline_service_us $baseline_primary_us" \
    "$bare $bare_us $bare_primary_us" >>"$work/rounds"
  echo "  round $round: GET $get req/s${baseline:+ (baseline $get_baseline)}, bare read $bare req/s," \
    "pgbench -S $select_s tps;" \
    "POST $post1 / $post16 req/s, plain insert $insert1 / $insert16 tps (1 / $connections)"
done

col() { cut -d' ' -f"$1" "$work/rounds" | median; }
ratio() { awk -v a="$1" -v b="$2" '{ printf "%.3f\n", $a / $b }' "$work/rounds" | median; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v >= t) ? "PASS" : "MISS" }'; }
read_ratio=$(ratio 1 2)
create_scaling=$(ratio 4 3)
insert_scaling=$(ratio 6 5)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "== summary ($(nproc) cores, ${seconds}s runs, medians of $rounds rounds, synchronous standby)"
printf 'GET  /orders/{id}, 16:    %8.0f req/s\n' "$(col 1)"
printf 'pgbench -S, 16:           %8.0f tps\n' "$(col 2)"
printf 'POST /orders, 1:          %8.0f req/s\n' "$(col 3)"
printf 'POST /orders, 16:         %8.0f req/s\n' "$(col 4)"
printf 'plain insert, 1:          %8.0f tps\n' "$(col 5)"
printf 'plain insert, 16:         %8.0f tps\n' "$(col 6)"
printf 'creates 16 / 1:           %8.2fx (target >= 5x: %s)\n' "$create_scaling" "$(verdict "$create_scaling" 5)"
printf 'plain insert 16 / 1:      %8.2fx (the database alone)\n' "$insert_scaling"
printf 'reads / pgbench -S:       %8.2fx (target >= 0.6x: %s)\n' "$read_ratio" "$(verdict "$read_ratio" 0.6)"
printf 'bare HTTP read, 16:       %8.0f req/s\n' "$(col 13)"
printf 'bare read / pgbench -S:   %8.2fx (the most this machine leaves an HTTP read)\n' "$(ratio 13 2)"
printf 'reads / bare read:        %8.2fx\n' "$(ratio 1 13)"
printf 'CPU per GET:              %8.0f us service, %.0f us PostgreSQL\n' "$(col 8)" "$(col 9)"
printf 'CPU per bare read:        %8.0f us server, %.0f us PostgreSQL\n' "$(col 14)" "$(col 15)"
printf 'CPU per pgbench -S:       %8.0f us PostgreSQL\n' "$(col 10)"
if [ -n "$baseline" ]; then
  printf 'GET, baseline build, 16:  %8.0f req/s\n' "$(col 7)"
  printf 'baseline / pgbench -S:    %8.2fx\n' "$(ratio 7 2)"
  printf 'GET measured / baseline:  %8.2fx\n' "$(ratio 1 7)"
  printf 'CPU per GET, baseline:    %8.0f us service, %.0f us PostgreSQL\n' "$(col 11)" "$(col 12)"
fi
echo "load average before: $load_before, after: $load_after"
