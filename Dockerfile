# syntax=docker/dockerfile:1
# The Dispatch server image: `docker build -t dispatch .` then
#   docker run -p 3002:3002 -v dispatch-data:/var/lib/dispatch dispatch
# (SQLite in the volume), or set PG_DATABASE_URL for PostgreSQL (see docker-compose.yml).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them: the manifests and the
# lock file, with empty crate roots.
COPY Cargo.toml Cargo.lock ./
COPY dispatch-core/Cargo.toml dispatch-core/
COPY dispatch-adapters/Cargo.toml dispatch-adapters/
COPY dispatch-server/Cargo.toml dispatch-server/
RUN mkdir -p dispatch-core/src dispatch-adapters/src dispatch-server/src \
    && touch dispatch-core/src/lib.rs dispatch-adapters/src/lib.rs \
    && echo 'fn main() {}' > dispatch-server/src/main.rs \
    && cargo fetch --locked
COPY . .
RUN cargo build --release --locked -p dispatch-server --bin dispatch \
    && install -m 0755 target/release/dispatch /usr/local/bin/dispatch

FROM debian:bookworm-slim
# ca-certificates: TLS to GitHub, Anthropic, Sentry and managed PostgreSQL; git: the local runner's
# worktrees (the GitHub Actions runner needs nothing else).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/dispatch --create-home dispatch
COPY --from=build /usr/local/bin/dispatch /usr/local/bin/dispatch
# The agent workflow templates are also embedded in the binary (`dispatch workflows install`);
# this copy is for reading and for mounting into repositories.
COPY workflows /usr/share/dispatch/workflows
USER 10001:10001
WORKDIR /var/lib/dispatch
ENV HOST=0.0.0.0 \
    PORT=3002 \
    DATABASE_URL=/var/lib/dispatch/dispatch.db \
    LOG_FORMAT=json
EXPOSE 3002
VOLUME ["/var/lib/dispatch"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["dispatch", "health"]
ENTRYPOINT ["dispatch"]
CMD ["serve"]
