#!/usr/bin/env bash
# terraform init for one root against the S3 state bucket.
#   usage: tf-init.sh ROOT STATE_KEY      e.g. tf-init.sh infra/aws infra/aws.tfstate
# Reads TF_STATE_BUCKET and AWS_REGION from the environment (repository variables in CI).
# The roots declare a partial `backend "s3" {}`; everything else comes from here, so one
# bucket serves every root and every preview, each under its own key.
# -reconfigure: the sweep initialises the same directory once per preview, each time with
# another key; without it the second init stops at "Backend configuration changed".
# Nothing is migrated between keys: each key is its own state.
set -euo pipefail

root="${1:?usage: tf-init.sh ROOT STATE_KEY}"
key="${2:?usage: tf-init.sh ROOT STATE_KEY}"
: "${TF_STATE_BUCKET:?set TF_STATE_BUCKET (repository variable)}"
: "${AWS_REGION:?set AWS_REGION (repository variable)}"

terraform -chdir="$root" init -input=false -no-color -reconfigure \
  -backend-config="bucket=$TF_STATE_BUCKET" \
  -backend-config="key=$key" \
  -backend-config="region=$AWS_REGION" \
  -backend-config="encrypt=true" \
  -backend-config="use_lockfile=true"
