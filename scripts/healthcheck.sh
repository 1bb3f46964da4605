#!/usr/bin/env bash
# The images' HEALTHCHECK: GET /healthcheck on the running nonstop service and
# succeed only on a 200, with bash's /dev/tcp (no curl or wget in the images).
# The service is the first argument, or else the nonstop program found among the
# container's processes (PID 1, or its child under `docker run --init`). Its port
# comes from the same variable as the service's own (default alike), so pass
# ports as variables, not flags.
set -euo pipefail

# Seconds to wait for the status line: under the Dockerfile's --timeout (3 s),
# so a hung service fails with a message rather than by being killed.
ANSWER_SECONDS=2

SERVICES=(server1 server2 reporter discovery origin proxy console worker)

service=${1:-}
if [ -z "$service" ]; then
  for comm in /proc/[0-9]*/comm; do
    name=$(cat "$comm" 2>/dev/null) || continue
    for s in "${SERVICES[@]}"; do
      if [ "$name" = "$s" ]; then service=$s; break 2; fi
    done
  done
fi

case "$service" in
  server1) port=${SERVER_ONE_PORT:-8080} ;;
  server2) port=${SERVER_TWO_PORT:-9090} ;;
  reporter) port=${REPORTER_PORT:-2000} ;;
  origin) port=${ORIGIN_PORT:-8001} ;;
  proxy) port=${PROXY_PORT:-8002} ;;
  console) port=${CONSOLE_PORT:-8003} ;;
  discovery) port=${DISCOVERY_METRICS_PORT:-9101} ;;
  worker) port=${WORKER_METRICS_PORT:-9100} ;;
  '') echo "healthcheck: no nonstop service running" >&2; exit 1 ;;
  *) echo "healthcheck: unknown service '$service'" >&2; exit 1 ;;
esac

host=${LISTEN_HOST:-127.0.0.1}
case "$host" in 0.0.0.0 | '::' | '[::]') host=127.0.0.1 ;; esac

exec 3<>"/dev/tcp/$host/$port"
printf 'GET /healthcheck HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$host" "$port" >&3
if ! read -r -t "$ANSWER_SECONDS" status_line <&3; then
  echo "healthcheck: $service on $host:$port did not answer within $ANSWER_SECONDS s" >&2
  exit 1
fi
exec 3<&-
case "$status_line" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "healthcheck: $service on $host:$port answered: ${status_line%$'\r'}" >&2; exit 1 ;;
esac
