#!/usr/bin/env bash
# Proves the Docker image builds without a Docker engine (none on the
# development machines nor in CI), so a change to the workspace can never break
# it silently. It replays the Dockerfile's build stage in a folder standing for
# the image's file system (target/image-check/root):
#   - WORKDIR and ENV as Docker would;
#   - COPY: exactly the files the line names, from this checkout, minus what
#     .dockerignore excludes, keeping their modification times as Docker does;
#   - RUN: the Dockerfile's own command, with sh, from WORKDIR (apt-get lines are
#     skipped: scripts/setup.sh installs the same packages on this host).
# Cargo's target folder in there is a link to target/image-check/target, which
# persists, so reruns only rebuild what changed. Then every program the other
# stages copy from the build stage must exist, none may be a lab program, and
# every product program (src/bin/) must be shipped by some stage, as a file or
# as a link a multi-call program makes (`RUN <program> --link <dir>`: the
# programs its `--list` names); files they
# copy from the build context must exist and not be excluded. Last,
# docker-compose.yml is checked against those targets and programs
# (scripts/check-compose.py --self-test).
# Usage: scripts/check-image-build.sh   (from anywhere; exits non-zero on failure)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DOCKERFILE=Dockerfile
BUILD_STAGE=build
CHECK_DIR=$REPO/target/image-check
ROOTFS=$CHECK_DIR/root
TARGET_DIR=$CHECK_DIR/target

started=$SECONDS
say() { printf '\033[1m[image-check]\033[0m %s\n' "$*"; }
fail() {
  printf '\033[1;31m[image-check] FAILED:\033[0m %s\n' "$*" >&2
  exit 1
}
elapsed() {
  local s=$((SECONDS - started))
  printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# --- .dockerignore --------------------------------------------------------
# Docker's rules: paths relative to the context, `*` and `?` stay within one
# folder, `**` spans folders, a pattern matching a folder excludes what is
# inside, `!` re-includes, and the last matching line wins.
IGNORE_REGEX=()
IGNORE_NEGATE=()

glob_to_regex() {
  local p=$1 out='' c i
  for ((i = 0; i < ${#p}; i++)); do
    c=${p:i:1}
    if [ "$c" = '*' ] && [ "${p:i+1:1}" = '*' ]; then
      if [ "${p:i+2:1}" = / ]; then
        out+='(.*/)?'
        i=$((i + 2))
      else
        out+='.*'
        i=$((i + 1))
      fi
    else
      case "$c" in
        '*') out+='[^/]*' ;;
        '?') out+='[^/]' ;;
        [.+\(\)\|^\$\{\}\\]) out+="\\$c" ;;
        *) out+=$c ;;
      esac
    fi
  done
  printf '^%s$' "$out"
}

