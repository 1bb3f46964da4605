#!/usr/bin/env bash
# The worker image's GStreamer: only what the worker's pipelines load, and the
# proof that it is enough. Run by the Dockerfile's `worker` stage, as root,
# inside the image being built (never on a development machine):
#
#   worker-image.sh prune   right after apt-get installs GStreamer, in the same
#                           RUN (so what it deletes never reaches a layer)
#   worker-image.sh check   once the worker is in the image: fails the build
#                           unless every element the worker's pipelines name
#                           is found, gst-launch-1.0 runs each of them, and the
#                           worker itself writes segments from a 4 s input
#
# Why prune by file: Debian packages GStreamer by plugin set (base, good, bad,
# ugly, libav), and the worker needs a plugin or two from each: h264parse and
# mpegtsmux are in -bad, x264enc in -ugly, qtdemux and aacparse in -good. Each
# set depends on the libraries of every plugin in it (-bad alone pulls in
# OpenCV-free but still ~100 of them), so installing the five sets by package
# gives a 681 MB image of which the worker loads a third. `prune` keeps:
#   - the plugin files (.so) that provide the elements the worker's pipelines
#     name (pipelines/*.gst), the elements decodebin picks for H.264 + AAC in
#     MP4 and the worker's input probe (GstDiscoverer: uridecodebin) uses, the
#     typefinders, and three elements the check below makes its input with;
#   - gst-launch-1.0, gst-inspect-1.0 (debugging, and the check) and
#     GStreamer's plugin scanner;
#   - every shared library those files load (ldd: the whole closure), each
#     package's copyright file, and /etc;
# and deletes every other file the GStreamer install added. Packages already
# in the base image are never touched. dpkg still lists the packages whole:
# this image is not meant to get more packages (build a new one instead).
# The largest part left is libav (FFmpeg: avdec_h264, avdec_aac, avenc_aac),
# whose Debian build links every codec library it knows; its decoders are why
# the worker reads any codec FFmpeg reads.
set -euo pipefail

PIPELINES=${PIPELINES:-/app/pipelines}
WORKER=${WORKER:-/usr/local/bin/worker}
PLUGIN_DIR=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
SCANNER=/usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner
PROGRAMS=(/usr/bin/gst-launch-1.0 /usr/bin/gst-inspect-1.0 "$SCANNER")
# Elements no pipeline line names but the worker loads: what decodebin plugs
# for an MP4 with H.264 and AAC (demuxer, parsers, FFmpeg's decoders), and the
# input probe's uridecodebin (urisourcebin, typefind).
RUN_TIME_ELEMENTS=(qtdemux h264parse aacparse avdec_h264 avdec_aac uridecodebin urisourcebin typefind)
# What `check` makes its test input with (small; handy for debugging too).
CHECK_ELEMENTS=(videotestsrc audiotestsrc mp4mux)
# Plugins with no element that the rest need: the typefinders (decodebin and
# the probe find the input's format with them).
PLUGINS=(typefindfunctions)

