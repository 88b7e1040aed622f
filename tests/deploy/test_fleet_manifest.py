#!/usr/bin/env python3
"""deploy/fleet.conf, the fleet manifest, checked for itself and against its copies.

- the manifest is well formed: names, programs and port offsets unique, every upstream
  a service, every service with a database, every consumed topic produced by somebody;
- the bash reader (deploy/local/fleet.sh) reads what the Python one (deploy/fleet.py)
  reads;
- deploy/docker-compose.yml runs exactly the manifest's programs: each service's
  database URL (made by the pki container) names its database, each program is given exactly its upstreams'
  addresses (<NAME>_ADDR, on the upstream's compose service) and depends on them,
  kafka-init creates exactly the manifest's topics and their dead-letter topics;
- the local stack's dev layout puts each service on the ports of docs/architecture.md §6
  (gRPC 50051+offset, admin 8081+offset, PostgreSQL 5433+offset), as `stack.sh env`
  says, each database as its own role with a password of its own, over verified TLS.

Needs no build and no infrastructure; python3-yaml parses the compose file.
"""
import os
import re
import shlex
import subprocess
import sys
import unittest
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import fleet  # noqa: E402

COMPOSE_FILE = os.path.join(ROOT, "deploy", "docker-compose.yml")
SECRETS_INIT = os.path.join(ROOT, "deploy", "docker", "shop-secrets-init")
ADDR = re.compile(r"^[A-Z][A-Z0-9_]*_ADDR$")
OWN_ADDRS = {"GRPC_ADDR", "ADMIN_ADDR", "GATEWAY_ADDR"}  # where a program listens


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {k: str(v) for k, v in env.items()}


