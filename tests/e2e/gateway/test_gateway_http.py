#!/usr/bin/python3
"""The gateway's HTTP conventions (issue 16), end to end.

    test_gateway_http.py -- PROGRAM...   (every program of deploy/fleet.conf)

Starts the three services and gateways of its own against the test stack
(gateway_stack.py) and checks:
  - ETag on product reads, If-None-Match → 304 (RFC 9110 §13.1.2, §15.4.5);
  - If-Match on PATCH / DELETE /products/{id}: a stale tag → 412, the write not made;
  - Cache-Control and Vary of the catalog reads;
  - HEAD on every GET route: GET's status and headers, no body;
  - CORS: nothing without CORS_ALLOWED_ORIGINS; with it, Access-Control-Allow-Origin
    for an allowed Origin only, and preflights answered per the Fetch standard.
"""
import os
import re
import socket
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_stack import main_for  # noqa: E402

STACK = None
GW = None
TAG = uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"
ORIGIN = "https://shop.example"
ADMIN = {}


def admin_token():
    if not ADMIN:
        em = "admin-%s@e2e.test" % TAG
        STACK.create_admin(em, PASSWORD)
        r = GW.post("/api/v1/auth/login", {"email": em, "password": PASSWORD})
        assert r.status == 200, r
        ADMIN["token"] = r.json["access_token"]
    return ADMIN["token"]


def new_product(name="thing"):
    r = GW.post("/api/v1/products", {"sku": "sku-%s-%s" % (TAG, uuid.uuid4().hex[:8]),
                                     "name": name, "price_cents": 1234},
                token=admin_token())
    assert r.status == 201, r
    return r


