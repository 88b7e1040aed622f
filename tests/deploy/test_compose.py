#!/usr/bin/env python3
"""deploy/docker-compose.yml and deploy/docker/Dockerfile, checked against the programs.

No Docker engine runs where the tests run, so nothing here starts a container. What
is checked instead, with the real binaries of this build (their --help lists every
setting they read):

- the compose file parses; every service has an image or a build; every build
  context and Dockerfile exists, and every build target is a stage of the Dockerfile;
- each program's stage copies the binary of the CMake target of that name (the
  add_executable in the project, at the path CMake gives it in the build tree) from
  a stage that builds that target in a release build without sanitizers, and its
  ENTRYPOINT runs that copy; it runs as a non-root user; its runtime stages install,
  directly or as a dependency, the Debian package of every shared library the binary
  links (readelf -d, dpkg -S, apt-cache depends);
  the build stage installs the build packages of deploy/local/deps.sh;
- every environment variable set on a program is one its --help lists, with a value
  in the range --help states; every required setting, and every setting whose
  default points at 127.0.0.1 (true only on one host), is set; secrets are compose
  secrets read through NAME_FILE, the JWT secret's file required with no default;
- the three services publish no ports and have no container_name (so --scale works);
  only the gateway publishes one, its own listen port; every depends_on has a
  condition; every long-running container has a healthcheck (in the compose file or
  as HEALTHCHECK in its image), and shop-healthcheck reads HTTP statuses right, from
  a test server and from the real programs (/healthz up, /readyz refused while a
  service's database is unreachable, SIGTERM exits 0);
- the init container creates exactly the topics of docs/architecture.md §4 (the ones the
  services name in their code, and the local stack creates) with 6 partitions;
- the largest record batch is one number: KFK_BATCH_MAX in kfk.h (what the programs'
  producers size their messages by), the local broker's and topics' settings
  (lib.sh, kafka.sh), the compose broker's and kafka-init's topics';
- every address a program is given (its upstreams in deploy/fleet.conf,
  DATABASE_URL, KAFKA_BROKERS, REDIS_URL) names a compose service that exists, on
  the port that service listens on, with the credentials it was created with;
- named volumes are declared; .dockerignore keeps build trees, data and .env out;
- the air-gapped override (tests/deploy/compose.airgapped.yml) replaces every pulled
  image with one of the project's own (shop-fleet/...) built from tests/deploy/images/;
- `docker compose config` accepts the file, when a Docker client with the compose
  plugin is installed (skipped otherwise).

usage: test_compose.py PROGRAM_BINARY...  (every program of deploy/fleet.conf, built;
a program's name is its file name)
"""
import fnmatch
import functools
import glob
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import urlsplit

import yaml

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import fleet  # noqa: E402  (deploy/fleet.py: the manifest, deploy/fleet.conf)

COMPOSE_FILE = os.path.join(ROOT, "deploy", "docker-compose.yml")
COMPOSE_DIR = os.path.dirname(COMPOSE_FILE)
HEALTHCHECK_SCRIPT = os.path.join(ROOT, "deploy", "docker", "shop-healthcheck")

# docs/architecture.md §4: one topic per producing service, each with a dead-letter topic.
DESIGN_TOPICS = {"order.events", "inventory.events", "payment.events",
                 "order.events.dlq", "inventory.events.dlq", "payment.events.dlq"}
TOPIC_PARTITIONS = 6
FLEET = fleet.load()
SERVICES = tuple(r.program for r in fleet.services(FLEET))
# (program, upstream setting, the compose service it must name), from the manifest.
UPSTREAMS = [(r.program, f"{up.upper()}_ADDR", fleet.by_name(FLEET)[up].program)
             for r in FLEET for up in r.upstreams]
# Packages every debian:bookworm-slim image has (its Essential packages need them).
BASE_PACKAGES = {"libc6", "libgcc-s1"}
# Sanitizer runtimes appear in the test build's binaries, never in a release build.
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")

PROGRAMS = {}  # name -> binary path, from the command line


# ------------------------------------------------------------------ parsing ----

def load_compose():
    with open(COMPOSE_FILE) as f:
        return yaml.safe_load(f)


