# The webhook's image: ghcr.io/otel-injector/otel-injector:<Cargo.toml version>, the tag manifests/ pins.
#   docker build -t ghcr.io/otel-injector/otel-injector:0.1.0 .
# Two stages: the release build, then the binary alone on distroless (glibc, CA certificates, no shell), as the
# non-root user 65532; the Deployment runs it with a read-only root filesystem (it writes nothing).
# Checked with hadolint in `make test` (no Docker engine on the build machines).

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin otel-injector \
    && strip target/release/otel-injector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/otel-injector /usr/local/bin/otel-injector
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/otel-injector"]
CMD ["serve"]
