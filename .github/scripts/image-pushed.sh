#!/usr/bin/env bash
# Whether deliver.yml builds and pushes REPOSITORY:TAG, written to $GITHUB_OUTPUT as
# push=true or push=false.
#   usage: image-pushed.sh REGISTRY REPOSITORY TAG     REGISTRY: ecr | dockerhub
#
# ECR tags are immutable, so a second push of a tag is refused: a re-run of the same commit
# finds its tag and pushes nothing (the tag is the commit SHA, so the image there is the one
# this commit built). Any other error (no repository, access denied) fails here, by name.
# Docker Hub tags are mutable: they are pushed again, which a re-run tolerates.
set -euo pipefail

registry="${1:?usage: image-pushed.sh REGISTRY REPOSITORY TAG}"
repository="${2:?usage: image-pushed.sh REGISTRY REPOSITORY TAG}"
tag="${3:?usage: image-pushed.sh REGISTRY REPOSITORY TAG}"
: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"

push=true
if [ "$registry" = ecr ]; then
  err=$(mktemp)
  trap 'rm -f "$err"' EXIT
  host="${repository%%/*}"
  name="${repository#*/}"
  account="${host%%.*}"
  if digest=$(aws ecr describe-images --registry-id "$account" --repository-name "$name" \
    --image-ids imageTag="$tag" --query 'imageDetails[0].imageDigest' --output text 2>"$err"); then
    push=false
    echo "$repository:$tag is already in ECR ($digest): nothing to push"
    echo "### image: \`$repository:$tag\` already pushed ($digest), not rebuilt" >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
  elif grep -q ImageNotFoundException "$err"; then
    echo "$repository:$tag is not in ECR yet: building and pushing it"
  else
    echo "::error::cannot read $repository from ECR: $(tr '\n' ' ' <"$err")" >&2
    exit 1
  fi
fi
echo "push=$push" >>"$GITHUB_OUTPUT"