def environment(service):
    """A compose service's environment as a dict of strings (map or list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def resolve(value):
    """The value compose would pass when no variable of the host is set: ${X:-d} gives
    d; None when the value needs one (${X}, ${X:?msg})."""
    if value is None:
        return None
    unknown = False

    def repl(m):
        nonlocal unknown
        if m.group(2) in (":-", "-"):
            return m.group(3)
        unknown = True
        return ""
    out = INTERPOLATION.sub(repl, value.replace("$$", "\0")).replace("\0", "$")
    return None if unknown else out


def parse_dockerfile(path):
    """Stages of a Dockerfile: {name: {"from": image or stage, "ins": [(op, args)]}}."""
    with open(path) as f:
        text = f.read()
    lines, buf = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    stages, current, global_args = {}, None, {}
    for line in lines:
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "ARG" and current is None:
            # ARGs before the first FROM: FROM ${NAME} takes their defaults here (what
            # a build without --build-arg uses)
            name, _, default = args.strip().partition("=")
            global_args[name] = default
        elif op == "FROM":
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: global_args.get(m.group(1) or m.group(2), m.group(0)), args)
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = {"from": words[0], "ins": []}
        elif current is not None:
            current["ins"].append((op, args.strip()))
    return stages


def stage_chain(stages, name):
    """The stage and its ancestors within the file, nearest first."""
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name]["from"]
    return chain


def base_image(stages, name):
    return stage_chain(stages, name)[-1]["from"]


def instructions(stages, name, op):
    """Every `op` instruction of the stage and its ancestors, nearest first."""
    return [args for st in stage_chain(stages, name) for o, args in st["ins"] if o == op]


def exec_form(args):
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def apt_packages(run_args):
    """Packages named by `apt-get install` in a RUN."""
    out = set()
    for part in re.split(r"&&|;", run_args):
        words = shlex.split(part)
        if "apt-get" in words and "install" in words:
            out.update(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
    return out


def cmake_targets():
    """Program targets of the project (add_executable, shop_service): {target: source
    dir relative to ROOT}."""
    found = {}
    for top in ("gateway", "services", "common"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            if "CMakeLists.txt" not in files:
                continue
            with open(os.path.join(dirpath, "CMakeLists.txt")) as f:
                text = f.read()
            for m in re.finditer(r"add_executable\(\s*([A-Za-z0-9_.+-]+)", text):
                found[m.group(1)] = os.path.relpath(dirpath, ROOT)
            # shop_service(NAME) (cmake/Fleet.cmake) makes the program NAME-svc
            for m in re.finditer(r"^shop_service\(\s*([A-Za-z0-9_]+)", text, re.M):
                found[m.group(1) + "-svc"] = os.path.relpath(dirpath, ROOT)
    return found


def program_env():
    """A clean environment for a program (none of the caller's settings leak in), but
    with PATH and the sanitizer options of a sanitizer build."""
    env = {k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return env


HELP_LINE = re.compile(r"^  ([A-Z][A-Z0-9_]*)(?:=(\S*)| \(required\))\s")
HELP_KIND = re.compile(r"\[([^\[\]]+)\]$")


def help_settings(binary):
    """Settings a program lists in --help: {NAME: {"default": str or None, "kind": str}}.
    The meaning of a long entry sits on the next line; its [kind] ends that line."""
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30,
                          env=program_env())
    if proc.returncode != 0:
        raise AssertionError(f"{binary} --help exited {proc.returncode}: {proc.stderr}")
    settings, last = {}, None
    for line in proc.stdout.splitlines():
        m = HELP_LINE.match(line + " ")
        if m:
            last = m.group(1)
            settings[last] = {"default": m.group(2), "kind": None}
        kind = HELP_KIND.search(line)
        if kind and last is not None and settings[last]["kind"] is None:
            settings[last]["kind"] = kind.group(1)
    # A secret may come from a file: "[secret, ...; or from a file: NAME_FILE=<path>]".
    for name, s in list(settings.items()):
        m = re.search(r"or from a file: ([A-Z][A-Z0-9_]*)=<path>", s["kind"] or "")
        if m:
            settings[m.group(1)] = {"default": "", "kind": "file path", "secret_of": name}
    return settings, proc.stdout


DURATION = re.compile(r"^(\d+)(ms|s|m|h)?$")
DURATION_MS = {None: 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}


def duration_ms(text):
    m = DURATION.match(text)
    return None if m is None else int(m.group(1)) * DURATION_MS[m.group(2)]


def value_problem(kind, value):
    """Why `value` is outside what --help says the setting takes, or None."""
    m = re.match(r"integer (-?\d+)\.\.(-?\d+)$", kind)
    if m:
        if not re.match(r"^-?\d+$", value) or not int(m[1]) <= int(value) <= int(m[2]):
            return f"not an integer in {m[1]}..{m[2]}"
        return None
    m = re.match(r"duration (\w+)\.\.(\w+)$", kind)
    if m:
        ms, lo, hi = duration_ms(value), duration_ms(m[1]), duration_ms(m[2])
        if ms is None or not lo <= ms <= hi:
            return f"not a duration in {m[1]}..{m[2]}"
        return None
    if kind == "true or false":
        return None if value.lower() in ("true", "false", "1", "0") else "not a boolean"
    m = re.search(r"(\d+)(?:\.\.(\d+))? bytes$", kind)
    if m:
        lo, hi = int(m[1]), int(m[2] or m[1])
        if not lo <= len(value.encode()) <= hi:
            return f"length not in {lo}..{hi} bytes"
    return None


def host_port(address):
    """"dns:///h:p", "h:p", "scheme://user:pw@h:p/db" → (host, port as int or None)."""
    if address.startswith("dns:///"):
        address = address[len("dns:///"):]
    if "://" in address:
        u = urlsplit(address)
        return u.hostname, u.port
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else None


# -------------------------------------------------------------------- tests ----

class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.compose = load_compose()
        cls.services = cls.compose["services"]
        cls.helps = {name: help_settings(path) for name, path in PROGRAMS.items()}

    def built(self):
        """(compose name, service, stages, target) of every service built here."""
        out = []
        for name, svc in self.services.items():
            build = svc.get("build")
            if build is None:
                continue
            if isinstance(build, str):
                build = {"context": build}
            context = os.path.normpath(os.path.join(COMPOSE_DIR, build["context"]))
            dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
            out.append((name, svc, parse_dockerfile(dockerfile), build.get("target"), context))
        return out

    def one_shot(self):
        """Services others wait on to complete: they run once and exit."""
        return {dep for svc in self.services.values()
                for dep, spec in (svc.get("depends_on") or {}).items()
                if isinstance(spec, dict)
                and spec.get("condition") == "service_completed_successfully"}

    def image_healthcheck(self, name):
        for n, _, stages, target, _ in self.built():
            if n == name:
                checks = instructions(stages, target, "HEALTHCHECK")
                return checks[0] if checks and checks[0].upper() != "NONE" else None
        return None

    # ---- structure ----

    def test_every_program_is_a_compose_service(self):
        self.assertEqual(set(PROGRAMS), {r.program for r in FLEET},
                         "the test needs every program binary of deploy/fleet.conf as arguments")
        for program in PROGRAMS:
            self.assertIn(program, self.services)

    def test_every_service_has_an_image_or_a_build(self):
        for name, svc in self.services.items():
            with self.subTest(service=name):
                self.assertTrue("image" in svc or "build" in svc)

    def test_build_contexts_dockerfiles_and_targets_exist(self):
        for name, svc, stages, target, context in self.built():
            with self.subTest(service=name):
                self.assertTrue(os.path.isdir(context), context)
                self.assertTrue(os.path.isfile(os.path.join(context, "CMakeLists.txt")),
                                f"{context} is not the project root")
                self.assertIn(target, stages, f"no stage {target!r} in the Dockerfile")
                self.assertEqual(target, name, "a program's stage is named after it")

    # ---- Dockerfile: the binary the service runs is the one CMake builds ----

    def test_each_image_runs_the_binary_of_its_cmake_target(self):
        targets = cmake_targets()
        for name, _, stages, target, _ in self.built():
            with self.subTest(service=name):
                self.assertIn(target, targets, f"no add_executable({target}) in the project")
                entry = instructions(stages, target, "ENTRYPOINT")
                self.assertTrue(entry, "no ENTRYPOINT")
                runs = exec_form(entry[0])[0]
                self.assertEqual(os.path.basename(runs), target)
                copies = [exec_form(a) for a in instructions(stages, target, "COPY")]
                copies = [c for c in copies if c[0].startswith("--from=") and c[-1] == runs]
                self.assertEqual(len(copies), 1, f"one COPY --from=... {runs} expected")
                from_stage, src = copies[0][0][len("--from="):], copies[0][-2]
                self.assertIn(from_stage, stages)
                builds = [a for a in instructions(stages, from_stage, "RUN") if "--build" in a]
                self.assertTrue(builds, f"stage {from_stage} runs no cmake --build")
                run = builds[0]
                build_dir = re.search(r"cmake --build (\S+)", run).group(1)
                built_targets = re.search(r"--target ((?:[\w.+-]+ ?)+)", run).group(1).split()
                self.assertIn(target, built_targets)
                self.assertRegex(run, r"-DCMAKE_BUILD_TYPE=(Release|RelWithDebInfo)\b")
                self.assertIn("-DSHOP_SANITIZE=OFF", run)
                self.assertIn(f"-B {build_dir}", run)
                self.assertEqual(os.path.normpath(src),
                                 os.path.normpath(os.path.join(build_dir, targets[target],
                                                               target)),
                                 "the COPY takes another file than the target's binary")
                self.assertEqual(base_image(stages, from_stage), "debian:bookworm")
                self.assertEqual(base_image(stages, target), "debian:bookworm-slim")

    def test_images_run_as_a_non_root_user(self):
        for name, _, stages, target, _ in self.built():
            with self.subTest(service=name):
                users = instructions(stages, target, "USER")
                self.assertTrue(users, "no USER")
                self.assertNotIn(users[0].split(":")[0], ("root", "0"))

    def test_runtime_images_install_every_library_the_program_links(self):
        for name, _, stages, target, _ in self.built():
            with self.subTest(service=name):
                explicit = set()
                for run in instructions(stages, target, "RUN"):
                    explicit |= apt_packages(run)
                installed = BASE_PACKAGES | with_dependencies(explicit)
                for soname in needed_libraries(PROGRAMS[name]):
                    package = debian_package(soname)
                    self.assertTrue(package in installed,
                                    f"{name} links {soname} (package {package}), which its "
                                    f"image does not install (it installs {sorted(explicit)})")

    def test_build_stage_installs_the_build_packages_of_deps_sh(self):
        with open(os.path.join(ROOT, "deploy", "local", "deps.sh")) as f:
            text = f.read()
        group = re.search(r"# build\n(.*?)\n\s*#", text, re.S).group(1)
        wanted = set(group.split()) - {"clang-format"}
        self.assertIn("libgrpc-dev", wanted, "deps.sh's build group was not found")
        for name, _, stages, target, _ in self.built():
            copy = [exec_form(a) for a in instructions(stages, target, "COPY")
                    if a.startswith("--from=")]
            build_stage = copy[0][0][len("--from="):]
            installed = set()
            for run in instructions(stages, build_stage, "RUN"):
                installed |= apt_packages(run)
            with self.subTest(service=name):
                self.assertEqual(wanted - installed, set())

    # ---- environment against --help ----

    def test_every_variable_set_is_one_the_program_reads(self):
        for program, (settings, _) in self.helps.items():
            env = environment(self.services[program])
            with self.subTest(program=program):
                self.assertTrue(env, "no environment")
                unknown = sorted(set(env) - set(settings))
                self.assertEqual(unknown, [], f"{program} does not read these")

    def test_values_are_within_the_ranges_the_programs_accept(self):
        for program, (settings, _) in self.helps.items():
            for var, raw in environment(self.services[program]).items():
                value = resolve(raw)
                if var not in settings or value is None:
                    continue
                with self.subTest(program=program, variable=var, value=value):
                    self.assertIsNotNone(settings[var]["kind"], "--help gave no kind")
                    self.assertIsNone(value_problem(settings[var]["kind"], value))

    def test_required_and_host_local_settings_are_set(self):
        for program, (settings, _) in self.helps.items():
            env = environment(self.services[program])
            for var, s in settings.items():
                local = s["default"] is not None and re.search(r"127\.0\.0\.1|localhost",
                                                               s["default"])
                if s["default"] is None or local:
                    with self.subTest(program=program, variable=var):
                        self.assertIn(var, env, "required, or its default is this host's")
                        self.assertTrue(env[var])

    def test_jwt_secret_comes_from_the_environment_without_default(self):
        env = environment(self.services["gateway"])
        self.assertEqual(resolve(env.get("JWT_ALG")) or "HS256", "HS256")
        # A compose secret from the host's $JWT_SECRET_FILE, which compose requires.
        self.assertNotIn("JWT_SECRET", env)
        self.assertEqual(env.get("JWT_SECRET_FILE"), "/run/secrets/jwt_secret")
        # A file (compose cannot write an environment-sourced secret into a read-only
        # container), required: no default.
        self.assertRegex(self.compose["secrets"]["jwt_secret"]["file"],
                         r"^\$\{JWT_SECRET_FILE:\?[^}]+\}$")

    def test_secrets_are_files_never_environment(self):
        """Every secret setting a program reads is given as NAME_FILE pointing at a
        compose secret the service mounts (DATABASE_URL's development passwords apart:
        the databases' own POSTGRES_PASSWORD is in this file too)."""
        for name in PROGRAMS:
            svc = self.services[name]
            env = environment(svc)
            mounted = {f"/run/secrets/{s}" for s in svc.get("secrets", [])}
            for key, value in env.items():
                with self.subTest(service=name, setting=key):
                    if key.endswith("_FILE"):
                        self.assertIn(value, mounted)
                    elif key in ("PAGE_TOKEN_KEY", "JWT_SECRET"):
                        self.fail(f"{key} in the environment: use {key}_FILE")
            for s in svc.get("secrets", []):
                self.assertIn(s, self.compose["secrets"])

    # ---- scaling, ports, dependencies, health ----

    def test_services_publish_no_ports_and_have_no_fixed_names(self):
        for name, svc in self.services.items():
            with self.subTest(service=name):
                self.assertNotIn("container_name", svc)
                if name != "gateway":
                    self.assertNotIn("ports", svc)

    def test_gateway_publishes_its_listen_port_only(self):
        gw = self.services["gateway"]
        _, port = host_port(resolve(environment(gw)["GATEWAY_ADDR"]))
        self.assertEqual(len(gw.get("ports", [])), 1)
        published = resolve(str(gw["ports"][0]))
        self.assertEqual(published.rsplit(":", 1)[-1], str(port))

    def test_every_dependency_has_a_condition(self):
        one_shot = self.one_shot()
        for name, svc in self.services.items():
            deps = svc.get("depends_on") or {}
            self.assertIsInstance(deps, dict, f"{name}: depends_on without conditions")
            for dep, spec in deps.items():
                with self.subTest(service=name, dependency=dep):
                    self.assertIn(dep, self.services)
                    condition = (spec or {}).get("condition")
                    self.assertIn(condition,
                                  ("service_healthy", "service_completed_successfully"))
                    if condition == "service_healthy":
                        self.assertTrue(self.services[dep].get("healthcheck")
                                        or self.image_healthcheck(dep),
                                        f"{dep} has no healthcheck to wait for")
                    else:
                        self.assertIn(dep, one_shot)

    def test_every_long_running_container_has_a_healthcheck_and_restarts(self):
        one_shot = self.one_shot()
        for name, svc in self.services.items():
            with self.subTest(service=name):
                if name in one_shot:
                    self.assertEqual(str(svc.get("restart", "no")), "no")
                    continue
                self.assertIn(svc.get("restart"), ("unless-stopped", "always", "on-failure"))
                check = svc.get("healthcheck") or self.image_healthcheck(name)
                self.assertTrue(check, "no healthcheck")
                if isinstance(check, dict):
                    self.assertFalse(check.get("disable"))
                    self.assertTrue(check.get("test"))

    def test_image_healthchecks_probe_the_port_the_program_listens_on(self):
        for name, _, stages, target, _ in self.built():
            with self.subTest(service=name):
                check = self.image_healthcheck(name)
                cmd = exec_form(check[check.index("CMD") + 3:].strip())
                probe, variable, path = cmd[0], cmd[1], cmd[2]
                self.assertEqual(os.path.basename(probe), "shop-healthcheck")
                self.assertIn(path, ("/healthz", "/readyz"))
                self.assertIn(variable, self.helps[name][0], "the program has no such setting")
                env = {}
                for args in reversed(instructions(stages, target, "ENV")):
                    env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
                env.update({k: resolve(v) for k, v in environment(self.services[name]).items()})
                _, port = host_port(env[variable])
                exposed = " ".join(instructions(stages, target, "EXPOSE")).split()
                self.assertIn(str(port), exposed)
                copies = [exec_form(a) for a in instructions(stages, target, "COPY")]
                self.assertTrue(any(c[-1] == probe and c[-2] == "deploy/docker/shop-healthcheck"
                                    for c in copies), "the probe is not in the image")

    def test_shop_healthcheck_answers_by_http_status(self):
        for status, expected in ((200, 0), (503, 1)):
            with self.subTest(status=status):
                server = serve_status(status)
                try:
                    env = {"PATH": os.environ["PATH"],
                           "PROBE_ADDR": f"0.0.0.0:{server.server_port}"}
                    rc = subprocess.run([HEALTHCHECK_SCRIPT, "PROBE_ADDR", "/readyz"], env=env,
                                        capture_output=True, timeout=20).returncode
                    self.assertEqual(rc, expected)
                    self.assertEqual(server.paths, ["/readyz"])
                finally:
                    server.shutdown()
                    server.server_close()
        port = server.server_port  # closed now: nothing listens
        for addr in (f"0.0.0.0:{port}", "not-an-address", ""):
            with self.subTest(addr=addr):
                rc = subprocess.run([HEALTHCHECK_SCRIPT, "PROBE_ADDR", "/healthz"],
                                    env={"PATH": os.environ["PATH"], "PROBE_ADDR": addr},
                                    capture_output=True, timeout=20).returncode
                self.assertNotEqual(rc, 0)

    def test_shop_healthcheck_against_the_real_programs(self):
        """Each program, with nothing to connect to: /healthz answers at once (what the
        gateway's probe asks), a service's /readyz refuses while its database is
        unreachable (what the services' probe asks), so the probe tells them apart."""
        closed = f"127.0.0.1:{free_port()}"
        cases = [("gateway", "GATEWAY_ADDR", {"REDIS_URL": f"redis://{closed}/0",
                                               "JWT_SECRET": "s" * 48})]
        cases += [(svc, "ADMIN_ADDR", {"GRPC_ADDR": f"127.0.0.1:{free_port()}",
                                       "DATABASE_URL": f"postgresql://x:x@{closed}/x",
                                       "KAFKA_BROKERS": closed}) for svc in SERVICES]
        for program, variable, env in cases:
            with self.subTest(program=program):
                # The probe's subject is the admin port, not gRPC: no certificates here
                # (docs/trust.md), so the explicit opt-out lets the programs start.
                env = dict(env, LOG_LEVEL="error", GRPC_PLAINTEXT="true", **program_env())
                env[variable] = f"127.0.0.1:{free_port()}"
                proc = subprocess.Popen([PROGRAMS[program]], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                try:
                    self.assertTrue(wait_until_probe(env, variable, "/healthz", proc),
                                    f"{program}: /healthz never answered 200")
                    if program != "gateway":
                        self.assertNotEqual(probe(env, variable, "/readyz"), 0,
                                            "ready without its database")
                    proc.terminate()  # docker stop: SIGTERM, a clean drain exits 0
                    self.assertEqual(proc.wait(timeout=30), 0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()

    # ---- Kafka topics ----

    def test_init_container_creates_the_design_topics(self):
        kafka_images = {s.get("image") for s in self.services.values()
                        if str(s.get("image", "")).startswith("apache/kafka:")}
        self.assertEqual(len(kafka_images), 1, "broker and init use the same image")
        self.assertRegex(kafka_images.pop(), r"^apache/kafka:4\.1\.\d+$")
        init = self.services["kafka-init"]
        env = environment(init)
        self.assertEqual(set(env["TOPICS"].split()), DESIGN_TOPICS)
        self.assertEqual(len(env["TOPICS"].split()), len(DESIGN_TOPICS))
        self.assertEqual(int(env["PARTITIONS"]), TOPIC_PARTITIONS)
        script = " ".join(init.get("command") or [])
        for piece in ("$$TOPICS", '"$$topic"', '"$$PARTITIONS"', "--create",
                      "--if-not-exists", "--replication-factor 1", "--bootstrap-server kafka:"):
            self.assertIn(piece, script)
        broker = environment(self.services["kafka"])
        self.assertEqual(broker["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false")

    def test_design_topics_are_the_ones_code_and_local_stack_use(self):
        in_code = set()
        for svc in (r.name for r in fleet.services(FLEET)):
            src = os.path.join(ROOT, "services", svc, "src")
            for f in os.listdir(src):
                if f.endswith(".h"):
                    with open(os.path.join(src, f)) as fh:
                        in_code |= set(re.findall(r'#define \w+_TOPIC_\w+\s+"([\w.]+)"',
                                                  fh.read()))
        self.assertTrue(in_code, "no *_TOPIC_* constants found")
        self.assertEqual(in_code | {t + ".dlq" for t in in_code}, DESIGN_TOPICS)
        self.assertEqual(set(fleet.topics(FLEET)), DESIGN_TOPICS, "deploy/fleet.conf")
        with open(os.path.join(ROOT, "deploy", "local", "lib.sh")) as f:
            lib = f.read()
        self.assertEqual(int(re.search(r"TOPIC_PARTITIONS=(\d+)", lib).group(1)),
                         TOPIC_PARTITIONS)

    def test_kafka_maximum_batch_is_one_number_everywhere(self):
        # The programs refuse locally what would not fit in KFK_BATCH_MAX; a broker or
        # topic that took less would refuse their batches (fatal for an idempotent
        # producer with the gap-less guarantee), one that took more would accept
        # records no service could dead-letter whole.
        with open(os.path.join(ROOT, "common", "include", "common", "kfk.h")) as f:
            in_code = int(re.search(r"#define KFK_BATCH_MAX (\d+)", f.read()).group(1))
        with open(os.path.join(ROOT, "deploy", "local", "lib.sh")) as f:
            local = int(re.search(r"^KAFKA_MESSAGE_MAX=(\d+)$", f.read(), re.M).group(1))
        self.assertEqual(local, in_code, "lib.sh KAFKA_MESSAGE_MAX")
        with open(os.path.join(ROOT, "deploy", "local", "kafka.sh")) as f:
            stack = f.read()
        self.assertRegex(stack, r"(?m)^message\.max\.bytes=\$KAFKA_MESSAGE_MAX$")
        self.assertIn('--config "max.message.bytes=$KAFKA_MESSAGE_MAX"', stack)
        broker = environment(self.services["kafka"])
        self.assertEqual(int(broker["KAFKA_MESSAGE_MAX_BYTES"]), in_code)
        init = self.services["kafka-init"]
        self.assertEqual(int(environment(init)["MAX_MESSAGE_BYTES"]), in_code)
        self.assertIn('--config "max.message.bytes=$$MAX_MESSAGE_BYTES"',
                      " ".join(init.get("command") or []))

    # ---- addresses name what exists ----

    def grpc_port(self, service):
        _, port = host_port(resolve(environment(self.services[service])["GRPC_ADDR"]))
        return port

    def test_upstream_addresses_name_services_on_their_grpc_ports(self):
        for program, var, upstream in UPSTREAMS:
            value = resolve(environment(self.services[program])[var])
            with self.subTest(program=program, variable=var, value=value):
                self.assertTrue(value.startswith("dns:///"),
                                "dns:/// so that round_robin spreads over replicas")
                host, port = host_port(value)
                self.assertEqual(host, upstream)
                self.assertEqual(port, self.grpc_port(upstream))

    def test_database_urls_match_their_postgres_container(self):
        for program in SERVICES:
            with self.subTest(program=program):
                env = environment(self.services[program])
                self.assertIn("DATABASE_URL", env)
                url = urlsplit(resolve(env["DATABASE_URL"]))
                self.assertIn(url.hostname, self.services)
                pg = self.services[url.hostname]
                self.assertRegex(pg["image"], r"^postgres:15(-bookworm|\.\d+-bookworm)$")
                penv = environment(pg)
                self.assertEqual(url.port or 5432, 5432)
                self.assertEqual(url.username, penv["POSTGRES_USER"])
                self.assertEqual(url.password, penv["POSTGRES_PASSWORD"])
                self.assertEqual(url.path.lstrip("/"), penv["POSTGRES_DB"])
                self.assertEqual(program, f"{penv['POSTGRES_DB']}-svc",
                                 "one database per service, named after it")
                test = " ".join(pg["healthcheck"]["test"])
                self.assertIn("pg_isready", test)
                self.assertEqual(
                    self.services[program]["depends_on"][url.hostname]["condition"],
                    "service_healthy")

    def test_kafka_and_redis_addresses_name_their_containers(self):
        advertised = environment(self.services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
        listeners = {host_port(a.split("//", 1)[1]) for a in advertised.split(",")}
        for program in SERVICES:
            brokers = resolve(environment(self.services[program])["KAFKA_BROKERS"])
            with self.subTest(program=program):
                for b in brokers.split(","):
                    self.assertIn(host_port(b), listeners)
        redis = urlsplit(resolve(environment(self.services["gateway"])["REDIS_URL"]))
        self.assertIn(redis.hostname, self.services)
        self.assertRegex(self.services[redis.hostname]["image"], r"^redis:7")
        self.assertEqual(redis.port, 6379)

    # ---- volumes, build context ----

    def test_airgapped_override_swaps_images_for_the_projects_own(self):
        """tests/deploy/compose.airgapped.yml (the compose test's override): every
        service it names exists here; every pulled image is replaced by one under the
        project's own name (shop-fleet/...), never retagged as an official one, and never
        looked up in a registry; the programs keep their build and get a local base."""
        with open(os.path.join(ROOT, "tests", "deploy", "compose.airgapped.yml")) as f:
            override = yaml.safe_load(f)["services"]
        for name, svc in override.items():
            with self.subTest(service=name):
                self.assertIn(name, self.services)
                self.assertRegex(svc.get("image", ""), r"^shop-fleet/[a-z0-9-]+:[\w.-]+$")
        for name, svc in self.services.items():
            with self.subTest(service=name):
                self.assertIn(name, override, "not replaced for a machine without a registry")
                if "build" in svc:
                    args = override[name]["build"]["args"]
                    self.assertEqual({"BUILD_IMAGE", "RUNTIME_IMAGE"}, set(args))
                else:
                    self.assertEqual(override[name].get("pull_policy"), "never")
                    image = override[name]["image"].split(":")[0].split("/")[-1]
                    self.assertIn(image, os.listdir(os.path.join(ROOT, "tests", "deploy",
                                                                 "images")))

    def test_named_volumes_are_declared(self):
        declared = set(self.compose.get("volumes") or {})
        used = set()
        for svc in self.services.values():
            for v in svc.get("volumes") or []:
                source = v.split(":", 1)[0] if isinstance(v, str) else v.get("source")
                if source and not source.startswith((".", "/", "~")):
                    used.add(source)
        self.assertTrue(used)
        self.assertEqual(used, declared)

    def test_dockerignore_keeps_local_state_out_and_sources_in(self):
        with open(os.path.join(ROOT, ".dockerignore")) as f:
            patterns = [p.strip().lstrip("/") for p in f
                        if p.strip() and not p.startswith("#")]

        def ignored(path):
            return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.replace("**/", ""))
                       for p in patterns)
        for path in (".git", "build", "build-release", ".data", ".data-test", "deploy/.env"):
            with self.subTest(excluded=path):
                self.assertTrue(ignored(path))
        for path in ("CMakeLists.txt", "cmake", "common", "proto", "services", "gateway",
                     "migrations", "tests", "deploy/docker/shop-healthcheck"):
            with self.subTest(included=path):
                self.assertFalse(ignored(path))

    def test_docker_compose_config_accepts_the_file(self):
        compose = compose_command()
        if compose is None:
            self.skipTest("no Docker Compose v2 here (plugin or standalone)")
        # --env-file /dev/null: a developer's deploy/.env must not decide the outcome.
        command = [*compose, "--env-file", "/dev/null", "-f", COMPOSE_FILE, "config", "--quiet"]
        with tempfile.NamedTemporaryFile("w", suffix=".jwt") as secret:
            secret.write("x" * 48)
            secret.flush()
            env = dict(os.environ, JWT_SECRET_FILE=secret.name)
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stderr)
        env.pop("JWT_SECRET_FILE")
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        self.assertNotEqual(proc.returncode, 0, "accepted without JWT_SECRET_FILE")
        self.assertIn("JWT_SECRET_FILE", proc.stderr)


# ------------------------------------------------------------------ helpers ----

@functools.lru_cache(maxsize=None)
def dynamic_symbols(path, which):
    out = subprocess.run(["nm", "-D", which, path], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def needed_libraries(binary):
    """The shared libraries the binary takes symbols from. Debian's gcc links with
    --as-needed except under -fsanitize, so a sanitizer build's NEEDED list also names
    every library pkg-config listed (libatomic, all of abseil); keeping those the
    binary really uses gives the list a release build (what the image runs) has."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                         check=True).stdout
    libs = [lib for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
            if not SANITIZER_LIBS.match(lib)]
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True).stdout, re.M))
    undefined = dynamic_symbols(binary, "--undefined-only")
    return [lib for lib in libs
            if lib not in paths or undefined & dynamic_symbols(paths[lib], "--defined-only")]


def with_dependencies(packages):
    """The packages and everything they depend on, as apt resolves them here."""
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                          "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                          "--no-enhances", *sorted(packages)],
                         capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line and not line[0].isspace()}


@functools.lru_cache(maxsize=None)
def debian_package(soname):
    """The Debian package that ships a library, as installed on this machine."""
    for pattern in (f"/usr/lib/*/{soname}", f"/lib/*/{soname}"):
        proc = subprocess.run(["dpkg", "-S", pattern], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout.split(":", 1)[0].strip()
    raise AssertionError(f"no Debian package ships {soname}")


def compose_command():
    """Docker Compose v2: the docker CLI plugin, else a standalone docker-compose that
    is not 1.x (the Python one, which predates the Compose Specification), else the
    binary the compose test caches."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"],
                                 capture_output=True).returncode == 0:
        return [docker, "compose"]
    # else the one tests/deploy/compose_e2e.sh builds and caches
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "shop-fleet", "tools")
    cached = sorted(glob.glob(os.path.join(cache, "docker-compose-v2.*")))
    standalone = shutil.which("docker-compose") or (cached[-1] if cached else None)
    if standalone:
        proc = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if proc.returncode == 0 and not proc.stdout.strip().lstrip("v").startswith("1."):
            return [standalone]
    return None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(env, variable, path):
    return subprocess.run([HEALTHCHECK_SCRIPT, variable, path], env=env,
                          capture_output=True, timeout=20).returncode


def wait_until_probe(env, variable, path, proc, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if probe(env, variable, path) == 0:
            return True
        time.sleep(0.2)
    return False


def serve_status(status):
    """An HTTP server on 127.0.0.1 answering every GET with `status`; .paths records
    the paths asked for."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.paths = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        PROGRAMS[os.path.basename(arg)] = arg
    unittest.main(argv=sys.argv[:1], verbosity=2)
