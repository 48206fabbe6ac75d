#!/usr/bin/env bash
# The Lambda shell end to end, the way a developer runs it: `cargo lambda watch` from the
# repository root (embedded memory store, sample data) serves the function at
#   http://127.0.0.1:<port>/lambda-url/order-service-lambda/...
# The stdlib smoke test drives the HTTP contract through it; then the function's output must
# hold one CloudWatch EMF line per request and the Lambda request id in its log lines.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT" || exit 1

# The prebuilt wheel, seconds (compiling it would take about 15 minutes on 2 cores).
ensure_rust_tool cargo-lambda cargo-lambda cargo-lambda

# Built up front so the first request does not wait for a compile.
cargo build --locked --quiet -p order-service-lambda

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="lambda-smoke-$$"
workdir=$(mktemp -d)
watch_log="$workdir/watch.log"

# Own process group, so stopping it also stops the function process watch started.
setsid cargo lambda watch \
  --invoke-address 127.0.0.1 --invoke-port "$port" \
  --env-var "ENVIRONMENT=local" --env-var "API_KEYS=$key" --env-var "PUBLIC_READS=false" \
  --env-var "LOG_LEVEL=info" \
  >"$watch_log" 2>&1 &
watch_pid=$!
# shellcheck disable=SC2317 # called from the EXIT trap
stop_watch() {
  kill -- "-$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
}
trap 'stop_watch; rm -rf "$workdir"' EXIT

base="http://127.0.0.1:$port/lambda-url/order-service-lambda"
status=0

log "smoke test through cargo lambda watch ($base)"
python3 .github/scripts/smoke-test.py "$base" --api-key "$key" --environment local --deadline 300 || status=1

log "request id, query strings and EMF in the function's output"
python3 - "$base" "$watch_log" "$key" <<'PY' || status=1
"""One more request whose Lambda request id we know, then read what the function printed."""
import json
import sys
import time
import urllib.request

base, log_path, key = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []

# Reads need a key outside ENVIRONMENT=local's defaults (the function runs with PUBLIC_READS=false).
listing = urllib.request.Request(base + "/orders?limit=1", headers={"Authorization": f"Bearer {key}"})
with urllib.request.urlopen(listing, timeout=30) as resp:
    request_id = resp.headers.get("x-request-id", "")
    body = json.load(resp)
    link = resp.headers.get("link", "")
if len(body) != 1 or 'rel="next"' not in link:
    failures.append(f"GET /orders?limit=1: {len(body)} orders, link {link!r}; want 1 and a next link")


def emf_lines(text):
    for line in text.splitlines():
        start = line.find('{"')
        if start < 0 or '"_aws"' not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            yield doc


# The function writes its output as it goes; give watch a moment to relay the last lines.
deadline = time.monotonic() + 30
while True:
    text = open(log_path, encoding="utf-8", errors="replace").read()
    seen = {(d.get("method"), d.get("route"), d.get("status")) for d in emf_lines(text)}
    wanted = {
        ("GET", "/", "200"),
        ("GET", "/health", "200"),
        ("GET", "/orders", "200"),
        ("GET", "/orders/{id}", "200"),
        ("GET", "/orders/{id}", "404"),
        ("POST", "/orders", "201"),
        ("POST", "/orders", "401"),
    }
    id_logged = bool(request_id) and any(request_id in line and "request" in line for line in text.splitlines() if '"_aws"' not in line)
    if (wanted <= seen and id_logged) or time.monotonic() > deadline:
        break
    time.sleep(1)

missing = sorted(wanted - seen, key=str)
if missing:
    failures.append(f"no EMF line for {missing}; saw {sorted(seen, key=str)}")
for doc in emf_lines(text):
    aws = doc["_aws"]
    if not isinstance(aws.get("Timestamp"), int):
        failures.append(f"EMF Timestamp is not integer milliseconds: {doc}")
    for directive in aws.get("CloudWatchMetrics", []):
        if directive.get("Namespace") != "OrderService":
            failures.append(f"EMF namespace: {directive}")
        for metric in directive.get("Metrics", []):
            if not isinstance(doc.get(metric.get("Name")), (int, float, list)):
                failures.append(f"EMF metric {metric} has no value at the root: {doc}")
    if doc.get("environment") != "local":
        failures.append(f"EMF environment dimension: {doc}")
if not request_id:
    failures.append("the response carried no x-request-id")
elif not id_logged:
    failures.append(f"no log line carries the Lambda request id {request_id}")

for failure in failures:
    print("FAIL", failure)
print(f"lambda output: {len(list(emf_lines(text)))} EMF lines, request id {request_id or '-'}, {len(failures)} failures")
sys.exit(1 if failures else 0)
PY

if [ "$status" -ne 0 ]; then
  echo "--- cargo lambda watch output (last 60 lines)"
  tail -n 60 "$watch_log"
fi
exit "$status"
