#!/usr/bin/python3
"""The gateway against hostile input (issue 14), through raw sockets and a real client.

    test_gateway_hostile.py -- PROGRAM...   (every program of deploy/fleet.conf)

Starts the three services and gateways of its own against the test stack
(gateway_stack.py) and checks what an adversarial review found open:
  - message framing (RFC 9112 §6.1, §6.3): Content-Length with Transfer-Encoding,
    two Content-Lengths, a Transfer-Encoding that is not chunked: 400 and the
    connection closed, so a request hidden behind them is never answered;
  - NUL bytes, raw or %00, in the path, the query or a header value: 400;
  - a long target (414) and large head (431): problem+json with the gateway's headers;
  - metric labels from a closed set, whatever the method or path;
  - the per-account login lockout under other spellings of the same email;
  - TRUSTED_PROXIES: Forwarded / X-Forwarded-For believed only from those peers;
  - RateLimit / RateLimit-Policy headers on limited routes and 429s;
  - a malformed connection URL stops a program with exit status 2, naming it;
  - a gateway given a wrong Redis password runs, reports not ready (redis
    UNAUTHENTICATED) and says why once in its log, never with the password.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_stack import Client, free_port, main_for  # noqa: E402

STACK = None
GW = None
TAG = uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"


def raw(port, data, timeout=5):
    """Sends bytes on a new connection; returns (everything answered, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out, closed = b"", False
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    return out, closed


def responses(data):
    """The status codes of every response in a byte stream."""
    return [int(m) for m in re.findall(rb"^HTTP/1\.1 (\d{3}) ", data, re.M)]


def head_of(data):
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if ":" in h)}


