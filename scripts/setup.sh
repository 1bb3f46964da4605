#!/usr/bin/env bash
# Installs what nonstop needs on Debian 12 (only what is missing) and makes the
# sample input. Safe to run again. Needs root or sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  pkg-config curl
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  redis-server ffmpeg nginx-light wrk nftables iproute2
  python3 python3-yaml faketime
)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "system packages present"
fi

# The lab's browser drivers (lab/web/) drive Debian's Chromium (never a
# downloaded browser) with playwright-core; hls.js is served by the console
# from web/.
if ! dpkg -s chromium >/dev/null 2>&1; then
  say "installing chromium (headless browser for the console and player tests)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The players the user's document names, for lab/tests/system/vlc.rs and
# lab/tests/system/webkit.rs: headless VLC, and WebKitGTK (Safari's engine) driven by
# WebKitWebDriver under Xvfb.
PLAYER_PACKAGES=(vlc-bin vlc-plugin-base webkit2gtk-driver xvfb)
missing_players=()
for p in "${PLAYER_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_players+=("$p")
done
if [ ${#missing_players[@]} -gt 0 ]; then
  say "installing ${missing_players[*]} (VLC and WebKit for the player tests)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_players[@]}" >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs and npm"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f web/node_modules/hls.js/dist/hls.min.js ]; then
  say "installing hls.js into web/node_modules (npm ci, version from web/package-lock.json)"
  npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
if [ ! -f lab/web/node_modules/playwright-core/package.json ]; then
  say "installing playwright-core into lab/web/node_modules (npm ci, version from lab/web/package-lock.json)"
  npm ci --prefix lab/web --no-audit --no-fund --loglevel=error
fi

if ! command -v just >/dev/null 2>&1; then
  say "installing just (cargo install just --locked)"
  cargo install just --locked --quiet
fi

mkdir -p input output
if [ ! -s input/live01.mp4 ]; then
  say "making the sample input input/live01.mp4 (30 s, 1280x720, H.264 + AAC)"
  gst-launch-1.0 -q -e \
    videotestsrc num-buffers=750 pattern=smpte \
      ! video/x-raw,width=1280,height=720,framerate=25/1,format=I420 \
      ! timeoverlay halignment=center valignment=center font-desc="Sans 48" \
      ! videoconvert ! video/x-raw,format=I420 \
      ! x264enc speed-preset=veryfast bitrate=2500 key-int-max=50 ! h264parse ! queue \
      ! mp4mux name=mux ! filesink location=input/live01.mp4.part \
    audiotestsrc num-buffers=1405 samplesperbuffer=1024 wave=ticks \
      ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac bitrate=128000 ! aacparse ! queue ! mux.
  mv input/live01.mp4.part input/live01.mp4
fi
say "ready"
