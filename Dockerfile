# syntax=docker/dockerfile:1
#
# shadowcat in a container: a multi-stage build (the Rust toolchain stays in the build stage),
# run as a non-root user under tini, with a HEALTHCHECK on /healthz. By default the proxy serves
# the built-in demo MCP server on 0.0.0.0:8080 inside the container.
#
#   docker build --build-arg GIT_REV="$(git rev-parse --short=12 HEAD)" -t shadowcat .
#   docker run --rm -p 127.0.0.1:8080:8080 shadowcat
#   curl -s http://127.0.0.1:8080/healthz
#
# Anything after the image name replaces the default command (the flags of `shadowcat`), e.g.
#   docker run --rm -p 127.0.0.1:8080:8080 -v "$PWD/tokens:/etc/shadowcat/tokens:ro" shadowcat \
#     reverse --bind 0.0.0.0:8080 --auth-tokens /etc/shadowcat/tokens --upstream http://mcp:3001/mcp
#
# A stdio upstream needs its program inside the image: build FROM this one and install it.
# Not built on the development machines (no Docker engine there): read and reviewed, untested.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# The revision `shadowcat --version` prints: .git is not in the build context (.dockerignore).
ARG GIT_REV=unknown
ENV SHADOWCAT_GIT_REV=${GIT_REV}
WORKDIR /src
COPY . .
# The registry and target folders are cache mounts, so a rebuild after a source change only
# recompiles the crate; the binary is copied out of the (unpersisted) target mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin shadowcat \
    && install -D -m 0755 target/release/shadowcat /out/shadowcat \
    && /out/shadowcat --version

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: the system roots for https upstreams and JWKS URLs. tini: PID 1, which
# forwards SIGTERM to shadowcat and reaps orphans that stdio children's own children may leave.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin shadowcat
COPY --from=build /out/shadowcat /usr/local/bin/shadowcat
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# bash's /dev/tcp: no curl in the image. Any answer but 200 (or none within the timeout) fails.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/shadowcat"]
# --shutdown-grace 5s: in-flight requests get 5 s, the stdio children up to 4 s more, within
# `docker stop`'s default 10 s before SIGKILL.
CMD ["reverse", "--bind", "0.0.0.0:8080", "--shutdown-grace", "5s"]
