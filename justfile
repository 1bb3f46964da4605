# nonstop: `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Where the programs are: the one build every recipe and `just up` share
# (scripts/build.sh: the workspace's programs, PROFILE=release by default, or dev).
bin := `./scripts/build.sh --bin-dir`

# List the recipes.
default:
    @just --list

# Install what is missing (apt packages, just) and make input/live01.mp4.
setup:
    ./scripts/setup.sh

# CONSOLE_DEMO_FAULTS=1 just up: fault proxies in front of the packagers and the
# console's fault controls on, localhost only, behind a printed token.

# Start the whole stack on the sample input, then the console; print both URLs.
up:
    ./scripts/up.sh

# Build every program as `just up` does (the recipes below run what it builds,
# so switching between them never rebuilds): PROFILE=dev for a debug build;
# `just build --check-fresh` fails if that build still had anything to compile.
build *args:
    ./scripts/build.sh {{args}}

# Format check, lints and every test (CI runs this, then check-build and check-image).
test:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace --no-fail-fast

# The GStreamer worker: INPUT_STREAM_PATH/<signal>.mp4 -> OUTPUT_STREAM_PATH/<signal>/.
worker *args: build
    exec "{{bin}}/worker" {{args}}

# Packager one, on SERVER_ONE_PORT (8080).
server1 *args: build
    exec "{{bin}}/server1" {{args}}

# Packager two, on SERVER_TWO_PORT (9090).
server2 *args: build
    exec "{{bin}}/server2" {{args}}

# The reporter, on REPORTER_PORT (2000).
reporter *args: build
    exec "{{bin}}/reporter" {{args}}

# Discovery: reports live signals and healthy packagers to the reporter.
discovery *args: build
    exec "{{bin}}/discovery" {{args}}

# The origin, on ORIGIN_PORT (8001).
origin *args: build
    exec "{{bin}}/origin" {{args}}

# The proxy players use, on PROXY_PORT (8002).
proxy *args: build
    exec "{{bin}}/proxy" {{args}}

# Signals, routes and packager freshness of the running stack.
status *args: build
    exec "{{bin}}/status" {{args}}

# The operator's console, on CONSOLE_PORT (8003): open http://localhost:8003/.
console *args: build
    exec "{{bin}}/console" {{args}}

