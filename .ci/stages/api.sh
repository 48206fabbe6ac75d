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
# The coverage phase is left out: on this schema it trips an internal error in hypothesis's
# lambda-source cache ("AST constructor recursion depth mismatch"), a tool bug, not a finding.
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --wait-for-schema 30 \
  --checks all \
  --phases examples,fuzzing,stateful \
  --header "Authorization: Bearer $key" \
  --max-examples 40 \
  --workers 2 \
  --seed 20261126 \
  --suppress-health-check too_slow
