#!/usr/bin/env bash
# Starts the whole stack on the sample input, in the seed's order, waiting for
# each service to be ready, then the operator's console; prints the URL to play
# and the console's URL; Ctrl-C stops everything.
#
# TOPOLOGY picks how the media is made (both keep the proxy's failover):
#   redundant (default)  no single part left: two epoch-locked workers that
#                        never talk, each on its own folder, each feeding its
#                        own packager, each folder watched by its own discovery:
#                          worker   -> OUTPUT_A (./output-a) -> server1 -+
#                          worker-b -> OUTPUT_B (./output-b) -> server2 -+-> proxy
#                        Both number, date and timestamp segments from the wall
#                        clock (EPOCH, see `worker --help`), so the proxy can take
#                        segment n from one and n+1 from the other; kill either
#                        worker (or its disk) and viewers keep playing.
#                        Worker B's metrics are on WORKER_B_METRICS_PORT (9110),
#                        its discovery's on DISCOVERY_B_METRICS_PORT (9111).
#   seed                 the seed's topology: one worker writing
#                        OUTPUT_STREAM_PATH (./output), served by both packagers.
#
# PROFILE=dev builds and runs a debug build instead of the release one.
#
# CONSOLE_DEMO_FAULTS=1 puts a fault proxy (localhost only) in front of each
# packager and turns the console's fault controls on, protected by
# CONSOLE_FAULT_TOKEN (a random one is made and printed when it is not set).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# The build every `just` recipe runs too (scripts/build.sh), so switching
# between `just up` and `just proxy` never rebuilds; PROFILE picks release
# (default) or dev.
export PROFILE="${PROFILE:-release}"
build() {
  echo "[up] building ($PROFILE)"
  ./scripts/build.sh
}
case "${1:-}" in
  "") ;;
  # The build step alone (scripts/check-build.sh proves the recipes share it).
  --build-only) build; exit 0 ;;
  *) echo "usage: scripts/up.sh [--build-only]" >&2; exit 2 ;;
esac
./scripts/setup.sh
build
BIN=$(./scripts/build.sh --bin-dir)

: "${SERVER_ONE_PORT:=8080}" "${SERVER_TWO_PORT:=9090}" "${REPORTER_PORT:=2000}"
: "${ORIGIN_PORT:=8001}" "${PROXY_PORT:=8002}"
export SERVER_ONE_PORT SERVER_TWO_PORT REPORTER_PORT ORIGIN_PORT PROXY_PORT
# A bit-rate ladder (720p, 480p, 360p from one decode) with low-latency parts
# unless told otherwise; LADDER=single is the seed's one rendition.
: "${LADDER:=recommended}"
export LADDER
# Only this run's discovery may report: a fresh token unless one is given.
if [ -z "${REPORTER_TOKEN:-}" ] && [ -z "${REPORTER_TOKEN_FILE:-}" ]; then
  REPORTER_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  export REPORTER_TOKEN
fi
: "${CONSOLE_PORT:=8003}" "${CONSOLE_DEMO_FAULTS:=0}"
: "${TOPOLOGY:=redundant}"
case "$TOPOLOGY" in
  redundant)
    : "${OUTPUT_A:=./output-a}" "${OUTPUT_B:=./output-b}"
    : "${WORKER_B_METRICS_PORT:=9110}" "${DISCOVERY_B_METRICS_PORT:=9111}"
    OUT_ONE="$OUTPUT_A"; OUT_TWO="$OUTPUT_B"
    : "${WORKERS:=http://localhost:${WORKER_METRICS_PORT:-9100},http://localhost:$WORKER_B_METRICS_PORT}"
    ;;
  seed)
    OUT_ONE="${OUTPUT_STREAM_PATH:-./output}"; OUT_TWO="$OUT_ONE"
    : "${WORKERS:=http://localhost:${WORKER_METRICS_PORT:-9100}}"
    ;;
  *) echo "[up] TOPOLOGY must be redundant or seed, not '$TOPOLOGY'" >&2; exit 2 ;;
esac
echo "[up] topology: $TOPOLOGY"
if [ "$CONSOLE_DEMO_FAULTS" = 1 ]; then
  : "${FAULT_ONE_PORT:=8081}" "${FAULT_TWO_PORT:=9091}"
  # Discovery and the proxy reach the packagers through the fault proxies.
  export PACKAGERS="http://127.0.0.1:$FAULT_ONE_PORT,http://127.0.0.1:$FAULT_TWO_PORT"
  export CONSOLE_FAULTS="server1=http://127.0.0.1:$FAULT_ONE_PORT,server2=http://127.0.0.1:$FAULT_TWO_PORT"
  : "${CONSOLE_FAULT_TOKEN:=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')}"
  export CONSOLE_FAULT_TOKEN
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
  local name=$1 label=${2:-$1}
  # The service itself is the background job (so $! is its pid); its output
  # goes through sed for the [label] prefix. Variables set before the call
  # (VAR=value start ...) reach the service only.
  "$BIN/$name" > >(sed -u "s/^/[$label] /") 2>&1 &
  pids+=($!)
}

