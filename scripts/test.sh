#!/usr/bin/env bash
# The test command: installs what is missing, then format, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
just test
