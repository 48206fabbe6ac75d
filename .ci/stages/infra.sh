#!/usr/bin/env bash
# Terraform stage: formatting, offline validate + terraform test (mocked AWS provider),
# infra/tests (real apply / plan / destroy of infra/preview, of infra/aws without the cluster
# and of the Grafana secret against moto server; the HCL and contract checks), and checkov
# on every root.
# TF_PROVIDER_MIRROR overrides the provider mirror directory (default /opt/tf-plugins).
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"

command -v terraform >/dev/null 2>&1 || { echo "terraform is not on PATH" >&2; exit 1; }
ensure_pip checkov checkov
ensure_pip pytest pytest
"$VENV/bin/python" -c "import xdist" 2>/dev/null || ensure_pip pytest-xdist
ensure_pip python-hcl2 hcl2tojson
# moto runs in-process for the apply/plan/destroy rehearsals of infra/tests.
ensure_pip "moto[server]" moto_server
"$VENV/bin/python" -c "import boto3" 2>/dev/null || ensure_pip boto3
"$VENV/bin/python" -c "import yaml" 2>/dev/null || ensure_pip pyyaml

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "terraform fmt"
terraform fmt -check -recursive -diff "$ROOT/infra"

# infra/tests start first and run while terraform test and checkov do: the moto rehearsals
# spend minutes in the AWS provider's pollers, not on a CPU. Three workers, one test file each
# at a time (each rehearsal has its own moto server in its own process).
setsid "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=5 -n 3 --dist loadfile \
  "$ROOT/infra/tests" >"$work/pytest.log" 2>&1 &
pytest_pid=$!
# A failure below ends the stage: stop the tests (and their moto servers) with it.
trap 'kill -- "-$pytest_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

mirror="${TF_PROVIDER_MIRROR:-/opt/tf-plugins}"
if [ -d "$mirror" ]; then
  cat >"$work/terraformrc" <<CONF
provider_installation {
  filesystem_mirror {
    path = "$mirror"
  }
}
CONF
  export TF_CLI_CONFIG_FILE="$work/terraformrc"
  export TF_IN_AUTOMATION=1

  # A stand-in for the cargo-lambda zip: the preview root hashes it at plan time.
  "$VENV/bin/python" - "$work/bootstrap.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("bootstrap", "#!/bin/sh\n")
PY

  # Every root whose providers the mirror holds (the lock file names their versions). Offline
  # the mirror has hashicorp/aws only, so infra/addons (helm, kubernetes) is parsed by
  # infra/tests instead; in GitHub Actions the ci workflow mirrors every root's providers,
  # and a root left out there fails the stage.
  for versions in "$ROOT"/infra/*/versions.tf; do
    dir="$(dirname "$versions")"
    root="$(basename "$dir")"
    # "address version" of each provider the lock file pins, when the mirror lacks it.
    missing="$(awk '/^provider "/ { gsub(/"/, "", $2); address = $2 }
      /^  version / { gsub(/"/, "", $3); print address, $3 }' "$dir/.terraform.lock.hcl" |
      while read -r address version; do
        [ -d "$mirror/$address/$version" ] || echo "$address $version"
      done)"
    if [ -n "$missing" ]; then
      if [ "${GITHUB_ACTIONS:-}" = true ]; then
        echo "infra/$root: the provider mirror lacks $missing" >&2
        exit 1
      fi
      log "SKIPPED terraform init + validate: infra/$root (the mirror lacks $(echo "$missing" | tr '\n' ' '))"
      continue
    fi
    # Provider and module files go to the temp dir, not into the working tree.
    export TF_DATA_DIR="$work/$root"
    log "terraform init + validate: infra/$root"
    terraform -chdir="$dir" init -backend=false -input=false -no-color -lockfile=readonly >/dev/null
    terraform -chdir="$dir" validate -no-color
    [ -d "$dir/tests" ] || continue
    log "terraform test: infra/$root"
    if [ "$root" = preview ]; then
      terraform -chdir="$dir" test -no-color -var "lambda_zip=$work/bootstrap.zip"
    else
      terraform -chdir="$dir" test -no-color
    fi
  done
  unset TF_DATA_DIR
else
  for root in aws preview; do
    skip "infra:terraform-test:$root" "no provider mirror at $mirror (hashicorp/aws cannot be installed offline); set TF_PROVIDER_MIRROR"
  done
fi

# One root per run: given several -d at once, checkov 3.3.30 reports the first root's results
# for each of them.
for root in aws addons preview; do
  log "checkov: infra/$root"
  BC_SKIP_MAPPING=TRUE checkov -d "$ROOT/infra/$root" --framework terraform --quiet --compact
done

log "infra/tests (moto rehearsals, addons, lock files, contract with chart and workflows)"
status=0
wait "$pytest_pid" || status=$?
cat "$work/pytest.log"
[ "$status" = 0 ] || exit "$status"

log "infra: all checks passed"
