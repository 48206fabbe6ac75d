#!/usr/bin/env bash
# Container HTTP figures (a measurement, not a test): the release `order-service` (memory
# store, sample data) against `bench-ceiling`, a bare hyper server answering with a fixed
# JSON body of the same size, both loaded by wrk in the same run. A bare axum router in front of
# the same body (`bench-ceiling … axum`) is measured against the ceiling too: what the framework
# alone leaves of it, before the service adds anything.
#
#   bench/http.sh [SECONDS] [CONNECTIONS]      (defaults: 3 s a round, 64 connections)
#
# Prints start→ready (median of 5 starts), idle and peak RSS, binary size, and for
# GET /orders/1 and GET /orders (a full page of 50: the sample data plus orders created
# before the runs): requests/s, p99, and the ratio service / ceiling, each against its
# target, PASS or MISS, and the CPU time (user and system) a GET costs each side. Service
# and ceiling runs alternate for BENCH_ROUNDS rounds (default 9) and the medians are shown, so
# a neighbour's burst of CPU use skews both sides rather than one. The rounds are short and
# many because this machine's speed moves between states seconds apart (the ceiling at about
# 113 000 or 142 000 req/s): a round pair that straddles a change is off by a fifth either
# way, and the median of nine pairs is not moved by two or three of them. Exits 0 whenever
# the bench itself ran, MISS or not.
#
# The servers run on the last core and wrk (a thread per other core) on the others, as a pod
# runs: the chart gives it one core (so one tokio worker) and its load comes from elsewhere.
# The targets are read from this layout. BENCH_SHARED=1 lets wrk and the servers share every
# core instead: there wrk waits for a core a server holds, so its p99 counts the scheduler's
# tick (4 ms here: the bare ceiling's own p99 is 4.2 to 4.3 ms), and a server's ratio counts
# how the scheduler divides the cores between it and wrk (bench/README.md, "Where the targets
# stand"). With one core only, the layout is shared.
#
# The ceiling is also measured made as slow as the service (it spins, on every request, the
# CPU time a GET costs the service beyond it): the p99 any server of the service's speed gets
# here, whatever it does.
#
# Every request carries a valid bearer key (reads need one outside ENVIRONMENT=local).
# The service logs as in production: JSON lines at info, one access-log line per request,
# written to stdout (here /dev/null, so the disk is not filled; the write still happens).
# BENCH_LOG_LEVEL=warn measures without the access log.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../.ci/lib.sh"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
seconds="${1:-3}"
connections="${2:-64}"
threads=2
last_cpu=$(($(nproc) - 1))
pin=1
if [ "${BENCH_SHARED:-0}" = 1 ] || [ "$last_cpu" -lt 1 ]; then
  pin=0
fi
server_cpus=() wrk_cpus=()
if [ "$pin" = 1 ]; then
  server_cpus=(taskset -c "$last_cpu")
  wrk_cpus=(taskset -c "0-$((last_cpu - 1))")
  threads=$last_cpu
fi
log_level="${BENCH_LOG_LEVEL:-info}"
starts=5
rounds="${BENCH_ROUNDS:-9}"

ensure_apt wrk wrk
ensure_apt curl curl
[ "$pin" = 1 ] && ensure_apt taskset util-linux

log "release build"
cargo build --release --quiet -p order-service -p bench-ceiling
service_bin="$ROOT/target/release/order-service"
ceiling_bin="$ROOT/target/release/bench-ceiling"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The interpreter itself, not a version-manager shim: the service's environment is emptied.
python=$(python3 -c 'import sys; print(sys.executable)')

# The service's environment (after `env -i`: no RUST_LOG, no API_KEYS inherited), no drain
# on stop; PORT and METRICS_PORT are added per start. Reads need a key, as outside
# ENVIRONMENT=local, and every request carries a valid one: the key check is part of a read.
api_key="bench-key-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
auth="Authorization: Bearer $api_key"
service_env=(ENVIRONMENT=local PUBLIC_READS=false API_KEYS="$api_key" STORE=memory
  SEED_SAMPLE_DATA=true HOST=127.0.0.1 LOG_LEVEL="$log_level" LOG_FORMAT=json
  SHUTDOWN_DRAIN_SECONDS=0)

# start_ms PORT COMMAND…: spawn COMMAND, poll GET /ready on PORT every 0.2 ms, print the
# milliseconds from spawn to the first 200, then kill it.
cat >"$work/start.py" <<'EOF'
import socket, subprocess, sys, time

