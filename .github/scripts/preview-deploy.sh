#!/usr/bin/env bash
# Deploy the preview of one pull request: plan, preflight, migrate, apply.
#   usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP
# Needs AWS credentials of the preview role, TF_STATE_BUCKET, AWS_REGION and TF_VAR_name
# (preview-name.sh), and for a postgres preview MIGRATE_BINARY (the order-service binary
# built from the pull request) and a route to the database; run from the repository root.
# Used by preview.yml's deploy job.
#
# The plan is saved and applied as planned, so the preflight judges exactly what the apply
# does: it stops with one ::error:: line when the account's Lambda concurrency quota cannot
# hold the reservation the plan makes (preview-preflight.py). A postgres preview's schema is
# migrated before the apply updates the function, with the environment the plan gives the
# function (store, schema, secret), so its code never starts on an older schema and a cold
# start does no DDL.
set -euo pipefail

pr="${1:?usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP}"
zip="${2:?usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP}"
[[ "$pr" =~ ^[0-9]+$ ]] || { echo "not a pull request number: $pr" >&2; exit 2; }
: "${TF_STATE_BUCKET:?}" "${AWS_REGION:?}" "${TF_VAR_name:?set TF_VAR_name (preview-name.sh)}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$here/tf-init.sh" infra/preview "preview/pr-$pr.tfstate"
terraform -chdir=infra/preview plan -no-color -lock-timeout=5m -out="$work/tfplan" \
  -var "pr_number=$pr" -var "region=$AWS_REGION" -var "lambda_zip=$zip"
terraform -chdir=infra/preview show -json "$work/tfplan" >"$work/plan.json"
aws lambda get-account-settings --output json >"$work/account.json"
python3 "$here/preview-preflight.py" "$work/plan.json" "$work/account.json"

# KEY=VALUE lines of the function's environment as planned.
python3 - "$work/plan.json" >"$work/function.env" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
(function,) = [c for c in plan["resource_changes"] if c["address"] == "aws_lambda_function.preview"]
for key, value in function["change"]["after"]["environment"][0]["variables"].items():
    print(f"{key}={value}")
PY
if grep -qx 'STORE=postgres' "$work/function.env"; then
  : "${MIGRATE_BINARY:?set MIGRATE_BINARY: a postgres preview migrates its schema before the apply}"
  mapfile -t function_env <"$work/function.env"
  echo "migrating $(grep '^DB_SCHEMA=' "$work/function.env")"
  env "${function_env[@]}" "$MIGRATE_BINARY" migrate
fi
terraform -chdir=infra/preview apply -no-color -lock-timeout=5m "$work/tfplan"
