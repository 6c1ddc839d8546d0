# syntax=docker/dockerfile:1
# Build the release binary, then run it in a slim image as an unprivileged user, with the
# database on a volume at /data.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY static static
RUN cargo build --release --locked --bin doorman

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin doorman \
 && mkdir -p /data /etc/doorman && chown doorman /data
COPY --from=build /src/target/release/doorman /usr/local/bin/doorman
COPY scripts/docker-entrypoint /usr/local/bin/docker-entrypoint
# Users, sessions and signing keys live here: mount a volume.
VOLUME /data
ENV DOORMAN_DATA_DIR=/data \
    DOORMAN_LISTEN=0.0.0.0:8080 \
    DOORMAN_CONFIG=/etc/doorman/doorman.toml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]
CMD ["serve", "--log-format", "json"]