port, command = int(sys.argv[1]), sys.argv[2:]
request = b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
began = time.perf_counter()
process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(request)
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        if process.poll() is not None:
            sys.exit(f"{command[0]} exited with {process.returncode} before it was ready")
        if time.perf_counter() - began > 10:
            sys.exit(f"{command[0]} not ready within 10 s")
        time.sleep(0.0002)
    print(f"{(time.perf_counter() - began) * 1000:.1f}")
finally:
    process.kill()
    process.wait()
EOF
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

log "start→ready, $starts starts each (median)"
for _ in $(seq "$starts"); do
  port=$(free_port)
  env -i PATH="$PATH" "${service_env[@]}" PORT="$port" METRICS_PORT="$(free_port)" \
    "$python" "$work/start.py" "$port" "$service_bin"
done >"$work/start.service"
for _ in $(seq "$starts"); do
  port=$(free_port)
  PORT="$port" HOST=127.0.0.1 "$python" "$work/start.py" "$port" "$ceiling_bin" 100
done >"$work/start.ceiling"
start_service=$(median <"$work/start.service")
start_ceiling=$(median <"$work/start.ceiling")
echo "order-service: $(paste -sd' ' "$work/start.service") ms; ceiling: $(paste -sd' ' "$work/start.ceiling") ms"

wait_ready() {
  local port="$1" pid="$2"
  for _ in $(seq 1000); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/ready" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "server $pid exited; log:" >&2; cat "$work"/*.log >&2; exit 1; }
    sleep 0.01
  done
  echo "server $pid not ready within 10 s" >&2
  exit 1
}
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

log "order-service (memory store, sample data, LOG_LEVEL=$log_level)"
service_port=$(free_port)
env -i PATH="$PATH" "${service_env[@]}" PORT="$service_port" METRICS_PORT="$(free_port)" \
  "${server_cpus[@]}" "$service_bin" >/dev/null 2>"$work/service.log" &
service_pid=$!
pids+=("$service_pid")
wait_ready "$service_port" "$service_pid"
sleep 1
idle_service=$(status_kib "$service_pid" VmRSS)

# GET /orders answers a full default page (50): add orders to the three samples.
for n in $(seq 4 50); do
  curl -fs -o /dev/null -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"customer_name\":\"Bench $n\",\"items\":[{\"product_id\":$n,\"name\":\"Item $n\",\"quantity\":1,\"price\":$n.99}],\"shipping_address\":\"$n Bench St\"}" \
    "http://127.0.0.1:$service_port/orders"
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$service_port/orders/1")" = 401 ] ||
  { echo "GET /orders/1 without a key was not refused: the bench would not measure the key check" >&2; exit 1; }