say() { printf '[worker-image] %s\n' "$*"; }
fail() {
  printf '[worker-image] FAILED: %s\n' "$*" >&2
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

# Element names in pipeline description lines (stdin): every bare word, that
# is every word but properties (name=value, quoted values taken whole), pad
# references (`mux.`, `decode.`) and caps (a bare caps string is a
# capsfilter). A word after a pad reference starts a new chain: `mux.
# mpegtsmux name=mux` names mpegtsmux.
pipeline_elements() {
  grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | tr '!' '\n' | awk '
    { gsub(/"[^"]*"/, "\"\""); n = split($0, w, /[[:space:]]+/)
      for (i = 1; i <= n; i++) {
        e = w[i]
        if (e == "" || e ~ /\.$/) continue
        if (e ~ /^[A-Za-z0-9_-]+\//) { print "capsfilter"; continue }
        if (e ~ /=/) continue
        print e
      } }' | sort -u
}

# The plugin file that provides element $1.
plugin_of() {
  # awk reads to the end: an early exit would kill gst-inspect with SIGPIPE.
  gst-inspect-1.0 "$1" 2>/dev/null | awk '$1 == "Filename" && f == "" { f = $2 } END { print f }'
}

# Every shared library files $@ load, with the files themselves, as real paths.
closure() {
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | xargs -r readlink -f | sort -u
}

prune() {
  local before=${1:?prune needs the file listing the packages installed before}
  export GST_REGISTRY=/tmp/worker-image-registry.bin
  local elements=() e f plugins=() missing=()
  mapfile -t elements < <(cat "$PIPELINES"/*.gst | pipeline_elements)
  elements+=("${RUN_TIME_ELEMENTS[@]}" "${CHECK_ELEMENTS[@]}")
  for e in "${elements[@]}"; do
    f=$(plugin_of "$e")
    if [ -n "$f" ]; then plugins+=("$f"); else missing+=("$e"); fi
  done
  [ ${#missing[@]} -eq 0 ] || fail "no plugin provides: ${missing[*]}"
  for p in "${PLUGINS[@]}"; do
    [ -f "$PLUGIN_DIR/libgst$p.so" ] || fail "no plugin $PLUGIN_DIR/libgst$p.so"
    plugins+=("$PLUGIN_DIR/libgst$p.so")
  done
  mapfile -t plugins < <(printf '%s\n' "${plugins[@]}" | xargs readlink -f | sort -u)
  say "elements: $(printf '%s\n' "${elements[@]}" | sort -u | tr '\n' ' ')"
  say "plugins kept: $(printf '%s\n' "${plugins[@]##*/libgst}" | sed 's/\.so$//' | tr '\n' ' ')"
  local keep
  keep=$(closure "${plugins[@]}" "${PROGRAMS[@]}")

  # Every file the GStreamer install added: the packages not installed before.
  local added=() pkg path real kept=0 removed=0 du_before
  du_before=$(du -sxm / | cut -f1)
  mapfile -t added < <(dpkg-query -W -f '${Package}\n' | sort | comm -13 "$before" -)
  say "${#added[@]} packages added by the install; pruning their files"
  declare -A keep_set=()
  while IFS= read -r path; do keep_set[$path]=1; done <<< "$keep"
  for pkg in "${added[@]}"; do
    while IFS= read -r path; do
      [ -n "$path" ] || continue
      # Folders stay, and so do links to folders: dpkg lists /lib64, /lib,
      # /bin ... (links into /usr here) as a package's folders too.
      [ -d "$path" ] && continue
      [ -L "$path" ] || [ -f "$path" ] || continue
      case "$path" in
        /etc/* | /usr/share/doc/*/copyright) kept=$((kept + 1)); continue ;;
      esac
      real=$(readlink -f "$path" || true)
      if { [ -n "$real" ] && [ -n "${keep_set[$real]:-}" ]; } || [ -n "${keep_set[$path]:-}" ]; then
        kept=$((kept + 1))
        continue
      fi
      rm -f "$path"
      removed=$((removed + 1))
    done < <(dpkg -L "$pkg")
  done
  # GIO's module cache would name modules that are gone.
  rm -f /usr/lib/x86_64-linux-gnu/gio/modules/giomodule.cache
  find /usr/share /usr/lib -depth -type d -empty -delete 2>/dev/null || true
  rm -f "$GST_REGISTRY"
  say "kept $kept files, deleted $removed: the file system went from $du_before to $(du -sxm / | cut -f1) MiB"
}