class Manifest(unittest.TestCase):
    def setUp(self):
        self.rows = fleet.load()
        self.svcs = fleet.services(self.rows)

    def test_names_programs_and_offsets_are_unique(self):
        for column in ("name", "program"):
            values = [getattr(r, column) for r in self.rows]
            self.assertEqual(len(values), len(set(values)), column)
        for column in ("grpc", "admin", "pg", "database"):
            values = [getattr(r, column) for r in self.svcs]
            self.assertNotIn(None, values, f"every service has a {column}")
            self.assertEqual(len(values), len(set(values)), column)
            if column != "database":
                self.assertTrue(all(0 <= v < 10 for v in values),
                                f"{column} offsets 0..9: instance k adds 10(k-1) or 100(k-1)")

    def test_upstreams_are_services(self):
        names = {r.name for r in self.svcs}
        for r in self.rows:
            with self.subTest(program=r.program):
                self.assertLessEqual(set(r.upstreams), names)
                self.assertNotIn(r.name, r.upstreams)

    def test_every_consumed_topic_is_produced(self):
        produced = {t for r in self.rows for t in r.produces}
        for r in self.rows:
            with self.subTest(program=r.program):
                self.assertLessEqual(set(r.consumes), produced)

    def test_bash_reader_agrees(self):
        script = ('set -euo pipefail; ROOT="$1"; . "$ROOT/deploy/local/fleet.sh"; '
                  'echo "${SERVICES[*]}"; echo "${FLEET_PROGRAMS[*]}"; echo "${TOPICS[*]}"; '
                  'for s in "${SERVICES[@]}"; do echo "$s ${FLEET_GRPC[$s]} ${FLEET_ADMIN[$s]} '
                  '${FLEET_PG[$s]} ${FLEET_DB[$s]} ${FLEET_UPSTREAMS[$s]:--}"; done; '
                  'fleet_program_path gateway')
        out = subprocess.run(["bash", "-c", script, "fleet", ROOT], check=True,
                             capture_output=True, text=True).stdout.splitlines()
        self.assertEqual(out[0].split(), [r.name for r in self.svcs])
        self.assertEqual(out[1].split(), [r.program for r in fleet.programs(self.rows)])
        self.assertEqual(out[2].split(), fleet.topics(self.rows))
        for line, r in zip(out[3:], self.svcs):
            self.assertEqual(line.split(), [r.name, str(r.grpc), str(r.admin), str(r.pg),
                                            r.database, ",".join(r.upstreams) or "-"])
        self.assertEqual(out[-1], [p.path for p in self.rows if p.name == "gateway"][0])


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(COMPOSE_FILE) as f:
            cls.services = yaml.safe_load(f)["services"]
        cls.rows = fleet.load()

    def programs_in_compose(self):
        """Services built from the Dockerfile's program stages (the pki's stage, which
        makes the stack's secrets, is not a program; nor is a tool of a profile, such
        as shopctl, which runs from a program's image)."""
        return {n for n, s in self.services.items()
                if isinstance(s.get("build"), dict) and s["build"].get("target")
                and s["build"]["target"] != "pki" and not s.get("profiles")}

    def test_compose_runs_exactly_the_manifest_programs(self):
        self.assertEqual(self.programs_in_compose(), {r.program for r in self.rows})
        for r in self.rows:
            self.assertEqual(self.services[r.program]["build"]["target"], r.program)

    def test_each_service_has_its_database(self):
        """The pki (deploy/docker/shop-secrets-init) writes each service's database URL
        for the services of the manifest, to the server postgres-<name>, with role and
        database <name>; that container is initialised with them and the service waits
        for it. (test_compose.py checks the URL the script really writes.)"""
        with open(SECRETS_INIT) as f:
            script = f.read()
        self.assertEqual(re.search(r"^SERVICES=\$\{SERVICES:-([^}]*)\}$", script, re.M)
                         .group(1).split(), [r.name for r in fleet.services(self.rows)])
        self.assertIn("postgresql://%s:%s@postgres-%s:5432/%s?", script)
        for r in fleet.services(self.rows):
            with self.subTest(program=r.program):
                self.assertEqual(r.database, r.name, "the pki names role and database so")
                env = environment(self.services[r.program])
                self.assertEqual(env["DATABASE_URL_FILE"], "/run/secrets/shop/database-url")
                pg = environment(self.services[f"postgres-{r.name}"])
                self.assertEqual(pg["POSTGRES_DB"], r.database)
                self.assertEqual(pg["POSTGRES_USER"], r.database)
                self.assertEqual(self.services[r.program]["depends_on"][f"postgres-{r.name}"]
                                 ["condition"], "service_healthy")

    def test_each_program_gets_exactly_its_upstreams(self):
        by_name = fleet.by_name(self.rows)
        for r in self.rows:
            with self.subTest(program=r.program):
                svc = self.services[r.program]
                env = environment(svc)
                given = {k for k in env if ADDR.match(k)} - OWN_ADDRS
                self.assertEqual(given, {f"{u.upper()}_ADDR" for u in r.upstreams})
                for up in r.upstreams:
                    host = urlsplit(env[f"{up.upper()}_ADDR"].replace("dns:///", "dns://"))
                    self.assertEqual(host.hostname, by_name[up].program)
                # The gateway waits for its upstreams; a service retries them itself.
                if not r.is_service:
                    self.assertLessEqual({by_name[u].program for u in r.upstreams},
                                         set(svc.get("depends_on") or {}))

    def test_kafka_init_creates_the_manifest_topics(self):
        topics = environment(self.services["kafka-init"])["TOPICS"].split()
        self.assertEqual(topics, fleet.topics(self.rows))


class LocalStack(unittest.TestCase):
    def test_dev_layout_has_the_design_ports(self):
        env = dict(os.environ, STACK_PROFILE="dev", SCALE="1", FLEET="1")
        out = subprocess.run([os.path.join(ROOT, "deploy", "local", "stack.sh"), "env"],
                             env=env, check=True, capture_output=True, text=True).stdout
        # Shell syntax: the database URLs are quoted.
        got = dict(shlex.split(line)[0].split("=", 1) for line in out.splitlines() if "=" in line)
        for r in fleet.services():
            with self.subTest(service=r.name):
                p = r.name.upper()
                self.assertEqual(got[f"{p}_GRPC_ADDRS"], f"127.0.0.1:{50051 + r.grpc}")
                self.assertEqual(got[f"{p}_ADMIN_ADDRS"], f"127.0.0.1:{8081 + r.admin}")
                url = urlsplit(got[f"{p}_DATABASE_URL"])
                self.assertEqual((url.scheme, url.username, url.hostname, url.port, url.path),
                                 ("postgresql", r.database, "127.0.0.1", 5433 + r.pg,
                                  "/" + r.database))
                self.assertGreaterEqual(len(url.password), 24)
                self.assertNotEqual(url.password, r.database)
                query = parse_qs(url.query)
                self.assertEqual(query["sslmode"], ["verify-full"])
                self.assertTrue(query["sslrootcert"][0].endswith("/secrets/pki/ca.crt"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
