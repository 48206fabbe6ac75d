#!/usr/bin/env bash
# Print infra/aws's `name` from the preview role's ARN, so a preview is built with the name
# its role, permissions boundary and secret prefix were created with.
#   usage: preview-name.sh ROLE_ARN      e.g. arn:aws:iam::111122223333:role/acme-github-preview
# infra/aws names the role "<name>-github-preview" (github_oidc.tf), and AWS_PREVIEW_ROLE_ARN
# is that role's ARN from its github_role_arns output: the name comes from the same apply.
set -euo pipefail

arn="${1:?usage: preview-name.sh ROLE_ARN}"
role="${arn##*:role/}"
if [[ "$arn" != arn:*:iam::*:role/* || "$role" != *-github-preview ]]; then
  echo "::error::AWS_PREVIEW_ROLE_ARN ($arn) is not the <name>-github-preview role infra/aws creates" >&2
  exit 1
fi
echo "${role%-github-preview}"
