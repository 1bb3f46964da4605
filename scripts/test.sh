#!/usr/bin/env bash
# The test command: installs what is missing, then format, lints and every test,
# then proves `just up` and the recipes share one build and the Docker image's
# build stage still builds (no Docker needed).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
just test
./scripts/check-build.sh
./scripts/check-image-build.sh
