#!/usr/bin/env bash
# Undo what an interrupted deploy left behind, so the next `helm upgrade` can run.
#   usage: helm-recover.sh RELEASE NAMESPACE
#
# A deploy that is cancelled or times out while helm works leaves the release's last
# revision pending-install, pending-upgrade or pending-rollback, and helm then refuses
# every later upgrade: "another operation (install/upgrade/rollback) is in progress".
# deploy-environment.yml runs one deploy per namespace at a time (its concurrency group),
# so a pending revision found before a deploy starts belongs to a run that is gone.
#
#   last revision pending, an earlier one deployed  -> helm rollback to that revision
#   none deployed, one superseded                   -> helm rollback to the last superseded
#   pending-install and nothing ever deployed       -> helm uninstall (the next deploy installs)
#   anything else (no release, deployed, failed)    -> nothing to do
set -euo pipefail

release="${1:?usage: helm-recover.sh RELEASE NAMESPACE}"
namespace="${2:?usage: helm-recover.sh RELEASE NAMESPACE}"

if ! history=$(helm history "$release" --namespace "$namespace" --max 50 --output json 2>&1); then
  if grep -q "release: not found" <<<"$history"; then
    echo "$release: not installed in $namespace yet; nothing to recover"
    exit 0
  fi
  # Cannot tell the release's state: better to stop than to upgrade blindly.
  echo "helm history $release -n $namespace failed: $history" >&2
  exit 1
fi

last=$(jq -r 'max_by(.revision) | "\(.revision) \(.status)"' <<<"$history")
read -r last_revision last_status <<<"$last"
case "$last_status" in
  pending-install | pending-upgrade | pending-rollback) ;;
  *)
    echo "$release: revision $last_revision is $last_status; nothing to recover"
    exit 0
    ;;
esac

target=$(jq -r '[.[] | select(.status == "deployed")] | max_by(.revision) | .revision // empty' <<<"$history")
[ -n "$target" ] ||
  target=$(jq -r '[.[] | select(.status == "superseded")] | max_by(.revision) | .revision // empty' <<<"$history")

if [ -n "$target" ]; then
  echo "$release: revision $last_revision is $last_status (an interrupted deploy); rolling back to revision $target"
  helm rollback "$release" "$target" --namespace "$namespace" --wait --timeout 10m
  summary="rolled back from $last_status revision $last_revision to revision $target"
elif [ "$last_status" = "pending-install" ]; then
  echo "$release: the first install was interrupted (revision $last_revision pending-install); uninstalling"
  helm uninstall "$release" --namespace "$namespace" --wait --timeout 10m
  summary="removed the interrupted first install (revision $last_revision)"
else
  echo "::error::$release: revision $last_revision is $last_status and no earlier revision was ever deployed; recover by hand (helm history $release -n $namespace)" >&2
  exit 1
fi
echo "### ${namespace}: ${release} ${summary}" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
