"""Starts the real fleet for the gateway's end-to-end tests.

    stack = FleetStack(*binaries)   # paths of every program of deploy/fleet.conf
    stack.start(); ...; stack.stop()

The services and the gateway run as child processes on free 127.0.0.1 ports, each
given its upstreams as deploy/fleet.conf says, against the test stack (each
service's <NAME>_DATABASE_URL, KAFKA_BROKERS,
REDIS_URL and REDIS_PASSWORD_FILE from the environment), each program with its own
certificate of the test stack (TLS_CA_FILE, <NAME>_TLS_CERT_FILE, <NAME>_TLS_KEY_FILE:
mutual TLS on every gRPC port, docs/trust.md), the services with one random
PAGE_TOKEN_KEY. The gateway gets a random HS256 secret and a Redis key prefix of its
own under gw: (the only keys its Redis user may touch), so runs never see each other's
sessions or rate limit counters; stop() deletes the prefix's keys as Redis's admin
(REDIS_ADMIN_URL, REDIS_ADMIN_PASSWORD_FILE). Only the standard library is
used: HTTP through http.client.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "deploy"))
import fleet  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import kafka_env  # noqa: E402

TIMEOUT_S = 30
FLEET = fleet.by_name()
SERVICES = [r.name for r in fleet.services(list(FLEET.values()))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_token(secret, claims, alg="HS256", header=None):
    """A JWT signed with HMAC (alg HS256/HS384/HS512), or unsigned for alg none."""
    h = header or {"alg": alg, "typ": "JWT"}
    signing = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())
    if alg == "none":
        return signing + "."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret.encode(), signing.encode(), digest).digest()
    return signing + "." + b64url(sig)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "HTTP %d %s" % (self.status, self.raw[:400])


class Client:
    """A tiny HTTP/1.1 client over one connection per request."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, token=None, headers=None, raw=None, query=None):
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = "Bearer " + token
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


