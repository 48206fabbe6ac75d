#!/usr/bin/env bash
# Overload figures (a measurement, not a test): the release binary with STORE=postgres on a
# throwaway loopback cluster, driven by oha at a fixed arrival rate, so requests keep coming
# whether or not earlier ones were answered (as from many independent clients).
#
#   bench/overload.sh [SECONDS]      (default 20 s per overload run)
#   BENCH_CONFIGS="default fixed" bench/overload.sh    (which services to overload; default:
#       "default fixed": the service's defaults, and the fixed bound of MAX_IN_FLIGHT_REQUESTS
#       without the adaptive limit, ADAPTIVE_CONCURRENCY=false, for comparison)
#   BENCH_BINARY=/path/to/order-service bench/overload.sh    (measure that build instead)
#   BENCH_ENV="QUEUE_WAIT_TIMEOUT_MS=2" bench/overload.sh    (settings added to every start)
#
# The system under test, the service and PostgreSQL, runs on one CPU (taskset; the chart's
# limit gives the pod one), oha alone on the other, so the load generator's own work does not
# slow the database down. BENCH_LOG_LEVEL sets the service's LOG_LEVEL (default info).
#
# 1. capacity: closed loop, GET /orders?limit=20, at 2, 4, 8, 16 and 32 connections: the best
#    rate of successes among the runs with under 1 % refused (C). A refusing limiter cannot
#    lower it: a run it refused in is not counted.
# 2. unloaded: C/10 requests/s: p99 of the answers.
# 3. overload: 4×C requests/s against each configuration. Each prints: successes/s against C
#    (>= 0.8x), p99 of the 200s against 5× the unloaded p99, the share refused (503), that
#    every 503 was a refusal with Retry-After (the service's refusal counter, and the headers
#    of 503s sampled by curl during the run), anything else that failed, and the service's
#    peak RSS against the chart's memory limit (256 MiB).
# Latencies are corrected for coordinated omission (oha --latency-correction): a request that
# had to wait for a free connection counts from when it was due. Logs at info, as JSON, as
# deployed. Everything shares one 2-core machine: the figures compare runs of the same
# session with each other, not with production.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
seconds="${1:-20}"
configs="${BENCH_CONFIGS:-default fixed}"
log_level="${BENCH_LOG_LEVEL:-info}"
for tool in initdb pg_ctl psql curl python3; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install postgresql curl python3" >&2
    exit 1
  }
done
command -v oha >/dev/null || cargo install --locked oha

binary=$(release_binary)

work=$(mktemp -d)
service_pid=""
stop_service() {
  if [ -n "$service_pid" ]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
    service_pid=""
  fi
}
cleanup() {
  stop_service
  stop_cluster "$work"
  rm -rf "$work"
}
trap cleanup EXIT

start_cluster "$work" 100 taskset -c 0
# The schema is its own step, as in a deployment.
env -i PATH="$PATH" STORE=postgres DATABASE_URL="$url" "$binary" migrate >"$work/migrate.log" 2>&1 ||
  { cat "$work/migrate.log" >&2; exit 1; }

# start_service [VAR=VALUE...]: the release binary with the service's defaults, but these.
start_service() {
  port=$(free_port)
  metrics_port=$(free_port)
  local extra=()
  read -ra extra <<<"${BENCH_ENV:-}"
  taskset -c 0 env -i PATH="$PATH" ENVIRONMENT=local STORE=postgres DATABASE_URL="$url" \
    PORT="$port" METRICS_PORT="$metrics_port" HOST=127.0.0.1 LOG_LEVEL="$log_level" LOG_FORMAT=json \
    "${extra[@]}" "$@" "$binary" >/dev/null 2>"$work/service.err" &
  service_pid=$!
  base="http://127.0.0.1:$port"
  wait_ready "$base" "$work/service.err"
}

# refused_total: the service's count of its 503s: requests refused at admission (the
# concurrency limit, or left unread too long) and requests whose wait for a busy database
# connection ran out (counted among the answers, with status 503).
refused_total() {
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" |
    awk '$1 == "http_requests_refused_total" { n += $2 }
      $1 ~ /^http_requests_total\{/ && $1 ~ /status="503"/ { n += $2 }
      END { print n + 0 }'
}

peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$service_pid/status"; }

# load NAME ARGS…: one oha run on the list route; per-request CSV into $work/NAME.csv.
load() {
  local name="$1"
  shift
  taskset -c 1 oha --no-tui --output-format csv "$@" "$base/orders?limit=20" >"$work/$name.csv"
}

# stats NAME SECONDS: "ok_per_s ok_share p99_ms_of_200s shed_share other_share total shed_count"
stats() {
  python3 - "$work/$1.csv" "$2" <<'PY'
import csv, sys
path, seconds = sys.argv[1], float(sys.argv[2])
rows = list(csv.DictReader(open(path)))
ok = sorted(float(r["request-duration"]) for r in rows if r["status"] == "200")
shed = sum(1 for r in rows if r["status"] == "503")
total = len(rows)
p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] * 1000 if ok else float("nan")
print(f"{len(ok) / seconds:.0f} {len(ok) / total:.3f} {p99:.2f} {shed / total:.3f} "
      f"{(total - len(ok) - shed) / total:.3f} {total} {shed}")
PY
}