check() {
  local work=/tmp/worker-image-check
  rm -rf "$work"
  mkdir -p "$work/in" "$work/out"
  export GST_REGISTRY=$work/registry.bin
  # Every library the worker and the kept plugins need is there.
  local missing
  missing=$( (ldd "$WORKER"; for f in "$PLUGIN_DIR"/*.so "${PROGRAMS[@]}"; do ldd "$f"; done) | grep 'not found' | sort -u || true)
  [ -z "$missing" ] || fail "libraries missing: $(echo "$missing" | tr -s ' \n' ' ')"
  # The worker's test inputs, 4 s each, 1280x720 so that the default ladder
  # has all its rungs: H.264 + AAC (av) and H.264 alone (v).
  gst-launch-1.0 -q -e videotestsrc num-buffers=100 ! video/x-raw,width=1280,height=720,framerate=25/1 \
    ! x264enc bitrate=1500 key-int-max=50 speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m \
    ! filesink location="$work/in/av.mp4" \
    audiotestsrc num-buffers=188 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
    ! audioconvert ! avenc_aac ! aacparse ! queue ! m. > "$work/mkinput.log" 2>&1 \
    || fail "could not make the test input: $(tail -3 "$work/mkinput.log")"
  gst-launch-1.0 -q -e videotestsrc num-buffers=100 ! video/x-raw,width=1280,height=720,framerate=25/1 \
    ! x264enc bitrate=1500 key-int-max=50 speed-preset=ultrafast ! h264parse ! mp4mux \
    ! filesink location="$work/in/v.mp4" > "$work/mkinput.log" 2>&1 \
    || fail "could not make the test input: $(tail -3 "$work/mkinput.log")"

  # Each shipped description (single rendition and the default ladder, with
  # and without audio) as `worker --print-pipeline` prints it: every element
  # it names is found, and gst-launch-1.0 runs it until MPEG-TS reaches every
  # appsink (caps on each appsink's pad). Not to the end: the appsinks hold
  # their last buffer for the worker (max-buffers=1), and an appsink waits
  # for it to be taken before it lets the end of stream through, so under
  # gst-launch the pipelines never finish.
  local ladder lines line signal elements=() e runs=0 sinks reached
  for ladder in single "1280x720@2800,854x480@1400,640x360@800"; do
    lines=$(LADDER=$ladder "$WORKER" --print-pipeline --input "$work/in" --output "$work/out") \
      || fail "worker --print-pipeline (LADDER=$ladder) failed"
    mapfile -t elements < <(printf '%s\n' "$lines" | grep -v '^#' | pipeline_elements)
    for e in "${elements[@]}" "${RUN_TIME_ELEMENTS[@]}"; do
      gst-inspect-1.0 "$e" > /dev/null 2>&1 || fail "gst-inspect-1.0 finds no element '$e'"
    done
    while IFS= read -r signal; do
      line=$(printf '%s\n' "$lines" | awk -v c="# $signal: " 'index($0, c) == 1 { getline; print; exit }')
      [ -n "$line" ] || fail "worker --print-pipeline printed no pipeline for $signal"
      sinks=$(printf '%s\n' "$line" | grep -o '! appsink ' | wc -l)
      for _ in 1 2 3; do
        (eval exec timeout 20 gst-launch-1.0 -v "$line") > "$work/launch.log" 2>&1 &
        local launched=$!
        for _ in $(seq 40); do
          reached=$(grep -c 'GstAppSink:[^ ]*: caps = video/mpegts' "$work/launch.log" || true)
          [ "$reached" -ge "$sinks" ] && break
          grep -q '^ERROR' "$work/launch.log" && break
          sleep 0.5
        done
        kill "$launched" 2> /dev/null || true
        wait "$launched" 2> /dev/null || true
        [ "$reached" -ge "$sinks" ] && break
      done
      if grep -q '^ERROR' "$work/launch.log" || [ "$reached" -lt "$sinks" ]; then
        fail "gst-launch-1.0 on $signal's pipeline (LADDER=$ladder): MPEG-TS reached $reached of $sinks appsinks: $(grep -m2 '^ERROR' "$work/launch.log" | tr '\n' ' ')"
      fi
      runs=$((runs + 1))
    done < <(printf '%s\n' "$lines" | sed -n 's/^# \([^:]*\): .*/\1/p')
    say "LADDER=$ladder: elements $(echo "${elements[*]}") found; MPEG-TS reached every appsink under gst-launch-1.0"
  done

  # The worker itself: 12 s of both inputs, default ladder, writes segments
  # and playlists for every rendition.
  local playlists segments
  timeout -s INT 12 "$WORKER" --input "$work/in" --output "$work/out" --metrics-port 19100 \
    --listen-host 127.0.0.1 > "$work/worker.log" 2>&1 || true
  for signal in av v; do
    [ -s "$work/out/$signal/playlist.m3u8" ] \
      || fail "the worker wrote no $signal/playlist.m3u8 in 12 s: $(tail -5 "$work/worker.log" | tr '\n' ' ')"
  done
  if grep -E ' (ERR|WRN) ' "$work/worker.log" > /dev/null; then
    fail "the worker logged errors: $(grep -E ' (ERR|WRN) ' "$work/worker.log" | head -3 | tr '\n' ' ')"
  fi
  playlists=$(find "$work/out" -name '*.m3u8' | wc -l)
  segments=$(find "$work/out" -name '*.ts' | wc -l)
  [ "$segments" -ge 6 ] || fail "the worker wrote only $segments segments in 12 s"
  say "worker: $runs pipelines ran under gst-launch-1.0; the worker wrote $playlists playlists and $segments segments in 12 s"
  rm -rf "$work"
}

case "${1:-}" in
  prune) prune "${2:-}" ;;
  check) check ;;
  elements) pipeline_elements ;;
  *)
    echo "usage: worker-image.sh prune <packages-before> | check | elements < pipeline-lines" >&2
    exit 2
    ;;
esac