# Play a signal of the running stack through the proxy (PROXY_URL or PROXY_PORT
# picks another proxy): just play [vlc|cvlc|ffplay|webkit|url] [signal]. VLC will
# not run as root; webkit is WebKitGTK's MiniBrowser, Safari's engine.
play player="vlc" signal="live01":
    #!/usr/bin/env bash
    set -euo pipefail
    url="${PROXY_URL:-http://localhost:${PROXY_PORT:-8002}}/{{signal}}/playlist.m3u8"
    case "{{player}}" in
      vlc|cvlc) exec "{{player}}" "$url" ;;
      ffplay) exec ffplay -hide_banner -loglevel warning "$url" ;;
      webkit)
        browser=$(ls /usr/lib/*/webkit2gtk-4.1/MiniBrowser 2>/dev/null | head -n 1)
        [ -n "$browser" ] || { echo "WebKitGTK's MiniBrowser is missing: apt-get install webkit2gtk-driver" >&2; exit 1; }
        # Without this WebKitGTK does not play HLS natively.
        WEBKIT_GST_ENABLE_HLS_SUPPORT=1 exec "$browser" "$url" ;;
      url) echo "$url" ;;
      *) echo "just play [vlc|cvlc|ffplay|webkit|url] [signal]" >&2; exit 2 ;;
    esac

# Run exactly the worker's pipeline for one input with gst-launch-1.0, to debug it:
# the line `worker --print-pipeline` prints (the worker's settings come from the
# same flags and environment). Plays the input once; the worker alone loops it.
pipeline file="input/live01.mp4": build
    #!/usr/bin/env bash
    set -euo pipefail
    signal=$(basename "{{file}}" .mp4)
    printed=$("{{bin}}/worker" --print-pipeline --input "$(dirname "{{file}}")" --output output)
    line=$(printf '%s\n' "$printed" | awk -v c="# $signal: " 'index($0, c) == 1 { getline; print; exit }')
    [ -n "$line" ] || { echo "worker --print-pipeline printed no pipeline for $signal" >&2; exit 1; }
    printf '%s\n' "$printed" | grep -F "# $signal: "
    mkdir -p "output/$signal"
    echo "gst-launch-1.0 -e $line"
    eval gst-launch-1.0 -e "$line"

# Watch a live HLS playlist and list every broken Apple authoring / RFC 8216 rule
# (exit 1 if any): just validate http://localhost:8002/live01/playlist.m3u8 60
validate url seconds="30": build
    exec "{{bin}}/validate" --url {{url}} --duration {{seconds}}

# Replay the Dockerfile's build stage without Docker (what CI runs after the tests).
check-image:
    ./scripts/check-image-build.sh

# Docker if its engine answers, else podman on stand-in base images; settings in
# scripts/image.sh. Not in CI: 15-25 min the first time on 2 cores.
# Build both images for real, print sizes and build times, run docker-compose.yml, kill a worker under a viewer.
image:
    ./scripts/image.sh

# Check docker-compose.yml statically against the Dockerfile and the built programs,
# and that deliberate breakages of it are caught (check-image runs this too).
check-compose: build
    python3 scripts/check-compose.py --self-test --programs "{{bin}}"

# The whole stack under random faults for a while (default 30 min) with the player probe attached.
bench-soak *args:
    PROFILE=release ./scripts/build.sh
    cargo bench -p nonstop-lab --bench soak -- {{args}}

# Every fault (packager, worker, host, input removed) x every player, nonstop's proxy beside nginx (lab/bench/README.md).
bench-failover *args:
    [ -d web/node_modules ] || npm ci --prefix web
    [ -d lab/web/node_modules ] || npm ci --prefix lab/web
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ./scripts/setup.sh
    PROFILE=release ./scripts/build.sh
    cargo bench -p nonstop-lab --bench failover -- {{args}}

# The worker alone for a while (default 10 min): media time written against wall time.
bench-pacing *args:
    PROFILE=release ./scripts/build.sh
    cargo bench -p nonstop-lab --bench pacing -- {{args}}

# Memory per idle viewer connection on the release proxy: 1,000, 5,000 and 10,000
# keep-alive connections after one playlist request each (`--steps 2000,4000`).
bench-idle *args:
    PROFILE=release ./scripts/build.sh
    "$(PROFILE=release ./scripts/build.sh --bin-dir)/idleconns" {{args}}

# The worker's CPU per minute of live output beside ffmpeg and gst-launch-1.0 (its own line and the leanest) at equal settings; --together runs them at once; --ladder: the recommended ladder beside ffmpeg's ladder and three separate workers (lab/bench/README.md).
bench-worker *args:
    PROFILE=release ./scripts/build.sh
    cargo bench -p nonstop-lab --bench worker -- {{args}}

# A crowd of simulated players (1k, 5k, 10k) against nonstop's proxy and a caching nginx, side by side; --low-latency: players doing blocking reloads part by part, release latency after each part's publication, beside nginx set up for LL-HLS (lab/bench/README.md).
bench-viewers *args:
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ./scripts/setup.sh
    PROFILE=release ./scripts/build.sh
    ulimit -n "$(ulimit -Hn)"; cargo bench -p nonstop-lab --bench viewers -- {{args}}

# wrk asking for the newest segment through nonstop's proxy and a caching nginx, same run, taking turns (64 and 1,000 connections, 3 runs each, medians; lab/bench/README.md).
bench-segments *args:
    { command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; } || ./scripts/setup.sh
    PROFILE=release ./scripts/build.sh
    ulimit -n "$(ulimit -Hn)"; cargo bench -p nonstop-lab --bench segments -- {{args}}

# How far behind live each player's picture is (hls.js low latency and standard in Chromium, WebKit native), sampled every second through a packager kill and a worker kill on the recommended ladder (lab/bench/README.md).
bench-latency *args:
    [ -d web/node_modules ] || npm ci --prefix web
    [ -d lab/web/node_modules ] || npm ci --prefix lab/web
    PROFILE=release ./scripts/build.sh
    cargo bench -p nonstop-lab --bench latency -- {{args}}