if [ -f .dockerignore ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    case "$line" in '' | '#'*) continue ;; esac
    negate=0
    if [ "${line:0:1}" = '!' ]; then
      negate=1
      line=${line:1}
    fi
    line=${line#/}
    line=${line#./}
    line=${line%/}
    IGNORE_REGEX+=("$(glob_to_regex "$line")")
    IGNORE_NEGATE+=("$negate")
  done < .dockerignore
fi

# True when .dockerignore keeps the context path $1 (relative) out of the build.
is_ignored() {
  local path=$1 ignored=0 i prefix
  for i in "${!IGNORE_REGEX[@]}"; do
    prefix=$path
    while :; do
      if [[ $prefix =~ ${IGNORE_REGEX[i]} ]]; then
        if [ "${IGNORE_NEGATE[i]}" = 1 ]; then ignored=0; else ignored=1; fi
        break
      fi
      [ "${prefix%/*}" = "$prefix" ] && break
      prefix=${prefix%/*}
    done
  done
  [ "$ignored" = 1 ]
}

# Prints the files (relative to the context) that COPY source $1 brings in.
context_files() {
  local src=${1#./} match file
  local matches=()
  shopt -s nullglob
  # shellcheck disable=SC2206 # the source is a glob, as in Docker
  matches=($src)
  shopt -u nullglob
  for match in "${matches[@]}"; do
    match=${match%/}
    is_ignored "$match" && continue
    if [ -d "$match" ]; then
      while IFS= read -r file; do
        is_ignored "$file" || printf '%s\n' "$file"
      done < <(find "$match" \( -type f -o -type l \) | sort)
    elif [ -e "$match" ]; then
      printf '%s\n' "$match"
    fi
  done
}

# --- the Dockerfile as instructions ---------------------------------------
# One line per instruction: continuations joined, comments dropped (Docker
# drops comment lines inside continuations too).
INSTRUCTIONS=()
while IFS= read -r line; do INSTRUCTIONS+=("$line"); done < <(
  awk '
    /^[[:space:]]*#/ { next }
    /^[[:space:]]*$/ { next }
    {
      line = $0
      if (sub(/\\[[:space:]]*$/, "", line)) { buf = buf line " "; next }
      print buf line
      buf = ""
    }
    END { if (buf != "") print buf }
  ' "$DOCKERFILE"
)
[ ${#INSTRUCTIONS[@]} -gt 0 ] || fail "no instructions in $DOCKERFILE"

# Splits "KEYWORD args" into $keyword (upper case) and $args.
split_instruction() {
  local text=${1#"${1%%[![:space:]]*}"}
  keyword=${text%%[[:space:]]*}
  keyword=${keyword^^}
  args=${text#"${text%%[[:space:]]*}"}
  args=${args#"${args%%[![:space:]]*}"}
}

# Splits COPY arguments into $copy_from (empty for the build context),
# $copy_dest and the array copy_sources. Only the shell form is supported.
split_copy() {
  local words=() word
  read -ra words <<< "$1"
  copy_from=''
  copy_sources=()
  case "${words[0]:-}" in '['*) fail "COPY in JSON form is not supported: COPY $1" ;; esac
  while [ ${#words[@]} -gt 0 ] && [ "${words[0]:0:2}" = -- ]; do
    word=${words[0]}
    case "$word" in --from=*) copy_from=${word#--from=} ;; esac
    words=("${words[@]:1}")
  done
  [ ${#words[@]} -ge 2 ] || fail "COPY needs a source and a destination: COPY $1"
  copy_dest=${words[-1]}
  copy_sources=("${words[@]:0:${#words[@]}-1}")
}

# --- replay the build stage -----------------------------------------------
say "replaying stage '$BUILD_STAGE' of $DOCKERFILE in ${ROOTFS#"$REPO"/} (cargo target: ${TARGET_DIR#"$REPO"/})"
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS" "$TARGET_DIR"
stage=''
workdir=/
env_vars=()
found_stage=0
ran_cargo=0
shipped=()
shipped_from=()
linkers=()
linkers_from=()
context_checks=()

for instruction in "${INSTRUCTIONS[@]}"; do
  split_instruction "$instruction"
  if [ "$keyword" = FROM ]; then
    read -ra from_words <<< "$args"
    stage=''
    if [ ${#from_words[@]} -ge 3 ] && [ "${from_words[1]^^}" = AS ]; then stage=${from_words[2]}; fi
    [ "$stage" = "$BUILD_STAGE" ] && found_stage=1
    continue
  fi

  if [ "$stage" != "$BUILD_STAGE" ]; then
    # Other stages: note what they take from the build stage and the context,
    # and the multi-call programs that link their programs there
    # (`RUN <program> --link <dir>`).
    if [ "$keyword" = RUN ] && [[ " $args " =~ [[:space:]]([^[:space:]]+)[[:space:]]+--link[[:space:]] ]]; then
      linkers+=("${BASH_REMATCH[1]##*/}")
      linkers_from+=("${stage:-<unnamed>}")
    fi
    if [ "$keyword" = COPY ]; then
      split_copy "$args"
      if [ "$copy_from" = "$BUILD_STAGE" ]; then
        for src in "${copy_sources[@]}"; do
          shipped+=("$src")
          shipped_from+=("${stage:-<unnamed>}")
        done
      elif [ -z "$copy_from" ]; then
        for src in "${copy_sources[@]}"; do context_checks+=("${stage:-<unnamed>}|$src"); done
      fi
    fi
    continue
  fi

  case "$keyword" in
    WORKDIR)
      case "$args" in /*) workdir=$args ;; *) workdir=${workdir%/}/$args ;; esac
      mkdir -p "$ROOTFS$workdir"
      # Cargo's default target folder there is the persistent one.
      [ -e "$ROOTFS${workdir%/}/target" ] || ln -s "$TARGET_DIR" "$ROOTFS${workdir%/}/target"
      ;;
    ENV)
      # KEY=value pairs (no quoting), as in this Dockerfile.
      read -ra pairs <<< "$args"
      for pair in "${pairs[@]}"; do
        case "$pair" in
          CARGO_TARGET_DIR=*) fail "ENV CARGO_TARGET_DIR is not supported by this check (it links WORKDIR/target)" ;;
          *=*) env_vars+=("$pair") ;;
          *) fail "ENV without '=' is not supported: ENV $args" ;;
        esac
      done
      ;;
    COPY)
      split_copy "$args"
      [ -z "$copy_from" ] || fail "the build stage copies from another stage ($copy_from): not supported"
      case "$copy_dest" in /*) dest=$copy_dest ;; *) dest=${workdir%/}/${copy_dest#./} ;; esac
      [ ${#copy_sources[@]} -eq 1 ] || [ "${copy_dest: -1}" = / ] \
        || fail "COPY with several sources needs a destination ending in /: COPY $args"
      for src in "${copy_sources[@]}"; do
        files=()
        while IFS= read -r f; do files+=("$f"); done < <(context_files "$src")
        [ ${#files[@]} -gt 0 ] || fail "COPY source '$src' matches no file in the build context (.dockerignore applied)"
        src_clean=${src#./}
        src_clean=${src_clean%/}
        for f in "${files[@]}"; do
          if [ -d "$src_clean" ]; then
            out=${dest%/}/${f#"$src_clean"/}
          elif [ "${copy_dest: -1}" = / ] || [ -d "$ROOTFS$dest" ]; then
            out=${dest%/}/${f##*/}
          else
            out=$dest
          fi
          mkdir -p "$(dirname "$ROOTFS$out")"
          cp -pP "$f" "$ROOTFS$out"
        done
        say "COPY $src -> $dest (${#files[@]} files)"
      done
      ;;
    RUN)
      case "$args" in '['*) fail "RUN in JSON form is not supported: RUN $args" ;; esac
      case "$args" in
        apt-get*)
          say "RUN apt-get ... skipped (system packages; scripts/setup.sh installs them here)"
          continue
          ;;
      esac
      say "RUN $args"
      run_started=$SECONDS
      if ! (cd "$ROOTFS$workdir" && env "${env_vars[@]}" sh -c "$args"); then
        fail "the build stage's RUN failed after $((SECONDS - run_started)) s: $args"
      fi
      say "RUN done in $((SECONDS - run_started)) s"
      case "$args" in *cargo*) ran_cargo=1 ;; esac
      ;;
    ARG | LABEL | USER | SHELL | EXPOSE | VOLUME | STOPSIGNAL | HEALTHCHECK | CMD | ENTRYPOINT | ONBUILD)
      [ "$keyword" = ARG ] || [ "$keyword" = LABEL ] \
        || fail "$keyword in the build stage is not supported by this check"
      say "$keyword ignored"
      ;;
    *) fail "unknown instruction in the build stage: $instruction" ;;
  esac
