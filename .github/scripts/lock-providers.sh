#!/usr/bin/env bash
# Record in every Terraform root's .terraform.lock.hcl the provider checksums of each platform
# an operator or a runner may init on, so the first `terraform init` on macOS, Windows or an
# arm64 machine does not stop at "the checksums previously recorded in the dependency lock
# file". Needs the Terraform registry (network).
#   usage: lock-providers.sh [EXTRA providers-lock FLAGS...]   (run from the repository root)
# The ci workflow runs it and fails when a committed lock file lacks a platform; infra/README.md's
# first apply runs it before the first init.
set -euo pipefail

platforms=(linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64)
flags=()
for platform in "${platforms[@]}"; do flags+=("-platform=$platform"); done

for versions in infra/*/versions.tf; do
  root="$(dirname "$versions")"
  echo "locking $root for ${platforms[*]}"
  terraform -chdir="$root" providers lock -no-color "${flags[@]}" "$@"
done
