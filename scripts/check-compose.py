#!/usr/bin/env python3
"""Checks docker-compose.yml statically, with no container engine.

What a reader would otherwise learn from `docker compose up` failing, or
worse, from a stack that starts and does not work:
- the file parses (YAML, with its anchors and merge keys), every service is
  on a user-defined network and has a healthcheck (one-shot tools aside);
- every `build` is this repository's Dockerfile and its `target` a stage of it;
- every `command` names a program that stage ships (COPY --from=build), and a
  `nonstop-healthcheck <program>` healthcheck names the same program;
- every environment variable is one the program accepts: the `[env: NAME=]`
  lines of `<program> --help` (clap), plus the few hidden ones (tokens) and
  RUST_LOG; no port variable of another program;
- every URL in a variable (`http://host:port`, `redis://host:port`) names a
  service of this file and the port that service listens on (its port
  variable, or the default `--help` prints); published ports are unique and
  land on the port the service listens on; `depends_on` names services;
- volumes: each named volume is declared and used; each worker writes its
  own; a packager or discovery reads exactly one worker's volume, read-only;
  bind-mounted files exist (folders: or are made by scripts/setup.sh);
- the balancer config mounted into nginx sends traffic to services of this
  file on the port they listen on.

Usage: scripts/check-compose.py [--programs DIR] [--self-test]
  --programs DIR  folder with the built product programs (default: the image
                  check's release build if present, else target/release, else
                  target/debug)
  --self-test     also break the file in known ways, one at a time, and fail
                  unless each breakage is caught
Exits non-zero with one line per problem.
"""

