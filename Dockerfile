# syntax=docker/dockerfile:1.7
# Container image of the order-service binary (the EKS shell).
#
#   docker build -t order-service:dev \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 8000:8000 -p 9090:9090 -e ENVIRONMENT=local order-service:dev
#   curl localhost:8000/health; curl localhost:9090/metrics
#
# Build stage: Debian bookworm, so the binary links against the same glibc as the runtime image.
# The cache mounts keep the crates.io registry and target/ between builds; the binary is copied
# out of the cache in the same step because cache mounts are not part of the image.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p order-service \
    && cp target/release/order-service /order-service

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
