#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from /openapi.json and checks
# every answer against the document (status codes, content types, schemas, auth).
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
ensure_pip schemathesis schemathesis

cargo build --locked -p order-service
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="schemathesis-$$"
workdir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$workdir"' EXIT

# A non-local environment with a key, so schemathesis can check that writes need auth.
HOST=127.0.0.1 PORT=$port ENABLE_METRICS=false ENVIRONMENT=ci API_KEYS=$key LOG_LEVEL=warn \
  target/debug/order-service >"$workdir/service.log" 2>&1 &
pid=$!

cd "$workdir"
# 412 answers a schema-valid If-Match that names a version the order does not have.
cat >schemathesis.toml <<'TOML'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
TOML
# One worker: with two, the coverage phase's generators parse source in two threads at once
# and trip a CPython 3.11 bug ("AST constructor recursion depth mismatch") inside the tool.
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --wait-for-schema 30 \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --header "Authorization: Bearer $key" \
  --max-examples 40 \
  --workers 1 \
  --seed 20261126 \
  --suppress-health-check too_slow \
  --report junit --report-dir "$workdir/report"

# An operation no phase tested is a skip (.ci/skips.py). The examples phase skipping the
# operations whose document gives no example is not: the other phases generate their requests.
python3 - "$workdir"/report/*.xml <<'PY'
import sys
import xml.etree.ElementTree as ET

import skips

for case in ET.parse(sys.argv[1]).iter("testcase"):
    for skipped in case.findall("skipped"):
        skips.record(f"api:schemathesis:{case.get('name')}", skipped.get("message") or skipped.text or "skipped")
PY

# /docs must show the operations with no host but the service reachable (air-gapped cluster,
# strict CSP): Chromium resolves no other name, so a script from a CDN would never load. The
# script comes in parts that the page's loader joins; Chromium's network log shows that each
# part came brotli-compressed as stored. The page is read as a person would: open it and wait
# (up to 120 s of real time) until every operation's summary shows.
log "docs page in headless Chromium, other hosts unreachable"
ensure_apt chromium chromium
curl -fsS "http://127.0.0.1:$port/openapi.json" >"$workdir/openapi.json"
python3 - "$workdir/openapi.json" >"$workdir/expected.txt" <<'PY'
import json, sys

for operations in json.load(open(sys.argv[1], encoding="utf-8"))["paths"].values():
    for operation in operations.values():
        print(" ".join(operation["summary"].split()[:3]).rstrip("."))
PY
python3 "$ROOT/.ci/render_page.py" "http://127.0.0.1:$port/docs" "$workdir/docs.html" \
  "$workdir/expected.txt" 120 -- \
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$workdir/chromium-profile" \
  --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
  --log-net-log="$workdir/net-log.json" 2>"$workdir/chromium.log"
curl -fsS "http://127.0.0.1:$port/docs" >"$workdir/docs-served.html"
python3 - "$workdir/docs.html" "$workdir/expected.txt" "$workdir/docs-served.html" \
  "$workdir/net-log.json" <<'PY'
import html, json, re, sys

dom = open(sys.argv[1], encoding="utf-8").read()
# The first words of each operation's summary, as the reader sees them.
expected = open(sys.argv[2], encoding="utf-8").read().splitlines()

# Every part the page names was fetched once, and answered 200 in a stored encoding.
served = open(sys.argv[3], encoding="utf-8").read()
named = re.search(r"data-parts='([^']*)'", served)
if not named:
    sys.exit("the docs page names no script parts")
parts = json.loads(named.group(1))
log = json.load(open(sys.argv[4], encoding="utf-8"))
kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
requests, answers = {}, {}
for event in log["events"]:
    kind, params = kinds[event["type"]], event.get("params", {})
    if kind == "HTTP_TRANSACTION_SEND_REQUEST_HEADERS":
        requests[event["source"]["id"]] = params["line"].split()[1]
    elif kind == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS":
        answers[event["source"]["id"]] = [h.lower() for h in params["headers"]]
fetched = {path: answers.get(source, []) for source, path in requests.items()}
for src, _ in parts:
    headers = fetched.get("/" + src)
    if headers is None:
        sys.exit(f"the browser never fetched {src}; it fetched {sorted(fetched)}")
    status = headers[0].split()[1:2] if headers else []
    if status != ["200"] or "content-encoding: br" not in headers:
        sys.exit(f"{src} was not answered 200 brotli-compressed: {headers}")
print(f"the browser fetched the script's {len(parts)} parts, each answered brotli-compressed")
# What the page rendered: everything but the document's own data block and styles.
rendered = re.sub(r'<script[^>]*id="api-reference".*?</script>', "", dom, flags=re.S)
rendered = re.sub(r"<(style|script)\b.*?</\1>", "", rendered, flags=re.S)
text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered)).split())
missing = [words for words in expected if words not in text]
if missing:
    sys.exit("docs page does not show: " + "; ".join(missing) + f"\nrendered text: {text[:500]}")
print(f"docs page shows all {len(expected)} operations")
PY
