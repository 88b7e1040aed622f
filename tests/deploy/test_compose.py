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
  default points at 127.0.0.1 (true only on one host), is set (a secret one as
  NAME_FILE); secrets reach a program as files of its own secrets volume
  (NAME_FILE), never as environment values, and no container's environment holds a
  password;
- zero trust inside the fleet (docs/trust.md, issue 20): the pki container's
  script (deploy/docker/shop-secrets-init) really run here with openssl makes each
  consumer exactly its files, keys readable by their owner only, certificates with
  CN = the consumer signed by the CA, database URLs with verify-full that match their
  PostgreSQL container, a Redis ACL file without a default user, the broker's PEM
  keystore; a second run changes nothing; every container mounts only its own secrets
  volume, read-only; no plaintext listener (Kafka SASL_SSL and an SSL controller on
  127.0.0.1, StandardAuthorizer, SASL PLAIN as the programs' librdkafka logins
  (kfk_sasl_mechanism) with one user per program whose password is the program's;
  PostgreSQL ssl=on with the pki's pg_hba; Redis ACL
  file), no GRPC_PLAINTEXT, every program given its TLS identity; kafka-init's ACLs
  are deploy/fleet.conf's consumes/produces;
  (the programs' settings for TLS, Kafka logins, DATABASE_URL_FILE and REDIS_PASSWORD_FILE
  come with the programs' side of issue 20: against binaries without them, the
  checks against --help fail, as they should);
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
- `docker compose config` accepts the file with no variable set (zero configuration),
  and with the operator's override (deploy/docker-compose.operator.yml), when Compose
  v2 is installed (skipped otherwise).

The high-availability override (deploy/docker-compose.ha.yml, issue 21) is checked
merged onto the base file as Compose merges it (HAComposeTest): every Kafka client
names all three nodes, replication factor 3 and min.insync.replicas 2 everywhere, a
quorum of the three nodes, no plaintext listener; the pki with HA=1 gives each new
container exactly its files (CN = its name), the services' database URLs name both
nodes of their formation with target_session_attrs=read-write; the gateway asks the
Sentinels for the master; each container mounts only its own secrets; no password in
any environment; the single-node parts are not started; its air-gapped override.

