# nonstop's images, two targets from one build (only the product crate; the test
# lab in lab/ is never built nor shipped):
#   worker    the GStreamer worker, with the GStreamer plugins it runs
#   services  server1, server2, reporter, discovery, origin, proxy, console and
#             status: HTTP only, no GStreamer (the default target)
# Both run as the user `nonstop`, uid 10001, gid 10001: a bind-mounted output
# folder must be writable by that uid (sudo chown -R 10001:10001 output) or run
# with --user "$(id -u):$(id -g)". Each image's HEALTHCHECK asks the running
# service's GET /healthcheck (scripts/healthcheck.sh, bash only).
#
#   docker build --target worker -t nonstop-worker .
#   docker build --target services -t nonstop .
#   docker network create nonstop
#   export HOST_IP="$(hostname -I | cut -d" " -f1)"  # for the console, below
#   export VIEWER_HOST_PORT=8002  # the proxy's port on the host: viewers and the console
#   export REPORTER_TOKEN="$(head -c 24 /dev/urandom | base64)"  # reporter, discovery, origin
#   docker run -d --name worker --network nonstop \
#     -v "$PWD/input:/app/input:ro" -v "$PWD/output:/app/output" nonstop-worker
#   docker run -d --name server1 --network nonstop -v "$PWD/output:/app/output:ro" nonstop server1
#   docker run -d --name server2 --network nonstop -v "$PWD/output:/app/output:ro" nonstop server2
#   docker run -d --name reporter --network nonstop \
#     -e REPORTER_TOKEN -e PACKAGERS=http://server1:8080,http://server2:9090 nonstop reporter
#   docker run -d --name discovery --network nonstop -v "$PWD/output:/app/output:ro" \
#     -e REPORTER_TOKEN -e REPORTER_URL=http://reporter:2000 \
#     -e PACKAGERS=http://server1:8080,http://server2:9090 nonstop discovery
#   docker run -d --name origin --network nonstop -e REPORTER_TOKEN \
#     -e REPORTER_URL=http://reporter:2000 nonstop origin
#   docker run -d --name proxy --network nonstop -p "$VIEWER_HOST_PORT:8002" \
#     -e ORIGIN_URL=http://origin:8001 -e PACKAGERS=http://server1:8080,http://server2:9090 nonstop proxy
#   docker run -d --name console --network nonstop -p 8003:8003 \
#     -e ORIGIN_URL=http://origin:8001 -e PROXY_URL="http://$HOST_IP:$VIEWER_HOST_PORT" nonstop console
#   docker run --rm --network nonstop -e ORIGIN_URL=http://origin:8001 -e PROXY_URL=http://proxy:8002 nonstop status
# The console's PROXY_URL must reach the proxy both from the viewer's browser
# (it plays from there) and from the console's container (it reads /status).
# Package lists match scripts/setup.sh. scripts/check-image-build.sh (run by
# scripts/test.sh) replays the build stage below outside Docker, so keep its
# RUN lines relative to WORKDIR.

# Pinned to the crate's rust-version (Cargo.toml).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Two programs are built (release, stripped: Cargo.toml says why): `worker`,
# and `nonstop-services`, the eight HTTP programs in one file (one copy of the
# libraries they share instead of eight; each program's own name is a link
# to it, see the services stage).
# Dependencies first, in their own layer: the manifests with stub sources (an
# empty lib and the two programs' mains), so a source change does not
# rebuild every dependency. Cargo loads every workspace member, so the lab gets
# its manifest and empty stubs for the targets it names (a lib, each [[bench]]):
# it is never built here. The stub's own artifacts are cleaned so the real
# sources, whose times may be older, are never taken for built.
COPY Cargo.toml Cargo.lock ./
COPY lab/Cargo.toml lab/
RUN mkdir -p src/bin lab/src lab/benches \
 && touch src/lib.rs lab/src/lib.rs \
 && echo 'fn main() {}' > src/bin/worker.rs \
 && echo 'fn main() {}' > src/bin/nonstop-services.rs \
 && for b in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' lab/Cargo.toml); do \
      echo 'fn main() {}' > "lab/benches/$b.rs"; \
    done \
 && cargo build --release --locked -p nonstop --bin worker --bin nonstop-services \
 && cargo clean --release --locked -p nonstop \
 && rm -r src
COPY src ./src
COPY pipelines ./pipelines
RUN cargo build --release --locked -p nonstop --bin worker --bin nonstop-services

# hls.js for the console's page, from the npm registry at build time (pinned by
# web/package-lock.json), never fetched by the page at run time.
FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

# The worker: reads /app/input/<signal>.mp4, writes /app/output/<signal>/. Its
# user has a home for GStreamer's plugin registry cache. Only the GStreamer
# the worker loads: Debian's five plugin sets are installed and, in the same
# RUN, every file they added that the worker's elements do not load is
# deleted (scripts/worker-image.sh says how and why); once the worker is in,
# the image's build fails unless the worker's own pipelines run in it.
FROM debian:bookworm-slim AS worker
# The descriptions are compiled in; these are for gst-launch-1.0 when
# debugging, and name the elements the image keeps.
COPY pipelines /app/pipelines
COPY scripts/worker-image.sh /usr/local/lib/nonstop/worker-image.sh
RUN apt-get update \
 && dpkg-query -W -f '${Package}\n' | sort > /tmp/packages-before \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools \
 && rm -rf /var/lib/apt/lists/* \
 && bash /usr/local/lib/nonstop/worker-image.sh prune /tmp/packages-before \
 && rm /tmp/packages-before \
 && groupadd --gid 10001 nonstop \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin nonstop \
 && mkdir -p /app/input /app/output \
 && chown nonstop:nonstop /app/output
COPY --from=build /src/target/release/worker /usr/local/bin/
COPY scripts/healthcheck.sh /usr/local/bin/nonstop-healthcheck
RUN bash /usr/local/lib/nonstop/worker-image.sh check
WORKDIR /app
ENV INPUT_STREAM_PATH=/app/input OUTPUT_STREAM_PATH=/app/output LISTEN_HOST=0.0.0.0
USER 10001:10001
# /metrics and /healthcheck (WORKER_METRICS_PORT).
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["nonstop-healthcheck"]
CMD ["worker"]

# The HTTP services: the command names the one to run.
FROM debian:bookworm-slim AS services
# One program file, nonstop-services, and a link per program it holds
# (server1, server2, reporter, discovery, origin, proxy, console, status):
# called by a link's name it runs that program, flags, environment and
# --help as its own.
COPY --from=build /src/target/release/nonstop-services /usr/local/bin/
RUN /usr/local/bin/nonstop-services --link /usr/local/bin \
 && groupadd --gid 10001 nonstop \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin nonstop \
 && mkdir -p /app/output
COPY scripts/healthcheck.sh /usr/local/bin/nonstop-healthcheck
COPY web/console.html web/console.js /app/web/
COPY --from=web /web/node_modules/hls.js/dist/hls.min.js /app/web/node_modules/hls.js/dist/hls.min.js
WORKDIR /app
ENV OUTPUT_STREAM_PATH=/app/output LISTEN_HOST=0.0.0.0 CONSOLE_ASSETS=/app/web
USER 10001:10001
# server1, server2, reporter, origin, proxy, console; discovery's /metrics.
EXPOSE 8080 9090 2000 8001 8002 8003 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["nonstop-healthcheck"]
# server1, server2, reporter, discovery, origin, proxy, console or status.
CMD ["proxy"]