def raw_head(port, path, headers=""):
    """A HEAD request on a raw socket: (status line, headers, bytes after the head)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
                   % (path, headers)).encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    finally:
        s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    h = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
    return lines[0], h, rest


class ETags(unittest.TestCase):
    def test_get_has_a_strong_etag_and_if_none_match_gives_304(self):
        created = new_product()
        pid = created.json["id"]
        self.assertRegex(created.header("etag"), r'^"\d+"$')
        r = GW.get("/api/v1/products/" + pid)
        self.assertEqual(r.status, 200, r)
        etag = r.header("etag")
        self.assertEqual(etag, created.header("etag"))
        for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
            with self.subTest(inm=inm):
                nm = GW.get("/api/v1/products/" + pid, headers={"If-None-Match": inm})
                self.assertEqual(nm.status, 304, nm)
                self.assertEqual(nm.raw, b"")
                self.assertEqual(nm.header("etag"), etag)
                self.assertEqual(nm.header("cache-control"), r.header("cache-control"))
        other = GW.get("/api/v1/products/" + pid, headers={"If-None-Match": '"1"'})
        self.assertEqual(other.status, 200, other)
        self.assertEqual(other.json["id"], pid)

    def test_a_change_moves_the_etag(self):
        pid = new_product().json["id"]
        before = GW.get("/api/v1/products/" + pid).header("etag")
        p = GW.request("PATCH", "/api/v1/products/" + pid, body={"name": "renamed"},
                       token=admin_token())
        self.assertEqual(p.status, 200, p)
        self.assertNotEqual(p.header("etag"), before)
        r = GW.get("/api/v1/products/" + pid, headers={"If-None-Match": before})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["name"], "renamed")
        self.assertEqual(r.header("etag"), p.header("etag"))

    def test_cache_control_of_catalog_reads(self):
        pid = new_product().json["id"]
        for path in ("/api/v1/products/" + pid, "/api/v1/products"):
            with self.subTest(path=path):
                anon = GW.get(path)
                self.assertEqual(anon.status, 200, anon)
                self.assertEqual(anon.header("cache-control"), "public, max-age=30")
                self.assertIn("Authorization", anon.header("vary"))
                auth = GW.get(path, token=admin_token())
                self.assertEqual(auth.header("cache-control"), "private, no-cache")
                self.assertIn("Authorization", auth.header("vary"))
        missing = GW.get("/api/v1/products/" + str(uuid.uuid4()))
        self.assertEqual(missing.status, 404)
        self.assertEqual(missing.header("cache-control"), "no-store")
        self.assertEqual(GW.get("/healthz").header("cache-control"), "no-store")


class IfMatch(unittest.TestCase):
    def patch(self, pid, body, if_match=None):
        h = {"If-Match": if_match} if if_match is not None else {}
        return GW.request("PATCH", "/api/v1/products/" + pid, body=body, token=admin_token(),
                          headers=h)

    def test_two_admins_from_one_version_one_wins(self):
        pid = new_product().json["id"]
        etag = GW.get("/api/v1/products/" + pid).header("etag")
        first = self.patch(pid, {"name": "first"}, etag)
        self.assertEqual(first.status, 200, first)
        second = self.patch(pid, {"name": "second"}, etag)
        self.assertEqual(second.status, 412, second)
        self.assertTrue(second.header("content-type").startswith("application/problem+json"))
        self.assertEqual(second.json["status"], 412)
        self.assertEqual(second.json["title"], "Precondition Failed")
        self.assertEqual(GW.get("/api/v1/products/" + pid).json["name"], "first")
        third = self.patch(pid, {"name": "third"}, first.header("etag"))
        self.assertEqual(third.status, 200, third)
        self.assertEqual(third.json["name"], "third")

    def test_weak_foreign_star_and_absent(self):
        pid = new_product().json["id"]
        etag = GW.get("/api/v1/products/" + pid).header("etag")
        for bad in ("W/" + etag, '"abc"', '"1"', "garbage"):
            with self.subTest(if_match=bad):
                self.assertEqual(self.patch(pid, {"name": "x"}, bad).status, 412)
        self.assertEqual(self.patch(pid, {"name": "star"}, "*").status, 200)
        self.assertEqual(self.patch(pid, {"name": "plain"}).status, 200)
        # A missing product stays 404 whatever the precondition.
        self.assertEqual(self.patch(str(uuid.uuid4()), {"name": "x"}, etag).status, 404)
        # The version cannot come in through the body.
        self.assertEqual(self.patch(pid, {"expected_updated_at": "2020-01-01T00:00:00Z"}).status,
                         400)

    def test_delete_with_if_match(self):
        pid = new_product().json["id"]
        etag = GW.get("/api/v1/products/" + pid).header("etag")
        self.assertEqual(self.patch(pid, {"name": "moved"}).status, 200)
        stale = GW.request("DELETE", "/api/v1/products/" + pid, token=admin_token(),
                           headers={"If-Match": etag})
        self.assertEqual(stale.status, 412, stale)
        self.assertTrue(GW.get("/api/v1/products/" + pid).json["active"])
        cur = GW.get("/api/v1/products/" + pid).header("etag")
        ok = GW.request("DELETE", "/api/v1/products/" + pid, token=admin_token(),
                        headers={"If-Match": cur})
        self.assertEqual(ok.status, 200, ok)
        self.assertFalse(ok.json["active"])


class Head(unittest.TestCase):
    def test_head_on_every_get_route(self):
        pid = new_product().json["id"]
        token = admin_token()
        # Every GET of the OpenAPI document, which lists HEAD beside each.
        doc = GW.get("/api/v1/openapi.json").json
        gets = [p for p, ops in doc["paths"].items() if "get" in ops]
        self.assertGreaterEqual(len(gets), 11)
        for p in gets:
            ops = doc["paths"][p]
            self.assertIn("head", ops, p)
            self.assertEqual(set(ops["head"]["responses"]), set(ops["get"]["responses"]), p)
            self.assertFalse(any("content" in r for r in ops["head"]["responses"].values()), p)
        for template in gets:
            path = template.replace("{id}", pid if "products" in template else str(uuid.uuid4()))
            self.assertNotIn("{", path, "a parameter this test cannot fill: " + template)
            with self.subTest(path=path):
                g = GW.get(path, token=token)
                line, h, rest = raw_head(GW.port, path, "Authorization: Bearer %s\r\n" % token)
                self.assertIn(" %d " % g.status, line + " ")
                self.assertEqual(rest, b"", "HEAD answered a body")
                self.assertEqual(h.get("content-type"), g.header("content-type"))
                self.assertEqual(h.get("cache-control"), g.header("cache-control"))
                self.assertEqual(h.get("etag"), g.header("etag"))
        line, h, rest = raw_head(GW.port, "/api/v1/products/" + pid,
                                 "If-None-Match: %s\r\n" % GW.get("/api/v1/products/" +
                                                                   pid).header("etag"))
        self.assertIn(" 304 ", line)
        self.assertEqual(rest, b"")
        # Still 401 without the token where GET needs one.
        self.assertIn(" 401 ", raw_head(GW.port, "/api/v1/users/me")[0])

    def test_allow_lists_head_with_get(self):
        r = GW.request("PUT", "/api/v1/products")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, POST, HEAD")
        r = GW.request("POST", "/api/v1/auth/register/x")
        self.assertEqual(r.status, 404)
        self.assertEqual(GW.request("GET", "/api/v1/auth/login").header("allow"), "POST")


class CorsOff(unittest.TestCase):
    def test_no_cors_headers_by_default(self):
        r = GW.get("/api/v1/products", headers={"Origin": ORIGIN})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("access-control-allow-origin"))
        self.assertNotIn("Origin", r.header("vary") or "")
        pre = GW.request("OPTIONS", "/api/v1/products",
                         headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        self.assertEqual(pre.status, 405, pre)
        self.assertIsNone(pre.header("access-control-allow-origin"))


class Cors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = STACK.start_gateway("cors", CORS_ALLOWED_ORIGINS="http://localhost:3000, " +
                                     ORIGIN)

    @classmethod
    def tearDownClass(cls):
        STACK.stop_gateway("cors")

    def test_allowed_origin_is_echoed_with_vary(self):
        for origin in (ORIGIN, "http://localhost:3000"):
            r = self.gw.get("/api/v1/products", headers={"Origin": origin})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("access-control-allow-origin"), origin)
            self.assertIn("Origin", r.header("vary"))
            exposed = [x.strip() for x in r.header("access-control-expose-headers").split(",")]
            for name in ("ETag", "Location", "Retry-After", "RateLimit", "RateLimit-Policy"):
                self.assertIn(name, exposed)
        # Errors too, so a script can read them.
        r = self.gw.get("/api/v1/users/me", headers={"Origin": ORIGIN})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("access-control-allow-origin"), ORIGIN)

    def test_other_origins_get_nothing(self):
        for origin in ("https://evil.example", ORIGIN + "/", "null", ORIGIN.upper()):
            with self.subTest(origin=origin):
                r = self.gw.get("/api/v1/products", headers={"Origin": origin})
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header("access-control-allow-origin"))
                self.assertIsNone(r.header("access-control-expose-headers"))
                self.assertIn("Origin", r.header("vary"))
                pre = self.gw.request("OPTIONS", "/api/v1/products",
                                      headers={"Origin": origin,
                                               "Access-Control-Request-Method": "POST"})
                self.assertEqual(pre.status, 405)
                self.assertFalse([k for k in pre.headers if k.startswith("access-control-")])

    def test_preflight(self):
        pid = str(uuid.uuid4())
        r = self.gw.request("OPTIONS", "/api/v1/products/" + pid, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,content-type,if-match,x-evil"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.raw, b"")
        self.assertEqual(r.header("access-control-allow-origin"), ORIGIN)
        self.assertEqual(r.header("access-control-allow-methods"), "GET, PATCH, DELETE, HEAD")
        allowed = [x.strip().lower() for x in
                   r.header("access-control-allow-headers").split(",")]
        self.assertEqual(sorted(allowed), ["authorization", "content-type", "if-match"])
        self.assertEqual(r.header("access-control-max-age"), "600")
        self.assertIn("Origin", r.header("vary"))
        # No token needed, no budget spent; a preflight without requested headers.
        r = self.gw.request("OPTIONS", "/api/v1/orders", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("access-control-allow-methods"), "POST, GET, HEAD")
        self.assertIsNone(r.header("access-control-allow-headers"))
        # An unknown path is 404, an OPTIONS that is no preflight 405.
        self.assertEqual(self.gw.request("OPTIONS", "/nowhere", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "GET"}).status, 404)
        plain = self.gw.request("OPTIONS", "/api/v1/orders", headers={"Origin": ORIGIN})
        self.assertEqual(plain.status, 405)
        self.assertEqual(plain.header("access-control-allow-origin"), ORIGIN)

    def test_a_bad_setting_stops_the_gateway(self):
        import subprocess
        for bad in ("shop.example", "https://shop.example/path", "ftp://x"):
            with self.subTest(origins=bad):
                e = dict(os.environ, GATEWAY_ADDR="127.0.0.1:0", JWT_SECRET="s" * 40,
                         CORS_ALLOWED_ORIGINS=bad, **STACK.tls("gateway"))
                p = subprocess.run([STACK.bins["gateway"]], env=e, capture_output=True,
                                   timeout=30)
                self.assertEqual(p.returncode, 2, p.stderr[-300:])
                self.assertIn(b"CORS_ALLOWED_ORIGINS", p.stderr)
        out = subprocess.run([STACK.bins["gateway"], "--help"], capture_output=True,
                             timeout=30).stdout
        self.assertTrue(re.search(rb"CORS_ALLOWED_ORIGINS", out))


if __name__ == "__main__":
    main_for(globals())