usage: test_compose.py PROGRAM_BINARY...  (every program of deploy/fleet.conf, built;
a program's name is its file name)
"""
import fnmatch
import functools
import glob
import hashlib
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
HA_FILE = os.path.join(ROOT, "deploy", "docker-compose.ha.yml")
AIRGAPPED_FILE = os.path.join(ROOT, "tests", "deploy", "compose.airgapped.yml")
AIRGAPPED_HA_FILE = os.path.join(ROOT, "tests", "deploy", "compose.airgapped.ha.yml")
OPERATOR_FILE = os.path.join(ROOT, "deploy", "docker-compose.operator.yml")
SECRETS_INIT = os.path.join(ROOT, "deploy", "docker", "shop-secrets-init")
# Where a container finds its own secrets volume (read-only).
SECRETS_MOUNT = "/run/secrets/shop"
# The consumers of the pki's volumes: compose service -> its volume's consumer name.
SECRET_CONSUMERS = {"order-svc": "order-svc", "product-svc": "product-svc",
                    "user-svc": "user-svc", "gateway": "gateway",
                    "postgres-order": "postgres-order", "postgres-product": "postgres-product",
                    "postgres-user": "postgres-user", "redis": "redis", "kafka": "kafka",
                    "kafka-init": "kafka-admin", "shopctl": "shopctl"}
# What each consumer gets from the pki, and nothing more.
PROGRAM_SECRETS = {"ca.crt", "tls.crt", "tls.key"}
SECRET_FILES = {
    **{f"{svc}-svc": PROGRAM_SECRETS | {"kafka-password", "database-url", "page-token-key"}
       for svc in ("order", "product", "user")},
    "gateway": PROGRAM_SECRETS | {"redis-password", "jwt-secret"},
    **{f"postgres-{svc}": {"ca.crt", "server.crt", "server.key", "password", "pg_hba.conf"}
       for svc in ("order", "product", "user")},
    "redis": {"users.acl", "admin-password"},
    "kafka": {"ca.crt", "server.pem", "admin-password", "admin.properties",
              "order-svc.password", "product-svc.password", "user-svc.password"},
    "kafka-admin": {"ca.crt", "admin.properties"},
    "shopctl": {"ca.crt", "kafka-password"},
}
# The uid each consumer's image runs as: the programs' (deploy/docker/Dockerfile), the
# official postgres and redis images' (999) and apache/kafka's (1000), which the
# air-gapped stand-ins (tests/deploy/images/) copy.
IMAGE_UIDS = {"PROGRAM_UID": 10001, "POSTGRES_UID": 999, "REDIS_UID": 999, "KAFKA_UID": 1000}
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
        """(compose name, service, stages, target) of every program built here (the
        pki's image is checked by test_pki_image_is_the_base_with_openssl)."""
        out = []
        for name, svc in self.services.items():
            build = svc.get("build")
            if build is None or name not in {r.program for r in FLEET}:
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
                        given = var if var in env else f"{var}_FILE"
                        if given != var:
                            self.assertEqual(settings.get(given, {}).get("secret_of"), var,
                                             "required, or its default is this host's")
                        self.assertIn(given, env, "required, or its default is this host's")
                        self.assertTrue(env[given])

    def test_jwt_secret_is_made_by_the_pki_without_configuration(self):
        env = environment(self.services["gateway"])
        self.assertEqual(resolve(env.get("JWT_ALG")) or "HS256", "HS256")
        self.assertNotIn("JWT_SECRET", env)
        self.assertEqual(env.get("JWT_SECRET_FILE"), f"{SECRETS_MOUNT}/jwt-secret")
        self.assertIn("jwt-secret", SECRET_FILES["gateway"])

    def test_secrets_are_files_of_the_programs_own_volume(self):
        """Every secret setting a program reads (--help: "or from a file") is given as
        NAME_FILE, never as its value, and every NAME_FILE names a file the pki puts in
        the program's own volume, mounted read-only where the setting looks."""
        for name in PROGRAMS:
            svc = self.services[name]
            env = environment(svc)
            settings = self.helps[name][0]
            mounts = {v.split(":")[1]: v for v in svc.get("volumes", [])}
            self.assertEqual(mounts.get(SECRETS_MOUNT), f"secrets-{name}:{SECRETS_MOUNT}:ro")
            for key, value in env.items():
                with self.subTest(service=name, setting=key):
                    if key.endswith("_FILE"):
                        self.assertEqual(os.path.dirname(value), SECRETS_MOUNT)
                        self.assertIn(os.path.basename(value), SECRET_FILES[name])
                    if (settings.get(f"{key}_FILE") or {}).get("secret_of") == key:
                        # a secret setting given as a value: only a URL whose secret part
                        # comes from a file of its own (REDIS_URL without its password,
                        # REDIS_PASSWORD_FILE, the contract of issue 20)
                        self.assertRegex(value, r"^[a-z]+://[^:@/]+@", f"use {key}_FILE")
                        self.assertIsNone(urlsplit(value).password)

    def test_no_password_in_any_environment(self):
        """No container's environment holds a secret (docker inspect shows it): no
        variable named like one unless it names a file, no URL with a password, no
        JAAS line."""
        secretish = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$")
        for name, svc in self.services.items():
            for key, value in environment(svc).items():
                with self.subTest(service=name, variable=key):
                    if secretish.search(key):
                        self.assertRegex(key, r"_FILE$")
                    self.assertNotRegex(value or "", r"://[^/@\s:]+:[^/@\s]+@",
                                        "a URL with a password")
                    self.assertNotRegex(value or "", r"(?i)password\s*=")

    def test_each_container_mounts_only_its_own_secrets(self):
        """One volume per consumer: pki writes them all (and alone mounts its state,
        the CA's key); every other container mounts its own, read-only, at
        SECRETS_MOUNT, and no other."""
        declared = set(self.compose["volumes"])
        for name, svc in self.services.items():
            volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
                       for v in svc.get("volumes") or []]
            secret_vols = [v for v in volumes if v.split(":")[0] == "pki"
                           or v.startswith("secrets-")]
            with self.subTest(service=name):
                if name == "pki":
                    expected = {"pki:/pki"} | {f"secrets-{c}:/out/{c}"
                                               for c in SECRET_CONSUMERS.values()}
                    self.assertEqual(set(secret_vols), expected)
                    continue
                consumer = SECRET_CONSUMERS.get(name)
                self.assertIsNotNone(consumer, f"{name} is not a consumer of the pki")
                self.assertEqual(secret_vols, [f"secrets-{consumer}:{SECRETS_MOUNT}:ro"])
                self.assertIn(f"secrets-{consumer}", declared)
                self.assertEqual(self.services[name]["depends_on"]["pki"]["condition"],
                                 "service_completed_successfully")
        self.assertEqual({v for v in declared if v.startswith("secrets-")},
                         {f"secrets-{c}" for c in SECRET_CONSUMERS.values()})

    def test_pki_runs_once_without_network_as_the_images_uids(self):
        pki = self.services["pki"]
        self.assertEqual(str(pki.get("restart")), "no")
        self.assertEqual(pki.get("network_mode"), "none")
        self.assertTrue(pki.get("read_only"))
        self.assertEqual(pki.get("cap_drop"), ["ALL"])
        self.assertEqual(set(pki.get("cap_add")), {"CHOWN", "DAC_OVERRIDE", "FOWNER"})
        self.assertEqual({k: int(v) for k, v in environment(pki).items()}, IMAGE_UIDS)
        # ... and the images do run as those uids
        stages = parse_dockerfile(os.path.join(ROOT, "deploy", "docker", "Dockerfile"))
        for program in PROGRAMS:
            self.assertEqual(instructions(stages, program, "USER")[0],
                             f"{IMAGE_UIDS['PROGRAM_UID']}:{IMAGE_UIDS['PROGRAM_UID']}")
        for image, uid in (("postgres", "POSTGRES_UID"), ("redis", "REDIS_UID"),
                           ("kafka", "KAFKA_UID")):
            with open(os.path.join(ROOT, "tests", "deploy", "images", image, "Dockerfile")) as f:
                self.assertRegex(f.read(), rf"--uid {IMAGE_UIDS[uid]} ", image)

    def test_pki_image_is_the_base_with_openssl(self):
        stages = parse_dockerfile(os.path.join(ROOT, "deploy", "docker", "Dockerfile"))
        self.assertEqual(self.services["pki"]["build"]["target"], "pki")
        self.assertEqual(base_image(stages, "pki"), "debian:bookworm-slim")
        self.assertIn("openssl", set().union(*(apt_packages(r)
                                               for r in instructions(stages, "pki", "RUN"))))
        copies = [exec_form(a)[-2:] for a in instructions(stages, "pki", "COPY")]
        self.assertIn(["deploy/pki.sh", "/usr/local/bin/pki.sh"], copies)
        self.assertIn(["deploy/docker/shop-secrets-init", "/usr/local/bin/shop-secrets-init"],
                      copies)
        self.assertEqual(exec_form(instructions(stages, "pki", "ENTRYPOINT")[0]),
                         ["/usr/local/bin/shop-secrets-init"])

    # ---- no plaintext ----

    def test_no_plaintext_listener(self):
        kafka = environment(self.services["kafka"])
        protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
                         .split(","))
        self.assertEqual(protocols, {"CLIENT": "SASL_SSL", "CONTROLLER": "SSL"})
        listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
        self.assertEqual(set(listeners), set(protocols))
        self.assertTrue(listeners["CONTROLLER"].startswith("127.0.0.1:"),
                        "the controller listener is reachable from the network")
        self.assertEqual(kafka["KAFKA_INTER_BROKER_LISTENER_NAME"], "CLIENT")
        self.assertEqual(kafka["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"], "required")
        # the mechanism the programs' librdkafka logins use (common/src/kfk_conf.c:
        # PLAIN inside TLS, docs/decisions.md "Zero trust inside the fleet: Kafka")
        with open(os.path.join(ROOT, "common", "src", "kfk_conf.c")) as f:
            mechanism = re.search(r'kfk_sasl_mechanism\[\] = "([A-Z0-9-]+)"', f.read()).group(1)
        self.assertEqual(mechanism, "PLAIN")
        self.assertEqual(kafka["KAFKA_SASL_ENABLED_MECHANISMS"], mechanism)
        self.assertEqual(kafka["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"], mechanism)
        self.assertEqual(kafka["KAFKA_SSL_KEYSTORE_TYPE"], "PEM")
        self.assertEqual(kafka["KAFKA_SSL_KEYSTORE_LOCATION"], f"{SECRETS_MOUNT}/server.pem")
        self.assertEqual(kafka["KAFKA_SSL_TRUSTSTORE_LOCATION"], f"{SECRETS_MOUNT}/ca.crt")
        self.assertEqual(kafka["KAFKA_AUTHORIZER_CLASS_NAME"],
                         "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
        self.assertEqual(kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"], "false")
        self.assertEqual(set(kafka["KAFKA_SUPER_USERS"].split(";")), {"User:admin", "User:kafka"})
        script = " ".join(self.services["kafka"]["command"])
        # the PLAIN users: admin and one per <program>.password of the broker's volume
        self.assertIn("listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common."
                      "security.plain.PlainLoginModule required", script)
        self.assertIn("for f in /run/secrets/shop/*.password", script)
        self.assertNotIn("SCRAM", script.upper())
        self.assertIn(f"--command-config {SECRETS_MOUNT}/admin.properties",
                      " ".join(self.services["kafka"]["healthcheck"]["test"]))
        for svc in ("order", "product", "user"):
            pg = self.services[f"postgres-{svc}"]
            with self.subTest(postgres=svc):
                command = " ".join(pg["command"])
                for setting in ("ssl=on", f"ssl_cert_file={SECRETS_MOUNT}/server.crt",
                                f"ssl_key_file={SECRETS_MOUNT}/server.key",
                                f"hba_file={SECRETS_MOUNT}/pg_hba.conf"):
                    self.assertIn(f"-c {setting}", command)
                check = " ".join(pg["healthcheck"]["test"])
                self.assertIn("sslmode=verify-full", check)
                self.assertIn(f"host=postgres-{svc} ", check)
        redis = self.services["redis"]["command"]
        self.assertEqual(redis[redis.index("--aclfile") + 1], f"{SECRETS_MOUNT}/users.acl")
        self.assertIn("--user admin", " ".join(self.services["redis"]["healthcheck"]["test"]))

    def test_programs_speak_tls_only(self):
        for name in PROGRAMS:
            env = environment(self.services[name])
            with self.subTest(program=name):
                self.assertNotIn("GRPC_PLAINTEXT", env)
                for key, file in (("TLS_CA_FILE", "ca.crt"), ("TLS_CERT_FILE", "tls.crt"),
                                  ("TLS_KEY_FILE", "tls.key")):
                    self.assertEqual(env.get(key), f"{SECRETS_MOUNT}/{file}")
                if name in SERVICES:
                    self.assertEqual(env.get("KAFKA_USERNAME"), name)
                    self.assertEqual(env.get("RPC_USER_CALLERS"), "gateway")
                    self.assertEqual(env.get("KAFKA_PASSWORD_FILE"),
                                     f"{SECRETS_MOUNT}/kafka-password")
                    self.assertEqual(env.get("DATABASE_URL_FILE"),
                                     f"{SECRETS_MOUNT}/database-url")
                    self.assertNotIn("DATABASE_URL", env)
        gw = environment(self.services["gateway"])
        self.assertEqual(urlsplit(gw["REDIS_URL"]).username, "gateway")
        self.assertIsNone(urlsplit(gw["REDIS_URL"]).password)
        self.assertEqual(gw["REDIS_PASSWORD_FILE"], f"{SECRETS_MOUNT}/redis-password")

    def test_shopctl_is_a_tool_run_as_the_kafka_admin(self):
        """The DLQ tool reads every DLQ and replays into any topic, which no service's
        ACLs allow: it runs on demand (profile tools) from a service image, as admin,
        with the admin's password and the CA only."""
        svc = self.services["shopctl"]
        self.assertEqual(svc["profiles"], ["tools"])
        self.assertEqual(svc["entrypoint"], ["/usr/local/bin/shopctl"])
        stages = parse_dockerfile(os.path.join(ROOT, "deploy", "docker", "Dockerfile"))
        copies = [exec_form(a)[-1] for a in instructions(stages, svc["build"]["target"], "COPY")]
        self.assertIn("/usr/local/bin/shopctl", copies)
        env = environment(svc)
        self.assertEqual(env["KAFKA_USERNAME"], "admin")
        self.assertEqual(env["KAFKA_PASSWORD_FILE"], f"{SECRETS_MOUNT}/kafka-password")
        self.assertEqual(env["KAFKA_BROKERS"], environment(self.services["order-svc"])
                         ["KAFKA_BROKERS"])
        out = secrets_init_output()
        with open(os.path.join(out, "shopctl", "kafka-password")) as f, \
                open(os.path.join(out, "kafka", "admin-password")) as g:
            self.assertEqual(f.read(), g.read())

    def test_kafka_acls_are_the_manifests(self):
        """kafka-init's ACLS lines: program, consumed topics, produced topic, exactly as
        deploy/fleet.conf says, for every program with a Kafka user."""
        init = self.services["kafka-init"]
        lines = [line.split() for line in environment(init)["ACLS"].strip().splitlines()]
        want = [[r.program, ",".join(r.consumes), ",".join(r.produces)]
                for r in fleet.services(FLEET)]
        self.assertEqual(sorted(lines), sorted(want))
        script = " ".join(init["command"])
        for piece in ('--allow-principal "User:$$prog"', "--operation Read --operation Describe",
                      "--operation Write --operation Describe", '--group "$$prog"',
                      '--topic "$$t.dlq"'):
            self.assertIn(piece, script)
        # the users are the broker's (PLAIN, from the pki's files), not made here
        self.assertNotIn("kafka-configs", script)

    def test_every_program_is_a_kafka_user_of_the_broker(self):
        """Each service logs in as its program with the password of its own volume; the
        broker's volume has that same password as <program>.password (its PLAIN user
        user_<program>), and a user for nothing else but admin."""
        out = secrets_init_output()
        users = {f[:-len(".password")] for f in os.listdir(os.path.join(out, "kafka"))
                 if f.endswith(".password")}
        self.assertEqual(users, set(SERVICES))
        for program in SERVICES:
            with self.subTest(program=program):
                self.assertEqual(environment(self.services[program])["KAFKA_USERNAME"], program)
                with open(os.path.join(out, program, "kafka-password")) as f, \
                        open(os.path.join(out, "kafka", f"{program}.password")) as g:
                    self.assertEqual(f.read(), g.read())

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
                if name in one_shot or "tools" in (svc.get("profiles") or []):
                    # run once (a dependency that exits, or a tool: `compose run`)
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
        # GRPC_PLAINTEXT: no certificates here, and none is needed to test the probe
        cases = [("gateway", "GATEWAY_ADDR", {"REDIS_URL": f"redis://{closed}/0",
                                               "JWT_SECRET": "s" * 48,
                                               "GRPC_PLAINTEXT": "true"})]
        cases += [(svc, "ADMIN_ADDR", {"GRPC_ADDR": f"127.0.0.1:{free_port()}",
                                       "DATABASE_URL": f"postgresql://x:x@{closed}/x",
                                       "KAFKA_BROKERS": closed, "GRPC_PLAINTEXT": "true"})
                  for svc in SERVICES]
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
        """The URL the pki writes for each service names its PostgreSQL container on
        5432, with the role, password and database that container was initialised with,
        and verifies the server's certificate against the CA in the service's volume."""
        out = secrets_init_output()
        for program in SERVICES:
            with self.subTest(program=program):
                with open(os.path.join(out, program, "database-url")) as f:
                    url = urlsplit(f.read())
                self.assertEqual(url.scheme, "postgresql")
                self.assertIn(url.hostname, self.services)
                pg = self.services[url.hostname]
                self.assertRegex(pg["image"], r"^postgres:15(-bookworm|\.\d+-bookworm)$")
                penv = environment(pg)
                self.assertEqual(url.port or 5432, 5432)
                self.assertEqual(url.username, penv["POSTGRES_USER"])
                self.assertEqual(penv["POSTGRES_PASSWORD_FILE"], f"{SECRETS_MOUNT}/password")
                with open(os.path.join(out, SECRET_CONSUMERS[url.hostname], "password")) as f:
                    self.assertEqual(url.password, f.read())
                self.assertGreaterEqual(len(url.password), 32)
                self.assertEqual(url.path.lstrip("/"), penv["POSTGRES_DB"])
                self.assertEqual(program, f"{penv['POSTGRES_DB']}-svc",
                                 "one database per service, named after it")
                query = dict(q.split("=", 1) for q in url.query.split("&"))
                self.assertEqual(query, {"sslmode": "verify-full",
                                         "sslrootcert": f"{SECRETS_MOUNT}/ca.crt"})
                self.assertIn(url.hostname, certificate_names(
                    os.path.join(out, url.hostname, "server.crt")))
                self.assertEqual(
                    self.services[program]["depends_on"][url.hostname]["condition"],
                    "service_healthy")

    def test_secrets_init_gives_each_consumer_exactly_its_files(self):
        out = secrets_init_output()
        self.assertEqual(set(os.listdir(out)), set(SECRET_FILES))
        for consumer, files in SECRET_FILES.items():
            d = os.path.join(out, consumer)
            with self.subTest(consumer=consumer):
                self.assertEqual(set(os.listdir(d)), files)
                self.assertEqual(os.stat(d).st_mode & 0o777, 0o700)
                for f in files:
                    mode = os.stat(os.path.join(d, f)).st_mode & 0o777
                    self.assertEqual(mode, 0o600 if consumer.startswith("postgres-")
                                     and f == "server.key" else 0o400, f)
                for crt in ("tls.crt", "server.crt"):
                    if crt in files:
                        path = os.path.join(d, crt)
                        self.assertEqual(certificate_cn(path), consumer)
                        self.assertIn(consumer, certificate_names(path))
                        subprocess.run(["openssl", "verify", "-CAfile",
                                        os.path.join(d, "ca.crt"), path], check=True,
                                       capture_output=True)
        # the CA is one; its key is given to nobody
        cas = {open(os.path.join(out, c, "ca.crt")).read() for c, files in SECRET_FILES.items()
               if "ca.crt" in files}
        self.assertEqual(len(cas), 1)
        for consumer in SECRET_FILES:
            for f in os.listdir(os.path.join(out, consumer)):
                with open(os.path.join(out, consumer, f)) as fh:
                    text = fh.read()
                if "PRIVATE KEY" in text:
                    self.assertIn(f, ("tls.key", "server.key", "server.pem"))
        with open(os.path.join(out, "kafka", "server.pem")) as f:
            pem = f.read()
        self.assertIn("-----BEGIN PRIVATE KEY-----", pem)
        self.assertIn("-----BEGIN CERTIFICATE-----", pem)

    def test_secrets_init_rules_and_acls(self):
        out = secrets_init_output()
        for svc in ("order", "product", "user"):
            with open(os.path.join(out, f"postgres-{svc}", "pg_hba.conf")) as f:
                rules = [line.split() for line in f if line.strip() and not line.startswith("#")]
            self.assertEqual(rules, [["local", "all", "all", "scram-sha-256"],
                                     ["hostssl", "all", "all", "all", "scram-sha-256"],
                                     ["hostnossl", "all", "all", "all", "reject"]])
        with open(os.path.join(out, "redis", "users.acl")) as f:
            users = {line.split()[1]: line.split()[2:] for line in f if line.startswith("user ")}
        self.assertEqual(set(users), {"default", "gateway", "admin"})
        self.assertIn("off", users["default"])
        self.assertNotIn("on", users["default"])
        self.assertNotIn("nopass", " ".join(sum(users.values(), [])))
        for user, consumer, file in (("gateway", "gateway", "redis-password"),
                                     ("admin", "redis", "admin-password")):
            with open(os.path.join(out, consumer, file)) as f:
                digest = hashlib.sha256(f.read().encode()).hexdigest()
            self.assertIn("#" + digest, users[user], f"{user}'s password hash")
        prefix = self.helps["gateway"][1] if "gateway" in self.helps else ""
        m = re.search(r"REDIS_PREFIX=(\S+)", prefix)
        self.assertIn(f"~{m.group(1) if m else 'gw:'}*", users["gateway"])
        self.assertIn("-@all", users["gateway"])
        granted = {w[1:] for w in users["gateway"] if w.startswith("+")}
        # what the gateway runs: its scripts (EVAL/EVALSHA and the commands inside
        # them), DEL, PING (gateway/src/session.c, ratelimit.c, routes_ops.c); the same
        # rules as the local stack's (deploy/local/redis.sh)
        self.assertEqual(granted, {"ping", "eval", "evalsha", "get", "set", "del", "exists",
                                   "incr", "pexpire", "pttl", "hset", "hmget"})
        with open(os.path.join(ROOT, "deploy", "local", "redis.sh")) as f:
            local = re.search(r"^REDIS_GATEWAY_RULES='([^']*)'", f.read(), re.M).group(1)
        self.assertEqual(users["gateway"][2:], local.split(),
                         "not the local stack's rules for the gateway")
        used = set()
        for src in ("session.c", "ratelimit.c", "redis_pool.c", "routes_ops.c"):
            with open(os.path.join(ROOT, "gateway", "src", src)) as f:
                text = f.read()
            used |= {c.lower() for c in re.findall(r"redis\.call\('([A-Z]+)'", text)}
            used |= {c.lower() for c in re.findall(r'\{?"(EVALSHA|EVAL|DEL|PING|SELECT|AUTH)"',
                                                    text)}
        # AUTH needs no rule (Redis lets every user run it); SELECT is sent only for a
        # REDIS_URL naming a database, which the compose file's does not
        self.assertEqual(urlsplit(environment(self.services["gateway"])["REDIS_URL"]).path, "")
        self.assertEqual(used - granted - {"auth", "select"}, set(),
                         "the gateway runs commands its user may not")
        with open(os.path.join(out, "kafka", "admin.properties")) as f:
            admin = f.read()
        with open(os.path.join(out, "kafka", "admin-password")) as f:
            self.assertIn(f'password="{f.read()}";', admin)
        self.assertIn("security.protocol=SASL_SSL", admin)
        self.assertIn("sasl.mechanism=PLAIN", admin)
        self.assertIn("sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule"
                      ' required username="admin" ', admin)
        self.assertIn(f"ssl.truststore.location={SECRETS_MOUNT}/ca.crt", admin)

    def test_secrets_init_is_idempotent(self):
        out = secrets_init_output()
        before = snapshot(out)
        proc = run_secrets_init(os.path.dirname(out))
        self.assertEqual(proc.stderr.count("wrote"), 0, proc.stderr)
        self.assertEqual(snapshot(out), before)

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
        self.assertEqual(redis.username, "gateway", "the ACL user the pki makes")
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
        # Zero configuration: no variable set at all.
        env = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
        command = [*compose, "--env-file", "/dev/null", "-f", COMPOSE_FILE]
        proc = subprocess.run([*command, "config", "--quiet"], capture_output=True, text=True,
                              env=env, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        # the operator's override, with its files
        with tempfile.TemporaryDirectory() as tmp:
            for var in ("SHOP_CA_CRT_FILE", "SHOP_CA_KEY_FILE", "JWT_SECRET_FILE",
                        "ORDER_PAGE_TOKEN_KEY_FILE", "PRODUCT_PAGE_TOKEN_KEY_FILE",
                        "USER_PAGE_TOKEN_KEY_FILE"):
                env[var] = os.path.join(tmp, var)
                with open(env[var], "w") as f:
                    f.write("x" * 48)
            proc = subprocess.run([*command, "-f", OPERATOR_FILE, "config", "--format", "json"],
                                  capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        merged = json.loads(proc.stdout)["services"]
        self.assertEqual(merged["gateway"]["environment"]["JWT_SECRET_FILE"],
                         "/run/secrets/jwt_secret")
        self.assertEqual({s["source"] for s in merged["pki"]["secrets"]},
                         {"operator_ca_crt", "operator_ca_key"})
        # the override keeps the generated volume (TLS identity, passwords)
        self.assertTrue(any(v.get("target") == SECRETS_MOUNT for v in merged["gateway"]["volumes"]))


# ------------------------------------------------------------ HA override ----
# deploy/docker-compose.ha.yml merged onto the base file, as Compose does it.

class Override:
    """A value tagged !override: it replaces the base file's instead of merging."""
    def __init__(self, value):
        self.value = value


class Reset:
    """!reset: the key is removed from the merged file."""


def load_compose_file(path):
    class Loader(yaml.SafeLoader):
        pass

    def override(loader, node):
        if isinstance(node, yaml.SequenceNode):
            return Override(loader.construct_sequence(node, deep=True))
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)
            return Override(loader.construct_mapping(node, deep=True))
        return Override(loader.construct_scalar(node))
    Loader.add_constructor("!override", override)
    Loader.add_constructor("!reset", lambda loader, node: Reset())
    with open(path) as f:
        return yaml.load(f, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


def _volume_target(v):
    return v.split(":")[1] if isinstance(v, str) else v["target"]


def merge(base, over, key=None):
    """Compose's merge of an override onto a base value: mappings key by key, `volumes`
    by target, other sequences (command, entrypoint, healthcheck test, profiles)
    replaced; !override replaces, !reset removes."""
    if isinstance(over, Override):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = v.value if isinstance(v, Override) else v
        return out
    if key == "volumes" and isinstance(base, list) and isinstance(over, list):
        targets = {_volume_target(v): v for v in base}
        targets.update({_volume_target(v): v for v in over})
        return list(targets.values())
    return over


def load_ha(*extra):
    merged = load_compose_file(COMPOSE_FILE)
    for path in (HA_FILE, *extra):
        merged = merge(merged, load_compose_file(path))
    return merged


def active(services):
    """The services `up` starts: no profile."""
    return {n: s for n, s in services.items() if not s.get("profiles")}


# The HA consumers of the pki (HA=1): their files, on top of the single-node ones.
PG_NODE_SECRETS = {"ca.crt", "server.crt", "server.key", "pg_hba.conf", "password",
                   "replication-password", "monitor-password"}
HA_SECRET_FILES = {
    **{c: set(f) for c, f in SECRET_FILES.items()},
    "redis": {"users.acl", "admin-password", "replication-password"},
    "redis-replica": {"users.acl", "admin-password", "replication-password"},
    **{f"kafka-{k}": SECRET_FILES["kafka"] for k in (1, 2, 3)},
    **{f"sentinel-{k}": {"users.conf", "admin-password", "sentinel-password"}
       for k in (1, 2, 3)},
    "postgres-monitor": {"ca.crt", "server.crt", "server.key", "pg_hba.conf",
                         "monitor-password"},
    **{f"postgres-{svc}-{n}": PG_NODE_SECRETS for svc in ("order", "product", "user")
       for n in (1, 2)},
}
# Settings of issue 21's gateway (REDIS_SENTINELS, REDIS_MASTER_NAME): written to the
# contract before that gateway is merged; checked against --help when the binary has them.
SENTINEL_SETTINGS = {"REDIS_SENTINELS", "REDIS_MASTER_NAME"}


def consumer_of(name):
    return SECRET_CONSUMERS.get(name, name)


class HAComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.merged = load_ha()
        cls.all_services = cls.merged["services"]
        cls.services = active(cls.all_services)
        cls.kafka_nodes = sorted(n for n, s in cls.services.items()
                                 if "KAFKA_NODE_ID" in environment(s))
        cls.helps = {name: help_settings(path) for name, path in PROGRAMS.items()}

    def env(self, name):
        return {k: resolve(v) for k, v in environment(self.all_services[name]).items()}

    # ---- topology ----

    def test_ha_topology_replaces_the_single_nodes(self):
        self.assertEqual(self.kafka_nodes, ["kafka-1", "kafka-2", "kafka-3"])
        for name in ("kafka", "postgres-order", "postgres-product", "postgres-user"):
            with self.subTest(single=name):
                self.assertIn(name, self.all_services)
                self.assertNotIn(name, self.services, "started by `up` in HA")
        for name in ("postgres-monitor", "redis", "redis-replica", "sentinel-1",
                     "sentinel-2", "sentinel-3",
                     *(f"postgres-{s}-{n}" for s in ("order", "product", "user") for n in (1, 2))):
            self.assertIn(name, self.services)
        for name, svc in self.services.items():
            for dep in svc.get("depends_on") or {}:
                with self.subTest(service=name, dependency=dep):
                    self.assertIn(dep, self.services, "depends on a service `up` does not start")

    def test_ha_long_running_containers_have_healthchecks_and_restart(self):
        one_shot = {dep for s in self.services.values()
                    for dep, spec in (s.get("depends_on") or {}).items()
                    if spec.get("condition") == "service_completed_successfully"}
        for name, svc in self.services.items():
            if name in one_shot or name in PROGRAMS:
                continue  # the programs: their images' HEALTHCHECK (ComposeTest)
            with self.subTest(service=name):
                self.assertEqual(svc.get("restart"), "unless-stopped")
                self.assertTrue((svc.get("healthcheck") or {}).get("test"))
                for dep, spec in (svc.get("depends_on") or {}).items():
                    if spec["condition"] == "service_healthy":
                        self.assertTrue(self.services[dep].get("healthcheck")
                                        or dep in PROGRAMS, dep)

    # ---- Kafka ----

    def test_every_kafka_client_lists_all_nodes(self):
        nodes = {f"{n}:9092" for n in self.kafka_nodes}
        for name in self.kafka_nodes:
            with self.subTest(node=name):
                self.assertEqual(self.env(name)["KAFKA_ADVERTISED_LISTENERS"],
                                 f"CLIENT://{name}:9092,CONTROLLER://{name}:9093")
        for name in (*SERVICES, "shopctl"):
            with self.subTest(client=name):
                brokers = self.env(name)["KAFKA_BROKERS"].split(",")
                self.assertEqual(set(brokers), nodes)
                self.assertEqual(len(brokers), len(nodes))
        init = self.services["kafka-init"]
        self.assertEqual(set(self.env("kafka-init")["BROKERS"].split(",")), nodes)
        script = " ".join(init["command"])
        self.assertIn('--bootstrap-server "$$BROKERS"', script)
        self.assertNotIn("kafka:9092", script)
        for name in self.kafka_nodes:
            self.assertEqual(init["depends_on"][name]["condition"], "service_healthy")
        self.assertNotIn("kafka", init["depends_on"])

    def test_kafka_replication_factor_3_min_isr_2(self):
        voters = set()
        ids = set()
        for name in self.kafka_nodes:
            env = self.env(name)
            with self.subTest(node=name):
                for key, want in (("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
                                  ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
                                  ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
                                  ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
                                  ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
                                  ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "3"),
                                  ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "2"),
                                  ("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "false"),
                                  ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
                                  ("KAFKA_PROCESS_ROLES", "broker,controller")):
                    self.assertEqual(env.get(key), want, key)
                ids.add(env["KAFKA_NODE_ID"])
                voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
                self.assertEqual(env["CLUSTER_ID"], self.env("kafka-1")["CLUSTER_ID"])
                self.assertEqual(int(env["KAFKA_MESSAGE_MAX_BYTES"]),
                                 int(environment(self.all_services["kafka"])["KAFKA_MESSAGE_MAX_BYTES"]))
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(voters), 1, "one quorum for all")
        quorum = {tuple(v.split("@")) for v in voters.pop().split(",")}
        self.assertEqual(quorum, {(self.env(n)["KAFKA_NODE_ID"], f"{n}:9093")
                                  for n in self.kafka_nodes})
        env = self.env("kafka-init")
        self.assertEqual(env["REPLICATION_FACTOR"], "3")
        self.assertEqual(env["MIN_INSYNC_REPLICAS"], "2")
        self.assertEqual(set(env["TOPICS"].split()), DESIGN_TOPICS)
        script = " ".join(self.services["kafka-init"]["command"])
        self.assertIn('--replication-factor "$$REPLICATION_FACTOR"', script)
        self.assertIn('--config "min.insync.replicas=$$MIN_INSYNC_REPLICAS"', script)
        self.assertIn('--config "max.message.bytes=$$MAX_MESSAGE_BYTES"', script)
        for piece in ('--allow-principal "User:$$prog"', '--group "$$prog"', '--topic "$$t.dlq"'):
            self.assertIn(piece, script)

    # ---- no plaintext ----

    def test_ha_no_plaintext_listener(self):
        single = environment(self.all_services["kafka"])
        for name in self.kafka_nodes:
            env = self.env(name)
            with self.subTest(node=name):
                protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
                self.assertEqual(protocols, {"CLIENT": "SASL_SSL", "CONTROLLER": "SSL"})
                listeners = dict(i.split("://") for i in env["KAFKA_LISTENERS"].split(","))
                self.assertEqual(set(listeners), set(protocols))
                self.assertEqual(env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"], "required")
                self.assertEqual(env["KAFKA_INTER_BROKER_LISTENER_NAME"], "CLIENT")
                for key in ("KAFKA_SASL_ENABLED_MECHANISMS", "KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL",
                            "KAFKA_SSL_KEYSTORE_LOCATION", "KAFKA_SSL_TRUSTSTORE_LOCATION",
                            "KAFKA_AUTHORIZER_CLASS_NAME", "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
                            "KAFKA_SSL_PRINCIPAL_MAPPING_RULES"):
                    self.assertEqual(env[key], resolve(single[key]), key)
                # the quorum's super users: the nodes' certificates, and admin
                self.assertEqual(set(env["KAFKA_SUPER_USERS"].split(";")),
                                 {"User:admin", *(f"User:{n}" for n in self.kafka_nodes)})
                script = " ".join(self.services[name]["command"])
                self.assertEqual(script, " ".join(self.all_services["kafka"]["command"]),
                                 "not the single broker's start script")
                self.assertIn(f"--bootstrap-server {name}:9092 --command-config {SECRETS_MOUNT}/admin.properties",
                              " ".join(self.services[name]["healthcheck"]["test"]))
        out = ha_secrets_init_output()
        for name in self.kafka_nodes:
            with open(os.path.join(out, name, "server.pem")) as f:
                pem = f.read()
            crt = os.path.join(tempfile.mkdtemp(), "node.crt")
            with open(crt, "w") as f:
                f.write(pem[pem.index("-----BEGIN CERTIFICATE-----"):])
            self.assertEqual(certificate_cn(crt), name)
        # PostgreSQL: TLS + SCRAM for everything on the network, no trust anywhere
        for consumer in HA_SECRET_FILES:
            if not consumer.startswith("postgres-") or consumer.count("-") < 2 and consumer != "postgres-monitor":
                continue
            with self.subTest(hba=consumer):
                with open(os.path.join(out, consumer, "pg_hba.conf")) as f:
                    rules = [line.split() for line in f if line.strip() and not line.startswith("#")]
                self.assertEqual(rules[-1], ["hostnossl", "all", "all", "all", "reject"])
                for rule in rules[:-1]:
                    self.assertIn(rule[0], ("local", "hostssl"))
                    self.assertIn(rule[-1], ("scram-sha-256", "peer"))
                    if rule[-1] == "peer":
                        self.assertEqual(rule[:3], ["local", "all", "postgres"])
        with open(os.path.join(ROOT, "tests", "deploy", "images", "postgres", "shop-pg-ha")) as f:
            script = f.read()
        self.assertIn("--ssl-mode verify-full", script)
        self.assertIn("--skip-pg-hba", script)
        self.assertNotRegex(script, r"--auth\b|--no-ssl|--ssl-self-signed|sslmode=(disable|allow|prefer|require)\b")
        for name, svc in self.services.items():
            if str(svc.get("image", "")).startswith("shop-fleet/postgres"):
                with self.subTest(pg=name):
                    self.assertEqual(svc["entrypoint"][0], "/usr/local/bin/shop-pg-ha")
                    check = " ".join(svc["healthcheck"]["test"])
                    if name != "postgres-monitor":
                        self.assertIn(f"host={name} ", check)
                        self.assertIn("sslmode=verify-full", check)
        # Redis: the ACL file, no default user; Sentinels with users too
        for name in ("redis", "redis-replica"):
            script = " ".join(self.services[name]["command"])
            self.assertIn("aclfile $$s/users.acl", script)
            self.assertIn("masterauth $$(cat $$s/replication-password)", script)
            with open(os.path.join(out, name, "users.acl")) as f:
                self.assertRegex(f.read(), r"(?m)^user default off ")
        for k in (1, 2, 3):
            with open(os.path.join(out, f"sentinel-{k}", "users.conf")) as f:
                self.assertRegex(f.read(), r"(?m)^user default off ")
            self.assertIn("cat $$s/users.conf", " ".join(self.services[f"sentinel-{k}"]["command"]))

    # ---- PostgreSQL ----

    def test_ha_database_urls_name_both_nodes_read_write(self):
        out = ha_secrets_init_output()
        for program in SERVICES:
            with self.subTest(program=program):
                with open(os.path.join(out, program, "database-url")) as f:
                    url = f.read()
                m = re.match(r"^postgresql://([^:@/]+):([^@/]+)@([^/]+)/([^?]+)\?(.*)$", url)
                self.assertIsNotNone(m, url)
                role, password, hosts, db, query = m.groups()
                query = dict(q.split("=", 1) for q in query.split("&"))
                self.assertEqual(query, {"target_session_attrs": "read-write",
                                         "sslmode": "verify-full",
                                         "sslrootcert": f"{SECRETS_MOUNT}/ca.crt"})
                svc = program[:-len("-svc")]
                nodes = [h.rsplit(":", 1) for h in hosts.split(",")]
                self.assertEqual([h for h, _ in nodes], [f"postgres-{svc}-1", f"postgres-{svc}-2"])
                self.assertEqual({p for _, p in nodes}, {"5432"})
                self.assertEqual((role, db), (svc, svc))
                self.assertGreaterEqual(len(password), 32)
                deps = self.services[program]["depends_on"]
                self.assertNotIn(f"postgres-{svc}", deps)
                for host, _ in nodes:
                    env = self.env(host)
                    self.assertEqual((env["PG_FORMATION"], env["PG_DBNAME"], env["PG_ROLE"],
                                      env["PG_HOSTNAME"], env["PG_MONITOR"]),
                                     (svc, svc, svc, host, "postgres-monitor"))
                    with open(os.path.join(out, host, "password")) as f:
                        self.assertEqual(f.read(), password)
                    self.assertEqual(certificate_cn(os.path.join(out, host, "server.crt")), host)
                    self.assertIn(host, certificate_names(os.path.join(out, host, "server.crt")))
                    self.assertEqual(deps[host]["condition"], "service_healthy")
                # one replicator password per formation, the monitor's login shared
                for f in ("replication-password", "monitor-password"):
                    with open(os.path.join(out, nodes[0][0], f)) as a, \
                            open(os.path.join(out, nodes[1][0], f)) as b:
                        self.assertEqual(a.read(), b.read())
        self.assertEqual(set(self.env("postgres-monitor")["PG_FORMATIONS"].split()),
                         {r.name for r in fleet.services(FLEET) if r.name in ("order", "product", "user")})

    # ---- Redis ----

    def test_gateway_finds_the_redis_master_through_the_sentinels(self):
        env = self.env("gateway")
        sentinels = sorted(n for n in self.services if n.startswith("sentinel-"))
        self.assertEqual(len(sentinels), 3)
        self.assertEqual(env["REDIS_SENTINELS"].split(","), [f"{n}:26379" for n in sentinels])
        self.assertEqual(env["REDIS_MASTER_NAME"], "shop")
        self.assertEqual(urlsplit(env["REDIS_URL"]).username, "gateway")
        self.assertIsNone(urlsplit(env["REDIS_URL"]).password)
        self.assertEqual(env["REDIS_PASSWORD_FILE"], f"{SECRETS_MOUNT}/redis-password")
        for n in sentinels:
            self.assertEqual(self.services["gateway"]["depends_on"][n]["condition"], "service_healthy")
            senv = self.env(n)
            self.assertEqual(senv["REDIS_MASTER_NAME"], env["REDIS_MASTER_NAME"])
            self.assertEqual(senv["SENTINEL_SELF"], n)
            script = " ".join(self.services[n]["command"])
            self.assertIn("port 26379", script)
            # quorum 2 of the 3 Sentinels
            self.assertIn('state="sentinel monitor $$REDIS_MASTER_NAME $$REDIS_INITIAL_MASTER 6379 2"', script)
            self.assertIn("sentinel auth-user $$REDIS_MASTER_NAME sentinel", script)
        for n in ("redis", "redis-replica"):
            self.assertEqual(self.env(n)["REDIS_SELF"], n)
            self.assertEqual(self.env(n)["REDIS_INITIAL_MASTER"], "redis")
        out = ha_secrets_init_output()
        with open(os.path.join(out, "sentinel-1", "users.conf")) as f:
            users = {line.split()[1]: line.split() for line in f}
        self.assertEqual(users["gateway"][4:], ["resetkeys", "resetchannels", "-@all", "+ping",
                                                "+sentinel|get-master-addr-by-name"])
        with open(os.path.join(out, "redis", "users.acl")) as f:
            acl = {line.split()[1]: line.split() for line in f}
        self.assertIn("+role", acl["gateway"])
        self.assertIn("+wait", acl["gateway"])
        self.assertEqual(set(acl), {"default", "gateway", "admin", "replication", "sentinel"})
        # the same passwords as the gateway's and the Sentinels' (hashes in the files)
        with open(os.path.join(out, "gateway", "redis-password")) as f:
            digest = hashlib.sha256(f.read().encode()).hexdigest()
        self.assertEqual(acl["gateway"][3], f"#{digest}")
        self.assertEqual(users["gateway"][3], f"#{digest}")
        with open(os.path.join(out, "sentinel-1", "sentinel-password")) as f:
            digest = hashlib.sha256(f.read().encode()).hexdigest()
        self.assertEqual(acl["sentinel"][3], f"#{digest}")
        self.assertEqual(users["sentinel"][3], f"#{digest}")
        settings = self.helps.get("gateway", ({}, ""))[0]
        if not SENTINEL_SETTINGS <= set(settings):
            self.skipTest("this gateway has no REDIS_SENTINELS / REDIS_MASTER_NAME yet "
                          "(issue 21's gateway): the settings follow the contract")
        for key in SENTINEL_SETTINGS:
            self.assertIsNone(value_problem(settings[key]["kind"] or "", env[key]), key)

    def test_ha_program_settings_are_ones_the_programs_read(self):
        for program, (settings, _) in self.helps.items():
            with self.subTest(program=program):
                unknown = set(environment(self.services[program])) - set(settings)
                if program == "gateway" and not SENTINEL_SETTINGS <= set(settings):
                    unknown -= SENTINEL_SETTINGS  # the contract of issue 21, not yet merged
                self.assertEqual(sorted(unknown), [])

    # ---- secrets ----

    def test_ha_each_container_mounts_only_its_own_secrets(self):
        declared = set(self.merged["volumes"])
        pki_volumes = {v for v in self.services["pki"]["volumes"]}
        self.assertEqual(pki_volumes, {"pki:/pki"} | {f"secrets-{c}:/out/{c}" for c in HA_SECRET_FILES})
        self.assertEqual(str(environment(self.services["pki"])["HA"]), "1")
        for name, svc in self.services.items():
            if name == "pki":
                continue
            volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
                       for v in svc.get("volumes") or []]
            secret = [v for v in volumes if v.startswith(("secrets-", "pki:"))]
            with self.subTest(service=name):
                consumer = consumer_of(name)
                self.assertIn(consumer, HA_SECRET_FILES)
                self.assertEqual(secret, [f"secrets-{consumer}:{SECRETS_MOUNT}:ro"])
                self.assertEqual(svc["depends_on"]["pki"]["condition"],
                                 "service_completed_successfully")
        used = {v.split(":")[0] for s in self.all_services.values() for v in s.get("volumes") or []
                if isinstance(v, str) and not v.startswith((".", "/"))}
        self.assertEqual(used, declared)

    def test_ha_secrets_init_gives_each_consumer_exactly_its_files(self):
        out = ha_secrets_init_output()
        self.assertEqual(set(os.listdir(out)), set(HA_SECRET_FILES))
        for consumer, files in HA_SECRET_FILES.items():
            d = os.path.join(out, consumer)
            with self.subTest(consumer=consumer):
                self.assertEqual(set(os.listdir(d)), files)
                for f in files:
                    mode = os.stat(os.path.join(d, f)).st_mode & 0o777
                    self.assertEqual(mode, 0o600 if consumer.startswith("postgres-")
                                     and f == "server.key" else 0o400, f)
                for crt in ("tls.crt", "server.crt"):
                    if crt in files:
                        self.assertEqual(certificate_cn(os.path.join(d, crt)), consumer)
        before = snapshot(out)
        proc = run_secrets_init(os.path.dirname(out), HA_SECRET_FILES, HA="1")
        self.assertEqual(proc.stderr.count("wrote"), 0, proc.stderr)
        self.assertEqual(snapshot(out), before)

    def test_ha_no_password_in_any_environment(self):
        secretish = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$")
        for name, svc in self.all_services.items():
            for key, value in environment(svc).items():
                with self.subTest(service=name, variable=key):
                    if secretish.search(key):
                        self.assertRegex(key, r"_FILE$")
                    self.assertNotRegex(value or "", r"://[^/@\s:]+:[^/@\s]+@")
                    self.assertNotRegex(value or "", r"(?i)password\s*=")

    def test_ha_containers_publish_no_ports_but_the_gateway(self):
        for name, svc in self.services.items():
            with self.subTest(service=name):
                self.assertNotIn("container_name", svc)
                if name != "gateway":
                    self.assertNotIn("ports", svc)

    # ---- air-gapped, compose itself ----

    def test_ha_airgapped_override_swaps_images_for_the_projects_own(self):
        merged = active(load_ha(AIRGAPPED_FILE, AIRGAPPED_HA_FILE)["services"])
        images = os.listdir(os.path.join(ROOT, "tests", "deploy", "images"))
        for name, svc in merged.items():
            with self.subTest(service=name):
                self.assertRegex(svc.get("image", ""), r"^shop-fleet/[a-z0-9-]+:[\w.-]+$")
                if name not in PROGRAMS and name != "pki":
                    self.assertEqual(svc.get("pull_policy"), "never")
                    self.assertIn(svc["image"].split(":")[0].split("/")[-1], images)

    def test_ha_docker_compose_config_accepts_the_files(self):
        compose = compose_command()
        if compose is None:
            self.skipTest("no Docker Compose v2 here (plugin or standalone)")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
        for files in ((COMPOSE_FILE, HA_FILE),
                      (COMPOSE_FILE, HA_FILE, AIRGAPPED_FILE, AIRGAPPED_HA_FILE)):
            with self.subTest(files=[os.path.basename(f) for f in files]):
                args = [a for f in files for a in ("-f", f)]
                proc = subprocess.run([*compose, "--env-file", "/dev/null", *args, "config",
                                       "--format", "json"], capture_output=True, text=True,
                                      env=env, timeout=60)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                services = json.loads(proc.stdout)["services"]
                # what Compose merged is what this test merged
                mine = active(load_ha(*files[2:])["services"])
                self.assertEqual(set(services), set(mine))
                for name in SERVICES:
                    self.assertEqual(set(services[name]["depends_on"]),
                                     set(mine[name]["depends_on"]))


# ------------------------------------------------------------------ helpers ----

def run_secrets_init(base, consumers=None, **extra_env):
    """deploy/docker/shop-secrets-init with its state in base/pki and the consumers'
    volumes under base/out, every uid this process's (so it runs unprivileged);
    extra_env: HA="1" for the HA topology's."""
    os.makedirs(os.path.join(base, "out"), exist_ok=True)
    for consumer in consumers or SECRET_FILES:
        os.makedirs(os.path.join(base, "out", consumer), exist_ok=True)
    uid = str(os.getuid())
    env = dict(PATH=os.path.dirname(SECRETS_INIT) + ":" + os.path.join(ROOT, "deploy") + ":"
               + os.environ.get("PATH", "/usr/bin:/bin"),
               STATE=os.path.join(base, "pki"), OUT=os.path.join(base, "out"),
               **{k: uid for k in IMAGE_UIDS}, **extra_env)
    with tempfile.TemporaryDirectory() as bindir:
        # pki.sh is called by name, as in the image
        os.symlink(os.path.join(ROOT, "deploy", "pki.sh"), os.path.join(bindir, "pki.sh"))
        env["PATH"] = bindir + ":" + env["PATH"]
        proc = subprocess.run(["sh", SECRETS_INIT], env=env, capture_output=True, text=True,
                              timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"shop-secrets-init exited {proc.returncode}: {proc.stderr}")
    return proc


_SECRETS_DIR = None


def secrets_init_output():
    """The consumers' directories of one real run of shop-secrets-init (made once)."""
    global _SECRETS_DIR
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("no openssl here to run deploy/docker/shop-secrets-init")
    if _SECRETS_DIR is None:
        _SECRETS_DIR = tempfile.mkdtemp(prefix="shop-secrets-init.")
        run_secrets_init(_SECRETS_DIR)
    return os.path.join(_SECRETS_DIR, "out")


_HA_SECRETS_DIR = None


def ha_secrets_init_output():
    """The consumers' directories of one real run of shop-secrets-init with HA=1."""
    global _HA_SECRETS_DIR
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("no openssl here to run deploy/docker/shop-secrets-init")
    if _HA_SECRETS_DIR is None:
        _HA_SECRETS_DIR = tempfile.mkdtemp(prefix="shop-secrets-init-ha.")
        run_secrets_init(_HA_SECRETS_DIR, HA_SECRET_FILES, HA="1")
    return os.path.join(_HA_SECRETS_DIR, "out")


def snapshot(directory):
    return {os.path.join(d, f): (open(os.path.join(d, f), "rb").read(),
                                 os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, files in os.walk(directory) for f in files}


def certificate_cn(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-subject",
                          "-nameopt", "multiline"], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"commonName\s*=\s*(\S+)", out).group(1)


def certificate_names(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"DNS:([^,\s]+)", out))


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