listed=$(curl -fs -H "$auth" "http://127.0.0.1:$service_port/orders" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$listed" = 50 ] || { echo "GET /orders lists $listed orders, not a page of 50" >&2; exit 1; }

# The ceiling serves bodies of the sizes the service answers with, one server per route.
body_one=$(curl -fs -H "$auth" -o /dev/null -w '%{size_download}' "http://127.0.0.1:$service_port/orders/1")
body_list=$(curl -fs -H "$auth" -o /dev/null -w '%{size_download}' "http://127.0.0.1:$service_port/orders")
# start_ceiling BODY_BYTES [KIND [BUSY_NANOS]]
start_ceiling() {
  ceiling_port=$(free_port)
  HOST=127.0.0.1 PORT="$ceiling_port" BUSY_NANOS="${3:-0}" "${server_cpus[@]}" "$ceiling_bin" "$1" "${2:-hyper}" \
    >"$work/ceiling-$1-${2:-hyper}-${3:-0}.log" 2>&1 &
  ceiling_pid=$!
  pids+=("$ceiling_pid")
  wait_ready "$ceiling_port" "$ceiling_pid"
}
start_ceiling "$body_one"
ceiling_one_port=$ceiling_port ceiling_one_pid=$ceiling_pid
start_ceiling "$body_list"
ceiling_list_port=$ceiling_port ceiling_list_pid=$ceiling_pid
start_ceiling "$body_one" axum
axum_one_port=$ceiling_port axum_one_pid=$ceiling_pid
sleep 1
idle_ceiling=$(status_kib "$ceiling_one_pid" VmRSS)

# CPU time (user and system) of process $1 so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# load NAME PID URL [HEADER]: one measured wrk run against process PID; prints
# "requests/s p99-ms CPU-µs-per-request".
load() {
  local name="$1" pid="$2" url="$3" out="$work/wrk-$1.txt" before after
  # The ceiling ignores the key; sent to both so both parse the same request.
  local header=(-H "$auth")
  [ -n "${4:-}" ] && header+=(-H "$4")
  before=$(cpu_ticks "$pid")
  "${wrk_cpus[@]}" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "${header[@]}" "$url" >"$out"
  after=$(cpu_ticks "$pid")
  if grep -q 'Non-2xx or 3xx' "$out"; then
    echo "$name: answers other than 2xx under load:" >&2
    cat "$out" >&2
    exit 1
  fi
  grep -h 'Socket errors' "$out" | sed "s/^ */$name: /" >&2 || true
  awk -v ticks=$((after - before)) -v per_second="$ticks_per_second" '
    / requests in / { requests = $1 }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "99%" {
      v = $2
      if (v ~ /us$/) p99 = v / 1000
      else if (v ~ /ms$/) p99 = v + 0
      else if (v ~ /m$/) p99 = v * 60000
      else p99 = v * 1000
    }
    END {
      if (rps == "" || p99 == "" || requests == "") exit 1
      printf "%.0f %.2f %.2f\n", rps, p99, ticks * 1e6 / per_second / requests
    }' "$out"
}

# compare ROUTE SERVICE_PID SERVICE_URL CEILING_PID CEILING_URL [HEADER]: $rounds rounds of
# service (HEADER sent to it) then ceiling, so load from elsewhere on the machine hits both
# alike; prints the medians "requests/s p99 ceiling-requests/s ceiling-p99 ratio CPU-µs
# ceiling-CPU-µs" (ratio: median of the rounds' ratios; CPU: per request, user and system).
compare() {
  local route="$1" rounds_file="$work/rounds-$1"
  "${wrk_cpus[@]}" wrk -t"$threads" -c"$connections" -d2s -H "$auth" "$3" >/dev/null
  "${wrk_cpus[@]}" wrk -t"$threads" -c"$connections" -d2s -H "$auth" "$5" >/dev/null
  : >"$rounds_file"
  for round in $(seq "$rounds"); do
    local rps p99 cpu c_rps c_p99 c_cpu
    read -r rps p99 cpu < <(load "service-$route" "$2" "$3" "${6:-}")
    read -r c_rps c_p99 c_cpu < <(load "ceiling-$route" "$4" "$5")
    echo "$rps $p99 $c_rps $c_p99 $cpu $c_cpu" |
      awk '{ printf "%s %s %s %s %.2f %s %s\n", $1, $2, $3, $4, $1 / $3, $5, $6 }' >>"$rounds_file"
    echo "  $route round $round: service $rps req/s p99 $p99 ms CPU $cpu µs; ceiling $c_rps req/s p99 $c_p99 ms CPU $c_cpu µs" >&2
  done
  local column
  for column in 1 2 3 4 5 6 7; do
    cut -d' ' -f"$column" "$rounds_file" | median
  done | paste -sd' ' | awk '{ printf "%.0f %.2f %.0f %.2f %.2f %.2f %.2f\n", $1, $2, $3, $4, $5, $6, $7 }'
}

log "wrk -t$threads -c$connections -d${seconds}s --latency, $rounds rounds per route (after a 2 s warm-up)"
service_one=("$service_pid" "http://127.0.0.1:$service_port/orders/1")
ceiling_one=("$ceiling_one_pid" "http://127.0.0.1:$ceiling_one_port/orders/1")
read -r rps_one p99_one c_rps_one c_p99_one ratio_one cpu_one c_cpu_one < <(compare one \
  "${service_one[@]}" "${ceiling_one[@]}")
# What a browser sends: the single order stays below COMPRESSION_MIN_BYTES and must cost the same.
read -r rps_br p99_br c_rps_br c_p99_br ratio_br _ < <(compare one-browser \
  "${service_one[@]}" "${ceiling_one[@]}" "Accept-Encoding: gzip, deflate, br, zstd")
read -r rps_list p99_list c_rps_list c_p99_list ratio_list _ < <(compare list \
  "$service_pid" "http://127.0.0.1:$service_port/orders" \
  "$ceiling_list_pid" "http://127.0.0.1:$ceiling_list_port/orders")
read -r rps_axum p99_axum _ _ ratio_axum _ < <(compare one-axum \
  "$axum_one_pid" "http://127.0.0.1:$axum_one_port/orders/1" "${ceiling_one[@]}")
# The ceiling made as slow as the service: spinning, on every request, the CPU time a GET
# costs the service beyond the ceiling. Its p99 is what any server of the service's speed gets
# here, in the same layout, whatever it does.
busy_nanos=$(awk -v s="$cpu_one" -v c="$c_cpu_one" 'BEGIN { d = (s - c) * 1000; printf "%.0f", (d > 0 ? d : 0) }')
start_ceiling "$body_one" hyper "$busy_nanos"
slowed_one=("$ceiling_pid" "http://127.0.0.1:$ceiling_port/orders/1")
read -r rps_slowed p99_slowed _ _ ratio_slowed _ < <(compare one-slowed \
  "${slowed_one[@]}" "${ceiling_one[@]}")
peak_service=$(status_kib "$service_pid" VmHWM)
peak_ceiling=$(status_kib "$ceiling_one_pid" VmHWM)
size_service=$(stat -c %s "$service_bin")
size_ceiling=$(stat -c %s "$ceiling_bin")

verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "PASS" : "MISS" }'; }

