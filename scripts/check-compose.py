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
# Host names that mean the machine the containers run on, not a service.
HOST_NAMES = {"localhost", "127.0.0.1", "host.docker.internal", "host.containers.internal"}
URL_RE = re.compile(r"\b(https?|redis)://([A-Za-z0-9_.-]+|\$\{[^}]*\})(?::(\d+))?")


def stages(dockerfile_text):
    """Stage name -> programs copied from the build stage, multi-call programs
    among them that link their programs (`RUN <program> --link <dir>`), CMD."""
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
                found[current] = {"programs": set(), "links": set(), "cmd": None}
        elif current and keyword == "COPY" and "--from=build" in words:
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            found[current]["programs"] |= {os.path.basename(s) for s in sources}
        elif current and keyword == "RUN" and " --link " in f" {line} ":
            # `RUN <program> --link <dir>`: a multi-call program making a link
            # per program it holds (its `--list`), each a program of the stage.
            m = re.search(r"(\S+)\s+--link\s", line)
            if m:
                found[current]["links"].add(os.path.basename(m.group(1)))
        elif current and keyword == "CMD":
            m = re.match(r'CMD\s+\["([^"]+)"', line)
            found[current]["cmd"] = m.group(1) if m else words[1]
    return found


def built(programs_dir, program):
    path = os.path.join(programs_dir, program)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"[compose-check] FAILED: {path} is not built (cargo build --bins)")
    return path


def linked_programs(programs_dir, multi, cache={}):
    """The programs the multi-call program `multi` holds (its `--list`)."""
    if multi not in cache:
        path = built(programs_dir, multi)
        out = subprocess.run([path, "--list"], capture_output=True, text=True, check=True).stdout
        cache[multi] = out.split()
    return cache[multi]


def stage_programs(info, programs_dir):
    """{program: command line that runs it as the image does}: each program the
    stage copies, and each one a multi-call program there links (run through it)."""
    found = {p: [os.path.join(programs_dir, p)] for p in info["programs"]}
    for multi in info["links"]:
        for program in linked_programs(programs_dir, multi):
            found[program] = [built(programs_dir, multi), program]
    return found


def program_help(command, cache={}):
    """(env names, {env name: default}) from `<program> --help`, the program
    run by `command` (its path, or a multi-call program and its name)."""
    program = command[-1] if len(command) > 1 else os.path.basename(command[0])
    if program not in cache:
        if len(command) == 1:
            built(os.path.dirname(command[0]), program)
        text = subprocess.run(command + ["--help"], capture_output=True, text=True, check=True).stdout
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


# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, $VAR and $$ (a literal $).
INTERPOLATION_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def file_variables(value):
    """Every variable the compose file interpolates, in order of appearance."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in file_variables(item)]
    if isinstance(value, list):
        return [v for item in value for v in file_variables(item)]
    if isinstance(value, str):
        return [m.group(1) or m.group(4) for m in INTERPOLATION_RE.finditer(value) if m.group(1) or m.group(4)]
    return []


def interpolate(value, variables):
    """`value` with every variable replaced as `docker compose` would, given
    the environment `variables` (a required variable that is unset becomes
    a placeholder: the check is about what the file does once it is set)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2), m.group(3) or ""
        given = variables.get(name)
        if op in (":-", ":?") and not given:
            given = None
        if given is not None:
            return given
        if op in (":-", "-"):
            return arg
        return f"set-{name.lower()}" if op in (":?", "?") else ""
    return INTERPOLATION_RE.sub(one, value)


def odd_values(doc):
    """A value for every variable the file names, none its default: each
    *PORT variable a distinct port no default uses. A port written out where
    a variable belongs then disagrees with the variable's other uses."""
    values, port = {}, 41001
    for name in dict.fromkeys(file_variables(doc)):
        if name.endswith("PORT"):
            values[name] = str(port)
            port += 1
        else:
            values[name] = f"odd-{name.lower().replace('_', '-')}"
    return values


