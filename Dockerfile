# syntax=docker/dockerfile:1.7
#
# One image for the three programs of crm-webhook-sync: crm-api, delivery-worker and webhook-sink, all in
# /usr/local/bin. The default (last) stage has no ENTRYPOINT: docker-compose.yml and the Kubernetes manifests in
# deploy/ name the program and its subcommand. Per-program targets with a default CMD exist for plain `docker run`:
#
#   docker build -t crm-webhook-sync .                              # all three programs (what compose and k8s use)
#   docker build --target crm-api -t crm-api .                       # same files, CMD ["crm-api", "serve"]
#   docker run --rm crm-webhook-sync delivery-worker --version
#
# The migrations in migrations/ are embedded into the binaries at compile time (sqlx::migrate! in
# crates/service-common/src/db.rs), as are the OpenAPI document and the web console, so nothing else is copied.
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

############################################################################################################
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# SQLX_OFFLINE: sqlx's checked queries compile against the committed query data (.sqlx/), never a database.
ENV CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# A workspace needs every member's manifest to resolve, so the whole source tree (less .dockerignore) goes in at
# once; the cache mounts keep the crates.io downloads and the compiled dependencies between builds instead.
COPY . .

# The target directory is a cache mount, so its contents are not part of the layer: the binaries are copied out
# to /out in the same step.
RUN --mount=type=cache,id=crm-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=crm-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=crm-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p crm-api -p delivery-worker -p crm-bench \
    && mkdir -p /out \
    && install -m 0755 target/release/crm-api target/release/delivery-worker target/release/webhook-sink /out/

############################################################################################################
FROM ${RUNTIME_IMAGE} AS runtime

# ca-certificates: the system trust store, for TLS clients that read it (NATS or PostgreSQL over TLS).
# curl: the compose healthchecks call /readyz with it, as the programs have no health subcommand.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid; deploy/base sets the same numbers in runAsUser/runAsGroup.
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin crm

COPY --from=builder /out/crm-api /out/delivery-worker /out/webhook-sink /usr/local/bin/

USER 10001:10001
WORKDIR /
# crm-api (CRM_API_ADDR), delivery-worker health and metrics (WORKER_ADDR), webhook-sink (--listen).
EXPOSE 8080 9090 9100

############################################################################################################
# Convenience targets: the same files with a default command.
FROM runtime AS crm-api
CMD ["crm-api", "serve"]

FROM runtime AS delivery-worker
CMD ["delivery-worker", "serve"]

FROM runtime AS webhook-sink
CMD ["webhook-sink", "--listen", "0.0.0.0:9100"]

############################################################################################################
# Default target: all three programs, no ENTRYPOINT; the caller names the program.
FROM runtime AS all
CMD ["crm-api", "--help"]
