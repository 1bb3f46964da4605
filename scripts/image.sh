#!/usr/bin/env bash
# `just image`: the Dockerfile and docker-compose.yml for real, measured.
#   1. builds both targets (worker, services) with docker when a Docker engine
#      answers, else with podman, timing each build;
#   2. prints each image's size and its program's;
#   3. starts docker-compose.yml with those images (redundant topology: two
#      workers, each with its own output volume, three proxies behind nginx);
#   4. plays the stack through the balancer's published port with the lab's
#      player probe (built on the host) while worker-a's container is
#      SIGKILLed, and reports what the viewer saw: stalls, stall time, failed
#      requests, segments played;
#   5. takes the stack down (KEEP=1 leaves it up and skips 6);
#   6. runs docs/OPERATING.md's docker lines as written (one container per
#      service on a user-defined network) and checks they serve the signal.
# Last line: "image: worker N MB, services N MB, ...; viewer: S stalls, F failed
# requests ..." or "image: FAILED at <step>: <reason>". Exit 0 only when both
# images build, the stack serves the signal and the viewer saw no stall and no
# failed request.
#
# Where no registry is reachable (these machines: no Docker Hub), podman runs
# on stand-ins for the base images the Dockerfile and the compose file name,
# made here and kept in podman's store (labelled nonstop.stand-in):
#   debian:bookworm        debootstrap --variant=minbase from the Debian mirror
#   debian:bookworm-slim   that, slimmed as the official image is (no docs but
#                          copyright files, no man pages or translations)
#   rust:<v>-bookworm      debian:bookworm + gcc, libc6-dev, git ... and this
#                          machine's rustup toolchain whose rustc is <v>
#   node:<v>-bookworm-slim debian:bookworm-slim + this machine's node and npm
#   redis:<v>-bookworm     debian:bookworm-slim + Debian's redis-server
#   nginx:<v>-bookworm     debian:bookworm-slim + Debian's nginx-light, laid
#                          out as the official image (conf.d/*.conf)
# This machine's extra CA certificates (/usr/local/share/ca-certificates) go
# into the stand-ins so that cargo and npm reach their registries from inside.
# podman here needs runc and ulimits within the machine's hard limits
# ($WORK/containers.conf); compose runs as Debian's docker-compose against
# podman's Docker API (a socket in $WORK), with podman's healthchecks run by
# this script (podman has no health scheduler without systemd).
#
# Env: ENGINE (docker | podman; default: docker if its engine answers),
#      WORK (target/image-run), NO_CACHE=1, REBUILD_BASES=1, KEEP=1,
#      PLAY_SECONDS (60), KILL_AT (20: seconds into playback), WORKER_LADDER (empty: the compose file's)
#      (single; empty: the compose file's own, the default ladder),
#      VIEWER_HOST_PORT (18000), CONSOLE_HOST_PORT (18003), the host ports the
#      stack publishes (docker-compose.yml's defaults are 8000 and 8003),
#      DOCS_LINES=0 (skip step 6), DOCS_VIEWER_PORT (18002), DOCS_CONSOLE_PORT (18013).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

WORK=${WORK:-$REPO/target/image-run}
LOG=$WORK/logs
PROJECT=nonstopimage
PLAY_SECONDS=${PLAY_SECONDS:-60}
KILL_AT=${KILL_AT:-20}
export VIEWER_HOST_PORT=${VIEWER_HOST_PORT:-18000}
export CONSOLE_HOST_PORT=${CONSOLE_HOST_PORT:-18003}
WORKER_IMAGE=nonstop-worker
SERVICES_IMAGE=nonstop
mkdir -p "$WORK" "$LOG"
started=$SECONDS

say() { printf '\033[1m[image]\033[0m %s\n' "$*" >&2; }
fail() {
  echo "image: FAILED at $1: $2"
  exit 1
}
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# --- 1. the engine -----------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
  if command -v docker > /dev/null && docker info > /dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