row() { printf '%-28s %14s %14s %14s  %s\n' "$@"; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$pin" = 1 ]; then
  log "figures (servers on core $last_cpu of $(nproc), wrk on the others; absolute numbers say little, the ratios more)"
else
  log "figures (wrk and both servers share this machine's $(nproc) cores; absolute numbers say little, the ratios more)"
fi
row "" "order-service" "ceiling" "target" ""
row "GET /orders/1 ($body_one B) req/s" "$rps_one" "$c_rps_one" "" ""
row "  ratio to ceiling" "${ratio_one}x" "" ">= 0.75x" "$(verdict "$ratio_one" ">=" 0.75)"
row "  p99 latency" "$p99_one ms" "$c_p99_one ms" "<= 2 ms" "$(verdict "$p99_one" "<=" 2)"
row "  CPU a request (user+system)" "$cpu_one µs" "$c_cpu_one µs" "" ""
row "  Accept-Encoding: gzip, br" "$rps_br" "$c_rps_br" "" ""
row "    ratio to ceiling" "${ratio_br}x" "" ">= 0.75x" "$(verdict "$ratio_br" ">=" 0.75)"
row "    p99 latency" "$p99_br ms" "$c_p99_br ms" "<= 2 ms" "$(verdict "$p99_br" "<=" 2)"
row "  bare axum router, req/s" "$rps_axum" "" "" ""
row "    its ratio to ceiling" "${ratio_axum}x" "" "" ""
row "    its p99 latency" "$p99_axum ms" "" "" ""
row "  ceiling +$(awk -v n="$busy_nanos" 'BEGIN { printf "%.1f", n / 1000 }') µs, req/s" "$rps_slowed" "" "" ""
row "    its ratio to ceiling" "${ratio_slowed}x" "" "" ""
row "    its p99 latency" "$p99_slowed ms" "" "" ""
row "GET /orders ($body_list B) req/s" "$rps_list" "$c_rps_list" "" ""
row "  ratio to ceiling" "${ratio_list}x" "" ">= 0.5x" "$(verdict "$ratio_list" ">=" 0.5)"
row "  p99 latency" "$p99_list ms" "$c_p99_list ms" "<= 2 ms" "$(verdict "$p99_list" "<=" 2)"
row "start→ready (median of $starts)" "$start_service ms" "$start_ceiling ms" "<= 50 ms" "$(verdict "$start_service" "<=" 50)"
row "idle RSS (VmRSS)" "$(mib "$idle_service") MiB" "$(mib "$idle_ceiling") MiB" "<= 20 MiB" "$(verdict "$idle_service" "<=" $((20 * 1024)))"
row "peak RSS (VmHWM)" "$(mib "$peak_service") MiB" "$(mib "$peak_ceiling") MiB" "<= 64 MiB" "$(verdict "$peak_service" "<=" $((64 * 1024)))"
row "binary (stripped release)" "$(mib $((size_service / 1024))) MiB" "$(mib $((size_ceiling / 1024))) MiB" "" ""
echo
echo "service: LOG_LEVEL=$log_level, LOG_FORMAT=json, metrics on, reads with a bearer key; wrk -t$threads -c$connections$([ "$pin" = 1 ] && echo ", servers on core $last_cpu, wrk on the others"); load average before: $load_before, after: $load_after"