# Like start, but a program that exits on its own (a crash, kill -9, the OOM
# killer) is started again after 1 s, then 2, 4, 8, at most 10 s between tries
# (back to 1 s after a run of a minute). The workers run this way: a worker
# that dies rejoins the wall-clock position with the same numbering, and the
# proxy plays from the other worker meanwhile. In production the same job is
# systemd's `Restart=always` or a container's `restart: unless-stopped`.
supervise() {
  local name=$1 label=${2:-$1}
  (
    child=
    trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' INT TERM
    delay=1
    while true; do
      began=$SECONDS
      "$BIN/$name" > >(sed -u "s/^/[$label] /") 2>&1 &
      child=$!
      status=0; wait "$child" || status=$?
      [ $((SECONDS - began)) -ge 60 ] && delay=1
      echo "[up] $label exited (status $status); starting it again in ${delay} s"
      sleep "$delay"
      delay=$((delay * 2)); [ "$delay" -gt 10 ] && delay=10
    done
  ) &
  pids+=($!)
}

wait_playlist() {
  for _ in $(seq 1 150); do [ -f "$1/live01/playlist.m3u8" ] && return 0; sleep 0.2; done
}

start_fault() {
  local label=$1 port=$2 upstream=$3
  "$BIN/faultproxy" --listen "127.0.0.1:$port" --upstream "$upstream" > >(sed -u "s/^/[$label] /") 2>&1 &
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

OUTPUT_STREAM_PATH="$OUT_ONE" supervise worker
if [ "$TOPOLOGY" = redundant ]; then
  OUTPUT_STREAM_PATH="$OUT_TWO" WORKER_METRICS_PORT="$WORKER_B_METRICS_PORT" supervise worker worker-b
fi
wait_playlist "$OUT_ONE"; wait_playlist "$OUT_TWO"
OUTPUT_STREAM_PATH="$OUT_ONE" start server1;   wait_http server1 "http://localhost:$SERVER_ONE_PORT/healthcheck"
OUTPUT_STREAM_PATH="$OUT_TWO" start server2;   wait_http server2 "http://localhost:$SERVER_TWO_PORT/healthcheck"
start reporter;  wait_http reporter "http://localhost:$REPORTER_PORT/healthcheck"
if [ "$CONSOLE_DEMO_FAULTS" = 1 ]; then
  start_fault fault1 "$FAULT_ONE_PORT" "http://localhost:$SERVER_ONE_PORT"
  start_fault fault2 "$FAULT_TWO_PORT" "http://localhost:$SERVER_TWO_PORT"
  wait_http fault1 "http://127.0.0.1:$FAULT_ONE_PORT/_fault"
  wait_http fault2 "http://127.0.0.1:$FAULT_TWO_PORT/_fault"
fi
# Discovery watches one folder: in the redundant topology each folder has its
# own, so a signal stays reported while either worker writes it.
OUTPUT_STREAM_PATH="$OUT_ONE" start discovery
if [ "$TOPOLOGY" = redundant ]; then
  OUTPUT_STREAM_PATH="$OUT_TWO" DISCOVERY_METRICS_PORT="$DISCOVERY_B_METRICS_PORT" start discovery discovery-b
fi
start origin;    wait_http origin "http://localhost:$ORIGIN_PORT/healthcheck"
start proxy;     wait_http proxy "http://localhost:$PROXY_PORT/healthcheck"
wait_http "live01 via the proxy" "http://localhost:$PROXY_PORT/live01/playlist.m3u8"
# The console last: the page plays from the proxy and reads its /status, and
# each worker's /healthcheck (WORKERS, set per topology above).
export WORKERS
export PROXY_URL="${PROXY_URL:-http://localhost:$PROXY_PORT}"
export CONSOLE_ORIGIN_URL="${ORIGIN_URL:-http://localhost:$ORIGIN_PORT}"
if [ "$CONSOLE_DEMO_FAULTS" = 1 ]; then
  ORIGIN_URL="$CONSOLE_ORIGIN_URL" LISTEN_HOST=127.0.0.1 "$BIN/console" > >(sed -u "s/^/[console] /") 2>&1 &
else
  env -u CONSOLE_FAULTS -u CONSOLE_FAULT_TOKEN ORIGIN_URL="$CONSOLE_ORIGIN_URL" "$BIN/console" > >(sed -u "s/^/[console] /") 2>&1 &
fi
pids+=($!)
wait_http console "http://localhost:$CONSOLE_PORT/healthcheck"
cat <<MSG

  nonstop is live. Play in Safari, VLC, ffplay or any HLS player:

      http://localhost:$PROXY_PORT/live01/playlist.m3u8

  Operator's console (signals, packagers, failovers, a player):

      http://localhost:$CONSOLE_PORT/

  The same as a table in a terminal (signals, packagers, workers):

      WORKERS=$WORKERS just status

MSG
if [ "$CONSOLE_DEMO_FAULTS" = 1 ]; then
  cat <<MSG
  Fault controls are on (localhost only). The console asks for this token once:

      $CONSOLE_FAULT_TOKEN

MSG
fi
cat <<MSG
  Ctrl-C stops every service.

MSG
wait
