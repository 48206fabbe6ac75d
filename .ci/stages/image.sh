#!/usr/bin/env bash
# The container image without a Docker engine (.ci/image_test.py): the build context that
# Docker's client assembles from .dockerignore, the Dockerfile's build stage run in it offline
# from the cargo cache, and the binary run as the image runs it (uid 65532, read-only root,
# HEALTHCHECK against a started instance). hadolint covers the Dockerfile's form in the chart
# stage; pulling the base images and pushing happen only in the delivery pipeline.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

ensure_apt bwrap bubblewrap
ensure_pip docker
ensure_pip dockerfile-parse

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "image: build context, build stage, run as the image runs it"
"$VENV/bin/python" .ci/image_test.py "$ROOT" "$work"
