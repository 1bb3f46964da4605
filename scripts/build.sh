#!/usr/bin/env bash
# The one build every way of running nonstop shares: `just up` (scripts/up.sh),
# every `just <program>` recipe and the benches run the programs this builds,
# so switching from one to another never rebuilds the product. It is always
# the whole workspace's programs (product and lab, features unified the same
# way) in one profile:
#   PROFILE=release (default) -> cargo build --release --workspace --bins
#   PROFILE=dev               -> cargo build --workspace --bins
# Programs land in $CARGO_TARGET_DIR (default target/) under release/ or debug/.
#
# Usage: scripts/build.sh            build (quiet), print nothing
#        scripts/build.sh --bin-dir  print where the programs are, build nothing
#        scripts/build.sh --check-fresh
#                                    build with JSON messages and fail, naming
#                                    them, if any unit had to be compiled (what
#                                    scripts/check-build.sh asserts after the
#                                    build up.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PROFILE="${PROFILE:-release}"
case "$PROFILE" in
  release) flags=(--release); dir=release ;;
  dev) flags=(); dir=debug ;;
  *) echo "[build] PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
TARGET="${CARGO_TARGET_DIR:-target}"
command=(cargo build "${flags[@]}" --workspace --bins)

case "${1:-}" in
  --bin-dir)
    echo "$TARGET/$dir"
    ;;
  --check-fresh)
    # Every compiler-artifact message says whether the unit was already built.
    messages=$("${command[@]}" --message-format=json 2>/dev/null)
    stale=$(printf '%s\n' "$messages" | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and not m.get("fresh"):
        print(m["target"]["name"], m["package_id"])
')
    units=$(printf '%s\n' "$messages" | grep -c '"reason":"compiler-artifact"' || true)
    if [ -n "$stale" ]; then
      echo "[build] ${command[*]} had to compile:" >&2
      printf '  %s\n' "$stale" >&2
      exit 1
    fi
    echo "[build] ${command[*]}: all $units units fresh"
    ;;
  "")
    "${command[@]}" -q
    ;;
  *) echo "usage: scripts/build.sh [--bin-dir | --check-fresh]" >&2; exit 2 ;;
esac
