# One multi-stage Dockerfile for every service:
#   docker build --build-arg SERVICE=nanny-analyzer -t nanny/analyzer:dev .
# protox compiles the protos in Rust, so the build stage needs no protoc.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "${SERVICE}" && \
    cargo build --release --locked --bin "${SERVICE}" && \
    cp "target/release/${SERVICE}" /service

# distroless/cc: glibc and CA certificates, no shell, non-root by default.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.source="https://github.com/nanny-ai/nanny" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /service /usr/local/bin/service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]