class Framing(unittest.TestCase):
    HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    def assertRefusedAndClosed(self, request, status=400):
        out, closed = raw(GW.port, request + self.HIDDEN)
        self.assertEqual(responses(out), [status], out[:400])
        self.assertTrue(closed, "the connection stayed open: %r" % out[:200])
        h = head_of(out)
        self.assertTrue(h["content-type"].startswith("application/problem+json"), h)
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertRegex(h["x-request-id"], r"^[0-9a-f-]{36}$")
        self.assertIn(b'"status":%d' % status, out)
        return out

    def test_content_length_with_transfer_encoding(self):
        self.assertRefusedAndClosed(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")

    def test_two_content_lengths(self):
        self.assertRefusedAndClosed(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
        self.assertRefusedAndClosed(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Content-Length: 2\r\n\r\n{}")

    def test_transfer_encoding_not_chunked(self):
        for te in (b"gzip", b"chunked, gzip", b"gzip, chunked", b"identity"):
            with self.subTest(te=te):
                t0 = time.time()
                self.assertRefusedAndClosed(
                    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                    b"\r\nContent-Type: application/json\r\n\r\n{}")
                self.assertLess(time.time() - t0, 4, "waited for the idle timeout")

    def test_chunked_and_pipelined_requests_still_work(self):
        out, closed = raw(GW.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1)
        self.assertEqual(responses(out), [200])
        self.assertFalse(closed, "a well-framed request keeps its connection")
        out, _ = raw(GW.port, b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\nTransfer-Encoding: Chunked\r\n\r\n"
                              b"2\r\n{}\r\n0\r\n\r\n", timeout=2)
        self.assertEqual(responses(out), [400])  # the body's fields, not its framing
        self.assertIn(b'"field":"email"', out)
        # Bare LF line ends, no blank after the colon, an empty value: legal.
        out, _ = raw(GW.port, b"GET /healthz HTTP/1.1\nHost:x\nX-Empty:\n\n", timeout=2)
        self.assertEqual(responses(out), [200])

    def test_nul_bytes_anywhere_are_refused(self):
        for req in (b"GET /healthz\x00/x HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /healthz%00x HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /api/v1/products?q=a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer abc\x00def\r\n\r\n"):
            with self.subTest(req=req):
                self.assertRefusedAndClosed(req)
        # A head libmicrohttpd cannot parse at all never reaches the gateway: MHD
        # answers 400 itself (its own short body) and closes.
        for req in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A\x00b: c\r\n\r\n",
                    b"GET /healthz HTTP/1.1\x00x\r\nHost: x\r\n\r\n",
                    b"GET /healthz HTTP/1.1\x00\r\nHost: x\r\n\r\n"):
            with self.subTest(req=req):
                out, closed = raw(GW.port, req + self.HIDDEN)
                self.assertEqual(responses(out), [400], out[:300])
                self.assertTrue(closed)

    def test_long_target_and_large_head_answer_problem_json(self):
        self.assertRefusedAndClosed(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)
        self.assertRefusedAndClosed(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 +
                                    b"\r\n\r\n", 431)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
        self.assertRefusedAndClosed(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431)


class Metrics(unittest.TestCase):
    def junk(self):
        """Requests with made-up methods and paths; each would once have been a series."""
        for method in ["X%s" % uuid.uuid4().hex.upper(), "M" * 3000, "PROPFIND"]:
            for path in ("/healthz", "/%s" % uuid.uuid4().hex):
                raw(GW.port, b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" %
                    (method.encode(), path.encode()))
        for i in range(10):
            GW.get("/nothing/%s/%d" % (uuid.uuid4().hex, i))

    def series(self):
        # /metrics's own line is counted once its answer is out: not part of the junk.
        return {l.rsplit(" ", 1)[0] for l in GW.get("/metrics").raw.decode().splitlines()
                if l.startswith("http_requests_total{") and 'route="/metrics"' not in l}

    def test_labels_come_from_a_closed_set(self):
        self.junk()
        series = self.series()
        for line in series:
            self.assertLess(len(line), 200, line)
            method = re.search(r'method="([^"]*)"', line).group(1)
            self.assertIn(method, {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                                   "other"}, line)
            self.assertNotIn("/nothing/", line)
        self.assertTrue(any('method="other",route="unmatched",status="405"' in l for l in series),
                        series)
        self.assertTrue(any('route="unmatched",status="404"' in l for l in series), series)
        self.junk()
        self.assertEqual(self.series(), series, "new series from new junk")


def email(name):
    return "%s-%s@hostile.test" % (name, TAG)


class Lockout(unittest.TestCase):
    def test_other_spellings_of_a_locked_email_stay_locked(self):
        gw = STACK.start_gateway("lockout", LOGIN_RATE_ACCOUNT=3, LOGIN_RATE_IP=100000)
        addr = email("Locked")
        r = gw.post("/api/v1/auth/register", {"email": addr, "password": PASSWORD,
                                              "display_name": "locked"})
        self.assertEqual(r.status, 201, r)
        for i in range(3):
            r = gw.post("/api/v1/auth/login", {"email": addr, "password": "wrong-%d-guess" % i})
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.header("ratelimit-policy"),
                             '"login-ip";q=100000;w=60, "login-account";q=3;w=60', r.headers)
            self.assertIn('"login-account";r=%d;' % (2 - i), r.header("ratelimit"))
        spellings = [addr, " " + addr, addr + "\t", "\t" + addr.upper() + " ", addr.lower(),
                     "\n" + addr + "\r\n", addr.swapcase()]
        for s in spellings:
            with self.subTest(email=s):
                r = gw.post("/api/v1/auth/login", {"email": s, "password": PASSWORD})
                self.assertEqual(r.status, 429, r)
                self.assertIn('"login-account";r=0;', r.header("ratelimit"))
                self.assertTrue(1 <= int(r.header("retry-after")) <= 60, r.headers)
        # The canonical form finds the account: another spelling logs in elsewhere.
        gw2 = STACK.start_gateway("lockout-2")
        r = gw2.post("/api/v1/auth/login", {"email": "\t" + addr.upper() + " ",
                                            "password": PASSWORD})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(STACK.stop_gateway("lockout"), 0)
        self.assertEqual(STACK.stop_gateway("lockout-2"), 0)

    def test_registering_another_spelling_is_a_conflict(self):
        addr = email("Taken")
        r = GW.post("/api/v1/auth/register", {"email": addr, "password": PASSWORD,
                                              "display_name": "t"})
        self.assertEqual(r.status, 201, r)
        for s in (" " + addr.upper(), addr.lower() + "\t"):
            r = GW.post("/api/v1/auth/register", {"email": s, "password": PASSWORD,
                                                  "display_name": "t"})
            self.assertEqual(r.status, 409, r)


def login_from(gw, headers):
    return gw.post("/api/v1/auth/login", {"email": email("nobody"), "password": "nope-nope"},
                   headers=headers)


class Proxies(unittest.TestCase):
    def test_forwarding_headers_are_ignored_without_trusted_proxies(self):
        gw = STACK.start_gateway("direct", LOGIN_RATE_IP=2, LOGIN_RATE_ACCOUNT=100000)
        self.assertEqual(login_from(gw, {"X-Forwarded-For": "1.1.1.1"}).status, 401)
        self.assertEqual(login_from(gw, {"X-Forwarded-For": "2.2.2.2"}).status, 401)
        # One budget: the TCP peer's, whatever the headers claim.
        self.assertEqual(login_from(gw, {"Forwarded": "for=3.3.3.3"}).status, 429)
        self.assertEqual(STACK.stop_gateway("direct"), 0)

    def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_counts(self):
        gw = STACK.start_gateway("proxied", LOGIN_RATE_IP=2, LOGIN_RATE_ACCOUNT=100000,
                                 TRUSTED_PROXIES="127.0.0.0/8, ::1")
        a = {"X-Forwarded-For": "198.51.100.1"}
        self.assertEqual(login_from(gw, a).status, 401)
        self.assertEqual(login_from(gw, a).status, 401)
        r = login_from(gw, a)
        self.assertEqual(r.status, 429, r)
        self.assertIn('"login-ip";r=0;', r.header("ratelimit"))
        # A client writing someone else's address left of its own gains nothing.
        spoof = {"X-Forwarded-For": "203.0.113.77, 198.51.100.1"}
        self.assertEqual(login_from(gw, spoof).status, 429)
        # Two header lines read as one list: the proxy's line is the rightmost.
        body = b'{"email":"x@y.z","password":"nope-nope"}'
        out, _ = raw(gw.port, b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\nContent-Type: application/json\r\n"
                              b"X-Forwarded-For: 203.0.113.5\r\n"
                              b"X-Forwarded-For: 198.51.100.1\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertEqual(responses(out), [429], out[:300])
        # Another client behind the same proxy has a budget of its own.
        self.assertEqual(login_from(gw, {"X-Forwarded-For": "198.51.100.2"}).status, 401)
        self.assertEqual(login_from(gw, {"Forwarded": 'for="[2001:db8::9]:4711"'}).status, 401)
        self.assertEqual(login_from(gw, {"Forwarded": 'for="[2001:db8::9]:4711"'}).status, 401)
        self.assertEqual(login_from(gw, {"Forwarded": 'for="[2001:db8::9]:1"'}).status, 429)
        self.assertEqual(STACK.stop_gateway("proxied"), 0)


class RateLimitHeaders(unittest.TestCase):
    def test_authenticated_requests_carry_the_user_budget(self):
        gw = STACK.start_gateway("budget", USER_RATE_LIMIT=3)
        addr = email("budget")
        gw.post("/api/v1/auth/register", {"email": addr, "password": PASSWORD,
                                          "display_name": "b"})
        token = gw.post("/api/v1/auth/login",
                        {"email": addr, "password": PASSWORD}).json["access_token"]
        for left in (2, 1, 0):
            r = gw.get("/api/v1/users/me", token=token)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("ratelimit-policy"), '"user";q=3;w=60')
            self.assertRegex(r.header("ratelimit"), r'^"user";r=%d;t=\d+$' % left)
        r = gw.get("/api/v1/users/me", token=token)
        self.assertEqual(r.status, 429, r)
        self.assertRegex(r.header("ratelimit"), r'^"user";r=0;t=\d+$')
        self.assertEqual(r.header("retry-after"), r.header("ratelimit").rsplit("=", 1)[1])
        self.assertIsNone(gw.get("/healthz").header("ratelimit"))
        self.assertEqual(STACK.stop_gateway("budget"), 0)


class Configuration(unittest.TestCase):
    def run_prog(self, prog, env, var):
        e = dict(os.environ)
        e.update(env)
        e.update({"GRPC_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
                  "GATEWAY_ADDR": "127.0.0.1:0", "JWT_SECRET": "s" * 40})
        t0 = time.time()
        p = subprocess.run([prog], env=e, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 2, (env, p.stderr[-500:]))
        self.assertIn(var.encode(), p.stderr)
        self.assertNotIn(b"secret-pw", p.stderr)
        self.assertLess(time.time() - t0, 10)

    def test_malformed_urls_stop_with_status_2(self):
        svc = STACK.bins["user"]
        for url in ("postgresql://u:secret-pw@127.0.0.1:notaport/db", "not a url at all",
                    "postgresql://u:secret-pw@[::1/db", "host=127.0.0.1 port=99999",
                    "postgresql://u:secret-pw@h/db?sslmode=sometimes", "postgresql://h/db?x=1"):
            with self.subTest(url=url):
                self.run_prog(svc, {"DATABASE_URL": url}, "DATABASE_URL")
        for brokers in ("localhost", "localhost:0", "h:1,", ":9092", "h:notaport"):
            with self.subTest(brokers=brokers):
                self.run_prog(svc, {"KAFKA_BROKERS": brokers}, "KAFKA_BROKERS")
        for iid in ("order svc 1", "svc/1", "x" * 250):
            with self.subTest(instance_id=iid):
                self.run_prog(svc, {"KAFKA_GROUP_INSTANCE_ID": iid}, "KAFKA_GROUP_INSTANCE_ID")
        gw = STACK.bins["gateway"]
        self.run_prog(gw, {"REDIS_URL": "redis://:secret-pw@127.0.0.1:xx"}, "REDIS_URL")
        self.run_prog(gw, {"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES")

    def test_without_tls_files_or_plaintext_opt_out_programs_refuse_to_start(self):
        # Neither the three files nor GRPC_PLAINTEXT=true: the message names them all.
        none = {"TLS_CA_FILE": "", "TLS_CERT_FILE": "", "TLS_KEY_FILE": "",
                "GRPC_PLAINTEXT": "false"}
        for name in ("user", "gateway"):
            with self.subTest(program=name):
                for var in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "GRPC_PLAINTEXT"):
                    self.run_prog(STACK.bins[name], none, var)
                # A file that is not there, a key of another program's certificate.
                tls = STACK.tls(name)
                self.run_prog(STACK.bins[name], dict(tls, TLS_CA_FILE="/nonexistent/ca.crt"),
                              "/nonexistent/ca.crt")
                other = STACK.tls("order")
                self.run_prog(STACK.bins[name], dict(tls, TLS_KEY_FILE=other["TLS_KEY_FILE"]),
                              "TLS_KEY_FILE")

    def test_a_wrong_redis_password_is_not_ready_and_said_once(self):
        wrong = "wrong-" + uuid.uuid4().hex
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".pw") as pw, \
                tempfile.TemporaryFile() as log:
            pw.write(wrong + "\n")
            pw.flush()
            env = dict(os.environ, **STACK.tls("gateway"), GATEWAY_ADDR="127.0.0.1:%d" % port,
                       JWT_SECRET="s" * 40,
                       REDIS_PASSWORD_FILE=pw.name, LOG_LEVEL="info")
            env.pop("REDIS_PASSWORD", None)
            p = subprocess.Popen([STACK.bins["gateway"]], env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
            try:
                client, deadline = Client(port), time.time() + 30
                while True:
                    try:
                        if client.get("/healthz").status == 200:
                            break
                    except OSError:
                        pass
                    self.assertIsNone(p.poll(), "the gateway exited")
                    self.assertLess(time.time(), deadline, "no /healthz in 30 s")
                    time.sleep(0.1)
                for _ in range(3):
                    r = client.get("/readyz")
                    self.assertEqual(r.status, 503, r)
                    self.assertEqual(r.json["checks"]["redis"], "UNAUTHENTICATED", r)
            finally:
                p.terminate()
                p.wait(timeout=30)
            log.seek(0)
            text = log.read().decode(errors="replace")
        self.assertNotIn(wrong, text)
        refusals = [line for line in text.splitlines() if "redis refused the credentials" in line]
        self.assertEqual(len(refusals), 1, text[-2000:])
        self.assertIn('"user":"gateway"', refusals[0])
        self.assertIn("WRONGPASS", refusals[0])


if __name__ == "__main__":
    main_for(globals())
