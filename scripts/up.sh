#!/usr/bin/env bash
# Starts the whole stack on the sample input, in the seed's order, waiting for
# each service to be ready; prints the URL to play; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
PROFILE="${PROFILE:-release}"
echo "[up] building ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --bins -q; else cargo build --bins -q; fi
BIN="target/$PROFILE"
[ "$PROFILE" = dev ] && BIN=target/debug

: "${SERVER_ONE_PORT:=8080}" "${SERVER_TWO_PORT:=9090}" "${REPORTER_PORT:=2000}"
: "${ORIGIN_PORT:=8001}" "${PROXY_PORT:=8002}"
export SERVER_ONE_PORT SERVER_TWO_PORT REPORTER_PORT ORIGIN_PORT PROXY_PORT
# Only this run's discovery may report: a fresh token unless one is given.
if [ -z "${REPORTER_TOKEN:-}" ] && [ -z "${REPORTER_TOKEN_FILE:-}" ]; then
  REPORTER_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  export REPORTER_TOKEN
fi

pids=()
stop() {
  trap - INT TERM
  echo "[up] stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Servers drain within 10 s; anything still there after 15 s is killed.
  for _ in $(seq 1 150); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM EXIT

start() {
  local name=$1
  # The service itself is the background job (so $! is its pid); its output
  # goes through sed for the [name] prefix.
  "$BIN/$name" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}

wait_http() {
  local name=$1 url=$2
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "[up] $name did not become ready at $url" >&2
  stop
}

start worker
for _ in $(seq 1 150); do [ -f "${OUTPUT_STREAM_PATH:-./output}/live01/playlist.m3u8" ] && break; sleep 0.2; done
start server1;   wait_http server1 "http://localhost:$SERVER_ONE_PORT/healthcheck"
start server2;   wait_http server2 "http://localhost:$SERVER_TWO_PORT/healthcheck"
start reporter;  wait_http reporter "http://localhost:$REPORTER_PORT/healthcheck"
start discovery
start origin;    wait_http origin "http://localhost:$ORIGIN_PORT/healthcheck"
start proxy;     wait_http proxy "http://localhost:$PROXY_PORT/healthcheck"
wait_http "live01 via the proxy" "http://localhost:$PROXY_PORT/live01/playlist.m3u8"
cat <<MSG

  nonstop is live. Play in Safari, VLC, ffplay or any HLS player:

      http://localhost:$PROXY_PORT/live01/playlist.m3u8

  Ctrl-C stops every service.

MSG
wait