done
[ "$found_stage" = 1 ] || fail "no stage named '$BUILD_STAGE' in $DOCKERFILE"
[ "$ran_cargo" = 1 ] || fail "the build stage ran no cargo command"

# --- what the runtime stages ship -------------------------------------------
lab_programs=()
for f in lab/src/bin/*.rs lab/src/bin/*/main.rs; do
  [ -e "$f" ] || continue
  case "$f" in */main.rs) f=${f%/main.rs} ;; *) f=${f%.rs} ;; esac
  lab_programs+=("${f##*/}")
done
while IFS= read -r name; do lab_programs+=("$name"); done < <(
  awk '/^\[\[bin\]\]/ { in_bin = 1; next } /^\[/ { in_bin = 0 }
       in_bin && /^name[[:space:]]*=/ { gsub(/.*=[[:space:]]*"|".*/, ""); print }' lab/Cargo.toml
)

shipped_names=()
shipped_paths=()
for i in "${!shipped[@]}"; do
  path=$ROOTFS${shipped[i]}
  if [ -d "$path" ]; then
    mapfile -t programs < <(find "$path" -maxdepth 1 -type f | sort)
  else
    programs=("$path")
  fi
  for program in "${programs[@]}"; do
    [[ -f $program && -x $program ]] \
      || fail "stage '${shipped_from[i]}' copies ${shipped[i]} from '$BUILD_STAGE', which the build did not make"
    name=${program##*/}
    for lab in "${lab_programs[@]}"; do
      [ "$name" != "$lab" ] || fail "stage '${shipped_from[i]}' ships the lab program '$name'"
    done
    shipped_names+=("$name")
    shipped_paths+=("$program")
  done
done
# A multi-call program ships, as links, every program its --list names.
for i in "${!linkers[@]}"; do
  linker=''
  for j in "${!shipped_names[@]}"; do
    [ "${shipped_names[j]}" != "${linkers[i]}" ] || linker=${shipped_paths[j]}
  done
  [ -n "$linker" ] || fail "stage '${linkers_from[i]}' runs ${linkers[i]} --link, a program it does not copy from '$BUILD_STAGE'"
  linked=$("$linker" --list) || fail "${linkers[i]} --list failed"
  [ -n "$linked" ] || fail "${linkers[i]} --list names no program"
  for name in $linked; do
    for lab in "${lab_programs[@]}"; do
      [ "$name" != "$lab" ] || fail "stage '${linkers_from[i]}' links the lab program '$name'"
    done
    shipped_names+=("$name")
  done
  say "stage '${linkers_from[i]}': ${linkers[i]} links $(echo $linked)"
done
for f in src/bin/*.rs; do
  name=${f##*/}
  name=${name%.rs}
  found=0
  for s in "${shipped_names[@]}"; do [ "$s" != "$name" ] || found=1; done
  [ "$found" = 1 ] || fail "the product program '$name' (src/bin/$name.rs) is shipped by no stage"
done
say "programs shipped, all built: ${shipped_names[*]}"

for check in "${context_checks[@]}"; do
  src=${check#*|}
  [ -n "$(context_files "$src")" ] \
    || fail "stage '${check%%|*}' copies '$src', which matches no file in the build context (.dockerignore applied)"
done
say "context files copied by the runtime stages: present"

# --- the compose file -------------------------------------------------------
# docker-compose.yml against this Dockerfile's targets and the programs just
# built (their --help lists the variables they read), then broken on purpose
# in known ways, each of which must be caught.
say "checking docker-compose.yml (scripts/check-compose.py)"
python3 scripts/check-compose.py --self-test --programs "$(dirname "${shipped_paths[0]}")" \
  || fail "docker-compose.yml does not match the images (above)"

say "passed in $(elapsed)"
