#!/usr/bin/env bash
# Destroy the preview of one pull request and remove its state object.
#   usage: preview-destroy.sh PR_NUMBER
# Needs AWS credentials of the preview role, TF_STATE_BUCKET, AWS_REGION and TF_VAR_name
# (preview-name.sh); run from the repository root. Used by preview.yml on `closed` and by sweep-previews.sh.
set -euo pipefail

pr="${1:?usage: preview-destroy.sh PR_NUMBER}"
[[ "$pr" =~ ^[0-9]+$ ]] || { echo "not a pull request number: $pr" >&2; exit 2; }
: "${TF_STATE_BUCKET:?}" "${AWS_REGION:?}" "${TF_VAR_name:?set TF_VAR_name (preview-name.sh)}"
key="preview/pr-$pr.tfstate"
here="$(cd "$(dirname "$0")" && pwd)"

"$here/tf-init.sh" infra/preview "$key"
# A postgres preview's schema goes first, while its state still names the secret to reach
# it: a failure leaves the state, so the next sweep tries both again. A state without the
# output (a memory preview) drops nothing.
secret=$(terraform -chdir=infra/preview output -json database 2>/dev/null | jq -r '.secret_name // empty' || true)
if [ -n "$secret" ]; then
  PREVIEW_SECRET_NAME="$secret" "$here/preview-schema.sh" drop "$pr"
fi
terraform -chdir=infra/preview destroy -auto-approve -no-color -lock-timeout=5m \
  -var "pr_number=$pr" -var "region=$AWS_REGION"
# An empty state left behind would make every sweep destroy this preview again.
aws s3 rm "s3://$TF_STATE_BUCKET/$key"
