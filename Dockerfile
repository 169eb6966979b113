# syntax=docker/dockerfile:1.7
# One image recipe for all four QuizStats services. Build one service with
#   docker build --build-arg SERVICE=gateway -t quizstats/gateway .
# SERVICE is one of gateway, analyzer, scraper-worker, stats-broadcaster.
#
# Stages: `planner` reduces the workspace to its manifests, `deps` compiles only the
# dependencies from those manifests (this layer is reused until Cargo.toml/Cargo.lock change),
# `builder` compiles the workspace, `runtime` is Debian slim with the one binary, its config
# and a non-root user. BuildKit cache mounts keep the cargo registry between builds.
#
# `runtime` starts FROM `runtime-${SERVICE}`: the same slim base for every service except the
# scraper-worker, whose image also carries Debian's Chromium and chromedriver. The browser runs
# inside the worker's container on purpose: Chromium is started with
# `--proxy-server=http://127.0.0.1:<port>`, the worker's own per-session egress proxy (the SSRF
# policy, see services/scraper-worker/src/egress), and raw HTML is opened as file:// paths in
# the worker's /tmp; a browser in another container would have neither, and its own route to
# the network. BuildKit builds only the `runtime-*` stage the SERVICE names, so the other
# images stay slim and no `--target` is needed.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
# Global so that the `runtime` stage's FROM can name the service's base stage.
ARG SERVICE

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

FROM debian:${DEBIAN_RELEASE}-slim AS runtime-base
# curl is the healthcheck probe; ca-certificates for a hosted LLM over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 quizstats \
    && useradd --system --uid 10001 --gid quizstats --no-create-home --shell /usr/sbin/nologin quizstats

FROM runtime-base AS runtime-gateway
FROM runtime-base AS runtime-analyzer
FROM runtime-base AS runtime-stats-broadcaster

# The scraper-worker spawns `chromedriver` (from PATH) and `/usr/bin/chromium` itself (the
# defaults of webdriver.chromedriver and webdriver.chromium; webdriver.url stays empty).
# fonts-liberation: pages render text with real metrics. Chromium runs headless with
# --no-sandbox (no extra capabilities) under a read-only root filesystem: everything it
# writes goes to /tmp (a fresh --user-data-dir per session, its shared memory with
# --disable-dev-shm-usage, the raw-HTML files), which compose and Kubernetes mount writable.
FROM runtime-base AS runtime-scraper-worker
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium chromium-driver fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
# The user has no home: HOME and the XDG folders (fontconfig cache, Chromium's ~/.pki and
# crash reports) point at the writable /tmp.
ENV HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    QUIZSTATS_WEBDRIVER__CHROMEDRIVER=/usr/bin/chromedriver \
    QUIZSTATS_WEBDRIVER__CHROMIUM=/usr/bin/chromium

FROM runtime-${SERVICE} AS runtime
ARG SERVICE
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
