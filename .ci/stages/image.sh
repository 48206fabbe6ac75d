#!/usr/bin/env bash
# The container image without a Docker engine (.ci/image_test.py): the build context that
# Docker's client assembles from .dockerignore, the Dockerfile's build stage run in it offline
# from the cargo cache with the release profile as it is (the dependencies come compiled from
# the perf stage, which builds in the same environment), and the binary run as the image runs
# it (uid 65532, read-only root, HEALTHCHECK against a started instance); then the real image,
# built by buildah from the Dockerfile with locally assembled base images, run the same way.
# hadolint covers the Dockerfile's form in the chart stage; the real base images and the push
# happen only in the delivery pipeline.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

ensure_build_stage

work=$(mktemp -d)

# Switching to uid 65532, the sandboxes' network namespaces, buildah and its bind mounts need
# root: as_root (.ci/lib.sh) goes through sudo on a machine where the test command runs as a
# user (a CI runner).
trap 'as_root rm -rf "$work"' EXIT

# IMAGE_PLATFORM (linux/amd64 or linux/arm64; this machine's by default) is the platform the
# build stage builds for, as TARGETPLATFORM in a buildx build; the binary must be that
# platform's. The sandbox is offline, so a platform is checked on a machine of its own
# architecture (ci.yml runs this stage on an arm64 runner for linux/arm64).
log "image: build context, build stage for ${IMAGE_PLATFORM:-the platform of this machine}, run as the image runs it"
as_root env IMAGE_PLATFORM="${IMAGE_PLATFORM:-}" "$VENV/bin/python" .ci/image_test.py "$ROOT" "$work"

# The real image: buildah builds the Dockerfile with stand-in base images assembled from
# Debian's packages (.ci/image_buildah.sh), then it runs as above. IMAGE_BUILDAH=0 skips it.
if [ "${IMAGE_BUILDAH:-1}" != 0 ]; then
  ensure_apt buildah buildah
  image_name=$(as_root bash .ci/image_buildah.sh "$work")
  log "image: run $image_name"
  as_root "$VENV/bin/python" .ci/image_test.py "$ROOT" "$work" --image "$image_name"
else
  skip "image:buildah" "IMAGE_BUILDAH=0: the real image was neither built nor run"
fi
