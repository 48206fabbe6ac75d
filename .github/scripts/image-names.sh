#!/usr/bin/env bash
# Where deliver.yml pushes the image and what the deploys pull, written to $GITHUB_OUTPUT.
# Reads only repository variables and the commit, never a secret: the runner drops a job
# output that contains a value it masks.
#
#   IMAGE_REGISTRY      ecr (default) or dockerhub (`docker.io`, the earlier setting, means dockerhub)
#   ECR_REPOSITORY_URL  with ecr: infra/aws output ecr_repository_url
#   IMAGE_REPOSITORY    with dockerhub: <user or org>/<name>
#   COMMIT              the 40-hex commit being delivered
#
# Outputs: registry (ecr | dockerhub), login-registry (host to log in to), repository
# (image without tag), tag (the full commit SHA: ECR tags are immutable, so a tag is the
# identity of the image and must never be shared by two commits), tags (what to push, one
# per line: ECR gets the SHA tag only; Docker Hub, mutable, also gets latest as before) and
# pull-secret (the docker-registry Secret the chart names in imagePullSecrets, empty for ECR,
# which the nodes read with their own role).
set -euo pipefail

fail() {
  echo "::error::$*" >&2
  exit 1
}

: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
commit="${COMMIT:-}"
[[ "$commit" =~ ^[0-9a-f]{40}$ ]] || fail "COMMIT must be a 40-hex commit SHA, got '$commit'"

registry="${IMAGE_REGISTRY:-ecr}"
case "$registry" in
  ecr)
    url="${ECR_REPOSITORY_URL:-}"
    [ -n "$url" ] || fail "set the ECR_REPOSITORY_URL repository variable to the infra/aws output ecr_repository_url (terraform -chdir=infra/aws output -raw ecr_repository_url), or IMAGE_REGISTRY=dockerhub"
    [[ "$url" =~ ^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*$ ]] ||
      fail "ECR_REPOSITORY_URL must look like <account>.dkr.ecr.<region>.amazonaws.com/<name> (infra/aws output ecr_repository_url), got '$url'"
    login="${url%%/*}"
    repository="$url"
    tags="$repository:$commit"
    pull_secret=""
    ;;
  dockerhub | docker.io)
    registry=dockerhub
    name="${IMAGE_REPOSITORY:-}"
    [ -n "$name" ] || fail "set the IMAGE_REPOSITORY repository variable (e.g. acme/order-service) for IMAGE_REGISTRY=dockerhub"
    [[ "$name" =~ ^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$ ]] ||
      fail "IMAGE_REPOSITORY must be <user or org>/<name> in lower case, got '$name'"
    login=docker.io
    repository="docker.io/$name"
    tags="$repository:$commit"$'\n'"$repository:latest"
    pull_secret=order-service-registry
    ;;
  *)
    fail "IMAGE_REGISTRY must be ecr (the default) or dockerhub, got '$registry'"
    ;;
esac

{
  echo "registry=$registry"
  echo "login-registry=$login"
  echo "repository=$repository"
  echo "tag=$commit"
  echo "tags<<EOF_TAGS"
  echo "$tags"
  echo "EOF_TAGS"
  echo "pull-secret=$pull_secret"
} >>"$GITHUB_OUTPUT"
echo "image: $repository:$commit ($registry)"
