#!/usr/bin/env bash
# Drop the database schema of one pull request's preview, with everything in it.
#   usage: preview-schema.sh drop PR_NUMBER
# Connects as the preview database role (infra/aws/sql/preview-role.sql), which owns the
# preview schemas: DATABASE_URL, or else the database_url of the Secrets Manager secret
# PREVIEW_SECRET_NAME (AWS credentials of the preview role). A schema already gone is fine, so
# a second sweep does nothing. Used by preview-destroy.sh before the function goes.
set -euo pipefail

action="${1:-}"
pr="${2:-}"
if [ "$action" != drop ] || ! [[ "$pr" =~ ^[0-9]+$ ]]; then
  echo "usage: preview-schema.sh drop PR_NUMBER" >&2
  exit 2
fi

url="${DATABASE_URL:-}"
if [ -z "$url" ]; then
  : "${PREVIEW_SECRET_NAME:?set DATABASE_URL or PREVIEW_SECRET_NAME}"
  url=$(aws secretsmanager get-secret-value --secret-id "$PREVIEW_SECRET_NAME" \
    --query SecretString --output text | jq -er .database_url)
fi

# A preview still serving holds locks only for its requests' short transactions; wait that
# long, not forever.
printf 'SET lock_timeout = %s;\nDROP SCHEMA IF EXISTS preview_pr_%s CASCADE;\n' "'30s'" "$pr" |
  psql "$url" -X -q -v ON_ERROR_STOP=1 -o /dev/null
echo "preview_pr_$pr: dropped (or already gone)"
