#!/usr/bin/env bash
# The test command: installs what is missing, then format, lints and every test,
# then proves `just up` and the recipes share one build and the Docker image's
# build stage still builds (no Docker needed).
set -euo pipefail
cd "$(dirname "$0")/.."
# A run from scratch fills about 6 GB (the workspace's debug build, the image
# check's own target folder, test output); a full disk shows up much later as a
# linker's "Bus error" or "No space left on device" in the middle of a crate.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
    echo "warning: $(( ${free_kb:-0} / 1024 / 1024 )) GB free here; a run from scratch fills about 6 GB, and builds beside it need more" >&2
fi
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
just test
./scripts/check-build.sh
./scripts/check-image-build.sh
