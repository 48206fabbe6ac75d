#!/usr/bin/env bash
# Instructions per GET /orders/1 of the whole server process, hyper, tokio and the log
# writer thread included, beside the bare hyper ceiling (bench/ceiling) answering the same
# bytes and a bare axum router in front of them: all under callgrind, driven by wrk over
# loopback.
#
#   bench/server_instructions.sh [SECONDS]
#
# BENCH_STORE=postgres runs the service on a throwaway PostgreSQL cluster instead of the memory
# store (the ceiling is the same bare server); BENCH_LOG_LEVEL=warn turns the access log off.
#
# The perf stage counts the service's own part of a request in-process; this counts what a
# request costs the server as bench/http.sh runs it, so the two servers' figures say how far
# apart their user-space work is. The kernel's part is not counted (see bench/README.md).
# Counts from a start with no load are subtracted, so start-up does not count.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../.ci/lib.sh"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
seconds="${1:-5}"

ensure_apt wrk wrk
ensure_apt valgrind valgrind
ensure_apt curl curl

log "release build"
cargo build --locked --release --quiet -p order-service -p bench-ceiling

work=$(mktemp -d)
store="${BENCH_STORE:-memory}"
cleanup() {
  if [ "$store" = postgres ]; then stop_cluster "$work"; fi
  rm -rf "$work"
}
trap cleanup EXIT
key="bench-key-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

# count NAME SECONDS COMMAND...: total instructions of COMMAND serving wrk for SECONDS (none
# when 0), then "requests instructions" on stdout.
count() {
  local name="$1" load="$2"
  shift 2
  local port
  port=$(free_port)
  env -i PATH="$PATH" PORT="$port" METRICS_PORT="$(free_port)" "${service_env[@]}" \
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.$load" "$@" \
    >/dev/null 2>"$work/$name.$load.log" &
  local pid=$!
  for _ in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/ready" && break
    sleep 0.1
  done
  local requests=0
  if [ "$load" != 0 ]; then
    requests=$(wrk -t1 -c8 -d"$load" -H "Authorization: Bearer $key" \
      "http://127.0.0.1:$port/orders/1" | awk '/requests in/ { print $1 }')
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$requests $(awk '/^summary:/ { print $2 }' "$work/$name.$load")"
}

service_env=(ENVIRONMENT=local PUBLIC_READS=false API_KEYS="$key" STORE="$store"
  SEED_SAMPLE_DATA=true HOST=127.0.0.1 LOG_LEVEL="${BENCH_LOG_LEVEL:-info}" LOG_FORMAT=json
  SHUTDOWN_DRAIN_SECONDS=0)
if [ "$store" = postgres ]; then
  ensure_postgres
  start_cluster "$work" 50
  # The adaptive limit is off, as in bench/postgres.sh: under callgrind every request is slow.
  service_env+=(DATABASE_URL="$url" DB_SCHEMA=bench_orders ADAPTIVE_CONCURRENCY=false)
  env -i PATH="$PATH" "${service_env[@]}" target/release/order-service migrate >/dev/null
fi
service=(target/release/order-service)
# The ceiling answers a body of the size the service's answer has.
port=$(free_port)
env -i PATH="$PATH" PORT="$port" METRICS_PORT="$(free_port)" "${service_env[@]}" \
  target/release/order-service >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/ready" && break
  sleep 0.05
done
body_bytes=$(curl -fs -H "Authorization: Bearer $key" -o /dev/null -w '%{size_download}' \
  "http://127.0.0.1:$port/orders/1")
kill "$pid"
wait "$pid" 2>/dev/null || true
ceiling=(target/release/bench-ceiling "$body_bytes" hyper)
bare_axum=(target/release/bench-ceiling "$body_bytes" axum)

per_request() {
  local name="$1"
  shift
  read -r _ idle < <(count "$name" 0 "$@")
  read -r requests loaded < <(count "$name" "$seconds" "$@")
  awk -v i="$idle" -v l="$loaded" -v n="$requests" -v name="$name" \
    'BEGIN { printf "%-14s %8d requests  %7.0f instructions per request\n", name, n, (l - i) / n }'
}

log "instructions per request (callgrind, wrk -c8 for ${seconds}s; STORE=$store, LOG_LEVEL=${BENCH_LOG_LEVEL:-info})"
service_line=$(per_request order-service "${service[@]}")
ceiling_line=$(per_request ceiling "${ceiling[@]}")
axum_line=$(per_request bare-axum "${bare_axum[@]}")
echo "$service_line"
echo "$axum_line"
echo "$ceiling_line"
awk -v s="$(awk '{ print $4 }' <<<"$service_line")" -v c="$(awk '{ print $4 }' <<<"$ceiling_line")" \
  'BEGIN { printf "order-service / ceiling: %.1fx\n", s / c }'
awk -v a="$(awk '{ print $4 }' <<<"$axum_line")" -v c="$(awk '{ print $4 }' <<<"$ceiling_line")" \
  'BEGIN { printf "bare axum / ceiling: %.1fx\n", a / c }'
