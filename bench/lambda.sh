#!/usr/bin/env bash
# Lambda shell figures (a measurement, not a test): release binary size, deployment zip size,
# init time = process start → first request for an event on the Runtime API, and the /docs
# script's bytes on the wire per encoding behind an ALB.
#
#   bench/lambda.sh [RUNS]      (RUNS cold starts for the init time, default 20)
#
# Init time is measured against a small Runtime API emulator (Python stdlib, below): it
# starts the release binary with AWS_LAMBDA_RUNTIME_API pointing at itself, notes when the
# process asks for its first event (`GET /runtime/invocation/next`: init is over), serves
# one Function URL event, and stops the process. No secrets are fetched (the embedded memory
# store with sample data), so the figure is the shell's own cost: config, telemetry, state,
# the graceful-shutdown extension registration, the runtime's first poll.
#
# Targets: init <= 50 ms without secrets; zip <= 8 MiB.
# The zip is built for the host (x86_64) with `--compiler cargo`: an arm64 build needs zig
# (cargo lambda's cross compiler), which these machines do not have.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
runs="${1:-20}"

echo "== release build"
cargo build --locked --release --quiet -p order-service-lambda
binary=target/release/order-service-lambda
printf 'release binary: %s bytes (%.1f MiB)\n' "$(stat -c %s "$binary")" \
  "$(echo "$(stat -c %s "$binary") / 1048576" | bc -l)"

echo "== deployment zip"
if command -v cargo-lambda >/dev/null 2>&1; then
  cargo lambda build --release --output-format zip --compiler cargo -p order-service-lambda >/dev/null
  zip_path=target/lambda/order-service-lambda/bootstrap.zip
  how="cargo lambda build --release --output-format zip --compiler cargo (x86_64)"
else
  # Same layout as cargo lambda's zip: the binary as `bootstrap`, deflated.
  zip_path=$(mktemp -d)/bootstrap.zip
  python3 - "$binary" "$zip_path" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, open(sys.argv[1], "rb").read())
PY
  how="release binary zipped as bootstrap (cargo-lambda not installed)"
fi
zip_bytes=$(stat -c %s "$zip_path")
printf 'zip: %s bytes (%.2f MiB) — %s; target <= 8 MiB: %s\n' "$zip_bytes" \
  "$(echo "$zip_bytes / 1048576" | bc -l)" "$how" \
  "$([ "$zip_bytes" -le $((8 * 1048576)) ] && echo met || echo MISSED)"

echo "== init time ($runs cold starts, Runtime API emulator on loopback)"
python3 - "$binary" "$runs" <<'PY'
import base64
import http.server
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

binary, runs = sys.argv[1], int(sys.argv[2])

EVENT = json.dumps({
    "version": "2.0", "routeKey": "$default", "rawPath": "/orders/1", "rawQueryString": "",
    "headers": {"host": "bench.lambda-url.eu-west-1.on.aws", "accept": "application/json",
                "authorization": "Bearer bench-key"},
    "requestContext": {
        "accountId": "123456789012", "apiId": "bench", "domainName": "bench.lambda-url.eu-west-1.on.aws",
        "http": {"method": "GET", "path": "/orders/1", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
        "requestId": "bench", "routeKey": "$default", "stage": "$default", "time": "01/Jan/2025:00:00:00 +0000", "timeEpoch": 0,
    },
    "isBase64Encoded": False,
}).encode()


class Run:
    def __init__(self):
        self.started = 0.0
        self.ready = None       # first GET /invocation/next: init done
        self.answered = None    # response to the first event posted
        self.status = None
        self.done = threading.Event()
        self.requests = []  # what the process asked, for the error message


current = Run()


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        run = current
        run.requests.append(("GET", self.path, run.ready is not None))
        if self.path == "/2018-06-01/runtime/invocation/next":
            # Until the event is answered every poll gets it (a client may retry a poll).
            if run.answered is None:
                if run.ready is None:
                    run.ready = time.perf_counter()
                deadline = str(int(time.time() * 1000) + 30_000)
                self.reply(200, EVENT, [
                    ("Lambda-Runtime-Aws-Request-Id", "bench-request-1"),
                    ("Lambda-Runtime-Deadline-Ms", deadline),
                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:order-service-lambda"),
                    ("Content-Type", "application/json"),
                ])
                return
            run.done.wait(10)  # the second poll: hold it until the process is stopped
        elif self.path == "/2020-01-01/extension/event/next":
            run.done.wait(10)  # the shutdown helper extension subscribes to nothing
        self.reply(404)

    def do_POST(self):
        run = current
        run.requests.append(("POST", self.path, run.ready is not None))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/2020-01-01/extension/register":
            self.reply(200, json.dumps({"functionName": "order-service-lambda", "functionVersion": "$LATEST", "handler": "bootstrap"}).encode(),
                       [("Lambda-Extension-Identifier", "bench-extension"), ("Content-Type", "application/json")])
        elif self.path.endswith("/response"):
            run.answered = time.perf_counter()
            try:
                run.status = json.loads(body).get("statusCode")
            except ValueError:
                run.status = "unparseable"
            self.reply(202)
            run.done.set()
        else:  # init or invocation error
            print("runtime error reported:", self.path, body[:300], file=sys.stderr)
            self.reply(202)
            run.done.set()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the stopped process drops its open polls; that is expected


inits, firsts = [], []
for i in range(runs):
    # A fresh emulator per run: a poll from the previous process cannot reach this one.
    current = Run()
    server = Server(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="order-service-lambda",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        ENVIRONMENT="bench",
        API_KEYS="bench-key",
        LOG_LEVEL="warn",
    )
    current.started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished = current.done.wait(30)
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    server.shutdown()
    server.server_close()
    if not finished or current.ready is None or current.answered is None or current.status != 200:
        sys.exit(f"run {i}: no good answer (status {current.status}); requests {current.requests}; stderr: {err.decode(errors='replace')[-500:]}")
    inits.append((current.ready - current.started) * 1000)
    firsts.append((current.answered - current.ready) * 1000)

inits.sort()
p90 = inits[max(0, int(len(inits) * 0.9) - 1)]
print(f"init (spawn -> first poll): median {statistics.median(inits):.1f} ms, "
      f"min {inits[0]:.1f} ms, p90 {p90:.1f} ms, max {inits[-1]:.1f} ms over {runs} runs; "
      f"target <= 50 ms: {'met' if statistics.median(inits) <= 50 else 'MISSED'}")
print(f"first invocation (event delivered -> response posted): median {statistics.median(firsts):.2f} ms")

# /docs behind an ALB: the page, then each script part it names with each Accept-Encoding, as
# ALB events; then the whole script at /docs/scalar.js as a Function URL event with no
# Accept-Encoding. Wire bytes are the bodies a client receives; "Lambda response" is the JSON
# the function hands Lambda, which an ALB takes only under 1 MB and a Function URL under 6 MB.
print("== /docs script behind an ALB (Runtime API emulator on loopback)")
# Accept-Encoding of a browser over HTTPS, of one over plain HTTP, and of a client that sends none.
ENCODINGS = {"https": "gzip, deflate, br, zstd", "http": "gzip, deflate", "none": None}


def alb(path, accept):
    headers = {"host": "orders.example.com", "x-forwarded-proto": "https", "x-forwarded-port": "443"}
    if accept:
        headers["accept-encoding"] = accept
    return {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/bench/0"}},
            "httpMethod": "GET", "path": path, "queryStringParameters": {}, "headers": headers,
            "body": "", "isBase64Encoded": False}


def function_url(path):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "bench.lambda-url.eu-west-1.on.aws"},
            "requestContext": {"accountId": "123456789012", "apiId": "bench", "domainName": "bench.lambda-url.eu-west-1.on.aws",
                               "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                               "requestId": "bench", "routeKey": "$default", "stage": "$default",
                               "time": "01/Jan/2025:00:00:00 +0000", "timeEpoch": 0},
            "isBase64Encoded": False}