def check(raw_doc, programs_dir, variables=None):
    """Every problem found in the parsed compose file `raw_doc`, as lines,
    once interpolated with `variables` (none: each variable's default)."""
    problems = []
    say = problems.append
    with open(DOCKERFILE) as f:
        stage_info = stages(f.read())
    doc = interpolate(raw_doc, variables or {})
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or not services:
        return ["no services"]
    raw_services = raw_doc["services"]
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
            shipped = stage_programs(stage_info[target], programs_dir)
            if program not in shipped:
                say(f"{name}: command {program!r} is not a program the '{target}' target ships "
                    f"({', '.join(sorted(shipped))})")
                continue
            runs[name] = program
            names, defaults = program_help(shipped[program])
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
            if not container_port.isdigit() or not host_port.isdigit():
                say(f"{name}: publishes {text!r}, not host-port:container-port")
            elif listens.get(name) is not None and int(container_port) != listens[name]:
                say(f"{name}: publishes container port {container_port}, but it listens on {listens[name]}")

    # URLs in variables point at services, on the port they listen on; a URL
    # to the host (its address from a variable, or localhost) is one a
    # browser uses too, so it must reach a port this file publishes, and a
    # PROXY_URL one that a proxy or the balancer in front of them listens
    # behind (the console's link to the balancer).
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        raw_env = environment(raw_services.get(name) or {})
        for var, value in environment(svc).items():
            raw_urls = URL_RE.findall(raw_env.get(var, ""))
            urls = URL_RE.findall(value)
            for i, (scheme, host, port) in enumerate(urls):
                raw_host = raw_urls[i][1] if i < len(raw_urls) else host
                given = int(port) if port else {"http": 80, "https": 443, "redis": 6379}[scheme]
                if raw_host.startswith("${") or host in HOST_NAMES:
                    publisher = published.get(str(given))
                    if publisher is None:
                        say(f"{name}: {var} reaches the host on port {given}, which no service publishes"
                            f" (published: {', '.join(sorted(published)) or 'none'})")
                    elif var == "PROXY_URL" and runs.get(publisher) not in ("proxy", "nginx"):
                        say(f"{name}: {var} reaches the host on port {given}, which {publisher} publishes "
                            f"({runs.get(publisher)}), not a proxy or the balancer")
                    continue
                if host not in services:
                    say(f"{name}: {var} names {host!r}, which is not a service of this file")
                    continue
                expected = listens.get(host)
                if expected is not None and given != expected:
                    say(f"{name}: {var} reaches {host} on port {given}, but it listens on {expected}")

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
        broken("the console's link to the balancer on a port written out", lambda s: s["console"].update(
            environment=dict(s["console"]["environment"], PROXY_URL="http://${HOST_IP:-host.docker.internal}:8000"))),
        broken("the console's link to the balancer on a port nobody publishes", lambda s: s["console"].update(
            environment=dict(s["console"]["environment"], PROXY_URL="http://${HOST_IP:-host.docker.internal}:8080"))),
        broken("the console's link to the console, not the balancer", lambda s: s["console"].update(
            environment=dict(s["console"]["environment"], PROXY_URL="http://localhost:${CONSOLE_HOST_PORT:-8003}"))),
        broken("the balancer published on a port written out", lambda s: s["balancer"].update(ports=["8000:80"])),
        broken("depends on a service that does not exist", lambda s: s["origin"].update(depends_on={"reporter2": {"condition": "service_healthy"}})),
    ]


def check_both(doc, programs_dir):
    """check() with every variable at its default, then set to odd values."""
    problems = check(doc, programs_dir)
    odd = odd_values(doc)
    if odd:
        shown = ", ".join(f"{k}={v}" for k, v in odd.items() if k.endswith("PORT"))
        for p in check(doc, programs_dir, odd):
            if p not in problems:
                problems.append(f"{p} (with the variables set: {shown})")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    programs = args.programs
    if not programs:
        for candidate in ("target/image-check/target/release", "target/release", "target/debug"):
            if os.access(os.path.join(REPO, candidate, "nonstop-services"), os.X_OK):
                programs = os.path.join(REPO, candidate)
                break
        else:
            sys.exit("[compose-check] FAILED: no built programs found (cargo build --bins)")
    with open(COMPOSE) as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as e:
            sys.exit(f"[compose-check] FAILED: docker-compose.yml is not YAML: {e}")
    problems = check_both(doc, programs)
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
            found = check_both(broken, programs)
            if found:
                print(f"[compose-check] caught {what}: {found[0]}")
            else:
                missed.append(what)
        if missed:
            sys.exit(f"[compose-check] FAILED: breakages not caught: {', '.join(missed)}")
        print("[compose-check] every deliberate breakage was caught")


if __name__ == "__main__":
    main()