class FleetStack:
    def __init__(self, *binaries):
        """binaries: the built programs, each named by its file name (order-svc, ...)."""
        by_program = {os.path.basename(b): b for b in binaries}
        missing = [r.program for r in FLEET.values() if r.program not in by_program]
        if missing:
            raise SystemExit("FleetStack: no binary given for %s" % ", ".join(missing))
        self.bins = {name: by_program[r.program] for name, r in FLEET.items()}
        # GATEWAY_PROGRAM: another program in the gateway's place, started with the
        # same environment (bench/peers/nestjs-gateway/run; bench/peers/README.md).
        if os.environ.get("GATEWAY_PROGRAM"):
            self.bins["gateway"] = os.environ["GATEWAY_PROGRAM"]
        self.procs = []
        self.tag = uuid.uuid4().hex[:10]
        self.secret = secrets.token_urlsafe(48)
        # One page-token key for every service, as a deployment gives each service's
        # instances one (the tests MAC tokens of their own with it).
        self.page_token_key = secrets.token_hex(32)
        self.logdir = tempfile.mkdtemp(prefix="gateway-e2e-")
        self.grpc = {svc: free_port() for svc in SERVICES}
        self.admin = {svc: free_port() for svc in SERVICES}  # /metrics, /readyz
        self.gateways = []
        for var in ([svc.upper() + "_DATABASE_URL" for svc in SERVICES] +
                    [name.upper() + "_TLS_CERT_FILE" for name in FLEET] +
                    ["KAFKA_BROKERS", "REDIS_URL", "TLS_CA_FILE", "REDIS_ADMIN_URL",
                     "REDIS_ADMIN_PASSWORD_FILE"]):
            if not os.environ.get(var):
                raise SystemExit("%s is not set: run with the test stack's env" % var)

    def _spawn(self, name, argv, env, stdin=None):
        with open(os.path.join(self.logdir, name + ".log"), "ab") as log:
            p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=stdin)
        self.procs.append((name, p))
        return p

    def _svc_env(self, svc):
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": os.environ[svc.upper() + "_DATABASE_URL"],
            "GRPC_ADDR": "127.0.0.1:%d" % self.grpc[svc],
            "ADMIN_ADDR": "127.0.0.1:%d" % self.admin[svc],
            "LOG_LEVEL": "warn",
            "PAGE_TOKEN_KEY": self.page_token_key,
        })
        env.update(self.tls(svc))
        env.update(kafka_env.service_env(FLEET[svc].program))  # its own Kafka principal
        env.update(self._upstreams(svc))
        return env

    @staticmethod
    def tls(name):
        """The settings of NAME's gRPC identity (its row of deploy/fleet.conf)."""
        return {"TLS_CA_FILE": os.environ["TLS_CA_FILE"],
                "TLS_CERT_FILE": os.environ[name.upper() + "_TLS_CERT_FILE"],
                "TLS_KEY_FILE": os.environ[name.upper() + "_TLS_KEY_FILE"]}

    def _upstreams(self, name):
        """<UPSTREAM>_ADDR of each upstream of NAME in deploy/fleet.conf."""
        return {up.upper() + "_ADDR": "127.0.0.1:%d" % self.grpc[up]
                for up in FLEET[name].upstreams}

    def start_services(self):
        """Every service, each answering /healthz on its admin port. A port from
        free_port() can be taken by someone's outgoing connection before the service
        binds it (it is an ephemeral port): a service that exits saying so gets new
        ports and starts again, up to three times."""
        for svc in SERVICES:
            for attempt in range(3):
                p = self._spawn(svc, [self.bins[svc]], self._svc_env(svc))
                if self._alive(svc, p) or attempt == 2:
                    break
                self.grpc[svc], self.admin[svc] = free_port(), free_port()

    def _alive(self, svc, proc):
        """True once svc's /healthz answers; False when it exited because a port was
        taken; raises when it exited for another reason or did not answer in 60 s."""
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                with open(os.path.join(self.logdir, svc + ".log"), errors="replace") as f:
                    if "Address already in use" in f.read():
                        return False
                raise RuntimeError("%s exited with %s; log in %s" % (svc, proc.returncode,
                                                                     self.logdir))
            try:
                if Client(self.admin[svc]).get("/healthz").status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s: no /healthz in 60 s; log in %s" % (svc, self.logdir))

    def create_admin(self, email, password):
        out = subprocess.run([self.bins["user"], "create-admin", email],
                             input=(password + "\n").encode(), env=self._svc_env("user"),
                             capture_output=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("create-admin failed: %s" % out.stderr.decode())
        return out.stdout.decode().strip()

    def start_gateway(self, name="gateway", **overrides):
        port = free_port()
        env = dict(os.environ)
        env.update({
            "GATEWAY_ADDR": "127.0.0.1:%d" % port,
            "JWT_SECRET": self.secret,
            "REDIS_PREFIX": "gw:test-e2e:%s:%s:" % (self.tag, name),
            "LOG_LEVEL": "info",
            "HTTP_THREADS": "2",
        })
        env.update(self.tls("gateway"))
        env.update(self._upstreams("gateway"))
        env.update({k: str(v) for k, v in overrides.items()})
        proc = self._spawn(name, [self.bins["gateway"]], env)
        self.gateways.append((name, proc))
        client = Client(port)
        deadline = time.time() + 60
        while True:
            try:
                r = client.get("/readyz")
                if r.status == 200:
                    return client
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log in %s" % (name, proc.returncode,
                                                                     self.logdir))
            if time.time() > deadline:
                raise RuntimeError("%s not ready in 60 s: %s; logs in %s" % (name, r,
                                                                            self.logdir))
            time.sleep(0.2)

    def stop_gateway(self, name):
        """SIGTERM one gateway; returns its exit status."""
        for n, p in self.gateways:
            if n == name and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                return p.wait(timeout=30)
        return None

    def stop(self):
        statuses = {}
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                statuses[name] = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                statuses[name] = p.wait()
        self._delete_redis_keys()
        return statuses

    def _delete_redis_keys(self):
        url = urllib.parse.urlsplit(os.environ["REDIS_ADMIN_URL"])
        with open(os.environ["REDIS_ADMIN_PASSWORD_FILE"]) as f:
            env = dict(os.environ, REDISCLI_AUTH=f.read().strip())
        cli = ["redis-cli", "-h", url.hostname, "-p", str(url.port), "--user", url.username]
        keys = subprocess.run(cli + ["--scan", "--pattern", "gw:test-e2e:%s:*" % self.tag],
                              env=env, capture_output=True, timeout=30).stdout.decode().split()
        for i in range(0, len(keys), 100):
            subprocess.run(cli + ["DEL"] + keys[i:i + 100], env=env, capture_output=True,
                           timeout=30)

    def log_tail(self, name, n=30):
        try:
            with open(os.path.join(self.logdir, name + ".log"), "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def run_suite(binaries, body, **overrides):
    """Starts the fleet from BINARIES (every program of deploy/fleet.conf), runs
    body(stack, gateway) against a gateway named "main" with generous login/register
    limits (and OVERRIDES), stops everything and exits: 0 only when body returned
    true and every program exited cleanly. On failure each program's log tail is
    printed."""
    stack = FleetStack(*binaries)
    stack.start_services()
    ok = False
    try:
        gw = stack.start_gateway("main", LOGIN_RATE_IP=100000, LOGIN_RATE_ACCOUNT=100000,
                                 REGISTER_RATE_IP=100000, REGISTER_RATE_ACCOUNT=100000,
                                 **overrides)
        ok = bool(body(stack, gw))
    finally:
        for name, status in stack.stop().items():
            if status != 0:
                print("%s exited with %s" % (name, status))
                ok = False
        if not ok:
            for name in ["main"] + SERVICES:
                print("--- %s log (tail) ---\n%s" % (name, stack.log_tail(name)))
            print("logs in", stack.logdir)
    sys.exit(0 if ok else 1)


def run_unittests(binaries, unittest_args, bind):
    """run_suite with this process's unittest cases as the body: bind(stack, gateway)
    hands the running fleet to the test module first."""
    import unittest

    def body(stack, gw):
        bind(stack, gw)
        return unittest.main(argv=[sys.argv[0], "-v"] + unittest_args,
                             exit=False).result.wasSuccessful()

    run_suite(binaries, body)


def main_for(ns):
    """The main() of a suite whose module reads STACK and GW: `-- PROGRAM...
    [unittest args]` on the command line; ns is the module's globals()."""
    _, binaries, unittest_args = split_argv(sys.argv[1:])

    def bind(stack, gw):
        ns["STACK"], ns["GW"] = stack, gw

    run_unittests(binaries, unittest_args, bind)


def split_argv(argv):
    """ARGS... -- BINARIES... [unittest args]: what precedes "--", and after it the
    binaries (absolute paths) apart from what follows them for unittest."""
    i = argv.index("--")
    rest = argv[i + 1:]
    n = next((k for k, a in enumerate(rest) if not os.path.isabs(a)), len(rest))
    return argv[:i], rest[:n], rest[n:]