queue = [("page", alb("/docs", ENCODINGS["https"]))]
answers = []  # (label, Lambda response bytes, body bytes on the wire, content-encoding, status)
docs_done = threading.Event()


class DocsApi(RuntimeApi):
    """Hands out the queued events in order; the function polls for the next one only after
    posting its answer to the last."""

    def do_GET(self):
        if self.path == "/2018-06-01/runtime/invocation/next" and queue:
            _, event = queue[0]
            self.reply(200, json.dumps(event).encode(), [
                ("Lambda-Runtime-Aws-Request-Id", f"bench-{len(answers)}"),
                ("Lambda-Runtime-Deadline-Ms", "99999999999999"),
                ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:order-service-lambda"),
            ])
            return
        docs_done.wait(60)
        self.reply(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/2020-01-01/extension/register":
            self.reply(200, b'{"functionName":"order-service-lambda","functionVersion":"$LATEST","handler":"bootstrap"}',
                       [("Lambda-Extension-Identifier", "bench-extension")])
            return
        label, _ = queue.pop(0)
        response = json.loads(body) if self.path.endswith("/response") else {"statusCode": "error", "body": body.decode()}
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        text = response.get("body") or ""
        wire = len(base64.b64decode(text)) if response.get("isBase64Encoded") else len(text.encode())
        answers.append((label, len(body), wire, headers.get("content-encoding", "identity"), response.get("statusCode")))
        if label == "page":
            parts = json.loads(re.search(r"data-parts='([^']*)'", text).group(1))
            for src, _ in parts:
                for name, accept in ENCODINGS.items():
                    queue.append((name, alb("/" + src, accept)))
            queue.append(("whole", function_url("/docs/scalar.js")))
        self.reply(202)
        if not queue:
            docs_done.set()


server = Server(("127.0.0.1", 0), DocsApi)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
           AWS_LAMBDA_FUNCTION_NAME="order-service-lambda", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
           AWS_LAMBDA_FUNCTION_VERSION="$LATEST", ENVIRONMENT="bench", API_KEYS="bench-key", LOG_LEVEL="warn")
proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
finished = docs_done.wait(120)
proc.terminate()
_, err = proc.communicate(timeout=10)
server.shutdown()
if not finished:
    sys.exit(f"not every event was answered: {answers}; stderr: {err.decode(errors='replace')[-500:]}")
bad = [a for a in answers if a[4] != 200]
if bad:
    sys.exit(f"not 200: {bad}")
parts = sum(1 for a in answers if a[0] == "https")
for name, accept in ENCODINGS.items():
    rows = [a for a in answers if a[0] == name]
    sent = "/".join(sorted({a[3] for a in rows}))
    print(f"script, Accept-Encoding {str(accept):25s} ({parts} parts, sent {sent:8s}): {sum(a[2] for a in rows):>9,} bytes on the wire; "
          f"largest Lambda response {max(a[1] for a in rows):,} bytes; ALB limit 1 MB: "
          f"{'met' if max(a[1] for a in rows) < 1_000_000 else 'MISSED'}")
whole = next(a for a in answers if a[0] == "whole")
print(f"whole script at /docs/scalar.js, no encoding, Function URL: {whole[2]:,} bytes; "
      f"Lambda response {whole[1]:,} bytes; Function URL limit 6 MB: {'met' if whole[1] < 6_000_000 else 'MISSED'}")
PY
