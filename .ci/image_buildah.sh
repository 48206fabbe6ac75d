#!/usr/bin/env bash
# The real image, built by buildah (Debian's package, daemonless) from the Dockerfile as it
# is, with no registry: the two base images it names cannot be pulled here, so stand-ins are
# assembled from Debian's packages and stored under the same names.
#   rust:1.95.0-slim-bookworm        gcc, libc6-dev, dash, coreutils and their dependencies,
#                                    cargo/rustc linked from the toolchain this machine has
#                                    (mounted read-only during the build)
#   gcr.io/distroless/cc-debian12:nonroot
#                                    libc6, libgcc-s1, libstdc++6, libgomp1, tzdata, netbase,
#                                    CA bundle, nonroot (65532) in /etc/passwd, as distroless has
# Packages come from the machine's own apt sources (Debian bookworm here, as the real images).
# The Dockerfile's cache mounts are bound to the local cargo cache and target/image (buildah
# keeps a mount without an id under /var/tmp/buildah-cache/<target>), in a private mount
# namespace, so the build finds the release tree the perf stage and .ci/image_test.py left
# there. The stand-in rust image keeps cargo offline. Usage: .ci/image_buildah.sh WORK_DIR
# (prints the image name)
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
work="$1"
# Progress to stderr; stdout carries only the image name.
exec 3>&1 1>&2
image=localhost/order-service:ci

rust_base=docker.io/library/rust:1.95.0-slim-bookworm
runtime_base=gcr.io/distroless/cc-debian12:nonroot
rust_version="${rust_base#*:}"
rust_version="${rust_version%%-*}"
toolchain="$(dirname "$(dirname "$(rustup which cargo)")")"
if [ "$(rustc --version | awk '{ print $2 }')" != "$rust_version" ]; then
  echo "note: the Dockerfile builds with Rust $rust_version; the stand-in has this machine's $(rustc --version)"
fi

# A base is rebuilt when this script changes, so an edited recipe never meets a stale image.
recipe="$(sha256sum "$0" | cut -c1-16)"
have_base() {
  [ "$(buildah inspect --type image --format '{{ index .ImageAnnotations "org.order-service.recipe" }}' "$1" 2>/dev/null)" = "$recipe" ]
}

# unpack ROOTFS PACKAGE...: Debian packages' files into a merged-/usr root (no maintainer scripts).
unpack() {
  local root="$1" deb
  shift
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$work/debs"
  for dir in bin sbin lib lib64; do ln -sfn "usr/$dir" "$root/$dir"; done
  (cd "$work/debs" && { apt-get download -qq "$@" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$@"; }; })
  for deb in "$work"/debs/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" --keep-directory-symlink
  done
  rm -f "$work"/debs/*.deb
}

commit_base() {
  local root="$1" name="$2" container
  shift 2
  container=$(buildah from scratch)
  # cp -a keeps owners (nonroot's home); buildah copy would make everything root's.
  cp -a "$root/." "$(buildah mount "$container")/"
  buildah umount "$container" >/dev/null
  buildah config --annotation "org.order-service.recipe=$recipe" "$@" "$container"
  buildah commit -q --rm "$container" "$name" >/dev/null
}

if ! have_base "$rust_base"; then
  log "assembling $rust_base from Debian packages"
  root="$work/rust-root"
  # shellcheck disable=SC2046 # one word per package
  unpack "$root" $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances gcc libc6-dev dash coreutils 2>/dev/null | grep -v '^[ <]' | sort -u)
  ln -sfn gcc "$root/usr/bin/cc" # update-alternatives' job in a real install
  mkdir -p "$root/usr/local/cargo/bin" "$root/usr/local/rustup/toolchains/$rust_version-x86_64-unknown-linux-gnu" "$root/tmp"
  chmod 1777 "$root/tmp"
  for bin in cargo rustc rustdoc; do
    ln -sfn "../../rustup/toolchains/$rust_version-x86_64-unknown-linux-gnu/bin/$bin" "$root/usr/local/cargo/bin/$bin"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  commit_base "$root" "$rust_base" \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env CARGO_HOME=/usr/local/cargo --env RUSTUP_HOME=/usr/local/rustup --env "RUST_VERSION=$rust_version" \
    --env CARGO_NET_OFFLINE=true
  rm -rf "$root"
fi

if ! have_base "$runtime_base"; then
  log "assembling $runtime_base from Debian packages"
  root="$work/runtime-root"
  # The libraries with their dependencies (gcc-<n>-base), tzdata and netbase for their data.
  # shellcheck disable=SC2046 # one word per package
  unpack "$root" tzdata netbase $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances libc6 libgcc-s1 libstdc++6 libgomp1 2>/dev/null | grep -v '^[ <]' | sort -u)
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
  chmod 700 "$root/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$root/etc/group"
  commit_base "$root" "$runtime_base" --user 65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  rm -rf "$root"
fi

log "buildah bud (the Dockerfile as it is; context from .dockerignore by buildah's own reader)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
mkdir -p "$cargo_home/registry" "$cargo_home/git" "$ROOT/target/image"
# Chroot isolation: the only one that runs here (crun refuses this machine's hybrid cgroups).
# It shares the host network; CARGO_NET_OFFLINE in the stand-in base keeps cargo off it.
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private bash -euc '
  for pair in "$1/registry:usr/local/cargo/registry" "$1/git:usr/local/cargo/git" "$2:src/target"; do
    mkdir -p "/var/tmp/buildah-cache/${pair#*:}"
    mount --bind "${pair%%:*}" "/var/tmp/buildah-cache/${pair#*:}"
  done
  shift 2
  buildah bud "$@"
' bash "$cargo_home" "$ROOT/target/image" \
  --pull=never --isolation=chroot --format=docker --layers=false --quiet \
  --volume "$toolchain:/usr/local/rustup/toolchains/$rust_version-x86_64-unknown-linux-gnu:ro" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$image" .
# The image this replaced is left without a name; drop it so runs do not pile up.
buildah rmi --prune >/dev/null 2>&1 || true
echo "$image" >&3