start_service
echo "== seed: 100 orders"
for n in $(seq 100); do
  curl -fsS -o /dev/null -X POST "$base/orders" -H 'Content-Type: application/json' \
    -d "{\"customer_name\":\"Bench $n\",\"items\":[{\"product_id\":$n,\"name\":\"Widget\",\"quantity\":2,\"price\":9.99},{\"product_id\":1,\"name\":\"Bolt\",\"quantity\":9,\"price\":0.25}],\"shipping_address\":\"$n Bench St\"}"
done

echo "== capacity: closed loop, best rate with under 1 % refused, 5 s per connection count"
load warmup -z 3s -c 8
capacity=0
for connections in 2 4 8 16 32; do
  load "capacity-$connections" -z 5s -c "$connections"
  read -r rate _ _ shed _ <<<"$(stats "capacity-$connections" 5)"
  echo "  $connections connections: $rate successes/s, refused $shed"
  if python3 -c "import sys; sys.exit(not float('$shed') < 0.01)" && [ "$rate" -gt "$capacity" ]; then
    capacity=$rate
  fi
done
[ "$capacity" -gt 0 ] || { echo "every closed-loop run was refused 1 % or more" >&2; exit 1; }
echo "capacity: $capacity successful requests/s"

echo "== unloaded: $((capacity / 10)) requests/s, 10 s"
load unloaded -z 10s -c 32 -q "$((capacity / 10))" --latency-correction
read -r _ _ unloaded_p99 _ <<<"$(stats unloaded 10)"
echo "unloaded p99: $unloaded_p99 ms"
stop_service

rate=$((capacity * 4))
for config in $configs; do
  case "$config" in
    default) start_service ;;
    fixed) start_service ADAPTIVE_CONCURRENCY=false ;;
    *) echo "unknown configuration $config (default, fixed)" >&2; exit 1 ;;
  esac
  load "overload-$config-warmup" -z 2s -c 32
  refused_before=$(refused_total)
  echo "== overload, $config: $rate requests/s for ${seconds} s"
  # Samples of the 503s' headers while the load runs: each must carry Retry-After.
  (
    end=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$end" ]; do
      curl -sS -o /dev/null -D - --max-time 5 "$base/orders?limit=20" 2>/dev/null |
        tr -d '\r' | awk 'NR == 1 { status = $2 } tolower($1) == "retry-after:" { retry = 1 }
          END { if (status == 503) print (retry ? "with" : "without") }' || true
      sleep 0.05
    done
  ) >"$work/sampled-$config" &
  sampler=$!
  load "overload-$config" -z "${seconds}s" -c 512 -q "$rate" --latency-correction
  wait "$sampler"
  refused=$(($(refused_total) - refused_before))
  read -r ok_rate ok_share p99 shed other total shed_count <<<"$(stats "overload-$config" "$seconds")"
  rss=$(peak_rss_mib)
  sampled_with=$(grep -c '^with$' "$work/sampled-$config" || true)
  sampled_without=$(grep -c '^without$' "$work/sampled-$config" || true)
  stop_service
  python3 - "$config" "$capacity" "$unloaded_p99" "$ok_rate" "$ok_share" "$p99" "$shed" \
    "$other" "$total" "$rss" "$refused" "$sampled_with" "$sampled_without" "$shed_count" <<'PY'
import sys
(config, capacity, base_p99, ok_rate, ok_share, p99, shed, other, total, rss, refused,
 sampled_with, sampled_without, shed_count) = sys.argv[1:]
capacity, base_p99, ok_rate, p99, rss = map(float, (capacity, base_p99, ok_rate, p99, rss))
total, refused, sampled_with, sampled_without, shed_count = map(
    int, (total, refused, sampled_with, sampled_without, shed_count))
verdict = lambda good: "PASS" if good else "MISS"
print(f"  sent {total} requests; 200: {float(ok_share):.1%}, 503 refused: {float(shed):.1%}, other/failed: {float(other):.1%}")
print(f"  successes {ok_rate:.0f}/s = {ok_rate / capacity:.2f}x capacity (>= 0.8x): {verdict(ok_rate >= 0.8 * capacity)}")
print(f"  p99 of 200s {p99:.2f} ms = {p99 / base_p99:.1f}x unloaded p99 (<= 5x): {verdict(p99 <= 5 * base_p99)}")
# The service counted the sampler's refusals too: at least as many as oha saw.
print(f"  503s seen {shed_count}, refusals counted by the service {refused}; sampled 503s with "
      f"Retry-After {sampled_with}, without {sampled_without}: "
      f"{verdict(refused >= shed_count and sampled_without == 0 and float(other) == 0)}")
print(f"  peak RSS {rss:.1f} MiB (<= 256 MiB chart limit): {verdict(rss <= 256)}")
PY
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
