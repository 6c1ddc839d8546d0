# syntax=docker/dockerfile:1
# Build the release binary, then run it in a slim image as an unprivileged user (doorman, uid and
# gid 10001), with the database on a volume at /data.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY static static
# The example config is compiled in (published secrets are refused, see config/validate.rs).
COPY config config
RUN cargo build --release --locked --bin doorman

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 doorman \
 && useradd --system --uid 10001 --gid doorman --home-dir /data --shell /usr/sbin/nologin doorman \
 && mkdir -p /data /etc/doorman /usr/local/lib/doorman && chown doorman:doorman /data
# The real binary, and in front of it (first on PATH) the wrapper that every `doorman` command
# goes through: the server and `docker exec CTR doorman ...` alike run as doorman, never root.
COPY --from=build /src/target/release/doorman /usr/local/lib/doorman/doorman
COPY scripts/doorman-wrapper /usr/local/bin/doorman
COPY scripts/docker-entrypoint /usr/local/bin/docker-entrypoint
RUN chmod 0755 /usr/local/bin/doorman /usr/local/bin/docker-entrypoint
# Users, sessions and signing keys live here: mount a volume.
VOLUME /data
# The config file, if any, is /etc/doorman/doorman.toml (mount it, or Fly's [[files]]); without
# one doorman runs on its defaults plus DOORMAN_* variables.
ENV DOORMAN_DATA_DIR=/data \
    DOORMAN_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/doorman"]
CMD ["serve", "--log-format", "json"]