case "$ENGINE" in
  docker)
    if docker compose version > /dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
    BUILD_FLAGS=()
    ;;
  podman)
    need=()
    for tool in podman runc debootstrap docker-compose curl; do
      command -v "$tool" > /dev/null || need+=("$tool")
    done
    if [ ${#need[@]} -gt 0 ]; then
      say "installing ${need[*]} (apt-get)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
        > "$LOG/apt.log" 2>&1 || fail setup "apt-get install ${need[*]} (see $LOG/apt.log)"
    fi
    export CONTAINERS_CONF=$WORK/containers.conf
    cat > "$CONTAINERS_CONF" << EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
    # HEALTHCHECK survives only in Docker's image format; the host network
    # reaches the registries (crates.io, npm) the build stage needs.
    BUILD_FLAGS=(--format docker --network host)
    ;;
  *) fail setup "ENGINE must be docker or podman, not '$ENGINE'" ;;
esac
"$ENGINE" info > /dev/null 2>&1 || fail setup "$ENGINE does not run"
[ -s input/live01.mp4 ] || fail setup "no input/live01.mp4 (./scripts/setup.sh makes it)"
say "engine: $ENGINE; logs in ${LOG#"$REPO"/}"

# --- 2. base images: pulled, or stood in for ---------------------------------
mapfile -t BASES < <(awk '
  toupper($1) == "FROM" { i = 2; while ($i ~ /^--/) i++
                          if (!($i in stage)) print $i
                          if (toupper($(i + 1)) == "AS") stage[$(i + 2)] = 1 }' Dockerfile | awk '!seen[$0]++')
mapfile -t THIRD_PARTY < <(python3 -c '
import yaml
for s in (yaml.safe_load(open("docker-compose.yml"))["services"] or {}).values():
    if "build" not in s:
        print(s["image"])' | sort -u)

qualified() { case "$1" in */*) echo "$1" ;; *) echo "docker.io/library/$1" ;; esac; }
have_image() { "$ENGINE" image exists "$(qualified "$1")" 2> /dev/null; }
CA_FILES=()
for f in /usr/local/share/ca-certificates/*.crt; do [ -e "$f" ] && CA_FILES+=("$f"); done

stand_in_debian() {
  if [ "${REBUILD_BASES:-0}" != 1 ] && have_image debian:bookworm && have_image debian:bookworm-slim; then return; fi
  [ -n "${DEBIAN_DONE:-}" ] && return
  DEBIAN_DONE=1
  say "stand-in debian:bookworm and debian:bookworm-slim (debootstrap)"
  local root=$WORK/rootfs mirror
  mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2> /dev/null || true)
  rm -rf "$root"
  debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" > "$LOG/debootstrap.log" 2>&1 \
    || fail "base images" "debootstrap (see $LOG/debootstrap.log)"
  rm -f "$root/etc/apt/sources.list" "$root/etc/hostname"
  : > "$root/etc/resolv.conf"
  cat > "$root/etc/apt/sources.list.d/debian.sources" << 'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$root/usr/local/share/ca-certificates"
  [ ${#CA_FILES[@]} -eq 0 ] || cp "${CA_FILES[@]}" "$root/usr/local/share/ca-certificates/"
  # apt as in the official images: no caches kept, no recommends asked for here.
  printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
    > "$root/etc/apt/apt.conf.d/docker-clean"
  tar -C "$root" -c . | "$ENGINE" import --change 'CMD ["bash"]' --change 'LABEL nonstop.stand-in=debian:bookworm' \
    - docker.io/library/debian:bookworm > "$LOG/import.log" 2>&1 || fail "base images" "import debian:bookworm"
  # Slim: what debuerreotype's --slimify leaves out, now and on later installs.
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker" << 'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  tar -C "$root" -c . | "$ENGINE" import --change 'CMD ["bash"]' --change 'LABEL nonstop.stand-in=debian:bookworm-slim' \
    - docker.io/library/debian:bookworm-slim >> "$LOG/import.log" 2>&1 || fail "base images" "import debian:bookworm-slim"
  rm -rf "$root"
  REBUILT_DEBIAN=1
}

# Builds image $1 from the Containerfile text on stdin, context $2.
build_base() {
  local ref=$1 dir=$2
  cat > "$dir/Containerfile"
  "$ENGINE" build "${BUILD_FLAGS[@]}" --pull=never -t "$ref" "$dir" > "$LOG/base-$(basename "${ref%%:*}").log" 2>&1 \
    || fail "base image $ref" "$(tail -1 "$LOG/base-$(basename "${ref%%:*}").log")"
  rm -rf "$dir"
}

stand_in() {  # $1: an image name the Dockerfile or compose file uses
  local name=$1 version dir
  case "$name" in
    debian:bookworm | debian:bookworm-slim)
      stand_in_debian
      return
      ;;
  esac
  stand_in_debian
  if [ "${REBUILD_BASES:-0}" != 1 ] && [ -z "${REBUILT_DEBIAN:-}" ] && have_image "$name"; then return; fi
  say "stand-in $name"
  dir=$WORK/base
  rm -rf "$dir"
  mkdir -p "$dir"
  version=${name#*:}
  version=${version%%-*}
  case "$name" in
    rust:*-bookworm)
      local toolchain="" t
      for t in "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/*; do
        case "$("$t/bin/rustc" --version 2> /dev/null | awk '{print $2}')" in
          "$version" | "$version".*) toolchain=$t ;;
        esac
      done
      [ -n "$toolchain" ] || fail "base image $name" "no rustup toolchain here with rustc $version"
      local rv
      rv=$("$toolchain/bin/rustc" --version | awk '{print $2}')
      mkdir -p "$dir/rustup/toolchains/$rv-x86_64-unknown-linux-gnu" "$dir/cargo/bin"
      tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$dir/rustup/toolchains/$rv-x86_64-unknown-linux-gnu" -xf -
      printf 'version = "12"\ndefault_toolchain = "%s-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' "$rv" > "$dir/rustup/settings.toml"
      cp "${CARGO_HOME:-$HOME/.cargo}/bin/rustup" "$dir/cargo/bin/"
      for p in cargo rustc rustdoc; do ln -s rustup "$dir/cargo/bin/$p"; done
      build_base "$(qualified "$name")" "$dir" << EOF
FROM docker.io/library/debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      ca-certificates curl git gcc g++ libc6-dev make pkg-config dpkg-dev xz-utils \\
 && update-ca-certificates && rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo RUST_VERSION=$rv \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL nonstop.stand-in=$name
RUN rustc --version
EOF
      ;;
    node:*-bookworm-slim)
      local node npm
      node=$(readlink -f "$(command -v node)") || fail "base image $name" "no node here"
      npm=$(dirname "$(readlink -f "$(command -v npm)")")/..
      mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib/node_modules"
      cp "$node" "$dir/usr/local/bin/node"
      cp -a "$(readlink -f "$npm")" "$dir/usr/local/lib/node_modules/npm"
      ln -s ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/local/bin/npm"
      cat "${CA_FILES[@]}" /dev/null > "$dir/extra-ca.pem"
      say "note: $name stands in with this machine's node $("$node" --version)"
      build_base "$(qualified "$name")" "$dir" << EOF
FROM docker.io/library/debian:bookworm-slim
COPY usr /usr
COPY extra-ca.pem /usr/local/share/extra-ca.pem
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/extra-ca.pem
LABEL nonstop.stand-in=$name
RUN node --version
CMD ["node"]
EOF
      ;;
    redis:*-bookworm)
      # As the official image: protected mode off (it serves the compose
      # network, not only loopback), whatever the command's own flags.
      printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi\nexec "$@"\n' \
        > "$dir/entrypoint.sh"
      chmod 755 "$dir/entrypoint.sh"
      build_base "$(qualified "$name")" "$dir" << EOF
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
LABEL nonstop.stand-in=$name
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
      ;;
    nginx:*-bookworm)
      build_base "$(qualified "$name")" "$dir" << EOF
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \\
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \\
 && mkdir -p /etc/nginx/conf.d \\
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \\
 && nginx -t
LABEL nonstop.stand-in=$name
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
      ;;
    *) fail "base image $name" "no registry reachable and no stand-in for $name" ;;
  esac
}

PULL_FLAGS=()
if [ "$ENGINE" = podman ]; then
  if curl -s -m 8 -o /dev/null https://registry-1.docker.io/v2/ 2> /dev/null; then
    say "a registry answers: base images are pulled"
  else
    say "no registry reachable: base images stood in for (${BASES[*]} ${THIRD_PARTY[*]})"
    for b in "${BASES[@]}" "${THIRD_PARTY[@]}"; do stand_in "$b"; done
    PULL_FLAGS=(--pull=never)
  fi
fi

# --- 3. the two images -------------------------------------------------------
build() {  # $1 target, $2 tag, $3 more flags
  local t0=$SECONDS
  say "$ENGINE build --target $1 -t $2 $3 (log: ${LOG#"$REPO"/}/build-$1.log)"
  # shellcheck disable=SC2086 # $3: no flag or one
  "$ENGINE" build "${BUILD_FLAGS[@]}" "${PULL_FLAGS[@]}" $3 --target "$1" -t "$2" . \
    > "$LOG/build-$1.log" 2>&1 || fail "build --target $1" "$(grep -m1 -E '^error|^E: |FAILED|Error:' "$LOG/build-$1.log" | cut -c1-300) (see $LOG/build-$1.log)"
  printf -v "BUILD_S_$1" '%s' $((SECONDS - t0))
}
# NO_CACHE=1 rebuilds the worker from scratch, build stage included; the
# services image then reuses that build stage, as it would in any build.
build worker "$WORKER_IMAGE" "${NO_CACHE:+--no-cache}"
build services "$SERVICES_IMAGE" ""
mb() { echo $(($("$ENGINE" image inspect --format '{{.Size}}' "$1") / 1000000)); }
in_image() { "$ENGINE" run --rm --no-healthcheck --network none --entrypoint sh "$@"; }
SIZE_W=$(mb "$WORKER_IMAGE")
SIZE_S=$(mb "$SERVICES_IMAGE")
PROG_W=$(in_image "$WORKER_IMAGE" -c 'stat -L -c %s /usr/local/bin/worker')
PROG_S=$(in_image "$SERVICES_IMAGE" -c 'stat -L -c %s /usr/local/bin/nonstop-services')
LINKS=$(in_image "$SERVICES_IMAGE" -c 'cd /usr/local/bin && for f in *; do [ -L "$f" ] && printf "%s " "$f"; done')
GST=$(in_image "$WORKER_IMAGE" -c 'ls /usr/lib/x86_64-linux-gnu/gstreamer-1.0 | sed "s/^libgst//; s/\.so$//" | tr "\n" " "')
say "worker:   $SIZE_W MB, built in $(elapsed "$BUILD_S_worker") (worker program $((PROG_W / 1000)) kB; GStreamer plugins: $GST)"
say "services: $SIZE_S MB, built in $(elapsed "$BUILD_S_services") (nonstop-services $((PROG_S / 1000)) kB; links: $LINKS)"
gst=$(in_image "$SERVICES_IMAGE" -c 'for b in /usr/local/bin/*; do ldd "$b" 2>/dev/null | grep -E "libgst|not found"; done; true')
[ -z "$gst" ] || fail "services image" "a program links GStreamer or misses a library: $gst"

# --- 4. the compose stack ------------------------------------------------------
# The player first: building it beside a running stack would starve the stack.
say "building the player probe (cargo build --release -p nonstop-lab --bin probe)"
cargo build -q --release --locked -p nonstop-lab --bin probe > "$LOG/probe-build.log" 2>&1 \
  || fail probe "cargo build (see $LOG/probe-build.log)"
PROBE=${CARGO_TARGET_DIR:-$REPO/target}/release/probe
SERVICE_PID=""
HEALTH_PID=""
cleanup() {
  [ -n "$HEALTH_PID" ] && kill "$HEALTH_PID" 2> /dev/null
  if [ "${KEEP:-0}" != 1 ] && [ -n "${COMPOSE_UP:-}" ]; then
    "${COMPOSE[@]}" down -v --remove-orphans > "$LOG/compose-down.log" 2>&1 || true
  fi
  [ -n "$SERVICE_PID" ] && [ "${KEEP:-0}" != 1 ] && kill "$SERVICE_PID" 2> /dev/null
  return 0
}
trap cleanup EXIT
COMPOSE_FILE_USED=docker-compose.yml
if [ "$ENGINE" = podman ]; then
  # Debian's docker-compose (1.29) on podman's Docker API. It predates the
  # top-level `name:` (the project is named by -p instead).
  SOCKET=$WORK/podman.sock
  rm -f "$SOCKET"
  podman system service --time=0 "unix://$SOCKET" > "$LOG/podman-service.log" 2>&1 &
  SERVICE_PID=$!
  for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.2; done
  [ -S "$SOCKET" ] || fail compose "podman system service did not start (see $LOG/podman-service.log)"
  export DOCKER_HOST=unix://$SOCKET
  COMPOSE_FILE_USED=$WORK/docker-compose.yml
  sed '/^name:/d' docker-compose.yml > "$COMPOSE_FILE_USED"
  COMPOSE=(docker-compose)
fi
COMPOSE+=(-p "$PROJECT" -f "$COMPOSE_FILE_USED" --project-directory "$REPO")
# The workers' ladder for this run (WORKER_LADDER, e.g. `single`: the seed's
# one rendition, playlist.m3u8 a media playlist). Empty (the default): the
# compose file's own, the recommended ladder; the probe then plays the
# multivariant playlist's first rendition, as a player does.
WORKER_LADDER=${WORKER_LADDER-}
if [ -n "$WORKER_LADDER" ]; then
  printf 'services:\n  worker-a:\n    environment:\n      LADDER: "%s"\n  worker-b:\n    environment:\n      LADDER: "%s"\n' \
    "$WORKER_LADDER" "$WORKER_LADDER" > "$WORK/ladder.yml"
  COMPOSE+=(-f "$WORK/ladder.yml")
fi
export REPORTER_TOKEN=${REPORTER_TOKEN:-image-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
if [ "$ENGINE" = podman ]; then
  # The console's link to the balancer: the host as podman's containers reach it.
  export HOST_IP=${HOST_IP:-host.containers.internal}
  # podman runs healthchecks only when asked: ask every 3 s, so that
  # depends_on's service_healthy conditions are met.
  (while sleep 3; do
    for c in $(podman ps --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}'); do
      podman healthcheck run "$c" > /dev/null 2>&1 || true
    done
  done) &
  HEALTH_PID=$!
fi
"${COMPOSE[@]}" down -v --remove-orphans > "$LOG/compose-down.log" 2>&1 || true
say "compose up (${COMPOSE[*]}; viewers on :$VIEWER_HOST_PORT, console on :$CONSOLE_HOST_PORT)"
t0=$SECONDS
COMPOSE_UP=1
"${COMPOSE[@]}" up -d --no-build > "$LOG/compose-up.log" 2>&1 \
  || fail "compose up" "$(grep -i -m2 'error' "$LOG/compose-up.log" | tr '\n' ' ' | cut -c1-300) (see $LOG/compose-up.log)"
VIEWER=http://127.0.0.1:$VIEWER_HOST_PORT
ready=0
for _ in $(seq 120); do
  if body=$(curl -fsS -m 3 "$VIEWER/live01/playlist.m3u8" 2> /dev/null) && [ -n "$body" ]; then ready=1; break; fi
  sleep 2
done
[ $ready = 1 ] || fail "compose stack" "the balancer never served live01/playlist.m3u8 (${COMPOSE[*]} ps: $("${COMPOSE[@]}" ps 2>&1 | tail -n +3 | awk '{print $1, $NF}' | tr '\n' ' '))"
UP_S=$((SECONDS - t0))
# A ladder's playlist.m3u8 names the media playlists: the probe plays the first.
media=$(printf '%s\n' "$body" | awk '/^#EXT-X-STREAM-INF/ { getline; print; exit }')
MEDIA_URL=$VIEWER/live01/${media:-playlist.m3u8}
say "stack up in $(elapsed "$UP_S"): $MEDIA_URL"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CONSOLE_HOST_PORT/")
[ "$code" = 200 ] || fail "compose stack" "the console's page answered $code"

# --- 5. a viewer while a worker dies -------------------------------------------
# Let the stack settle (every proxy has seen both packagers) before watching.
sleep 10
say "playing $PLAY_SECONDS s through the balancer; worker-a SIGKILLed at $KILL_AT s"
"$PROBE" --url "$MEDIA_URL" --duration "$PLAY_SECONDS" > "$WORK/probe.json" 2> "$LOG/probe.log" &
probe_pid=$!
sleep "$KILL_AT"
worker_a=$("${COMPOSE[@]}" ps -q worker-a)
"$ENGINE" kill --signal KILL "$worker_a" > /dev/null 2>&1 || fail kill "$ENGINE kill worker-a"
killed_at=$(date +%T)
wait "$probe_pid" || fail probe "the probe failed: $(tail -2 "$LOG/probe.log")"
STATE_A=$("$ENGINE" inspect --format '{{.State.Status}}' "$worker_a" 2> /dev/null || echo gone)
read -r STALLS STALL_MS FAILED PLAYED STARTUP < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["stalls"], r["stall_ms"], r["failed_requests"], r["segments_played"], r.get("startup_ms"))' "$WORK/probe.json")
"${COMPOSE[@]}" run --rm status > "$LOG/status.txt" 2>&1 || true
say "status after the kill (compose run --rm status):"
sed 's/^/    /' "$LOG/status.txt" | head -20 >&2
say "probe report: $WORK/probe.json"

if [ "${KEEP:-0}" != 1 ]; then
  "${COMPOSE[@]}" down -v --remove-orphans > "$LOG/compose-down.log" 2>&1 || true
  COMPOSE_UP=""
fi

# --- 6. OPERATING.md's docker lines, as written ----------------------------------
# The sh block under "## Docker" in docs/OPERATING.md (the same lines as the
# Dockerfile's header), run with $ENGINE standing for docker, from a scratch
# folder with input/live01.mp4 and an output/ the images' uid owns. The two
# `docker build` lines are skipped (the images are built); the proxy's and the
# console's host ports are moved off 8002/8003 (DOCS_VIEWER_PORT 18002,
# DOCS_CONSOLE_PORT 18013: a `just up` may hold those), and on podman HOST_IP
# is host.containers.internal. Then the proxy must serve live01 on the
# published port, the console its page, and the block's last line (status)
# must name live01. DOCS_LINES=0 skips this.
run_docs_lines() {
  local dir=$WORK/docs-lines block names n ok script
  block=$(awk '/^## Docker/ { d = 1 } d && /^```sh$/ { f = 1; next } f && /^```$/ { exit } f' docs/OPERATING.md)
  [ -n "$block" ] || fail "docs lines" "no sh block under '## Docker' in docs/OPERATING.md"
  names=$(printf '%s\n' "$block" | grep -o -- '--name [A-Za-z0-9_-]*' | awk '{ print $2 }')
  DOCS_NAMES=$names
  rm -rf "$dir"
  mkdir -p "$dir/input" "$dir/output"
  cp input/live01.mp4 "$dir/input/"
  chown 10001:10001 "$dir/output"
  docs_down > /dev/null 2>&1
  script=$(printf '%s\n' "$block" | sed \
    -e "s/^export VIEWER_HOST_PORT=.*/export VIEWER_HOST_PORT=${DOCS_VIEWER_PORT:-18002}/" \
    -e "s/-p 8003:8003/-p ${DOCS_CONSOLE_PORT:-18013}:8003/")
  if [ "$ENGINE" = podman ]; then
    script=$(printf '%s\n' "$script" | sed 's/^export HOST_IP=.*/export HOST_IP=host.containers.internal/')
  fi
  say "docs/OPERATING.md's docker lines ($(printf '%s\n' "$block" | grep -c '^docker ') commands, $ENGINE as docker)"
  (cd "$dir" && ENGINE=$ENGINE bash -c "docker() { case \"\$1\" in build) echo \"skipped: docker \$*\"; return 0 ;; esac; \"\$ENGINE\" \"\$@\"; }
$script") > "$LOG/docs-lines.log" 2>&1 || true
  ok=0
  for _ in $(seq 60); do
    if curl -fsS -m 3 -o /dev/null "http://127.0.0.1:${DOCS_VIEWER_PORT:-18002}/live01/playlist.m3u8" 2> /dev/null; then ok=1; break; fi
    sleep 2
  done
  [ $ok = 1 ] || fail "docs lines" "the proxy never served live01 on :${DOCS_VIEWER_PORT:-18002} (see $LOG/docs-lines.log)"
  for n in $names; do
    [ "$("$ENGINE" inspect --format '{{.State.Status}}' "$n" 2> /dev/null)" = running ] \
      || fail "docs lines" "container $n is not running: $("$ENGINE" logs "$n" 2>&1 | tail -1)"
  done
  code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${DOCS_CONSOLE_PORT:-18013}/")
  [ "$code" = 200 ] || fail "docs lines" "the console's page answered $code"
  sleep 5
  (cd "$dir" && ENGINE=$ENGINE bash -c "docker() { \"\$ENGINE\" \"\$@\"; }
$(printf '%s\n' "$script" | tail -1)") > "$LOG/docs-status.txt" 2>&1 \
    || fail "docs lines" "the status line failed: $(tail -2 "$LOG/docs-status.txt")"
  grep -q '^ *live01 ' "$LOG/docs-status.txt" || fail "docs lines" "status names no live01: $(head -3 "$LOG/docs-status.txt")"
  DOCS_RESULT="OPERATING.md's $(printf '%s\n' "$block" | grep -c '^docker ') docker lines serve live01 ($(echo $names | wc -w) containers)"
  say "$DOCS_RESULT"
  docs_down > /dev/null 2>&1
}
docs_down() {
  for n in $DOCS_NAMES; do "$ENGINE" rm -f -t 3 "$n" || true; done
  "$ENGINE" network rm nonstop || true
}
DOCS_RESULT="OPERATING.md's docker lines not run"
if [ "${DOCS_LINES:-1}" != 0 ] && [ "${KEEP:-0}" != 1 ]; then run_docs_lines; fi

summary="${WORKER_LADDER:+LADDER=$WORKER_LADDER; }worker $SIZE_W MB (built in $(elapsed "$BUILD_S_worker")), services $SIZE_S MB (built in $(elapsed "$BUILD_S_services")), $ENGINE; compose stack up in $(elapsed "$UP_S"); viewer through the balancer for $PLAY_SECONDS s, worker-a SIGKILLed at $KILL_AT s ($killed_at, now $STATE_A): $STALLS stalls ($STALL_MS ms), $FAILED failed requests, $PLAYED segments played, startup ${STARTUP} ms; $DOCS_RESULT; whole run $(elapsed $((SECONDS - started)))"
if [ "$STALLS" != 0 ] || [ "$FAILED" != 0 ]; then
  echo "image: FAILED at viewer: $summary"
  exit 1
fi
echo "image: $summary"
