# One image runs any nonstop service by its command:
#   docker build -t nonstop .
#   docker run --rm -v $PWD/input:/app/input -v $PWD/output:/app/output nonstop worker
#   docker run --rm -p 8080:8080 -v $PWD/output:/app/output nonstop server1
#   docker run --rm -p 8002:8002 -e ORIGIN_URL=http://origin:8001 nonstop proxy
#   docker run --rm -p 8003:8003 -e ORIGIN_URL=http://origin:8001 -e PROXY_URL=http://localhost:8002 nonstop console
# Package lists match scripts/setup.sh.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY pipelines ./pipelines
RUN cargo build --release --bins \
 && mkdir /out \
 && for b in worker server1 server2 reporter discovery origin proxy console probe faultproxy; do cp target/release/$b /out/; done

# hls.js for the console's page, from the npm registry at build time (pinned by
# web/package-lock.json), never fetched by the page at run time.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY pipelines /app/pipelines
COPY web/console.html web/console.js /app/web/
COPY --from=web /web/node_modules/hls.js/dist/hls.min.js /app/web/node_modules/hls.js/dist/hls.min.js
WORKDIR /app
ENV INPUT_STREAM_PATH=/app/input OUTPUT_STREAM_PATH=/app/output LISTEN_HOST=0.0.0.0 CONSOLE_ASSETS=/app/web
EXPOSE 8080 9090 2000 8001 8002 8003
# The service to run is the command: worker, server1, server2, reporter,
# discovery, origin, proxy or console.
CMD ["proxy"]
