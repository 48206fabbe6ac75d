#!/usr/bin/env bash
# Deploy the preview of one pull request: plan, preflight, migrate, apply.
#   usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP
# Needs AWS credentials of the preview role, TF_STATE_BUCKET, AWS_REGION and TF_VAR_name
# (preview-name.sh); run from the repository root. Used by preview.yml's deploy job.
#
# The plan is saved and applied as planned, so the preflight judges exactly what the apply
# does: it stops with one ::error:: line when the account's Lambda concurrency quota cannot
# hold the reservation the plan makes (preview-preflight.py). A postgres preview's schema is
# migrated before the serving function is updated: the migrate function (the same zip with
# the handler `migrate`, in the preview's subnets, where the database is reachable) is
# applied alone and invoked; a failed migration stops the deploy with one ::error:: line
# and the serving function keeps its code. Then the whole root is planned again (the
# targeted apply changed the state), checked again and applied, so the function's code never
# starts on an older schema and a cold start does no DDL.
set -euo pipefail

pr="${1:?usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP}"
zip="${2:?usage: preview-deploy.sh PR_NUMBER LAMBDA_ZIP}"
[[ "$pr" =~ ^[0-9]+$ ]] || { echo "not a pull request number: $pr" >&2; exit 2; }
: "${TF_STATE_BUCKET:?}" "${AWS_REGION:?}" "${TF_VAR_name:?set TF_VAR_name (preview-name.sh)}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$here/tf-init.sh" infra/preview "preview/pr-$pr.tfstate"
vars=(-var "pr_number=$pr" -var "region=$AWS_REGION" -var "lambda_zip=$zip")

# Saves the plan of the whole root to $work/tfplan and checks it against the account.
plan() {
  terraform -chdir=infra/preview plan -no-color -lock-timeout=5m -out="$work/tfplan" "${vars[@]}"
  terraform -chdir=infra/preview show -json "$work/tfplan" >"$work/plan.json"
  aws lambda get-account-settings --output json >"$work/account.json"
  python3 "$here/preview-preflight.py" "$work/plan.json" "$work/account.json"
}

plan
# The migrate function's name as planned; empty for a memory preview.
migrate_function="$(python3 - "$work/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
for change in plan["resource_changes"]:
    if change["address"] == 'aws_lambda_function.preview["migrate"]' and change["change"]["after"]:
        print(change["change"]["after"]["function_name"])
PY
)"
if [[ -n "$migrate_function" ]]; then
  # A preview deployed before resources of infra/preview moved (its `moved` blocks) has them
  # at their former addresses, and terraform refuses a targeted plan while a move is pending:
  # record the moves first, which changes nothing in AWS.
  if python3 -c 'import json, sys; sys.exit(not any(c.get("previous_address") for c in json.load(open(sys.argv[1]))["resource_changes"]))' "$work/plan.json"; then
    terraform -chdir=infra/preview apply -no-color -lock-timeout=5m -auto-approve -refresh-only "${vars[@]}"
  fi
  terraform -chdir=infra/preview apply -no-color -lock-timeout=5m -auto-approve \
    -target='aws_lambda_function.preview["migrate"]' "${vars[@]}"
  echo "migrating with $migrate_function"
  # The function's timeout is 300 s; the CLI's default read timeout (60 s) is not enough.
  # fileb:// passes the event as it is with AWS CLI v1 and v2 alike.
  echo '{}' >"$work/event.json"
  aws lambda invoke --function-name "$migrate_function" --cli-read-timeout 330 \
    --payload "fileb://$work/event.json" --output json \
    "$work/migrated.json" >"$work/invoke.json"
  python3 - "$work/invoke.json" "$work/migrated.json" "$migrate_function" <<'PY'
import json, sys
invoke = json.load(open(sys.argv[1]))
payload = open(sys.argv[2]).read()
try:
    result = json.loads(payload)
except ValueError:
    result = payload
if invoke.get("FunctionError"):
    # The function's error ({"errorType", "errorMessage"}) or whatever Lambda answered instead.
    message = result.get("errorMessage", payload) if isinstance(result, dict) else payload
    print(f"::error::migration failed ({sys.argv[3]}): {' '.join(message.split())}")
    sys.exit(1)
print(f"migrated: {payload}")
PY
  plan
fi
terraform -chdir=infra/preview apply -no-color -lock-timeout=5m "$work/tfplan"
