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
terraform -chdir=infra/preview destroy -auto-approve -no-color -lock-timeout=5m \
  -var "pr_number=$pr" -var "region=$AWS_REGION"
# An empty state left behind would make every sweep destroy this preview again.
aws s3 rm "s3://$TF_STATE_BUCKET/$key"
