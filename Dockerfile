# syntax=docker/dockerfile:1.7
# Container image of the order-service binary (the EKS shell).
#
#   docker build -t order-service:dev \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 8000:8000 -p 9090:9090 -e ENVIRONMENT=local order-service:dev
#   curl localhost:8000/health; curl localhost:9090/metrics
#
# Build stage: Debian bookworm, so the binary links against the same glibc as the runtime image.
# It runs on the builder's own platform and compiles for the image's (TARGETARCH), so a
# linux/amd64,linux/arm64 build needs no emulation: a native build as before, or, for the other
# architecture, Debian's cross gcc (the linker, and the C of ring) and the Rust target.
# The cache mounts keep the crates.io registry and target/ between builds; the binary is copied
# out of the cache in the same step because cache mounts are not part of the image.
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm AS build
ARG TARGETARCH
WORKDIR /src
COPY . .
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    case "$TARGETARCH" in \
      amd64) arch=x86_64 gcc=x86-64 upper=X86_64 ;; \
      arm64) arch=aarch64 gcc=aarch64 upper=AARCH64 ;; \
      *) echo "TARGETARCH=$TARGETARCH: the image is built for amd64 and arm64 only" >&2; exit 1 ;; \
    esac \
    && if [ "$arch" = "$(uname -m)" ]; then \
      cargo build --release --locked -p order-service \
      && cp target/release/order-service /order-service; \
    else \
      triple="$arch-unknown-linux-gnu" \
      && apt-get update -qq \
      && apt-get install -y -qq --no-install-recommends "gcc-$gcc-linux-gnu" "libc6-dev-$TARGETARCH-cross" >/dev/null \
      && rustup target add "$triple" \
      && env "CARGO_TARGET_${upper}_UNKNOWN_LINUX_GNU_LINKER=$arch-linux-gnu-gcc" \
        "CC_${arch}_unknown_linux_gnu=$arch-linux-gnu-gcc" \
        cargo build --release --locked -p order-service --target "$triple" \
      && cp "target/$triple/release/order-service" /order-service; \
    fi

# Runtime: glibc and libgcc only; no shell, no package manager. The binary needs no writable
# filesystem and answers its own health check.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="order-service" \
      org.opencontainers.image.description="Order management HTTP API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /order-service /usr/local/bin/order-service
USER 65532:65532
# 8000: the API (PORT); 9090: /metrics (METRICS_PORT), never exposed by the Ingress.
EXPOSE 8000 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/order-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-service"]
