#!/usr/bin/python3
"""Every service of the fleet manifest keeps the process contract (svc.h), alone.

    test_fleet_services.py PROGRAM...   (every program of deploy/fleet.conf)

For each service row of deploy/fleet.conf, against the test stack (its
<NAME>_DATABASE_URL and KAFKA_BROKERS): --help exits 0 and names the common
settings; started, it migrates its database, /healthz answers at once and /readyz
turns 200; gRPC Health/Check (a real grpcio client with the gateway's certificate:
mutual TLS, each service with its own from the stack) answers SERVING, and a client
without a certificate is refused; /metrics is
Prometheus text; SIGTERM drains it to exit status 0. A service added to the
manifest is covered here without a line of its own.
"""
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))
import fleet  # noqa: E402

import grpc  # noqa: E402  (Debian's python3-grpcio)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from grpc_support import tls_credentials  # noqa: E402

SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}
BINARIES = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class ServiceContract(unittest.TestCase):
    def check_service(self, svc):
        binary = BINARIES[svc.program]
        env = dict(os.environ)
        grpc_port, admin_port = free_port(), free_port()
        env.update({"DATABASE_URL": os.environ[svc.name.upper() + "_DATABASE_URL"],
                    "GRPC_ADDR": "127.0.0.1:%d" % grpc_port,
                    "ADMIN_ADDR": "127.0.0.1:%d" % admin_port,
                    "PAGE_TOKEN_KEY": secrets.token_hex(32), "LOG_LEVEL": "warn",
                    "TLS_CERT_FILE": os.environ[svc.name.upper() + "_TLS_CERT_FILE"],
                    "TLS_KEY_FILE": os.environ[svc.name.upper() + "_TLS_KEY_FILE"]})
        # Its own Kafka principal (deploy/local/stack.sh env): readiness needs the broker.
        prefix = "KAFKA_%s_" % svc.name.upper()
        if os.environ.get(prefix + "USERNAME"):
            env.update({"KAFKA_USERNAME": os.environ[prefix + "USERNAME"],
                        "KAFKA_PASSWORD_FILE": os.environ[prefix + "PASSWORD_FILE"]})
        for up in svc.upstreams:  # not called here: readiness does not depend on them
            env[up.upper() + "_ADDR"] = "127.0.0.1:%d" % free_port()

        out = subprocess.run([binary, "--help"], env=env, capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        for name in ("GRPC_ADDR", "ADMIN_ADDR", "DATABASE_URL", "KAFKA_BROKERS"):
            self.assertIn(name, out.stdout.decode() + out.stderr.decode())

        log = tempfile.TemporaryFile()
        p = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            status = None
            while time.monotonic() < deadline and p.poll() is None:
                status, _ = http_get(admin_port, "/readyz")
                if status == 200:
                    break
                time.sleep(0.2)
            self.assertEqual(status, 200, "%s never became ready" % svc.program)
            self.assertEqual(http_get(admin_port, "/healthz")[0], 200)
            target = "127.0.0.1:%d" % grpc_port
            with grpc.secure_channel(target, tls_credentials("gateway")) as ch:
                check = ch.unary_unary("/grpc.health.v1.Health/Check")
                self.assertEqual(check(b"", timeout=10), SERVING)
            with grpc.insecure_channel(target) as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            status, text = http_get(admin_port, "/metrics")
            self.assertEqual(status, 200)
            self.assertIn("# TYPE ", text)
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=60), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            if sys.exc_info()[0] is not None or p.returncode != 0:
                log.seek(0)
                print("--- %s log ---\n%s" % (svc.program, log.read().decode(errors="replace")))
            log.close()

    def test_every_service_of_the_manifest(self):
        services = fleet.services()
        self.assertTrue(services)
        for svc in services:
            with self.subTest(service=svc.name):
                self.check_service(svc)


if __name__ == "__main__":
    BINARIES.update({os.path.basename(b): b for b in sys.argv[1:]})
    missing = [s.program for s in fleet.services() if s.program not in BINARIES]
    if missing:
        sys.exit("no binary given for %s" % ", ".join(missing))
    unittest.main(argv=[sys.argv[0], "-v"])
