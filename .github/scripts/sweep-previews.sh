#!/usr/bin/env bash
# Destroy every preview whose pull request is no longer open.
#
# A preview is its Terraform state object preview/pr-<n>.tfstate in the state bucket: the
# `closed` event of preview.yml normally destroys it, and this sweep catches the ones it
# missed (a failed run, a workflow disabled at the time, a pull request closed while its
# preview was still being created).
#
# Needs: AWS credentials of the preview role, TF_STATE_BUCKET, AWS_REGION, TF_VAR_name
# (preview-name.sh), GH_TOKEN with
# pull-requests: read, GH_REPO (owner/name). Run from the repository root.
# DRY_RUN=true lists what would be destroyed and changes nothing.
set -euo pipefail

: "${TF_STATE_BUCKET:?}" "${AWS_REGION:?}" "${GH_REPO:?}"
dry_run="${DRY_RUN:-false}"
here="$(cd "$(dirname "$0")" && pwd)"

keys=$(aws s3api list-objects-v2 --bucket "$TF_STATE_BUCKET" --prefix preview/pr- \
  --query 'Contents[].Key' --output text)

destroyed=0 failed=0
for key in $keys; do
  [[ "$key" =~ ^preview/pr-([0-9]+)\.tfstate$ ]] || continue
  pr="${BASH_REMATCH[1]}"
  if ! state=$(gh pr view "$pr" --repo "$GH_REPO" --json state --jq .state); then
    echo "::warning::pr-$pr: could not read the pull request; kept"
    continue
  fi
  if [ "$state" = "OPEN" ]; then
    echo "pr-$pr: open, kept"
    continue
  fi
  echo "pr-$pr: $state, destroying"
  if [ "$dry_run" = "true" ]; then
    continue
  fi
  if "$here/preview-destroy.sh" "$pr"; then
    destroyed=$((destroyed + 1))
  else
    echo "::error::pr-$pr: destroy failed; the next sweep retries"
    failed=$((failed + 1))
  fi
done

echo "sweep: $destroyed destroyed, $failed failed"
echo "preview sweep: $destroyed destroyed, $failed failed" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
[ "$failed" -eq 0 ]