import argparse
import copy
import os
import re
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("[compose-check] FAILED: python3-yaml is missing (scripts/setup.sh installs it)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(REPO, "docker-compose.yml")
DOCKERFILE = os.path.join(REPO, "Dockerfile")
SETUP = os.path.join(REPO, "scripts", "setup.sh")

# Variables a program reads although `--help` does not list them: the tokens
# are hidden so their values never show (accepted wherever their companion
# is), RUST_LOG is env_logger's.
HIDDEN_ENV = {"REPORTER_TOKEN": "REPORTER_TOKEN_FILE", "CONSOLE_FAULT_TOKEN": "CONSOLE_FAULTS"}
EVERY_PROGRAM_ENV = {"RUST_LOG"}
# Where each program's own port comes from (the variable its --help names).
PORT_VARS = {
    "server1": "SERVER_ONE_PORT",
    "server2": "SERVER_TWO_PORT",
    "reporter": "REPORTER_PORT",
    "origin": "ORIGIN_PORT",
    "proxy": "PROXY_PORT",
    "console": "CONSOLE_PORT",
    "discovery": "DISCOVERY_METRICS_PORT",
    "worker": "WORKER_METRICS_PORT",
}
# Programs that run once and exit: no healthcheck, no port.
ONE_SHOT = {"status"}
# Images not built here, with the port they listen on and what they are.
KNOWN_IMAGES = {"redis": 6379, "nginx": 80}
OUTPUT_DIR = "/app/output"
URL_RE = re.compile(r"\b(https?|redis)://([A-Za-z0-9_.-]+|\$\{[^}]*\})(?::(\d+))?")


def stages(dockerfile_text):
    """Stage name -> (programs copied from the build stage, CMD program)."""
    lines, buf = [], ""
    for raw in dockerfile_text.splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        lines.append(buf + raw)
        buf = ""
    found, current = {}, None
    for line in lines:
        words = line.split()
        keyword = words[0].upper()
        if keyword == "FROM":
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
            if current:
                found[current] = {"programs": set(), "cmd": None}
        elif current and keyword == "COPY" and "--from=build" in words:
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            found[current]["programs"] |= {os.path.basename(s) for s in sources}
        elif current and keyword == "CMD":
            m = re.match(r'CMD\s+\["([^"]+)"', line)
            found[current]["cmd"] = m.group(1) if m else words[1]
    return found


def program_help(programs_dir, program, cache={}):
    """(env names, {env name: default}) from `<program> --help`."""
    if program not in cache:
        path = os.path.join(programs_dir, program)
        if not os.access(path, os.X_OK):
            raise SystemExit(f"[compose-check] FAILED: {path} is not built (cargo build --bins)")
        text = subprocess.run([path, "--help"], capture_output=True, text=True, check=True).stdout
        names, defaults = set(), {}
        for m in re.finditer(r"\[env: ([A-Z0-9_]+)=[^\]]*\](?: \[default: ([^\]]*)\])?", text):
            names.add(m.group(1))
            if m.group(2) is not None:
                defaults[m.group(1)] = m.group(2)
        for hidden, companion in HIDDEN_ENV.items():
            if companion in names:
                names.add(hidden)
        cache[program] = (names | EVERY_PROGRAM_ENV, defaults)
    return cache[program]


def as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def volume_mounts(service):
    """(source, target, read_only) per volume, short or long syntax."""
    mounts = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            mounts.append((source, target, len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            mounts.append((v.get("source"), v.get("target"), bool(v.get("read_only"))))
    return mounts


def check(doc, programs_dir):
    """Every problem found in the parsed compose file `doc`, as lines."""
    problems = []
    say = problems.append
    with open(DOCKERFILE) as f:
        stage_info = stages(f.read())
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or not services:
        return ["no services"]
    networks = doc.get("networks") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())

    # What each service runs and where it listens.
    runs, listens = {}, {}
    for name, svc in services.items():
        if not isinstance(svc, dict):
            say(f"{name}: not a mapping")
            continue
        build = svc.get("build")
        image = str(svc.get("image", ""))
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            if build.get("context", ".") not in (".", "./"):
                say(f"{name}: build context {build.get('context')!r} is not the repository root")
            if build.get("dockerfile", "Dockerfile") != "Dockerfile":
                say(f"{name}: builds from {build.get('dockerfile')!r}, not the Dockerfile")
            target = build.get("target")
            if target not in stage_info:
                say(f"{name}: build target {target!r} is not a stage of the Dockerfile "
                    f"({', '.join(sorted(stage_info))})")
                continue
            command = as_list(svc.get("command")) or [stage_info[target]["cmd"]]
            program = command[0]
            if program not in stage_info[target]["programs"]:
                say(f"{name}: command {program!r} is not a program the '{target}' target ships "
                    f"({', '.join(sorted(stage_info[target]['programs']))})")
                continue
            runs[name] = program
            names, defaults = program_help(programs_dir, program)
            env = environment(svc)
            for var in env:
                if var not in names:
                    say(f"{name}: {program} does not read {var} (its --help lists "
                        f"{', '.join(sorted(names - EVERY_PROGRAM_ENV))})")
            port_var = PORT_VARS.get(program)
            if port_var:
                port = env.get(port_var, defaults.get(port_var))
                if not (port or "").isdigit():
                    say(f"{name}: {port_var} is {port!r}, not a port")
                else:
                    listens[name] = int(port)
            if program not in ONE_SHOT:
                test = as_list((svc.get("healthcheck") or {}).get("test"))
                if "nonstop-healthcheck" in test:
                    i = test.index("nonstop-healthcheck")
                    named = test[i + 1] if i + 1 < len(test) else None
                    if named is not None and named != program:
                        say(f"{name}: healthcheck asks for {named!r} but the service runs {program!r}")
        else:
            base = image.split("/")[-1].split(":")[0]
            if base not in KNOWN_IMAGES:
                say(f"{name}: image {image!r} is neither built here nor one this check knows")
                continue
            runs[name] = base
            listens[name] = KNOWN_IMAGES[base]
        if runs.get(name) not in ONE_SHOT and not (svc.get("healthcheck") or {}).get("test"):
            say(f"{name}: no healthcheck")
        svc_networks = svc.get("networks")
        svc_networks = list(svc_networks) if svc_networks else []
        if not svc_networks:
            say(f"{name}: on no user-defined network (host names would not resolve)")
        for net in svc_networks:
            if net not in networks:
                say(f"{name}: network {net!r} is not declared")
        for dep in (svc.get("depends_on") or []):
            if dep not in services:
                say(f"{name}: depends on {dep!r}, which is not a service")

    # URLs in variables point at services, on the port they listen on.
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        for var, value in environment(svc).items():
            for scheme, host, port in URL_RE.findall(value):
                if host.startswith("${"):
                    continue
                if host not in services:
                    say(f"{name}: {var} names {host!r}, which is not a service of this file")
                    continue
                expected = listens.get(host)
                given = int(port) if port else {"http": 80, "https": 443, "redis": 6379}[scheme]
                if expected is not None and given != expected:
                    say(f"{name}: {var} reaches {host} on port {given}, but it listens on {expected}")

    # Published ports: unique, onto the port the service listens on.
    published = {}
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        for p in svc.get("ports") or []:
            text = str(p) if not isinstance(p, dict) else f"{p.get('published')}:{p.get('target')}"
            parts = text.split(":")
            host_port, container_port = (parts[-2], parts[-1]) if len(parts) >= 2 else (parts[0], parts[0])
            if host_port in published:
                say(f"{name}: host port {host_port} is already published by {published[host_port]}")
            published[host_port] = name
            if listens.get(name) is not None and int(container_port) != listens[name]:
                say(f"{name}: publishes container port {container_port}, but it listens on {listens[name]}")

    # Volumes: declared, used, one writer each, readers read-only.
    used, writers, readers = set(), {}, {}
    with open(SETUP) as f:
        setup_text = f.read()
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        for source, target, read_only in volume_mounts(svc):
            if source is None:
                say(f"{name}: a volume without a source")
                continue
            if source.startswith((".", "/")):
                path = os.path.normpath(os.path.join(REPO, source))
                folder = os.path.relpath(path, REPO)
                made_by_setup = re.search(r"mkdir -p[^\n]*\b" + re.escape(folder) + r"\b", setup_text)
                if not os.path.exists(path) and not made_by_setup:
                    say(f"{name}: bind mount source {source} does not exist")
                continue
            used.add(source)
            if source not in declared_volumes:
                say(f"{name}: volume {source!r} is not declared under volumes:")
            if target == OUTPUT_DIR:
                if runs.get(name) == "worker":
                    if read_only:
                        say(f"{name}: the worker's output volume {source} is read-only")
                    writers.setdefault(source, []).append(name)
                else:
                    if not read_only:
                        say(f"{name}: mounts the output volume {source} writable; only its worker writes")
                    readers.setdefault(name, []).append(source)
    for volume in sorted(declared_volumes - used):
        say(f"volume {volume!r} is declared but no service mounts it")
    for volume, names in sorted(writers.items()):
        if len(names) > 1:
            say(f"volume {volume!r} is written by several workers: {', '.join(names)}")
    for name, program in sorted(runs.items()):
        if program in ("server1", "server2", "discovery"):
            sources = readers.get(name, [])
            if len(sources) != 1:
                say(f"{name}: reads {len(sources)} output volumes at {OUTPUT_DIR}, not exactly one")
            elif sources[0] not in writers:
                say(f"{name}: reads {sources[0]!r}, which no worker writes")

    # The balancer's config: upstream servers are services, on their ports.
    for name, svc in services.items():
        if not isinstance(svc, dict) or runs.get(name) != "nginx":
            continue
        for source, target, _ in volume_mounts(svc):
            if not (source or "").startswith(".") or not str(target).startswith("/etc/nginx/"):
                continue
            path = os.path.join(REPO, source)
            if not os.path.isfile(path):
                continue  # reported above
            with open(path) as f:
                conf = f.read()
            servers = re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):(\d+)", conf, re.M)
            if not servers:
                say(f"{name}: {source} lists no upstream server")
            for host, port in servers:
                if host not in services:
                    say(f"{name}: {source} sends traffic to {host!r}, which is not a service")
                elif listens.get(host) != int(port):
                    say(f"{name}: {source} reaches {host} on {port}, but it listens on {listens.get(host)}")
            m = re.search(r"^\s*listen\s+(\d+)", conf, re.M)
            if m and int(m.group(1)) != listens[name]:
                say(f"{name}: {source} listens on {m.group(1)}, not {listens[name]}")
    return problems


def breakages(doc):
    """Known ways to break the file, each a (description, broken copy)."""
    def broken(what, change):
        d = copy.deepcopy(doc)
        change(d["services"])
        return what, d

    def set_env(name, var, value):
        def change(s):
            s[name]["environment"] = dict(s[name]["environment"], **{var: value})
        return change

    def drop(name, key):
        return lambda s: s[name].pop(key)

    return [
        broken("a build target that is not a stage", lambda s: s["server1"]["build"].update(target="server")),
        broken("a command the image does not ship", lambda s: s["proxy1"].update(command=["proxyy"])),
        broken("a lab program as a command", lambda s: s["proxy2"].update(command=["faultproxy"])),
        broken("a misspelt variable", set_env("proxy3", "ORIGN_URL", "http://origin:8001")),
        broken("another program's port variable", set_env("origin", "PROXY_PORT", "8001")),
        broken("a URL to a service that does not exist", set_env("origin", "REPORTER_URL", "http://reporters:2000")),
        broken("a URL on the wrong port", set_env("proxy1", "ORIGIN_URL", "http://origin:8002")),
        broken("a packager URL on the wrong port", set_env("discovery-a", "PACKAGERS", "http://server1:9090,http://server2:9090")),
        broken("a service port moved but not its clients", set_env("reporter", "REPORTER_PORT", "2001")),
        broken("a store URL on the wrong port", set_env("reporter", "REPORTER_STORE", "redis://redis:6380")),
        broken("no healthcheck", drop("proxy2", "healthcheck")),
        broken("a healthcheck for another program", lambda s: s["server2"].update(
            healthcheck=dict(s["server2"]["healthcheck"], test=["CMD", "nonstop-healthcheck", "server1"]))),
        broken("no network", drop("origin", "networks")),
        broken("an undeclared volume", lambda s: s["server2"].update(volumes=["output-c:/app/output:ro"])),
        broken("a packager mounting its folder writable", lambda s: s["server1"].update(volumes=["output-a:/app/output"])),
        broken("two workers on one folder", lambda s: s["worker-b"].update(volumes=["./input:/app/input:ro", "output-a:/app/output"])),
        broken("a bind mount of a file that does not exist", lambda s: s["balancer"].update(
            volumes=["./deploy/balancer.cnf:/etc/nginx/conf.d/default.conf:ro"])),
        broken("a published port twice", lambda s: s["console"].update(ports=["8000:8003"])),
        broken("a published port onto the wrong container port", lambda s: s["console"].update(ports=["8003:8080"])),
        broken("depends on a service that does not exist", lambda s: s["origin"].update(depends_on={"reporter2": {"condition": "service_healthy"}})),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    programs = args.programs
    if not programs:
        for candidate in ("target/image-check/target/release", "target/release", "target/debug"):
            if os.access(os.path.join(REPO, candidate, "proxy"), os.X_OK):
                programs = os.path.join(REPO, candidate)
                break
        else:
            sys.exit("[compose-check] FAILED: no built programs found (cargo build --bins)")
    with open(COMPOSE) as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as e:
            sys.exit(f"[compose-check] FAILED: docker-compose.yml is not YAML: {e}")
    problems = check(doc, programs)
    for p in problems:
        print(f"[compose-check] {p}", file=sys.stderr)
    if problems:
        sys.exit(f"[compose-check] FAILED: {len(problems)} problem(s) in docker-compose.yml")
    services = doc["services"]
    print(f"[compose-check] docker-compose.yml: {len(services)} services, targets, programs, "
          f"variables, URLs, ports, volumes and healthchecks consistent (programs from {programs})")
    if args.self_test:
        missed = []
        for what, broken in breakages(doc):
            found = check(broken, programs)
            if found:
                print(f"[compose-check] caught {what}: {found[0]}")
            else:
                missed.append(what)
        if missed:
            sys.exit(f"[compose-check] FAILED: breakages not caught: {', '.join(missed)}")
        print("[compose-check] every deliberate breakage was caught")


if __name__ == "__main__":
    main()
