# syntax=docker/dockerfile:1.7
# One image recipe for all four QuizStats services. Build one service with
#   docker build --build-arg SERVICE=gateway -t quizstats/gateway .
# SERVICE is one of gateway, analyzer, scraper-worker, stats-broadcaster.
#
# Stages: `planner` reduces the workspace to its manifests, `deps` compiles only the
# dependencies from those manifests (this layer is reused until Cargo.toml/Cargo.lock change),
# `builder` compiles the workspace, `runtime` is Debian slim with the one binary, its config
# and a non-root user. BuildKit cache mounts keep the cargo registry between builds.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS toolchain
# aws-lc-sys (rustls' default crypto provider) builds C with cmake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Every manifest, with each crate's sources replaced by empty stubs: enough for cargo to
# resolve and build the dependency graph without the workspace's own code.
FROM toolchain AS planner
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY services services
COPY xtask xtask
RUN find crates services xtask -type f ! -name Cargo.toml -delete \
    && for manifest in $(find crates services xtask -name Cargo.toml); do \
         dir=$(dirname "$manifest"); mkdir -p "$dir/src"; \
         echo 'fn main() {}' > "$dir/src/main.rs"; : > "$dir/src/lib.rs"; \
       done

FROM toolchain AS deps
COPY --from=planner /src /src
COPY proto proto
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked \
      -p gateway -p analyzer -p scraper-worker -p stats-broadcaster 2>/dev/null || true

FROM deps AS builder
ARG SERVICE
COPY . .
# The stubs' fingerprints are older than the real sources, so cargo rebuilds only our crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    test -n "${SERVICE}" \
    && touch crates/*/src/lib.rs services/*/src/*.rs \
    && cargo build --release --locked --bin "${SERVICE}" \
    && install -D "target/release/${SERVICE}" /out/service

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG SERVICE
# curl is the healthcheck probe; ca-certificates for a hosted LLM over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 quizstats \
    && useradd --system --uid 10001 --gid quizstats --no-create-home --shell /usr/sbin/nologin quizstats
WORKDIR /app
COPY --from=builder /out/service /app/service
COPY config /app/config
ENV QUIZSTATS_ENV=prod \
    QUIZSTATS_CONFIG_DIR=/app/config \
    QUIZSTATS_SERVICE=${SERVICE}
USER 10001:10001
LABEL org.opencontainers.image.source="https://github.com/quizstats/quizstats" \
      org.opencontainers.image.title="quizstats-${SERVICE}"
ENTRYPOINT ["/app/service"]
