#!/usr/bin/env bash
# Proves `just up` and the `just` recipes share one build, so switching from
# one to the other never rebuilds the product:
#   1. the build `scripts/up.sh` does (`up.sh --build-only`);
#   2. then the build every recipe runs (`just build`) must have nothing left
#      to compile: with `--check-fresh`, cargo's JSON messages must call every
#      unit fresh;
#   3. every recipe that runs a program must run that build first and then the
#      built file, never `cargo run` or a build of its own (read from `just
#      --dry-run`, which prints a recipe's commands without running them).
# PROFILE=dev by default here, so CI pays for a debug build of the programs
# only; the profile is one setting both sides read from scripts/build.sh.
# Usage: scripts/check-build.sh   (exits non-zero on failure)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export PROFILE="${PROFILE:-dev}"
say() { printf '\033[1m[check-build]\033[0m %s\n' "$*"; }
fail() {
  printf '\033[1;31m[check-build] FAILED:\033[0m %s\n' "$*" >&2
  exit 1
}

./scripts/up.sh --build-only
say "after up.sh's build, the recipes' build:"
just build --check-fresh || fail "the recipes' build is not the one up.sh did: switching rebuilds"

# Recipe -> the program it runs.
programs=(
  worker:worker server1:server1 server2:server2 reporter:reporter
  discovery:discovery origin:origin proxy:proxy status:status console:console
  pipeline:worker validate:validate
)
for entry in "${programs[@]}"; do
  recipe=${entry%%:*} program=${entry#*:}
  commands=$(just --dry-run "$recipe" x 2>&1)
  first=$(printf '%s\n' "$commands" | head -n 1 | sed 's/[[:space:]]*$//')
  [ "$first" = "./scripts/build.sh" ] ||
    fail "just $recipe does not start with the shared build: $first"
  printf '%s\n' "$commands" | grep -qF "\`./scripts/build.sh --bin-dir\`/$program\"" ||
    fail "just $recipe does not run the built $program: $commands"
  if printf '%s\n' "$commands" | grep -qE '(^|[^a-z])cargo '; then
    fail "just $recipe runs cargo itself: $commands"
  fi
done
say "${#programs[@]} recipes run the shared build's programs"
